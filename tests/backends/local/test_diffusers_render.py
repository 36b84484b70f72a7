"""The diffusers backend renders real (tiny, random-weight) Wan pipelines on CPU: T2V, I2V, FLF2V,
warm pipelines, frames bit-identical to a direct diffusers call, cancellation and OOM errors."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from wanbatch.av.ffmpeg import probe
from wanbatch.backends.local.diffusers import DiffusersBackend
from wanbatch.backends.local.pipelines import LoadSpec, PipelinePool
from wanbatch.cache.store import Cache
from wanbatch.config.backends import DiffusersConfig
from wanbatch.errors import Cancelled, RenderError
from wanbatch.execute.local import LocalExecutor

from local_fixtures import context, images, job, plan, render_cache, scene, tiny_config, tiny_models_dir

__all__ = ["images", "render_cache", "tiny_models_dir"]  # fixtures used here

SMALL: dict[str, Any] = {"width": 32, "height": 32}


def backend(models_dir: Path, **extra: Any) -> DiffusersBackend:
    return DiffusersBackend(tiny_config(models_dir, **extra))


def direct_diffusers(folder: Path, cls_name: str, *, seed: int, flow_shift: float, **call: Any) -> np.ndarray:
    """What a user writes with diffusers alone, following its docs: load, set the flow shift, seed a CPU
    generator, call, take the PIL frames."""
    import diffusers
    from diffusers import UniPCMultistepScheduler

    pipe = getattr(diffusers, cls_name).from_pretrained(folder)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(generator=torch.Generator().manual_seed(seed), output_type="pil", **call)
    return np.stack([np.asarray(im) for im in out.frames[0]])


def test_text_to_video_renders_a_clip_with_the_planned_frames(
    tiny_models_dir: Path, render_cache: Cache, tmp_path: Path
) -> None:
    b = backend(tiny_models_dir)
    j = job(b, scene(duration=1.0, **SMALL))  # 16 frames asked for: 17 made (4k+1)
    result = b.render(j, context(render_cache, tmp_path / "w"))
    p = probe(result.video)
    assert (p.width, p.height) == (32, 32)
    assert p.fps == 16
    assert p.duration == pytest.approx(17 / 16, abs=0.07)
    assert result.model == "tiny-t2v@1"
    assert result.info["load_s"] > 0 and result.info["render_s"] > 0 and result.info["num_frames"] == 17


def test_image_to_video_and_first_last_frame_render(tiny_models_dir: Path, images: dict[str, Path]) -> None:
    b = backend(tiny_models_dir, warm_models=2)
    i2v = job(b, scene(model="tiny-i2v", image=images["first"]))
    flf = job(b, scene(model="tiny-flf2v", image=images["first"], last_image=images["last"], **SMALL))
    assert (i2v.params["task"], flf.params["task"]) == ("i2v", "flf2v")
    frames, info = b.render_frames(i2v)
    # the first frame's 48x40 aspect within the tiny 480P area (80x48), in multiples of 16
    assert frames.shape == (9, 48, 64, 3) and frames.dtype == np.uint8
    assert info["pipeline"] == "WanImageToVideoPipeline"
    frames, _ = b.render_frames(flf)
    assert frames.shape == (9, 32, 32, 3)


def test_frames_are_bit_identical_to_a_direct_diffusers_call(tiny_models_dir: Path, images: dict[str, Path]) -> None:
    b = backend(tiny_models_dir, warm_models=2)
    t2v = job(b, scene(prompt="a lighthouse at dusk", seed=1234, **SMALL))
    ours, _ = b.render_frames(t2v)
    theirs = direct_diffusers(
        tiny_models_dir / "tiny-t2v-v1",
        "WanPipeline",
        seed=1234,
        flow_shift=3.0,
        prompt="a lighthouse at dusk",
        negative_prompt="",
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=5.0,
        max_sequence_length=64,
    )
    assert ours.dtype == theirs.dtype == np.uint8
    assert np.array_equal(ours, theirs)

    from diffusers.utils import load_image

    flf = job(
        b,
        scene(
            model="tiny-flf2v",
            prompt="day to night",
            seed=99,
            image=images["first"],
            last_image=images["last"],
            **SMALL,
        ),
    )
    ours, _ = b.render_frames(flf)
    # As the diffusers docs show, the frames are resized to the render size before the call (both are 48x40
    # here, so the last frame needs no crop); LANCZOS is what the pipeline's own video processor uses.
    theirs = direct_diffusers(
        tiny_models_dir / "tiny-flf2v-v1",
        "WanImageToVideoPipeline",
        seed=99,
        flow_shift=3.0,
        image=load_image(str(images["first"])).resize((32, 32), Image.Resampling.LANCZOS),
        last_image=load_image(str(images["last"])).resize((32, 32), Image.Resampling.LANCZOS),
        prompt="day to night",
        negative_prompt="",
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=5.0,
        max_sequence_length=64,
    )
    assert np.array_equal(ours, theirs)


def test_same_seed_twice_gives_identical_frames_and_another_seed_does_not(tiny_models_dir: Path) -> None:
    b = backend(tiny_models_dir)
    a, info_a = b.render_frames(job(b, scene(seed=7, **SMALL)))
    again, info_again = b.render_frames(job(b, scene(seed=7, **SMALL)))
    other, _ = b.render_frames(job(b, scene(seed=8, **SMALL)))
    assert not info_a["warm"] and info_again["warm"]  # the second render reused the loaded pipeline
    assert np.array_equal(a, again)
    assert not np.array_equal(a, other)


def test_a_run_loads_each_model_once_across_its_scenes(
    tiny_models_dir: Path, render_cache: Cache, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real executor: 4 T2V scenes and 2 I2V scenes, interleaved in the project, on one
    device that keeps one pipeline warm: each model is loaded once (jobs on one model are grouped).
    Without the grace period for late threads: the executor says which jobs are coming, however slow
    their threads are on a loaded machine."""
    monkeypatch.setattr(PipelinePool, "switch_grace_s", 0.0)
    b = backend(tiny_models_dir)
    scenes = [
        scene(f"t{i}", seed=i, **SMALL)
        if i % 2 == 0 or i > 4
        else scene(f"i{i}", model="tiny-i2v", image=images["first"], seed=i, **SMALL)
        for i in range(6)
    ]
    p = plan(b, *scenes)
    outcomes = LocalExecutor(render_cache, concurrency=4).run(p)
    assert {o.status for o in outcomes.values()} == {"rendered"}, {k: o.error for k, o in outcomes.items()}
    loads = b._pool().loads
    assert sorted(loads.values()) == [1, 1], loads
    assert b._pool().load_count == 2
    assert sum(not o.info["warm"] for o in outcomes.values()) == 2


def load_spec(source: str) -> LoadSpec:
    return LoadSpec(source, None, "WanPipeline", "float32", "float32", "none", False, False)


def test_pool_renders_one_job_per_device_and_serves_the_warm_model_first() -> None:
    loads: list[str] = []
    served: list[str] = []

    def loader(spec: LoadSpec, _device: str) -> object:
        loads.append(spec.source)
        return object()

    pool = PipelinePool(["cpu"], loader=loader)
    a, b = (load_spec(s) for s in "AB")

    def want(wanted: LoadSpec) -> None:
        with pool.lease(wanted):
            served.append(wanted.source)

    holding = pool.lease(a)
    holding.__enter__()  # A is loaded and rendering on the only device
    threads = []
    for spec in (b, a):  # B asks first, then A
        threads.append(threading.Thread(target=want, args=(spec,)))
        threads[-1].start()
        _until(lambda n=len(threads): len(pool._waiting) == n)
    assert served == []  # one device, busy: both wait
    holding.__exit__(None, None, None)
    for t in threads:
        t.join(60)
    assert served == ["A", "B"]  # A was warm, so it went first and A was not loaded twice
    assert loads == ["A", "B"]


def test_pool_gives_each_concurrent_lease_its_own_device() -> None:
    pool = PipelinePool(["cuda:0", "cuda:1"], loader=lambda spec, dev: object())
    a, b = (load_spec(s) for s in "AB")
    with pool.lease(a) as la, pool.lease(b) as lb:
        assert {la.device, lb.device} == {"cuda:0", "cuda:1"}
    with pool.lease(b) as again:
        assert again.device == lb.device and again.warm


def _until(cond: Any, timeout: float = 60.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_cancel_stops_a_render_between_steps(tiny_models_dir: Path, render_cache: Cache, tmp_path: Path) -> None:
    b = backend(tiny_models_dir)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="step 1 of 2"):
        b.render(job(b, scene(**SMALL)), context(render_cache, tmp_path / "w", cancel))


class _OomPipe:
    scheduler: Any = None

    def __call__(self, **_kw: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_says_how_to_fit(tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import UniPCMultistepScheduler

    pipe = _OomPipe()
    pipe.scheduler = UniPCMultistepScheduler()
    b = DiffusersBackend(tiny_config(tiny_models_dir), pool=PipelinePool(["cpu"], loader=lambda s, d: pipe))
    with pytest.raises(RenderError) as err:
        b.render_frames(job(b, scene(**SMALL)))
    msg = str(err.value)
    assert "out of accelerator memory" in msg and "32x32" in msg
    assert "backend.offload=model" in msg and "vae_tiling" in msg and "smaller" in msg


def test_a_chained_job_without_its_first_frame_fails_clearly(tiny_models_dir: Path) -> None:
    b = backend(tiny_models_dir)
    p = plan(b, scene("a", **SMALL), scene("b", model="tiny-i2v", chain_from="a", **SMALL))
    with pytest.raises(RenderError, match="last frame of `a`"):
        b.render_frames(p.job("b"))  # the executor did not put the parent's last frame in `inputs`


def test_a_checkpoint_that_does_not_load_fails_clearly(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(
        '{"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}'
    )
    b = DiffusersBackend(DiffusersConfig(device="cpu", model=str(broken)))
    with pytest.raises(RenderError, match=r"could not load local:\w+ for `s1`.*whole diffusers checkpoint"):
        b.render_frames(job(b, scene(**SMALL)))
