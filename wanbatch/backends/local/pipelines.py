"""Warm diffusers pipelines, and the one way wanbatch calls them.

A `PipelinePool` loads a checkpoint once per (model, device) and keeps it for the run, so scenes on
one model pay the load once. Each device renders one job at a time: `lease` blocks until a device is
free, preferring one where the checkpoint is already warm. Text-to-video and image-to-video
pipelines of one checkpoint (Wan2.2 TI2V-5B) share their modules through `from_pipe`.

`call_pipeline` is the whole render: flow shift set on a fresh scheduler, a CPU `torch.Generator`
seeded with the scene's seed, the pipeline called, frames turned into uint8 exactly as diffusers'
own `numpy_to_pil` does. Both the diffusers backend and the xdit workers use it, so what they
encode is what a direct diffusers call returns.

Example::

    pool = PipelinePool(["cpu"])
    spec = LoadSpec(str(folder), None, "WanPipeline", "float32", "float32", "none", False, False)
    with pool.lease(spec) as lease:
        frames = call_pipeline(lease.pipe, params, {})
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wanbatch.backends.local.models.construction import CONSTRUCTION_LOCK, diffusers_attr
from wanbatch.core.heap import release

if TYPE_CHECKING:
    import numpy as np

DTYPES = ("bfloat16", "float16", "float32")
OFFLOAD = ("none", "model", "sequential", "group")


@dataclass(frozen=True)
class LoadSpec:
    """How to load one pipeline. Equal specs share one warm pipeline."""

    source: str  # hub id or local folder
    revision: str | None
    pipeline: str  # "WanPipeline" | "WanImageToVideoPipeline"
    dtype: str  # transformer(s) and text encoder, resolved (never "auto")
    vae_dtype: str
    offload: str
    vae_tiling: bool
    local_files_only: bool

    @property
    def checkpoint(self) -> tuple[Any, ...]:
        """Everything but the pipeline class: pipelines with equal checkpoints can share modules."""
        return (
            self.source,
            self.revision,
            self.dtype,
            self.vae_dtype,
            self.offload,
            self.vae_tiling,
            self.local_files_only,
        )


@dataclass
class Lease:
    pipe: Any
    device: str
    load_s: float  # seconds spent loading for this lease (0.0 when it was warm)
    warm: bool


def torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def _dtype_kwarg() -> str:
    # diffusers renamed `torch_dtype` to `dtype`; use whichever this version reads without a warning.
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def load_pipeline(spec: LoadSpec, device: str, cls: Any = None, **components: Any) -> Any:
    """`from_pretrained` a Wan pipeline and place it on `device` (or set up offloading onto it).
    `components` replace loaded ones (the xdit workers pass their parallel transformer), and `cls` the
    pipeline class (theirs for CFG parallel)."""
    import torch

    dtypes = {
        "default": torch_dtype(spec.dtype),
        "vae": torch_dtype(spec.vae_dtype),
        "image_encoder": torch.float32,
    }
    # Loads must not overlap other loads, tiny-model builds or lazy imports of diffusers (construction.py).
    with CONSTRUCTION_LOCK:
        # diffusers_attr also turns off their per-load tqdm bars (models/quiet.py), which would tear through
        # wanbatch's own progress display.
        cls = cls or diffusers_attr(spec.pipeline)
        pipe = cls.from_pretrained(
            spec.source,
            revision=spec.revision,
            local_files_only=spec.local_files_only,
            **{_dtype_kwarg(): dtypes},
            **components,
        )
    place(pipe, device, spec.offload)
    if spec.vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def place(pipe: Any, device: str, offload: str) -> None:
    import torch

    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        pipe.enable_group_offload(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=True,
        )
    else:
        raise ValueError(f"`offload` = {offload!r}: one of {', '.join(OFFLOAD)}")


def derive_pipeline(pipe: Any, pipeline: str) -> Any:
    """Another pipeline class over the same modules (no reload, no extra memory)."""
    derived = diffusers_attr(pipeline).from_pipe(pipe)
    derived.set_progress_bar_config(disable=True)
    return derived


class PipelinePool:
    """Pipelines kept warm per device for the life of a run. Thread-safe."""

    switch_grace_s = 0.25  # how long a freed device waits for its warm model's next job before switching

    def __init__(
        self,
        devices: Sequence[str],
        *,
        warm_per_device: int = 1,
        loader: Callable[[LoadSpec, str], Any] = load_pipeline,
        derive: Callable[[Any, str], Any] = derive_pipeline,
    ):
        if not devices:
            raise ValueError("a pipeline pool needs at least one device")
        self.devices = list(devices)
        self.warm_per_device = max(1, warm_per_device)
        self._loader = loader
        self._derive = derive
        self._cond = threading.Condition()
        self._busy: set[str] = set()
        self._waiting: list[tuple[int, tuple[Any, ...]]] = []  # (arrival ticket, checkpoint) of blocked leases
        self._ticket = 0
        self._released_at: dict[str, float] = {}
        # device -> checkpoint -> {pipeline class name: pipeline}, least recently used first
        self._warm: dict[str, OrderedDict[tuple[Any, ...], dict[str, Any]]] = {d: OrderedDict() for d in devices}
        self.loads: Counter[tuple[str, str | None, str, str]] = Counter()  # (source, revision, class, device)
        # Jobs the executor has let in that are not at the pool yet (job id -> order, model), and the model of each
        # checkpoint seen: a device does not switch away from a model while a job of it is on its way.
        self._coming: dict[str, tuple[int, str]] = {}  # job id -> (order, model)
        self._model_of: dict[tuple[Any, ...], str] = {}

    @property
    def load_count(self) -> int:
        return sum(self.loads.values())

    def expect(self, job_id: str, model: str) -> None:
        """A job of `model` holds its executor slots and will ask for a device (or `settle`). It is served in
        the order it was expected, against the jobs already waiting, even before its thread gets here."""
        with self._cond:
            self._ticket += 1
            self._coming[job_id] = (self._ticket, model)

    def settle(self, job_id: str) -> None:
        with self._cond:
            if self._coming.pop(job_id, None) is not None:
                self._cond.notify_all()

    @contextlib.contextmanager
    def lease(
        self,
        spec: LoadSpec,
        cancel: threading.Event | None = None,
        *,
        job_id: str | None = None,
        model: str | None = None,
    ) -> Iterator[Lease]:
        """Hold a device with `spec` loaded on it. Blocks while every device is busy."""
        device = self._take(spec.checkpoint, cancel, job_id, model)
        try:
            t0 = time.perf_counter()
            pipe, loaded = self._get(device, spec)
            yield Lease(pipe, device, round(time.perf_counter() - t0, 3) if loaded else 0.0, warm=not loaded)
        finally:
            with self._cond:
                self._busy.discard(device)
                self._released_at[device] = time.monotonic()
                self._cond.notify_all()

    def _take(
        self, checkpoint: tuple[Any, ...], cancel: threading.Event | None, job_id: str | None, model: str | None
    ) -> str:
        # Jobs are served by (model already warm on the free device, order): a device keeps rendering its model
        # while any job of it waits or is on its way, so interleaved jobs do not reload. The order is the one the
        # executor expected the jobs in (`expect`), else arrival here.
        with self._cond:
            expected = self._coming.pop(job_id, None) if job_id is not None else None
            if expected is None:
                self._ticket += 1
            me = (expected[0] if expected else self._ticket, checkpoint)
            if model is not None:
                self._model_of.setdefault(checkpoint, model)
            self._waiting.append(me)  # from coming to waiting under one hold of the lock
            self._cond.notify_all()
            try:
                while True:
                    for device in self._preferred_devices(checkpoint):
                        warm = self._warm[device]
                        best = min(self._waiting, key=lambda w: (w[1] not in warm, w[0]))
                        if best is not me or self._coming_first(device, (checkpoint not in warm, me[0])):
                            continue
                        # Switching a warm device to another model costs a load. Jobs the executor did not
                        # announce (Ray's actors) may still be on their way: give them a moment's grace.
                        linger = self.switch_grace_s - (time.monotonic() - self._released_at.get(device, 0.0))
                        evicts = checkpoint not in warm and len(warm) >= self.warm_per_device
                        if evicts and linger > 0:
                            self._cond.wait(timeout=linger)
                            break
                        self._busy.add(device)
                        return device
                    else:
                        if cancel is not None and cancel.is_set():
                            from wanbatch.errors import Cancelled

                            raise Cancelled("cancelled while waiting for a device")
                        self._cond.wait(timeout=0.5)
            finally:
                self._waiting.remove(me)
                self._cond.notify_all()

    def _coming_first(self, device: str, rank: tuple[bool, int]) -> bool:
        """Whether a job on its way ranks before `rank` on `device` (it holds its slots, so it will come)."""
        models = {self._model_of.get(c) for c in self._warm[device]}
        return any((m not in models, seq) < rank for seq, m in self._coming.values())

    def _preferred_devices(self, checkpoint: tuple[Any, ...]) -> list[str]:
        free = [d for d in self.devices if d not in self._busy]
        warm = [d for d in free if checkpoint in self._warm[d]]
        empty = [d for d in free if not self._warm[d]]
        return warm + empty + [d for d in free if d not in warm and d not in empty]

    def _get(self, device: str, spec: LoadSpec) -> tuple[Any, bool]:
        # Only the thread holding `device` touches its entries, so no lock is needed here.
        warm = self._warm[device]
        entry = warm.get(spec.checkpoint)
        if entry is not None:
            warm.move_to_end(spec.checkpoint)
            if spec.pipeline in entry:
                return entry[spec.pipeline], False
            if spec.offload == "none":
                entry[spec.pipeline] = self._derive(next(iter(entry.values())), spec.pipeline)
                return entry[spec.pipeline], False
            # offload hooks belong to one pipeline object: load this class afresh instead of sharing
            self._evict(device, spec.checkpoint)
        while len(warm) >= self.warm_per_device:
            self._evict(device, next(iter(warm)))
        pipe = self._loader(spec, device)
        warm[spec.checkpoint] = {spec.pipeline: pipe}
        with self._cond:
            self.loads[(spec.source, spec.revision, spec.pipeline, device)] += 1
        return pipe, True

    def _evict(self, device: str, checkpoint: tuple[Any, ...]) -> None:
        self._warm[device].pop(checkpoint, None)
        _free_memory(device)

    def close(self) -> None:
        """Drop every pipeline (and the accelerator memory they held)."""
        with self._cond:
            held = [d for d in self.devices if self._warm[d]]
            for d in held:
                self._warm[d].clear()
        for d in held:  # a pool that loaded nothing (a fully cached run) frees nothing: a collection is ~20 ms
            _free_memory(d)


def _free_memory(device: str) -> None:
    release()  # the pipeline's cycles (offload hooks hold their modules) go now, even those a run froze
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


# -- calling a pipeline ----------------------------------------------------------------------------------
def load_images(paths: Mapping[str, Path]) -> dict[str, Any]:
    """`image` / `last_image` files as PIL images, loaded the way diffusers' `load_image` does."""
    load_image = diffusers_attr("utils").load_image
    return {name: load_image(str(p)) for name, p in paths.items()}


def with_flow_shift(scheduler: Any, shift: float) -> Any:
    """A fresh scheduler of the same kind with `shift` set (UniPC calls it `flow_shift`, the flow-match
    Euler scheduler `shift`). Fresh per render, so no solver state leaks from one scene to the next."""
    cfg = scheduler.config
    key = "flow_shift" if "flow_shift" in cfg else "shift"
    return type(scheduler).from_config(cfg, **{key: float(shift)})


def cover_box(size: tuple[int, int], like: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centred region of an image of `size` with the aspect ratio of `like`: what is left of it once scaled
    to cover `like` and the overflow cut equally from both sides (Wan2.2 textimage2video.py, xDiT's
    resize_and_crop_image). Nothing is stretched, nothing padded."""
    w, h = size
    tw, th = like
    scale = max(tw / w, th / h)
    cw, ch = tw / scale, th / scale
    left, top = (w - cw) / 2, (h - ch) / 2
    return (left, top, left + cw, top + ch)


def fit_frames(params: Mapping[str, Any], images: Mapping[str, Any], resample: str = "lanczos") -> dict[str, Any]:
    """The first and last frames at the render size, before the pipeline sees them.

    The first frame is resized to width x height with the pipeline's own resampling (its video processor's
    `resample`), so the VAE gets exactly the frame it would have made itself, and the image encoder (CLIP)
    now sees that same frame rather than the file as it was (the diffusers docs resize it likewise). A last
    frame of another aspect ratio is cut to the first frame's aspect (resize to cover, centre crop), as Wan's
    FLF2V intends ("last_frame will be cropped & resized to match first_frame"), instead of stretched by the
    pipeline. Upstream's own code for it is not used: it passes (W, H) where (H, W) is meant and never
    resizes, padding the frame with grey (Wan2.1 first_last_frame2video.py L204-214; the diffusers docs'
    `center_crop_resize` copies it)."""
    from PIL import Image

    size = (int(params["width"]), int(params["height"]))
    method = getattr(Image.Resampling, resample.upper(), Image.Resampling.LANCZOS)
    out = dict(images)
    first = images.get("image")
    if first is not None:
        out["image"] = first.resize(size, method)
    last = images.get("last_image")
    if last is not None:
        like = first.size if first is not None else size
        out["last_image"] = last.resize(size, method, box=cover_box(last.size, like))
    return out


def pipeline_kwargs(params: Mapping[str, Any], images: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the diffusers call for canonical `params` (see DiffusersBackend.prepare)."""
    kw: dict[str, Any] = {
        "prompt": params["prompt"],
        "negative_prompt": params["negative_prompt"],
        "height": params["height"],
        "width": params["width"],
        "num_frames": params["num_frames"],
        "num_inference_steps": params["steps"],
        "guidance_scale": params["guidance_scale"],
        "max_sequence_length": params["max_sequence_length"],
    }
    if params.get("guidance_scale_2") is not None:
        kw["guidance_scale_2"] = params["guidance_scale_2"]
    if params["task"] in ("i2v", "flf2v"):
        kw["image"] = images["image"]
    if params["task"] == "flf2v":
        kw["last_image"] = images["last_image"]
    return kw


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] to uint8, rounding exactly as diffusers' `numpy_to_pil`."""
    import numpy as np  # imported when frames are made: a cached run makes none

    return (frames * 255).round().astype(np.uint8)


def call_pipeline(
    pipe: Any,
    params: Mapping[str, Any],
    images: Mapping[str, Any],
    *,
    on_step: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Render one clip: (num_frames, height, width, 3) uint8 RGB frames.

    `on_step(i, steps)` runs after each denoising step; raising from it stops the render there."""
    import torch

    # 1. Scheduler with this scene's flow shift
    pipe.scheduler = with_flow_shift(pipe.scheduler, params["flow_shift"])
    # 2. A CPU generator: the same noise on every device, as diffusers' docs recommend for reproducibility
    generator = torch.Generator(device="cpu").manual_seed(int(params["seed"]))
    callback = None
    if on_step is not None:
        steps = int(params["steps"])

        def callback(_pipe: Any, i: int, _t: Any, _kwargs: dict[str, Any]) -> dict[str, Any]:
            on_step(i, steps)
            return {}

    # 3. The frames at the render size, as the model renders from them
    processor = getattr(pipe, "video_processor", None)
    images = fit_frames(params, images, str(getattr(getattr(processor, "config", None), "resample", "lanczos")))
    # 4. Denoise and decode
    out = pipe(
        **pipeline_kwargs(params, images),
        generator=generator,
        output_type="np",
        callback_on_step_end=callback,
    )
    # 5. Frames as diffusers would hand them to PIL
    import numpy as np  # imported when frames are made: a cached run makes none

    return to_uint8(np.asarray(out.frames[0]))


__all__ = [
    "DTYPES",
    "OFFLOAD",
    "Lease",
    "LoadSpec",
    "PipelinePool",
    "call_pipeline",
    "cover_box",
    "fit_frames",
    "load_images",
    "load_pipeline",
    "pipeline_kwargs",
    "to_uint8",
    "with_flow_shift",
]
