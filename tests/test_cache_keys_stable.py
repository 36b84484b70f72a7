"""The built-in recipes plan to the same cache keys as wanbatch 0.1 did, so a user's cache stays valid across
versions. tests/data/cache_keys_v1.json was written by wanbatch 0.1 (commit dba4a88) on a CPU machine; a change
that must move keys bumps KEY_VERSION and writes a new file, saying why in its notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wanbatch.backends import build_backends
from wanbatch.config.load import RECIPES_DIR, backend_configs, load_config
from wanbatch.core.plan import make_plan
from wanbatch.core.project import load_project

EXPECTED = json.loads((Path(__file__).parent / "data" / "cache_keys_v1.json").read_text())


@pytest.mark.parametrize("recipe_file", sorted(EXPECTED))
def test_recipe_keys_are_those_of_version_1(recipe_file, tmp_path, monkeypatch):
    for var in ("GMI_API_KEY", "AIML_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.setenv(var, "x")  # remote backends check that their key is set; its value is not in any key
    project_file = RECIPES_DIR / recipe_file
    # local models render on the CPU here as they did when the file was written (the device type is in the key)
    cfg = load_config(project_file, [f"cache.dir={tmp_path}", "++backends.diffusers.device=cpu"])
    project = load_project(cfg, project_file.parent, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs), encode=cfg.encode)
    assert {j.id: j.key for j in plan.jobs} == EXPECTED[recipe_file]
