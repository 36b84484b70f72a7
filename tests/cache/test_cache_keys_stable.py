"""The built-in recipes plan to the same cache keys as wanbatch 0.1 did, so a user's cache stays valid across
versions. tests/data/cache_keys_v1.json was written by wanbatch 0.1 (commit dba4a88) on a CPU machine; a change
that must move keys bumps KEY_VERSION and writes a new file, saying why in its notes."""

from __future__ import annotations

import json

import pytest

from wanbatch.backends import build_backends
from wanbatch.config.load import RECIPES_DIR, backend_configs, load_config
from wanbatch.core.plan import make_plan
from wanbatch.core.project import load_project

from conftest import DATA

EXPECTED = json.loads((DATA / "cache_keys_v1.json").read_text())
# Keys that moved on purpose, each with why; every other key is still that of 0.1.
# Issue 13, item 5: a local image-to-video scene's frames are fitted to the render size before the pipeline
# call (`frame_fit` in the params), so the CLIP image encoder of the tiny I2V/FLF2V models (as of the Wan2.1
# ones) sees the resized frame instead of the file, and an FLF2V last frame of another aspect ratio is cropped,
# not stretched. Their pixels change, so their keys must.
MOVED = {
    "demo/project.yaml": {
        "tiny_i2v": "1c487d0055b1e967cd3e92bf26faba46",
        "tiny_flf2v": "e8e265f3132d51795dbf779f3a7eb532",
    },
    "storyboard/project.yaml": {"tiny_i2v": "ac8afcdaa6236e7c9babe05aab84df63"},
    "storyboard/remote.yaml": {"tiny_i2v": "cac3997418d19600412d67ecdf48cd14"},
}


@pytest.mark.parametrize("recipe_file", sorted(EXPECTED))
def test_recipe_keys_are_those_of_version_1(recipe_file, tmp_path, monkeypatch):
    for var in ("GMI_API_KEY", "AIML_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.setenv(var, "x")  # remote backends check that their key is set; its value is not in any key
    project_file = RECIPES_DIR / recipe_file
    # local models render on the CPU here as they did when the file was written (the device type is in the key)
    cfg = load_config(project_file, [f"cache.dir={tmp_path}", "++backends.diffusers.device=cpu"])
    project = load_project(cfg, project_file.parent, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs), encode=cfg.encode)
    assert {j.id: j.key for j in plan.jobs} == {**EXPECTED[recipe_file], **MOVED.get(recipe_file, {})}
    for scene_id in MOVED.get(recipe_file, {}):
        assert "frame_fit" in plan.job(scene_id).params
