"""xDiT's own speed features for Wan, and only the models it has runners for (issue 13, item 9). On the CPU:
the degree arithmetic, what is refused at plan time, what a dry run says, and the worker with xfuser, its
I2V pipeline and DistVAE stood in for (their imports need CUDA)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_xdit_backend import _fake_xfuser

from wanbatch.backends.local import xdit as xdit_module
from wanbatch.backends.local import xdit_launch
from wanbatch.backends.local.xdit import XditBackend
from wanbatch.backends.local.xdit_launch import Degrees, plan_degrees
from wanbatch.cache.store import Cache
from wanbatch.config.backends import XditConfig
from wanbatch.errors import Issue

from local_fixtures import context, images, job, render_cache, scene, tiny_models_dir

__all__ = ["images", "render_cache", "tiny_models_dir"]


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def backend(**cfg: Any) -> XditBackend:
    return XditBackend(XditConfig(**cfg))


def prepare(b: XditBackend, **fields: Any) -> tuple[dict[str, Any], list[Issue]]:
    issues: list[Issue] = []
    return b.prepare(scene(**fields), issues), issues


def test_item9_xdit_degrees_with_cfg_parallel() -> None:
    assert plan_degrees(8, 40, cfg=2) == (Degrees(4, 1, 2), [])
    # 6 GPUs: halves of 3; 40 heads do not split 3 ways, so ring 3
    assert plan_degrees(6, 40, cfg=2) == (Degrees(1, 3, 2), [])
    assert Degrees(1, 3, 2).world == 6
    deg, problems = plan_degrees(3, 40, cfg=2)
    assert deg is None and problems[0][0] == "cfg_parallel" and "even" in problems[0][1]
    deg, problems = plan_degrees(8, 40, ulysses=2, ring=1, cfg=2)
    assert deg is None and "GPUs per CFG half 4; 2 x 1 = 2" in problems[0][1]


@pytest.mark.parametrize("model", ["wan2.1-t2v-1.3b", "wan2.1-i2v-14b-480p", "wan2.1-flf2v-14b-720p"])
def test_item9_models_without_an_xdit_runner_stay_on_one_gpu(
    tmp_path: Path, images: dict[str, Path], model: str
) -> None:
    fields: dict[str, Any] = {}
    if model != "wan2.1-t2v-1.3b":
        fields["image"] = images["first"]
    if "flf2v" in model:
        fields["last_image"] = images["last"]
    params, issues = prepare(backend(model=model, gpus=8), **fields)
    assert params == {}
    (issue,) = issues
    assert issue.field == "model" and "has none" in issue.allowed and "backend: diffusers" in issue.allowed


def test_item9_cfg_parallel_runs_where_xdit_has_it_and_the_dry_run_says_so(images: dict[str, Path]) -> None:
    i2v = backend(model="wan2.1-i2v-14b-720p", gpus=8)
    sc = scene(image=images["first"])
    params = i2v.prepare(sc, [])
    assert params["parallel"] == {"ulysses": 4, "ring": 1, "cfg": 2}
    assert "xDiT on 8 GPUs: ulysses 4 x ring 1 x cfg 2; VAE decode on each GPU whole" in i2v.notes(sc, params)
    # Wan2.2 I2V-A14B too; not with guidance off (no unconditional pass), nor on an odd GPU count (auto)
    assert prepare(backend(model="wan2.2-i2v-a14b", gpus=4), image=images["first"])[0]["parallel"]["cfg"] == 2
    off, _ = prepare(i2v, image=images["first"], guidance_scale=1.0)
    assert off["parallel"] == {"ulysses": 8, "ring": 1}
    odd, _ = prepare(backend(model="wan2.1-i2v-14b-720p", gpus=5), image=images["first"])
    assert odd["parallel"] == {"ulysses": 5, "ring": 1}
    # Text-to-video: xDiT has no CFG parallel there; auto leaves it off, true is refused (once, not per scene)
    t2v = backend(model="wan2.1-t2v-14b", gpus=8)
    assert prepare(t2v)[0]["parallel"] == {"ulysses": 8, "ring": 1}
    forced = backend(model="wan2.1-t2v-14b", gpus=8, cfg_parallel=True)
    issues: list[Issue] = []
    forced.prepare(scene("a"), issues)
    forced.prepare(scene("b"), issues)
    assert [i.field for i in issues] == ["backend.cfg_parallel"]
    assert "image-to-video pipeline (wan2.1-i2v-14b-720p, wan2.2-i2v-a14b)" in issues[0].allowed
    assert backend(model="wan2.1-t2v-14b", cfg_parallel="yes")._config_issues[0].field == "backend.cfg_parallel"


def test_item9_parallel_vae_needs_distvae(monkeypatch: pytest.MonkeyPatch, images: dict[str, Path]) -> None:
    b = backend(model="wan2.1-t2v-14b", gpus=4, parallel_vae=True)
    monkeypatch.setattr(b, "require_extra", lambda: None)  # xfuser itself is checked elsewhere
    monkeypatch.setattr(b, "visible_gpus", lambda: 4)
    monkeypatch.setattr(xdit_module, "_find_spec", lambda name: None if name == "distvae" else object())
    issues: list[Issue] = []
    b.check_ready(issues)
    assert [i.field for i in issues] == ["backend.parallel_vae"] and "DistVAE" in issues[0].allowed
    sc = scene()
    params = b.prepare(sc, [])
    assert params["parallel"] == {"ulysses": 4, "ring": 1, "vae": True}
    assert "VAE decode split over the GPUs (DistVAE)" in " ".join(b.notes(sc, params))


def test_item9_the_worker_uses_xdits_i2v_pipeline_and_distvae(
    tiny_models_dir: Path,
    images: dict[str, Path],
    render_cache: Cache,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diffusers import WanImageToVideoPipeline

    seen: dict[str, Any] = {}
    _fake_xfuser(monkeypatch, tmp_path, seen)

    class XFuserWanI2V(WanImageToVideoPipeline):  # xDiT's subclass, minus its all-gather of the two halves
        pass

    def adapter(decoder: Any, vae_group: Any) -> Any:
        seen["vae_group"] = vae_group
        return decoder

    for name, attrs in {
        "xfuser.model_executor.pipelines": {},
        "xfuser.model_executor.pipelines.pipeline_wan_i2v": {"xFuserWanImageToVideoPipeline": XFuserWanI2V},
        "xfuser.core.distributed.parallel_state": {
            "get_vae_parallel_group": lambda: types.SimpleNamespace(device_group="vae-group")
        },
        "distvae": {},
        "distvae.modules": {},
        "distvae.modules.adapters": {},
        "distvae.modules.adapters.vae": {},
        "distvae.modules.adapters.vae.decoder_adapters": {"WanDecoderAdapter": adapter},
    }.items():
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)

    def runtime(pipe: Any, cfg: Any) -> None:
        seen.update(pipe=type(pipe), runtime=(type(pipe.transformer), cfg))

    monkeypatch.setattr(sys.modules["xfuser.core.distributed"], "initialize_runtime_state", runtime, raising=False)
    b = XditBackend(
        XditConfig(model="tiny-i2v", models_dir=str(tiny_models_dir), gpus=2, dtype="float32", parallel_vae=True)
    )
    b.check_ready = lambda issues: None  # type: ignore[method-assign]
    j = job(b, scene(seed=3, image=images["first"], width=32, height=32))
    assert j.params["parallel"] == {"ulysses": 1, "ring": 1, "cfg": 2, "vae": True}
    plan, _ = b.launch(j, context(render_cache, tmp_path / "w"), frames_out=tmp_path / "w" / "frames.npy")
    assert plan.nproc == 2  # cfg 2 x ulysses 1 x ring 1
    assert xdit_launch.main([str(plan.job_file)]) == 0  # here one rank stands for both
    assert seen["args"] == {
        "model": str(tiny_models_dir / "tiny-i2v-v1"),
        "ulysses_degree": 1,
        "ring_degree": 1,
        "use_cfg_parallel": True,
        "use_parallel_vae": True,
    }
    assert seen["pipe"] is XFuserWanI2V and seen["runtime"][0].__name__ == "Wrapper"
    assert seen["vae_group"] == "vae-group"
    assert np.load(tmp_path / "w" / "frames.npy").shape == (9, 32, 32, 3)
