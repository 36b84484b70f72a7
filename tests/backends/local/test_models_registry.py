"""The model registry: names, hub ids and local folders resolve to specs whose defaults are usable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import diffusers
import pytest

from wanbatch.backends.local.models import MODELS, TINY_MODELS, UnknownModel, folder_identity, resolve, split_revision
from wanbatch.backends.local.models.registry import spec_from_folder

from local_fixtures import tiny_models_dir

__all__ = ["tiny_models_dir"]

CARD_MODELS = {
    "wan2.1-t2v-1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "wan2.1-t2v-14b": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
    "wan2.1-i2v-14b-480p": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    "wan2.1-i2v-14b-720p": "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
    "wan2.1-flf2v-14b-720p": "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
    "wan2.2-t2v-a14b": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    "wan2.2-i2v-a14b": "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
    "wan2.2-ti2v-5b": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
}


def test_every_model_of_the_issue_is_registered_by_name_and_hub_id() -> None:
    assert set(MODELS) == set(CARD_MODELS)
    for name, hub_id in CARD_MODELS.items():
        assert resolve(name).hub_id == hub_id
        assert resolve(hub_id) is resolve(name)
        assert resolve(hub_id.upper()) is resolve(name)  # hub ids are case-insensitive
        assert resolve(name.upper()) is resolve(name)


@pytest.mark.parametrize("name", [*CARD_MODELS, *TINY_MODELS])
def test_every_spec_is_self_consistent(name: str) -> None:
    spec = resolve(name)
    assert spec.tasks and spec.tasks <= {"t2v", "i2v", "flf2v"}
    assert spec.default_resolution in spec.resolutions
    for w, h in spec.sizes():
        assert w % 16 == 0 and h % 16 == 0
        assert spec.size_allowed(sorted(spec.tasks)[0], w, h) is None
    assert spec.steps > 0 and spec.guidance_scale > 0 and all(s > 0 for s in spec.flow_shift.values())
    assert set(spec.resolutions) <= set(spec.flow_shift)  # a shift may serve an explicit size of an unlisted tier
    assert (spec.frames - 1) % 4 == 0 and spec.frames <= spec.max_frames
    assert spec.heads > 0 and spec.fps > 0
    for task in spec.tasks:
        assert hasattr(diffusers, spec.pipeline_class(task))


def test_model_card_figures() -> None:
    assert resolve("wan2.1-t2v-1.3b").sizes() == [(832, 480), (480, 832)]
    assert resolve("wan2.1-t2v-14b").sizes() == [(832, 480), (480, 832), (1280, 720), (720, 1280)]
    ti2v = resolve("wan2.2-ti2v-5b")
    assert (ti2v.fps, ti2v.frames, ti2v.sizes(), ti2v.heads) == (24, 121, [(1280, 704), (704, 1280)], 24)
    assert ti2v.tasks == {"t2v", "i2v"}
    a14b = resolve("wan2.2-t2v-a14b")
    assert (a14b.guidance_scale, a14b.guidance_scale_2, a14b.shift_for("720P"), a14b.steps) == (4.0, 3.0, 12.0, 40)
    assert resolve("wan2.1-i2v-14b-480p").shift_for("480P") == 3.0
    assert resolve("wan2.1-flf2v-14b-720p").tasks == {"flf2v"}


def test_unknown_names_list_what_is_known() -> None:
    with pytest.raises(UnknownModel, match=r"wan2\.1-t2v-1\.3b.*tiny-t2v"):
        resolve("wan3-t2v")
    with pytest.raises(UnknownModel, match="hf download acme/wan-fork"):
        resolve("acme/wan-fork")


def test_revision_suffix() -> None:
    assert split_revision("wan2.1-t2v-14b@abc") == ("wan2.1-t2v-14b", "abc")
    assert split_revision("wan2.1-t2v-14b") == ("wan2.1-t2v-14b", None)


def test_a_local_folder_is_read_from_its_configs(tiny_models_dir: Path, tmp_path: Path) -> None:
    # a folder wanbatch built keeps the tiny defaults
    spec = resolve(str(tiny_models_dir / "tiny-flf2v-v1"))
    assert (spec.kind, spec.tasks, spec.steps) == ("local", {"flf2v"}, 2)
    # any other diffusers folder: tasks from model_index.json and the transformer config
    folder = tmp_path / "wan22-i2v"
    shutil.copytree(tiny_models_dir / "tiny-i2v-v1", folder)
    (folder / "wanbatch-tiny.json").unlink()
    assert spec_from_folder(folder).tasks == {"i2v"}
    cfg_file = folder / "transformer" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["image_dim"] = None  # Wan2.2 I2V: no image encoder, both frames in the latents
    cfg_file.write_text(json.dumps(cfg))
    local = spec_from_folder(folder)
    assert local.tasks == {"i2v", "flf2v"} and local.heads == 2 and local.shift_for("480P") == 3.0
    with pytest.raises(UnknownModel, match=r"model_index\.json"):
        resolve(str(tmp_path))


def test_folder_identity_is_content_not_path(tiny_models_dir: Path, tmp_path: Path) -> None:
    a = tmp_path / "a"
    shutil.copytree(tiny_models_dir / "tiny-t2v-v1", a)
    b = tmp_path / "deeper" / "b"
    shutil.copytree(a, b)
    (b / ".lock").write_text("")  # not content
    assert folder_identity(a) == folder_identity(b)
    weights = b / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one byte of one weight
    weights.write_bytes(bytes(data))
    assert folder_identity(a) != folder_identity(b)


def test_the_registry_imports_without_torch() -> None:
    code = (
        "import sys, wanbatch.backends.local.models, wanbatch.backends.local.diffusers, wanbatch.backends.local.xdit; "
        "print(sorted(m for m in ('torch', 'diffusers', 'xfuser') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
