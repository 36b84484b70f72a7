"""Plan-time behaviour of the diffusers backend: model-card defaults, frame rounding (reported),
sizes, task/input fit, unsupported fields, options, identities and keys, missing extra, offline."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from wanbatch.backends.local.diffusers import DiffusersBackend
from wanbatch.config.backends import DiffusersConfig
from wanbatch.config.load import backend_config
from wanbatch.core.media import Media
from wanbatch.core.scene import Lora
from wanbatch.errors import ConfigError, Issue, MissingExtraError

from local_fixtures import images, plan, scene, tiny_config, tiny_models_dir

__all__ = ["images", "tiny_models_dir"]


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub models are planned as on a machine with network, unless a test says otherwise."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def prep(sc: Any, *, chained: bool = False, **config: Any) -> tuple[dict[str, Any], list[Issue], DiffusersBackend]:
    b = DiffusersBackend(DiffusersConfig(device="cpu", **config))
    issues: list[Issue] = []
    return b.prepare(sc, issues, chained=chained), issues, b


def fields_of(issues: list[Issue]) -> list[str]:
    return [i.field for i in issues]


# -- model-card defaults ------------------------------------------------------------------------------
def test_defaults_follow_the_model_card() -> None:
    p, issues, _ = prep(scene(), model="wan2.1-t2v-1.3b")
    assert not issues
    assert (p["width"], p["height"], p["steps"], p["guidance_scale"], p["flow_shift"], p["fps"], p["num_frames"]) == (
        832,
        480,
        50,
        6.0,
        8.0,
        16,
        81,
    )
    assert p["negative_prompt"].startswith("色调艳丽") and p["task"] == "t2v" and p["dtype"] == "float32"

    p, _, _ = prep(scene(), model="wan2.2-t2v-a14b")
    assert (p["width"], p["height"], p["steps"], p["flow_shift"]) == (1280, 720, 40, 12.0)
    assert (p["guidance_scale"], p["guidance_scale_2"]) == (4.0, 3.0)  # high-noise / low-noise experts

    p, _, _ = prep(scene(), model="wan2.2-ti2v-5b")
    assert (p["width"], p["height"], p["fps"], p["num_frames"], p["steps"]) == (1280, 704, 24, 121, 50)


def test_scene_values_override_the_defaults() -> None:
    p, issues, _ = prep(
        scene(steps=7, guidance_scale=3.0, flow_shift=2.5, fps=24, negative_prompt="blur"), model="wan2.2-t2v-a14b"
    )
    assert not issues
    assert (p["steps"], p["guidance_scale"], p["guidance_scale_2"], p["flow_shift"], p["fps"]) == (7, 3.0, 3.0, 2.5, 24)
    assert p["negative_prompt"] == "blur"


def test_image_to_video_takes_the_first_frames_aspect_within_the_models_area(images: dict[str, Path]) -> None:
    p, issues, b = prep(scene(image=images["first"]), model="wan2.1-i2v-14b-480p")  # a 48x40 image
    assert not issues
    assert (p["task"], p["steps"], p["flow_shift"]) == ("i2v", 40, 3.0)
    assert p["width"] % 16 == 0 and p["height"] % 16 == 0
    assert p["width"] * p["height"] <= 832 * 480 and p["width"] > p["height"]
    assert any("aspect ratio" in n for n in b.notes(scene(image=images["first"]), p))


# -- frames --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("duration", "fps", "frames", "rounded"),
    [
        (2.0, 16, 33, True),  # 32 -> 33
        (5.0, 16, 81, True),  # 80 -> 81
        (5.0625, 16, 81, False),  # exactly 81
        (1.0, 24, 25, True),  # 24 -> 25
        (1.5, 16, 25, True),  # 24 -> 25
        (3.0625, 16, 49, False),  # exactly 49
        (0.1, 16, 5, True),  # at least 5
    ],
)
def test_duration_becomes_4k_plus_1_frames_and_the_rounding_is_reported(
    duration: float, fps: int, frames: int, rounded: bool
) -> None:
    sc = scene(duration=duration, fps=fps)
    p, issues, b = prep(sc, model="wan2.1-t2v-1.3b")
    assert not issues
    assert p["num_frames"] == frames
    notes = b.notes(sc, p)
    assert any(f"num_frames {frames}" in n and "4k+1" in n for n in notes) == rounded, notes
    assert "notes" not in p  # notes never enter the cache key


def test_explicit_frames_must_be_4k_plus_1_and_within_the_model() -> None:
    _, issues, _ = prep(scene(num_frames=80), model="wan2.1-t2v-1.3b")
    assert fields_of(issues) == ["num_frames"] and "77 or 81" in issues[0].allowed
    p, issues, _ = prep(scene(num_frames=77), model="wan2.1-t2v-1.3b")
    assert not issues and p["num_frames"] == 77
    _, issues, _ = prep(scene(duration=10.0), model="wan2.1-t2v-1.3b")
    assert fields_of(issues) == ["duration"] and "at most 81 frames" in issues[0].allowed
    assert "chain_from" in issues[0].allowed
    _, issues, _ = prep(scene(duration=2.0, num_frames=33), model="wan2.1-t2v-1.3b")
    assert fields_of(issues) == ["num_frames"]


# -- sizes ---------------------------------------------------------------------------------------------
def test_sizes_must_be_multiples_of_16_and_supported_by_the_model() -> None:
    _, issues, _ = prep(scene(width=500, height=832), model="wan2.1-t2v-14b")
    assert fields_of(issues) == ["width x height"] and "divisible by 16" in issues[0].allowed
    assert issues[0].value == "500x832"
    _, issues, _ = prep(scene(width=1280, height=720), model="wan2.1-t2v-1.3b")
    assert fields_of(issues) == ["width x height"] and "832x480" in issues[0].allowed
    for w, h in ((832, 480), (480, 832)):
        _, issues, _ = prep(scene(width=w, height=h), model="wan2.1-t2v-1.3b")
        assert not issues
    _, issues, _ = prep(scene(resolution="720P"), model="wan2.1-t2v-1.3b")
    assert fields_of(issues) == ["resolution"] and "480P" in issues[0].allowed
    _, issues, _ = prep(scene(resolution="1080P"), model="wan2.1-t2v-14b")
    assert fields_of(issues) == ["resolution"]
    _, issues, _ = prep(scene(width=832), model="wan2.1-t2v-14b")
    assert fields_of(issues) == ["height"]


def test_image_tasks_take_any_multiple_of_16_within_the_models_area(images: dict[str, Path]) -> None:
    _, issues, _ = prep(scene(image=images["first"], width=640, height=480), model="wan2.1-i2v-14b-480p")
    assert not issues
    _, issues, _ = prep(scene(image=images["first"], width=1280, height=720), model="wan2.1-i2v-14b-480p")
    assert fields_of(issues) == ["width x height"] and "at most 399360 pixels" in issues[0].allowed


# -- task and inputs -----------------------------------------------------------------------------------
def test_the_task_follows_the_inputs_and_must_fit_the_model(images: dict[str, Path]) -> None:
    first, last = images["first"], images["last"]
    _, issues, _ = prep(scene(image=first), model="wan2.1-t2v-14b")
    assert fields_of(issues) == ["model"]
    assert "image-to-video" in issues[0].allowed and "wan2.1-i2v-14b-480p" in issues[0].allowed
    _, issues, _ = prep(scene(), model="wan2.1-i2v-14b-720p")
    assert fields_of(issues) == ["model"] and "wan2.1-t2v-14b" in issues[0].allowed
    _, issues, _ = prep(scene(image=first, last_image=last), model="wan2.1-i2v-14b-720p")
    assert fields_of(issues) == ["model"] and "wan2.1-flf2v-14b-720p" in issues[0].allowed
    _, issues, _ = prep(scene(last_image=last), model="wan2.1-flf2v-14b-720p")
    assert fields_of(issues) == ["last_image"]
    p, issues, _ = prep(scene(image=first, last_image=last), model="wan2.1-flf2v-14b-720p")
    assert not issues and (p["task"], p["flow_shift"], p["steps"]) == ("flf2v", 16.0, 50)
    p, issues, _ = prep(scene(image=first), model="wan2.2-ti2v-5b")
    assert not issues and p["task"] == "i2v"


def test_a_chained_scene_is_image_to_video(tiny_models_dir: Path) -> None:
    p, issues, b = prep(scene(), chained=True, model="tiny-i2v", models_dir=str(tiny_models_dir))
    assert not issues and p["task"] == "i2v"
    assert any("chained first frame" in n for n in b.notes(scene(), p))
    _, issues, _ = prep(scene(), chained=True, model="tiny-t2v")
    assert fields_of(issues) == ["model"] and "`chain_from`" in issues[0].allowed


def test_text_to_video_needs_a_prompt() -> None:
    _, issues, _ = prep(scene(prompt=None), model="tiny-t2v")
    assert fields_of(issues) == ["prompt"]


def test_fields_the_backend_cannot_honour_are_rejected(images: dict[str, Path]) -> None:
    clip = Media(field="first_clip", kind="video", path=images["first"], sha256="x")
    url = Media(field="image", kind="image", url="https://example.com/a.png")
    sc = scene(first_clip=clip, loras=(Lora("a.safetensors"),), prompt_extend=True, watermark=True)
    _, issues, _ = prep(sc, model="tiny-t2v")
    assert sorted(fields_of(issues)) == ["first_clip", "loras", "prompt_extend", "watermark"]
    assert "chain_from" in next(i for i in issues if i.field == "first_clip").allowed
    _, issues, _ = prep(scene(image=url), model="tiny-i2v")
    assert fields_of(issues) == ["image"] and "local file" in issues[0].allowed


def test_an_unknown_model_is_an_issue_naming_the_known_ones() -> None:
    _, issues, _ = prep(scene(model="wan9-t2v"), model="tiny-t2v")
    assert fields_of(issues) == ["model"] and "wan2.1-t2v-1.3b" in issues[0].allowed
    _, issues, _ = prep(scene(model="someone/Wan-finetune"), model="tiny-t2v")
    assert "hf download someone/Wan-finetune" in issues[0].allowed


# -- options -------------------------------------------------------------------------------------------
def test_bad_options_are_reported_at_plan_time() -> None:
    b = DiffusersBackend(DiffusersConfig(dtype="fp8", offload="gpu", warm_models=0, device="tpu"))
    issues: list[Issue] = []
    b.check_ready(issues)
    assert sorted(fields_of(issues)) == ["backend.device", "backend.dtype", "backend.offload", "backend.warm_models"]
    # a typo'd option is the schema's to catch, naming the key and the options there are
    with pytest.raises(ConfigError) as err:
        backend_config("diffusers", {"vae_tilling": True})
    assert [i.field for i in err.value.issues] == ["backends.diffusers.vae_tilling"]
    assert "vae_tiling" in err.value.issues[0].allowed


def test_offload_needs_a_cuda_device() -> None:
    b = DiffusersBackend(DiffusersConfig(device="cpu", offload="model"))
    issues: list[Issue] = []
    b.check_ready(issues)
    assert fields_of(issues) == ["backend.offload"]


def test_dtype_and_devices() -> None:
    b = DiffusersBackend(DiffusersConfig(device=["cuda:0", "cuda:1"], dtype="auto"))
    assert b.devices() == ["cuda:0", "cuda:1"] and b.dtype() == "bfloat16" and b.max_in_flight >= 2
    assert DiffusersBackend(DiffusersConfig(device="cpu")).dtype() == "float32"
    issues: list[Issue] = []
    b.check_ready(issues)  # this machine has no CUDA device
    assert fields_of(issues) == ["backend.device", "backend.device"]


# -- identity and keys ---------------------------------------------------------------------------------
def test_model_identity_names_what_made_the_pixels(tiny_models_dir: Path, tmp_path: Path) -> None:
    b = DiffusersBackend(DiffusersConfig(model="wan2.1-t2v-14b", revision="abc123"))
    assert b.model_identity(scene()) == {"model": "Wan-AI/Wan2.1-T2V-14B-Diffusers", "revision": "abc123"}
    assert b.model_identity(scene(model="wan2.1-t2v-1.3b")) == {
        "model": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "revision": "main",
    }
    assert b.model_identity(scene(model="wan2.1-t2v-1.3b@v2")) == {
        "model": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "revision": "v2",
    }
    assert b.model_identity(scene(model="tiny-t2v")) == {"model": "tiny-t2v@1", "revision": None}
    # a local folder is known by its content, not its path
    a = tmp_path / "a" / "ckpt"
    shutil.copytree(tiny_models_dir / "tiny-t2v-v1", a)
    moved = tmp_path / "b" / "elsewhere"
    shutil.copytree(a, moved)
    ida = DiffusersBackend(DiffusersConfig()).model_identity(scene(model=str(a)))
    assert ida == DiffusersBackend(DiffusersConfig()).model_identity(scene(model=str(moved)))
    assert ida["model"].startswith("local:")
    cfg = moved / "transformer" / "config.json"
    cfg.write_text(cfg.read_text().replace('"num_layers": 2', '"num_layers": 2 '))
    assert DiffusersBackend(DiffusersConfig()).model_identity(scene(model=str(moved))) != ida


def test_the_cache_key_changes_with_what_changes_the_pixels(tiny_models_dir: Path) -> None:
    b = DiffusersBackend(tiny_config(tiny_models_dir))

    def key(**fields: Any) -> str:
        return plan(b, scene(**fields)).jobs[0].key

    base = key(seed=1)
    assert key(seed=1) == base
    assert key(seed=2) != base
    assert key(seed=1, steps=3) != base
    assert key(seed=1, duration=1.0) != base
    fp16 = DiffusersBackend(tiny_config(tiny_models_dir, dtype="float16"))
    assert plan(fp16, scene(seed=1)).jobs[0].key != base
    # the model's identity is in the key: same params, another revision, another key
    pinned = [
        DiffusersBackend(DiffusersConfig(device="cpu", model="wan2.1-t2v-1.3b", revision=r)) for r in ("aaa", "bbb")
    ]
    assert plan(pinned[0], scene(seed=1)).jobs[0].key != plan(pinned[1], scene(seed=1)).jobs[0].key


# -- readiness -----------------------------------------------------------------------------------------
def test_a_missing_local_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError, find_spec -> None
    b = DiffusersBackend(DiffusersConfig(device="cpu"))
    with pytest.raises(MissingExtraError) as err:
        b.check_ready([])
    assert err.value.extra == "local"
    assert "pip install 'wanbatch[local]'" in str(err.value) and "diffusers" in str(err.value)


def _fake_hf_cache(root: Path, repo: str) -> None:
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snap = folder / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")


def test_offline_with_the_model_not_cached_is_a_plan_time_error_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    b = DiffusersBackend(DiffusersConfig(device="cpu", model="wan2.1-t2v-1.3b"))
    with pytest.raises(ConfigError) as err:
        plan(b, scene())
    msg = str(err.value)
    assert "HF_HUB_OFFLINE=1" in msg and "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in msg
    assert "local folder" in msg
    # once it is in the cache, the same plan passes; tiny models never need the hub
    _fake_hf_cache(tmp_path / "hub", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    b = DiffusersBackend(DiffusersConfig(device="cpu", model="wan2.1-t2v-1.3b"))
    assert plan(b, scene()).jobs[0].model == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert plan(DiffusersBackend(DiffusersConfig(device="cpu", model="tiny-t2v")), scene()).jobs


def test_local_files_only_checks_the_cache_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _, issues, _ = prep(scene(), model="wan2.1-t2v-14b", local_files_only=True)
    assert fields_of(issues) == ["model"] and "local_files_only" in issues[0].allowed
    p, issues, b = prep(scene(), model="wan2.1-t2v-14b")  # online: it will download, and says so
    assert not issues
    assert any("downloads on first use" in n for n in b.notes(scene(), p))
