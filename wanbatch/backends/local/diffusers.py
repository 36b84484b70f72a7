"""`diffusers`: Wan text-to-video, image-to-video and first-last-frame-to-video on local devices.

The task follows the scene's inputs: no image is text-to-video (`WanPipeline`), `image` (or
`chain_from`) is image-to-video and `image` + `last_image` is first-last-frame-to-video (both
`WanImageToVideoPipeline`). The model (`backend.model`, or a scene's `model`) must do that task.
Defaults come from the model card (wanbatch/backends/local/models/registry.py); `num_frames` is `duration` x `fps`
rounded to the nearest 4k+1 and the rounding is reported by `notes`, never silent.

Pipelines stay warm across scenes (wanbatch/backends/local/pipelines.py): one load per (model, device) per run,
one render at a time per device. Frames come from a CPU `torch.Generator` seeded with the scene's
seed, so a render is reproducible and bit-identical to a direct diffusers call (`render_frames`).

Example::

    backend = DiffusersBackend(DiffusersConfig(model="tiny-t2v"))
    params = backend.prepare(scene, issues)          # plan time: no torch work, no download
    frames, info = backend.render_frames(job)        # (num_frames, H, W, 3) uint8
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from wanbatch.backends.local.models.registry import (
    UnknownModel,
    folder_identity,
    hf_offline,
    hub_commit,
    in_hf_cache,
    known_names,
    resolve,
    split_revision,
)
from wanbatch.backends.local.models.spec import TASK_NAMES, ModelSpec
from wanbatch.backends.local.models.tiny import TINY_VERSION, ensure_tiny
from wanbatch.backends.local.pipelines import DTYPES, OFFLOAD, LoadSpec, PipelinePool
from wanbatch.config.backends import DiffusersConfig
from wanbatch.config.checks import choice, flag, number, text
from wanbatch.core.backend import Backend, BackendKind, RenderContext, RenderResult
from wanbatch.errors import Cancelled, Issue, MissingExtraError, RenderError

if TYPE_CHECKING:
    import numpy as np

    from wanbatch.core.job import Job
    from wanbatch.core.scene import Scene

LOCAL_MODULES = ("torch", "diffusers", "transformers")
FRAME_FIT = "cover-crop-v1"  # how frames are fitted before the call (pipelines.fit_frames); in the key
GROUP_OFFLOAD_SINCE = (0, 36)  # DiffusionPipeline.enable_group_offload (diffusers #12283)


def diffusers_version() -> tuple[int, ...]:
    """The installed diffusers' version as numbers (read from its metadata: no import at plan time)."""
    import importlib.metadata
    import re

    try:
        text = importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        return (0,)
    return tuple(int(n) for n in re.findall(r"\d+", text.split("+")[0])[:3])


def check_options(config: DiffusersConfig, issues: list[Issue]) -> DiffusersConfig:
    """Append an Issue for each option of `config` outside what is allowed (the schema, DiffusersConfig, has
    checked the keys and types). Returns the options with each bad one at its schema default, so planning goes
    on and reports every problem at once."""
    bad: list[str] = []

    def check(ok: bool, key: str) -> None:
        if not ok:
            bad.append(key)

    c = config
    blank = isinstance(c.model, str) and not c.model.strip()
    models = f"a model name ({', '.join(known_names())}), a hub id or a local folder"
    check(text(issues, "backend.model", "" if blank else c.model, allowed=models), "model")
    check(choice(issues, "backend.dtype", c.dtype, ("auto", *DTYPES)), "dtype")
    check(choice(issues, "backend.vae_dtype", c.vae_dtype, DTYPES), "vae_dtype")
    check(choice(issues, "backend.offload", c.offload, OFFLOAD), "offload")
    check(flag(issues, "backend.vae_tiling", c.vae_tiling), "vae_tiling")
    check(flag(issues, "backend.local_files_only", c.local_files_only), "local_files_only")
    check(
        number(
            issues,
            "backend.warm_models",
            c.warm_models,
            minimum=1,
            integer=True,
            allowed="an integer >= 1 (pipelines kept loaded per device)",
        ),
        "warm_models",
    )
    devs = list(c.device) if isinstance(c.device, (list, tuple)) else [c.device]
    if not devs or not all(isinstance(d, str) and _device_ok(d) for d in devs):
        issues.append(Issue(None, "backend.device", c.device, "auto, cpu, cuda, cuda:N, or a list of cuda:N"))
        bad.append("device")
    defaults = type(config)()
    return replace(config, **{key: getattr(defaults, key) for key in bad})


def _device_ok(d: str) -> bool:
    if d in ("auto", "cpu", "cuda", "mps"):
        return True
    head, _, idx = d.partition(":")
    return head == "cuda" and idx.isdigit()


@dataclass(frozen=True)
class _Resolved:
    spec: ModelSpec
    ref: str  # the name as written
    revision: str | None


class DiffusersBackend(Backend):
    name: ClassVar[str] = "diffusers"
    kind: ClassVar[BackendKind] = BackendKind.LOCAL
    extra: ClassVar[str] = "local"
    config_type: ClassVar[type[DiffusersConfig]] = DiffusersConfig
    config: DiffusersConfig

    def __init__(self, config: DiffusersConfig, *, pool: PipelinePool | None = None):
        super().__init__(config)
        self._config_issues: list[Issue] = []
        self.options = check_options(self.config, self._config_issues)  # the config, any bad option at its default
        self._pool_obj = pool
        self._lock = threading.Lock()
        self._specs: dict[str, _Resolved | str] = {}  # model ref -> resolved, or the reason it is not
        self._identities: dict[str, str] = {}
        self._availability: dict[tuple[str, str | None], bool] = {}
        self._devices: list[str] | None = None

    # -- plan time ---------------------------------------------------------------------------------
    def check_ready(self, issues: list[Issue]) -> None:
        self.require_extra()
        issues.extend(self._config_issues)
        devices = self.devices()
        if any(d.startswith("cuda") for d in devices):
            import torch

            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            for d in devices:
                idx = int(d.partition(":")[2] or 0) if d.startswith("cuda") else -1
                if idx >= n:
                    issues.append(
                        Issue(
                            None,
                            "backend.device",
                            d,
                            f"a visible CUDA device (this machine has {n}); use `device: auto` or `cpu`",
                        )
                    )
        if self.options.offload == "group" and diffusers_version() < GROUP_OFFLOAD_SINCE:
            found = ".".join(map(str, diffusers_version()))
            issues.append(
                Issue(
                    None,
                    "backend.offload",
                    "group",
                    f"`model` or `sequential` with diffusers {found}: pipeline-level group offloading "
                    "(`enable_group_offload`) first came in diffusers 0.36; or pip install 'diffusers>=0.36'",
                )
            )
        if self.options.offload != "none" and not any(d.startswith("cuda") for d in devices):
            issues.append(
                Issue(
                    None,
                    "backend.offload",
                    self.options.offload,
                    "`none` on a machine without CUDA: offloading moves weights between CPU and GPU",
                )
            )

    def require_extra(self) -> None:
        """Raise MissingExtraError when torch, diffusers or transformers cannot be found."""
        missing = [m for m in LOCAL_MODULES if _find_spec(m) is None]
        if missing:
            raise MissingExtraError(f"the `{self.name}` backend ({', '.join(missing)} not installed)", "local")

    def model_identity(self, scene: Scene) -> dict[str, Any]:
        got = self._resolve(scene)
        if isinstance(got, str):
            return {"model": scene.model or self.options.model, "revision": None}
        spec = got.spec
        if spec.kind == "hub":
            return {"model": spec.source, "revision": got.revision or "main"}
        if spec.kind == "tiny":
            return {"model": f"{spec.name}@{TINY_VERSION}", "revision": None}
        with self._lock:
            ident = self._identities.get(spec.source)
        if ident is None:
            ident = folder_identity(Path(spec.source))
            with self._lock:
                self._identities[spec.source] = ident
        return {"model": f"local:{ident}", "revision": None}

    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        n_before = len(issues)
        # 1. The model
        got = self._resolve(scene)
        if isinstance(got, str):
            issues.append(Issue(scene.id, "model", scene.model or self.options.model, got))
            return {}
        spec = got.spec
        # 2. Fields this backend cannot honour
        self._reject_unsupported(scene, issues)
        # 3. The task, from the inputs
        has_image = chained or scene.image is not None
        if scene.last_image is not None and not has_image:
            issues.append(
                Issue(
                    scene.id,
                    "last_image",
                    scene.last_image.describe(),
                    "set together with `image` (the first frame) or `chain_from`",
                )
            )
            return {}
        task = "flf2v" if scene.last_image is not None else "i2v" if has_image else "t2v"
        if task not in spec.tasks:
            issues.append(Issue(scene.id, "model", got.ref, self._task_advice(spec, task, chained)))
            return {}
        if task == "t2v" and not (scene.prompt or "").strip():
            issues.append(Issue(scene.id, "prompt", scene.prompt, "a text prompt: text-to-video needs one"))
        # 4. Size, frames
        size = self._size(scene, spec, task, issues)
        fps = scene.fps or spec.fps
        num_frames = self._num_frames(scene, spec, fps, issues)
        if len(issues) > n_before or size is None or num_frames is None:
            return {}
        width, height = size
        # 5. Availability: offline with the model missing is an error now, not a failed download later
        self._check_available(scene, got, issues)
        guidance = float(scene.guidance_scale) if scene.guidance_scale is not None else spec.guidance_scale
        params: dict[str, Any] = {
            "task": task,
            "prompt": scene.prompt or "",
            "negative_prompt": scene.negative_prompt if scene.negative_prompt is not None else spec.negative_prompt,
            "width": width,
            "height": height,
            "num_frames": num_frames,
            "fps": fps,
            "steps": scene.steps or spec.steps,
            "guidance_scale": guidance,
            "flow_shift": float(scene.flow_shift)
            if scene.flow_shift is not None
            else spec.shift_for_size(width, height),
            "seed": scene.seed,
            "max_sequence_length": spec.max_sequence_length,
            "dtype": self.dtype(),
            "vae_dtype": self.options.vae_dtype,
            "vae_tiling": self.options.vae_tiling,
            "device_type": self.device_type(),  # CPU and CUDA kernels give different pixels
        }
        if task == "flf2v" or (task == "i2v" and spec.image_encoder):
            # The frames are fitted to the render size before the call (pipelines.fit_frames): the image encoder
            # sees another frame than before, and a last frame of another aspect ratio is cropped, not stretched.
            # A model without an image encoder gets an i2v frame identical to the pipeline's own, so its keys stay.
            params["frame_fit"] = FRAME_FIT
        if spec.guidance_scale_2 is not None:  # Wan2.2 A14B: one guidance per expert
            params["guidance_scale_2"] = guidance if scene.guidance_scale is not None else spec.guidance_scale_2
        return params

    def notes(self, scene: Scene, params: Mapping[str, Any]) -> list[str]:
        """What prepare decided that the user did not write: shown in dry runs and progress, never hashed."""
        if not params:
            return []
        out: list[str] = []
        n, fps = int(params["num_frames"]), int(params["fps"])
        if scene.num_frames is None and scene.duration is not None:
            raw = scene.duration * fps
            if abs(raw - n) > 1e-6:
                out.append(
                    f"num_frames {n}: {scene.duration:g} s x {fps} fps = {raw:g} frames, rounded to the "
                    f"nearest 4k+1 as Wan needs (the clip lasts {n / fps:.3g} s)"
                )
        elif scene.num_frames is None:
            out.append(f"num_frames {n}: the model's default ({n / fps:.3g} s at {fps} fps)")
        if scene.width is None and params["task"] != "t2v":
            if scene.image is not None and scene.image.width:
                out.append(
                    f"size {params['width']}x{params['height']}: the first frame's aspect ratio "
                    f"({scene.image.width}x{scene.image.height}) within the "
                    f"{scene.resolution or 'default'} area, in multiples of {self._multiple(scene)}"
                )
            else:
                out.append(
                    f"size {params['width']}x{params['height']}: the resolution's default; the chained "
                    "first frame is resized to it (set `width`/`height` to match its parent)"
                )
        last, first = scene.last_image, scene.image
        if params["task"] == "flf2v" and last is not None and last.width and last.height:
            like = (int(params["width"]), int(params["height"]))
            if first is not None and first.width and first.height:
                like = (first.width, first.height)
            if abs(last.width / last.height - like[0] / like[1]) > 0.01:
                out.append(
                    f"last frame {last.width}x{last.height} centre-cropped to the first frame's aspect ratio "
                    f"({like[0]}x{like[1]}), then resized to {params['width']}x{params['height']}"
                )
        if "guidance_scale_2" in params:
            out.append(
                f"guidance {params['guidance_scale']:g} (high-noise expert) / "
                f"{params['guidance_scale_2']:g} (low-noise expert)"
            )
        got = self._resolve(scene)
        if not isinstance(got, str) and got.spec.kind == "hub" and not self._available(got):
            out.append(f"{got.spec.source} is not in the local Hugging Face cache: it downloads on first use")
        return out

    def seconds_of_video(self, params: Mapping[str, Any]) -> float:
        return float(params["num_frames"]) / float(params["fps"]) if params else 0.0

    def _multiple(self, scene: Scene) -> int:
        got = self._resolve(scene)
        return 16 if isinstance(got, str) else got.spec.size_multiple

    @property
    def max_in_flight(self) -> int:
        """Jobs let into `render` at once. More than the devices: the extra ones wait inside the pipeline
        pool, which renders one job per device and serves waiters of the warm model first."""
        return 4 * len(self.devices())

    # -- run time ----------------------------------------------------------------------------------
    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        from wanbatch.av.encode import write_clip

        frames, info = self.render_frames(job, ctx)
        ctx.status("encoding")
        audio = job.inputs.get("audio")
        t0 = time.perf_counter()
        video = write_clip(
            frames,
            ctx.workdir / "clip.mp4",
            fps=float(job.params["fps"]),
            settings=ctx.encode,
            audio=audio.path if audio is not None and audio.path is not None else None,
        )
        info["encode_s"] = round(time.perf_counter() - t0, 3)
        return RenderResult(video=video, model=job.model, info=info)

    def render_frames(self, job: Job, ctx: RenderContext | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """The frames wanbatch encodes for `job`, before encoding: (num_frames, H, W, 3) uint8."""
        from wanbatch.backends.local.pipelines import call_pipeline, load_images

        self.require_extra()
        params = job.params
        images = load_images(self._image_paths(job))
        load = self.load_spec(job)
        cancel = ctx.cancel if ctx is not None else threading.Event()
        status = ctx.status if ctx is not None else (lambda _msg: None)

        def on_step(i: int, steps: int) -> None:
            if cancel.is_set():
                raise Cancelled(f"cancelled at step {i + 1} of {steps}")
            status(f"step {i + 1}/{steps}")

        status("waiting for a device")
        phase = "loading"
        try:
            with self._pool().lease(load, cancel, job_id=job.id, model=job.model) as lease:
                phase = "rendering"
                status(f"rendering on {lease.device}")
                t0 = time.perf_counter()
                frames = call_pipeline(lease.pipe, params, images, on_step=on_step)
                render_s = round(time.perf_counter() - t0, 3)
        except (Cancelled, RenderError):
            raise
        except Exception as exc:
            raise self._render_error(job, exc, phase, load) from exc
        info = {
            "load_s": lease.load_s,
            "render_s": render_s,
            "device": lease.device,
            "warm": lease.warm,
            "pipeline": load.pipeline,
            "num_frames": int(frames.shape[0]),
        }
        return frames, info

    def expect(self, job: Job) -> None:
        self._pool().expect(job.id, job.model)

    def settle(self, job: Job) -> None:
        self._pool().settle(job.id)

    def load_spec(self, job: Job) -> LoadSpec:
        """How `job`'s pipeline is loaded (tiny models are built here on first use)."""
        got = self._resolve(job.scene)
        if isinstance(got, str):
            raise RenderError(got)
        spec = got.spec
        source = spec.source
        if spec.kind == "tiny":
            models_dir = Path(self.options.models_dir).expanduser() if self.options.models_dir else None
            source = str(ensure_tiny(spec.name, models_dir))
        return LoadSpec(
            source=source,
            revision=got.revision if spec.kind == "hub" else None,
            pipeline=spec.pipeline_class(job.params["task"]),
            dtype=job.params["dtype"],
            vae_dtype=job.params["vae_dtype"],
            offload=self.options.offload,
            vae_tiling=bool(job.params["vae_tiling"]),
            local_files_only=self.options.local_files_only or hf_offline(),
        )

    def environment(self, jobs: Sequence[Job]) -> dict[str, Any]:
        """The devices (names, CUDA version), dtype and torch of these renders, and each model's resolved
        revision: a hub model's commit in the local Hugging Face cache, a folder's (or tiny model's) content
        hash. Called once the jobs ran, so torch is already imported."""
        import torch

        devices = []
        for d in self.devices():
            if d.startswith("cuda") and torch.cuda.is_available():
                name = torch.cuda.get_device_name(int(d.partition(":")[2] or 0))
            else:
                name = _cpu_name()
            devices.append({"device": d, "name": name})
        models: dict[str, Any] = {}
        for job in jobs:
            ref = job.scene.model or self.options.model
            if ref in models:
                continue
            got = self._resolve(job.scene)
            if isinstance(got, str):
                continue
            spec = got.spec
            if spec.kind == "hub":
                models[ref] = {"source": spec.source, "revision": got.revision or "main"}
                models[ref]["commit"] = hub_commit(spec.source, got.revision)
            else:  # a folder: what its files hold (a tiny model's is built on first use, wherever models_dir is)
                folder = Path(self.load_spec(job).source)
                models[ref] = {"model": job.model, "content": self._folder_identity(folder)}
        return {
            "devices": devices,
            "dtype": self.dtype(),
            "torch": str(torch.__version__),
            "cuda": torch.version.cuda,
            "models": models,
        }

    def _folder_identity(self, folder: Path) -> str:
        with self._lock:
            ident = self._identities.get(str(folder))
        if ident is None:
            ident = folder_identity(folder)
            with self._lock:
                self._identities[str(folder)] = ident
        return ident

    def close(self) -> None:
        if self._pool_obj is not None:
            self._pool_obj.close()

    # -- devices -----------------------------------------------------------------------------------
    def devices(self) -> list[str]:
        """The devices this backend renders on: `device: auto` is every visible CUDA device, else the CPU."""
        if self._devices is None:
            dev = self.options.device
            devs = [str(d) for d in dev] if isinstance(dev, (list, tuple)) else [str(dev)]
            if devs == ["auto"]:
                devs = ["cpu"]
                if _gpu_device_nodes() and _find_spec("torch") is not None:
                    import torch

                    if torch.cuda.is_available():
                        devs = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
            self._devices = ["cuda:0" if d == "cuda" else d for d in devs]
        return self._devices

    def device_type(self) -> str:
        return self.devices()[0].partition(":")[0]

    def dtype(self) -> str:
        if self.options.dtype != "auto":
            return self.options.dtype
        return "bfloat16" if self.device_type() == "cuda" else "float32"

    def _pool(self) -> PipelinePool:
        with self._lock:
            if self._pool_obj is None:
                self._pool_obj = PipelinePool(self.devices(), warm_per_device=self.options.warm_models)
            return self._pool_obj

    # -- helpers -----------------------------------------------------------------------------------
    def _resolve(self, scene: Scene) -> _Resolved | str:
        ref = scene.model or self.options.model
        with self._lock:
            hit = self._specs.get(ref)
        if hit is not None:
            return hit
        name, rev = split_revision(ref)
        got: _Resolved | str
        try:
            spec = resolve(name)
            if rev is None and ref == self.options.model:
                rev = self.options.revision
            got = _Resolved(spec, ref, rev)
        except UnknownModel as exc:
            got = str(exc)
        with self._lock:
            self._specs[ref] = got
        return got

    def _reject_unsupported(self, scene: Scene, issues: list[Issue]) -> None:
        if scene.first_clip is not None:
            issues.append(
                Issue(
                    scene.id,
                    "first_clip",
                    scene.first_clip.describe(),
                    f"unset: the `{self.name}` backend cannot continue a clip; use `chain_from` "
                    "(its last frame becomes this scene's first frame) or `image`",
                )
            )
        if scene.loras:
            issues.append(
                Issue(
                    scene.id,
                    "loras",
                    [lo.path for lo in scene.loras],
                    f"empty: the `{self.name}` backend does not load LoRAs yet",
                )
            )
        if scene.prompt_extend:
            issues.append(
                Issue(
                    scene.id,
                    "prompt_extend",
                    True,
                    f"false: the `{self.name}` backend renders the prompt as written",
                )
            )
        if scene.watermark:
            issues.append(Issue(scene.id, "watermark", True, f"false: the `{self.name}` backend adds no watermark"))
        for name, media in scene.media().items():
            if name in ("image", "last_image", "audio") and not media.is_local:
                issues.append(
                    Issue(
                        scene.id,
                        name,
                        media.describe(),
                        f"a local file: the `{self.name}` backend reads inputs from disk "
                        "(download it and give its path)",
                    )
                )

    def _task_advice(self, spec: ModelSpec, task: str, chained: bool) -> str:
        have = {
            "t2v": "no `image`",
            "i2v": "`chain_from`" if chained else "an `image`",
            "flf2v": "`image` and `last_image`",
        }[task]
        fits = [n for n in known_names() if task in resolve(n).tasks]
        does = ", ".join(TASK_NAMES[t] for t in sorted(spec.tasks))
        return (
            f"a model that does {TASK_NAMES[task]} (this scene has {have}); `{spec.name}` does {does}. "
            f"Models for {TASK_NAMES[task]}: {', '.join(fits)}"
        )

    def _size(self, scene: Scene, spec: ModelSpec, task: str, issues: list[Issue]) -> tuple[int, int] | None:
        if scene.width is not None or scene.height is not None:
            if scene.width is None or scene.height is None:
                missing = "width" if scene.width is None else "height"
                issues.append(Issue(scene.id, missing, None, "set both `width` and `height`, or `resolution`"))
                return None
            w, h = scene.width, scene.height
            problem = spec.size_allowed(task, w, h)
            if problem:
                issues.append(Issue(scene.id, "width x height", f"{w}x{h}", problem))
                return None
            return w, h
        tier = scene.resolution or spec.default_resolution
        if tier not in spec.resolutions:
            issues.append(
                Issue(
                    scene.id,
                    "resolution",
                    tier,
                    f"one of {', '.join(spec.resolutions)} for `{spec.name}` (or explicit `width`/`height`)",
                )
            )
            return None
        if task != "t2v" and scene.image is not None and scene.image.width and scene.image.height:
            return spec.size_from_image(tier, scene.image.width, scene.image.height)
        return spec.resolutions[tier]

    def _num_frames(self, scene: Scene, spec: ModelSpec, fps: int, issues: list[Issue]) -> int | None:
        if scene.num_frames is not None and scene.duration is not None:
            issues.append(
                Issue(scene.id, "num_frames", scene.num_frames, "either `duration` or `num_frames`, not both")
            )
            return None
        if scene.num_frames is not None:
            n = scene.num_frames
            if (n - 1) % 4:
                lo, hi = (n - 1) // 4 * 4 + 1, (n - 1) // 4 * 4 + 5
                issues.append(Issue(scene.id, "num_frames", n, f"4k+1 frames as Wan needs (e.g. {lo} or {hi})"))
                return None
        elif scene.duration is not None:
            k = max(1, math.floor((scene.duration * fps - 1) / 4 + 0.5))
            n = 4 * k + 1
        else:
            n = spec.frames
        if n > spec.max_frames:
            issues.append(
                Issue(
                    scene.id,
                    "num_frames" if scene.num_frames else "duration",
                    scene.num_frames or scene.duration,
                    f"at most {spec.max_frames} frames ({spec.max_frames / fps:.2f} s at {fps} fps) for "
                    f"`{spec.name}`; split the shot into scenes joined with `chain_from`",
                )
            )
            return None
        return n

    def _available(self, got: _Resolved) -> bool:
        key = (got.spec.source, got.revision)
        with self._lock:
            hit = self._availability.get(key)
        if hit is None:
            hit = in_hf_cache(got.spec.source, got.revision)
            with self._lock:
                self._availability[key] = hit
        return hit

    def _check_available(self, scene: Scene, got: _Resolved, issues: list[Issue]) -> None:
        if got.spec.kind != "hub" or not (hf_offline() or self.options.local_files_only):
            return
        if self._available(got):
            return
        why = "HF_HUB_OFFLINE=1 is set" if hf_offline() else "`local_files_only: true` is set"
        rev = f" --revision {got.revision}" if got.revision else ""
        issues.append(
            Issue(
                scene.id,
                "model",
                got.ref,
                f"a model in the local Hugging Face cache: {why} and {got.spec.source} is not there. "
                f"Fix: download it once with network on (`hf download {got.spec.source}{rev}`), "
                "or unset HF_HUB_OFFLINE, or set `model` to a local folder",
            )
        )

    def _image_paths(self, job: Job) -> dict[str, Path]:
        wanted = {"i2v": ("image",), "flf2v": ("image", "last_image")}.get(job.params["task"], ())
        out: dict[str, Path] = {}
        for name in wanted:
            media = job.inputs.get(name)
            if media is None or media.path is None:
                src = f"the last frame of `{job.parent}`" if job.parent and name == "image" else f"`{name}`"
                raise RenderError(f"scene `{job.id}` needs {src} as a local image, and it was not supplied")
            out[name] = media.path
        return out

    def _render_error(self, job: Job, exc: Exception, phase: str, load: LoadSpec) -> RenderError:
        p = job.params
        if _is_oom(exc):
            return RenderError(
                f"out of accelerator memory {phase} `{job.id}` ({p['width']}x{p['height']}, "
                f"{p['num_frames']} frames, {job.model}). Fix: offload weights (`backend.offload=model`, "
                "or `group` / `sequential` for less memory still), decode in tiles "
                "(`backend.vae_tiling=true`), use `backend.dtype=bfloat16`, or render a smaller "
                "`width`/`height` or fewer frames"
            )
        if phase == "loading":
            fix = (
                f"download it once with network on (`hf download {load.source}`), or set `model` to a local folder"
                if not Path(load.source).is_dir()
                else "check that the folder is a whole diffusers "
                "checkpoint (model_index.json and every component folder)"
            )
            return RenderError(f"could not load {job.model} for `{job.id}`: {type(exc).__name__}: {exc}. Fix: {fix}")
        return RenderError(f"rendering `{job.id}` with {job.model} failed: {type(exc).__name__}: {exc}")


def _cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows of it."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _gpu_device_nodes() -> bool:
    """Whether this machine could have a CUDA (or ROCm) device at all, without importing torch (a second
    at start-up, which a fully cached rerun should not pay on a machine with no GPU)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if not sys.platform.startswith("linux"):
        return True  # no cheap answer elsewhere: let torch say
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg"))


def _find_spec(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:
        return False
    kinds = tuple(
        t
        for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
        if isinstance(t, type)
    )
    return (bool(kinds) and isinstance(exc, kinds)) or "out of memory" in str(exc).lower()


__all__ = ["DiffusersBackend", "check_options"]
