"""The xdit backend on CPU: degree rules, the torchrun launch plan, the job file, the subprocess life
cycle (with a stand-in worker) and readiness errors. The real multi-GPU render is `gpu`-marked."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wanbatch.av.ffmpeg import probe
from wanbatch.backends.local import xdit_launch
from wanbatch.backends.local.pipelines import LoadSpec
from wanbatch.backends.local.xdit import XditBackend
from wanbatch.backends.local.xdit_launch import Degrees, LaunchPlan, launch_plan, plan_degrees
from wanbatch.cache.store import Cache
from wanbatch.config.backends import DiffusersConfig, XditConfig
from wanbatch.config.load import backend_config
from wanbatch.errors import Cancelled, ConfigError, Issue, MissingExtraError, RenderError

from local_fixtures import context, images, job, render_cache, scene, tiny_models_dir

__all__ = ["images", "render_cache", "tiny_models_dir"]


def xdit(models_dir: Path, **cfg: Any) -> XditBackend:
    return XditBackend(XditConfig(**{"model": "tiny-t2v", "models_dir": str(models_dir), **cfg}))


def planned_xdit(models_dir: Path, **cfg: Any) -> XditBackend:
    """An xdit backend that plans on this GPU-less machine: its readiness check (xfuser, CUDA) is tested
    on its own below; here the launch is what is under test."""
    b = xdit(models_dir, **cfg)
    b.check_ready = lambda issues: None  # type: ignore[method-assign]
    return b


# -- degrees -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("gpus", "heads", "ulysses", "ring", "expected"),
    [
        (8, 40, None, None, Degrees(8, 1)),  # auto: all Ulysses when the heads allow it
        (8, 12, None, None, Degrees(4, 2)),  # 1.3B: 12 heads -> Ulysses 4, ring 2
        (4, 2, None, None, Degrees(2, 2)),  # tiny: 2 heads
        (4, 40, 2, 2, Degrees(2, 2)),
        (4, 40, None, 4, Degrees(1, 4)),
        (8, 40, 4, None, Degrees(4, 2)),
        (1, 40, None, None, Degrees(1, 1)),
    ],
)
def test_degrees_that_fit(gpus: int, heads: int, ulysses: int | None, ring: int | None, expected: Degrees) -> None:
    deg, problems = plan_degrees(gpus, heads, ulysses, ring)
    assert problems == [] and deg == expected and deg.world == gpus


@pytest.mark.parametrize(
    ("gpus", "heads", "ulysses", "ring", "option", "says"),
    [
        (8, 40, 2, 2, "ulysses_degree", "equal to the GPU count 8; 2 x 2 = 4"),
        (3, 40, 3, 1, "ulysses_degree", "divisor of the model's 40 attention heads, not 3"),
        (8, 12, 8, None, "ulysses_degree", "use one of 1, 2, 4"),
        (6, 40, None, 4, "ring_degree", "divisor of the 6 GPUs"),
        (4, 40, 0, 4, "ulysses_degree", ">= 1"),
        (0, 40, None, None, "gpus", "at least one GPU"),
    ],
)
def test_degrees_that_do_not_fit_say_why(
    gpus: int, heads: int, ulysses: int | None, ring: int | None, option: str, says: str
) -> None:
    deg, problems = plan_degrees(gpus, heads, ulysses, ring)
    assert deg is None
    assert any(o == option and says in msg for o, msg in problems), problems


def test_prepare_validates_degrees_against_the_scenes_model_once(tiny_models_dir: Path) -> None:
    b = xdit(tiny_models_dir, gpus=4, ulysses_degree=4)  # the tiny transformer has 2 heads
    issues: list[Issue] = []
    assert b.prepare(scene("a"), issues) == {} and b.prepare(scene("b"), issues) == {}
    assert [i.field for i in issues] == ["backend.ulysses_degree"]  # once, not once per scene
    assert issues[0].value == 4 and "2 attention heads" in issues[0].allowed

    ok: list[Issue] = []
    params = xdit(tiny_models_dir, gpus=4).prepare(scene(), ok)
    assert ok == [] and params["parallel"] == {"ulysses": 2, "ring": 2}
    assert params["device_type"] == "cuda" and params["dtype"] == "bfloat16"
    big = XditBackend(XditConfig(model="wan2.1-t2v-14b", gpus=8, ring_degree=3))
    assert [i.field for i in _issues(big, scene())] == ["backend.ring_degree"]


def _issues(b: XditBackend, sc: Any) -> list[Issue]:
    issues: list[Issue] = []
    b.prepare(sc, issues)
    return issues


def test_bad_xdit_options(tiny_models_dir: Path) -> None:
    b = xdit(tiny_models_dir, gpus=0, ulysses_degree="two", ring_degree=0, timeout_s=-1)
    assert sorted(i.field for i in b._config_issues) == [
        "backend.gpus",
        "backend.ring_degree",
        "backend.timeout_s",
        "backend.ulysses_degree",
    ]
    with pytest.raises(ConfigError) as err:  # a typo'd option is the schema's to name
        backend_config("xdit", {"ring": 2})
    assert [i.field for i in err.value.issues] == ["backends.xdit.ring"] and "ring_degree" in err.value.issues[
        0
    ].allowed


# -- readiness on a machine without GPUs or xfuser -----------------------------------------------------
def test_check_ready_without_xfuser_names_the_extra(tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xfuser", None)
    with pytest.raises(MissingExtraError) as err:
        xdit(tiny_models_dir).check_ready([])
    assert err.value.extra == "xdit" and "pip install 'wanbatch[xdit]'" in str(err.value)


def test_check_ready_without_gpus_says_to_use_diffusers(tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = xdit(tiny_models_dir, offload="model")
    monkeypatch.setattr(b, "require_extra", lambda: None)  # pretend xfuser is installed
    monkeypatch.setattr(b, "visible_gpus", lambda: 0)
    issues: list[Issue] = []
    b.check_ready(issues)
    assert [i.field for i in issues] == ["backend.name", "backend.offload"]
    assert "backend=diffusers" in issues[0].allowed


def test_importing_the_backend_and_launcher_never_imports_xfuser() -> None:
    import subprocess

    code = (
        "import sys, wanbatch.backends.local.xdit, wanbatch.backends.local.xdit_launch; print('xfuser' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- launch plan and job file --------------------------------------------------------------------------
def test_launch_plan_is_torchrun_on_one_node(tmp_path: Path) -> None:
    plan = launch_plan(tmp_path / "job.json", 4, python="/usr/bin/python3", visible_devices=[2, 3, 4, 5])
    assert plan.argv == [
        "/usr/bin/python3",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=4",
        "-m",
        "wanbatch.backends.local.xdit_launch",
        str(tmp_path / "job.json"),
    ]
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "2,3,4,5" and plan.env["OMP_NUM_THREADS"] == "1"
    assert "--nproc_per_node=4" in plan.describe()
    assert "CUDA_VISIBLE_DEVICES" not in launch_plan(tmp_path / "j.json", 2).env


def test_the_job_file_holds_everything_a_worker_needs(
    tiny_models_dir: Path, images: dict[str, Path], render_cache: Cache, tmp_path: Path
) -> None:
    b = planned_xdit(tiny_models_dir, gpus=2, model="tiny-i2v", device=["cuda:1", "cuda:3"])
    j = job(b, scene(image=images["first"], width=32, height=32))
    plan, out = b.launch(j, context(render_cache, tmp_path / "w"))
    assert plan.nproc == 2 and plan.env["CUDA_VISIBLE_DEVICES"] == "1,3"
    doc = json.loads(plan.job_file.read_text())
    load = LoadSpec(**doc["load"])
    assert load.pipeline == "WanImageToVideoPipeline" and Path(load.source).name == "tiny-i2v-v1"
    assert load.dtype == "bfloat16" and load.vae_dtype == "float32"
    assert doc["params"] == j.params and doc["images"] == {"image": str(images["first"].resolve())}
    # image-to-video on a model laid out as Wan2.1 I2V: CFG parallel, the two passes on one GPU each
    assert doc["degrees"] == {"ulysses": 1, "ring": 1, "cfg": 2} and doc["out"] == str(out)
    assert doc["parallel_vae"] is False
    assert doc["encode"]["codec"] == "libx264"


def test_worker_usage_error() -> None:
    assert xdit_launch.main([]) == 2


# -- the subprocess life cycle, with a stand-in worker ---------------------------------------------------
def _stand_in(b: XditBackend, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Replace torchrun with a python one-liner that gets the job file as argv[1]."""

    def fake_launch(job_file: Path, nproc: int, **_kw: Any) -> LaunchPlan:
        return LaunchPlan(argv=[sys.executable, "-c", script, str(job_file)], env={}, nproc=nproc, job_file=job_file)

    monkeypatch.setattr("wanbatch.backends.local.xdit.launch_plan", fake_launch)
    monkeypatch.setattr(b, "require_extra", lambda: None)


WRITE_CLIP = """
import json, sys, numpy as np
from pathlib import Path
from wanbatch.av.encode import EncodeSettings, write_clip
job = json.loads(Path(sys.argv[1]).read_text())
p = job["params"]
frames = np.full((p["num_frames"], p["height"], p["width"], 3), 128, np.uint8)
write_clip(frames, Path(job["out"]), fps=p["fps"], settings=EncodeSettings(**job["encode"]))
"""


def test_render_returns_the_clip_rank_0_wrote(
    tiny_models_dir: Path, render_cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = planned_xdit(tiny_models_dir, gpus=2)
    _stand_in(b, monkeypatch, WRITE_CLIP)
    result = b.render(job(b, scene(width=32, height=32)), context(render_cache, tmp_path / "w"))
    assert probe(result.video).width == 32
    assert result.info["gpus"] == 2 and result.info["ulysses_degree"] == 2


def test_a_failed_worker_reports_its_log(
    tiny_models_dir: Path, render_cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = planned_xdit(tiny_models_dir, gpus=2)
    _stand_in(b, monkeypatch, "import sys; print('torch.OutOfMemoryError: CUDA out of memory'); sys.exit(1)")
    with pytest.raises(RenderError, match=r"out of GPU memory.*backend\.gpus"):
        b.render(job(b, scene()), context(render_cache, tmp_path / "w"))
    _stand_in(b, monkeypatch, "import sys; print('rank 1: NCCL error'); sys.exit(1)")
    with pytest.raises(RenderError, match=r"(?s)exit 1.*NCCL error"):
        b.render(job(b, scene()), context(render_cache, tmp_path / "w2"))


def test_cancel_and_timeout_stop_the_worker(
    tiny_models_dir: Path, render_cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = planned_xdit(tiny_models_dir, gpus=2, timeout_s=0.5)
    _stand_in(b, monkeypatch, "import time; time.sleep(60)")
    with pytest.raises(RenderError, match="timeout_s"):
        b.render(job(b, scene()), context(render_cache, tmp_path / "w"))
    b = planned_xdit(tiny_models_dir, gpus=2)
    _stand_in(b, monkeypatch, "import time; time.sleep(60)")
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(Cancelled):
        b.render(job(b, scene()), context(render_cache, tmp_path / "w2", cancel))


# -- the real thing -------------------------------------------------------------------------------------
def _gpu_skip_reason() -> str | None:
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA GPU (torch.cuda.is_available() is False)"
    if importlib.util.find_spec("xfuser") is None:
        return "needs xfuser (pip install 'wanbatch[xdit]')"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_skip_reason() is not None, reason=str(_gpu_skip_reason()))
def test_a_tiny_render_over_every_gpu_matches_the_planned_clip(
    tiny_models_dir: Path, render_cache: Cache, tmp_path: Path
) -> None:
    import torch

    gpus = torch.cuda.device_count()
    b = xdit(tiny_models_dir, gpus=gpus, timeout_s=600)
    j = job(b, scene(width=32, height=32, duration=1.0))
    frames, info = b.render_frames(j, context(render_cache, tmp_path / "w"))
    assert frames.shape == (17, 32, 32, 3) and frames.dtype == np.uint8
    assert (tmp_path / "w" / "clip.mp4").is_file() and info["gpus"] == gpus


# -- the worker, with xfuser stood in for (its import needs CUDA) -----------------------------------------
def _fake_xfuser(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seen: dict[str, Any]) -> None:
    """Just enough of xfuser's API for the worker: a one-rank gloo group instead of NCCL, diffusers' own
    transformer instead of the sequence-parallel one. What is checked is everything the worker does
    around xfuser: job file in, pipeline built with the substituted transformer, frames, rank 0's clip."""
    import types

    import torch.distributed as dist
    from diffusers import WanTransformer3DModel

    class Args:
        def __init__(self, **kw: Any):
            seen["args"] = kw

        def create_config(self) -> tuple[str, None]:
            dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
            return "engine-config", None

    class Wrapper(WanTransformer3DModel):
        @classmethod
        def from_pretrained(cls, *a: Any, **kw: Any) -> Any:
            seen.setdefault("wrapped", []).append(kw["subfolder"])
            return super().from_pretrained(*a, **kw)

    state = types.SimpleNamespace(destroy_distributed_env=dist.destroy_process_group)
    mods: dict[str, dict[str, Any]] = {
        "xfuser": {"xFuserArgs": Args},
        "xfuser.core": {},
        "xfuser.core.distributed": {
            "get_world_group": lambda: types.SimpleNamespace(local_rank=0),
            "initialize_runtime_state": lambda pipe, cfg: seen.update(runtime=(type(pipe.transformer), cfg)),
            "get_runtime_state": lambda: state,
        },
        "xfuser.model_executor": {},
        "xfuser.model_executor.models": {},
        "xfuser.model_executor.models.transformers": {},
        "xfuser.model_executor.models.transformers.transformer_wan": {"xFuserWanTransformer3DWrapper": Wrapper},
    }
    for name, attrs in mods.items():
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)


def test_the_worker_renders_what_the_diffusers_backend_renders(
    tiny_models_dir: Path, render_cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wanbatch.backends.local.diffusers import DiffusersBackend

    seen: dict[str, Any] = {}
    _fake_xfuser(monkeypatch, tmp_path, seen)
    b = planned_xdit(tiny_models_dir, gpus=1, dtype="float32")
    j = job(b, scene(seed=5, width=32, height=32))
    plan, out = b.launch(j, context(render_cache, tmp_path / "w"), frames_out=tmp_path / "w" / "frames.npy")
    assert xdit_launch.main([str(plan.job_file)]) == 0
    assert seen["args"] == {"model": str(tiny_models_dir / "tiny-t2v-v1"), "ulysses_degree": 1, "ring_degree": 1}
    assert seen["wrapped"] == ["transformer"] and seen["runtime"][1] == "engine-config"
    assert probe(out).width == 32
    reference = DiffusersBackend(DiffusersConfig(device="cpu", model="tiny-t2v", models_dir=str(tiny_models_dir)))
    frames, _ = reference.render_frames(job(reference, scene(seed=5, width=32, height=32)))
    assert np.array_equal(np.load(tmp_path / "w" / "frames.npy"), frames)
