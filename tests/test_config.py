"""Every config group option and every recipe composes, validates and plans; the core needs no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import wanbatch
from wanbatch.av.encode import EncodeSettings
from wanbatch.backends import build_backends
from wanbatch.config.load import CONF_DIR, RECIPES_DIR, backend_configs, load_config
from wanbatch.core.plan import make_plan
from wanbatch.core.project import load_project

DEMO = RECIPES_DIR / "demo" / "project.yaml"
GROUP_OPTIONS = sorted((p.parent.name, p.stem) for p in CONF_DIR.glob("*/*.yaml"))
RECIPES = sorted(p.parent.name for p in RECIPES_DIR.glob("*/project.yaml"))


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_config_group_option_composes(group, option):
    cfg = load_config(DEMO, [f"{group}={option}"])
    assert isinstance(cfg[group], dict)
    if group in ("backend", "executor"):
        assert cfg[group]["name"] == option


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_validates_and_plans(recipe, monkeypatch, tmp_path):
    for var in ("GMI_API_KEY", "AIML_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.setenv(var, "test-key-not-secret")
    project_file = RECIPES_DIR / recipe / "project.yaml"
    cfg = load_config(project_file, [f"cache.dir={tmp_path}"])
    project = load_project(cfg, project_file.parent, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs), encode=EncodeSettings.from_config(cfg["encode"]))
    assert len(plan.jobs) == len(cfg["scenes"]) >= 1
    assert len({j.key for j in plan.jobs}) == len(plan.jobs)


def test_the_core_imports_without_torch():
    code = (
        "import sys; import wanbatch, wanbatch.cli, wanbatch.runs.run, wanbatch.backends.preview, "
        "wanbatch.execute.local, wanbatch.cli.cache; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'xfuser', 'ray') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_public_api_is_what_all_says():
    for name in wanbatch.__all__:
        assert hasattr(wanbatch, name), name
    assert set(wanbatch.__all__) >= {"load_config", "run_project", "Cache", "ConfigError", "RenderError"}
