"""Every config group option and every recipe composes through its schema, validates and plans; the core needs
no torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

import wanbatch
from wanbatch.backends import build_backends
from wanbatch.config.load import (
    CONF_DIR,
    RECIPES_DIR,
    backend_config,
    backend_configs,
    load_config,
    saved_config,
)
from wanbatch.config.schema import GROUP_SCHEMAS, WanbatchConfig
from wanbatch.core.plan import make_plan
from wanbatch.core.project import load_project
from wanbatch.errors import ConfigError

DEMO = RECIPES_DIR / "demo" / "project.yaml"
GROUP_OPTIONS = sorted((p.parent.name, p.stem) for p in CONF_DIR.glob("*/*.yaml"))
RECIPES = sorted(p.parent.name for p in RECIPES_DIR.glob("*/project.yaml"))


def option_yaml(group: str, option: str) -> dict:
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
    assert isinstance(raw, dict)
    return raw


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_conf_option_loads_through_its_schema(group, option):
    """conf/<group>/<option>.yaml names its schema (`defaults: [base_<kind>]`); composed, the group is an instance
    of that dataclass holding the YAML's values."""
    raw = option_yaml(group, option)
    defaults = raw.pop("defaults")
    assert len(defaults) == 1 and defaults[0] in GROUP_SCHEMAS[group], defaults
    schema = GROUP_SCHEMAS[group][defaults[0]]
    cfg = load_config(DEMO, [f"{group}={option}"])
    got = getattr(cfg, group)
    assert type(got) is schema
    composed = dataclasses.asdict(got)
    for key, value in raw.items():
        assert composed[key] == value, (key, composed[key], value)
    if group in ("backend", "executor"):
        assert got.name == option
    if group == "backend":
        assert backend_config(option) == got  # the same config whether it is the project's default or not


def test_the_base_config_loads_through_its_schema():
    cfg = load_config()  # conf/wanbatch.yaml alone
    assert isinstance(cfg, WanbatchConfig) and cfg.scenes == [] and cfg.backend.name == "preview"


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_validates_and_plans(recipe, monkeypatch, tmp_path):
    for var in ("GMI_API_KEY", "AIML_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.setenv(var, "test-key-not-secret")
    project_file = RECIPES_DIR / recipe / "project.yaml"
    cfg = load_config(project_file, [f"cache.dir={tmp_path}"])
    project = load_project(cfg, project_file.parent, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs), encode=cfg.encode)
    assert len(plan.jobs) == len(cfg.scenes) >= 1
    assert len({j.key for j in plan.jobs}) == len(plan.jobs)


@pytest.mark.parametrize(
    "overrides",
    [
        ["stitch.fade_in=0.5", "encode.crf=18"],
        ["executor=ray", "executor.num_gpus=2", "backend=diffusers", "backend.dtype=float32"],
    ],
    ids=["defaults", "ray+diffusers"],
)
def test_a_saved_config_reads_back_as_the_typed_config_it_was(overrides, tmp_path):
    """`wanbatch reproduce` plans a run's `.hydra/config.yaml` again: read back, it is the typed config the run
    composed, each group the schema of the option it chose (not the base class, not a plain dict)."""
    cfg = load_config(DEMO, overrides)
    saved = tmp_path / "config.yaml"
    OmegaConf.save(OmegaConf.structured(cfg), saved)
    again = saved_config(saved)
    assert again == cfg
    assert type(again.backend) is type(cfg.backend) and type(again.executor) is type(cfg.executor)


def test_a_saved_config_with_an_unknown_key_is_a_config_error_naming_it(tmp_path):
    saved = tmp_path / "config.yaml"
    raw = OmegaConf.to_container(OmegaConf.structured(load_config(DEMO)))
    assert isinstance(raw, dict)
    raw["stitch"]["sparkle"] = True
    OmegaConf.save(OmegaConf.create(raw), saved)
    with pytest.raises(ConfigError, match=r"stitch\.sparkle"):
        saved_config(saved)


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
