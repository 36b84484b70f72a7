"""Where configs live and how a project is composed outside the CLI (tests, tools, `wanbatch cache why`).

A project file is a Hydra primary config that starts with `defaults: [wanbatch, _self_]`, so every
config group of `conf/` (backend, cache, executor, stitch, encode) can be swapped from the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .backends import REGISTRY

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
CONF_DIR = REPO_ROOT / "conf"
RECIPES_DIR = REPO_ROOT / "recipes"
PROJECT_FILE = "project.yaml"


def recipe_dir(name: str, cwd: Path | None = None) -> Path | None:
    """`recipes/<name>` under the working directory first (a user's own checkout), then the package's."""
    for base in ((cwd or Path.cwd()) / "recipes", RECIPES_DIR):
        if (base / name / PROJECT_FILE).is_file():
            return base / name
    return None


def recipe_names() -> list[str]:
    return sorted(p.parent.name for p in RECIPES_DIR.glob(f"*/{PROJECT_FILE}"))


def compose(project_file: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose a project file with wanbatch's config groups and Hydra overrides, into a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    project_file = Path(project_file).resolve()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(project_file.parent), version_base="1.3"):
        cfg = hydra_compose(config_name=project_file.stem,
                            overrides=[f"hydra.searchpath=[file://{CONF_DIR}]", *open_backends(overrides)])
    return to_dict(cfg)


def open_backends(overrides: Sequence[str]) -> list[str]:
    """`backends.<name>.<key>=v` configures a backend that is not the project's default. `backends` starts
    empty, so in Hydra's struct mode such keys need `++`; we add it, so the plain form works too."""
    return [f"++{o}" if o.startswith("backends.") else o for o in overrides]


def to_dict(cfg: Any) -> dict[str, Any]:
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    out.pop("hydra", None)
    return {str(k): v for k, v in out.items()}


def backend_configs(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The config of every known backend: conf/backend/<name>.yaml, then `backends.<name>` overrides.
    The project's default backend takes the composed `backend` group instead (it carries CLI overrides)."""
    default = dict(cfg.get("backend") or {"name": "preview"})
    per = cfg.get("backends") or {}
    out: dict[str, dict[str, Any]] = {}
    for name in REGISTRY:
        if name == default.get("name"):
            base: dict[str, Any] = default
        else:
            path = CONF_DIR / "backend" / f"{name}.yaml"
            base = to_dict(OmegaConf.load(path)) if path.is_file() else {"name": name}
        out[name] = to_dict(OmegaConf.merge(base, per.get(name) or {}))
    # Tiny built-in models live beside the run's cache unless told otherwise (where they are built does
    # not change any cache key: their identity is a version string).
    cache_dir = (cfg.get("cache") or {}).get("dir")
    for name in ("diffusers", "xdit"):
        if cache_dir and not out[name].get("models_dir"):
            out[name]["models_dir"] = str(Path(str(cache_dir)).expanduser() / "models")
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("WANBATCH_CACHE_DIR", Path.home() / ".cache" / "wanbatch"))
