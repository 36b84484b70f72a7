"""Where configs live and how a project is composed outside the CLI (tests, tools, `wanbatch cache why`).

A project file is a Hydra primary config that starts with `defaults: [wanbatch, _self_]`, so every
config group of `conf/` (backend, cache, executor, stitch, encode) can be swapped from the command line.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from wanbatch.secrets import register_overrides

# conf/ and recipes/ sit at the top of the source tree and are installed as the packages `wanbatch.conf` and
# `wanbatch.recipes` (pyproject's package-dir), so an editable checkout and a wheel find them the same way.
CONF_DIR = Path(str(importlib.resources.files("wanbatch.conf")))
RECIPES_DIR = Path(str(importlib.resources.files("wanbatch.recipes")))
PROJECT_FILE = "project.yaml"
CONF_SEARCH_PATH = "pkg://wanbatch.conf"  # how Hydra finds conf/: through the installed package
#: every backend name: the options of the `backend` config group
BACKEND_NAMES = tuple(sorted(p.stem for p in (CONF_DIR / "backend").glob("*.yaml")))


@functools.cache
def key_variables() -> tuple[str, ...]:
    """Every environment variable a built-in backend reads its API key from (`api_key_env` in conf/backend/):
    their values are secrets in every run, whichever backends it uses (read as text: no YAML parse)."""
    found = set()
    for path in (CONF_DIR / "backend").glob("*.yaml"):
        match = re.search(r"^api_key_env:\s*([A-Za-z_]\w*)", path.read_text(encoding="utf-8"), re.MULTILINE)
        if match:
            found.add(match.group(1))
    return tuple(sorted(found))


def recipe_dir(name: str, cwd: Path | None = None) -> Path | None:
    """`recipes/<name>` under the working directory first (a user's own checkout), then the package's."""
    for base in ((cwd or Path.cwd()) / "recipes", RECIPES_DIR):
        if (base / name / PROJECT_FILE).is_file():
            return base / name
    return None


def recipe_names(cwd: Path | None = None) -> list[str]:
    """Every name `recipe=NAME` takes: the built-in recipes and those under ./recipes."""
    found = {
        p.parent.name for base in ((cwd or Path.cwd()) / "recipes", RECIPES_DIR) for p in base.glob(f"*/{PROJECT_FILE}")
    }
    return sorted(found)


def load_config(project_file: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose a project file with wanbatch's config groups and Hydra overrides, into a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_overrides(overrides)  # before Hydra can print one in an error
    project_file = Path(project_file).resolve()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(project_file.parent), version_base="1.3"):
        cfg = hydra_compose(
            config_name=project_file.stem,
            overrides=[f"hydra.searchpath=[{CONF_SEARCH_PATH}]", *open_backends(overrides)],
        )
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


class BackendConfigs(Mapping[str, dict[str, Any]]):
    """The config of every known backend, built on first use (a project touches only a few, and each
    YAML load costs milliseconds): conf/backend/<name>.yaml, then `backends.<name>` overrides. The
    project's default backend takes the composed `backend` group instead (it carries CLI overrides)."""

    def __init__(self, cfg: Mapping[str, Any]):
        self._default = dict(cfg.get("backend") or {"name": "preview"})
        self._per = cfg.get("backends") or {}
        self._cache_dir = (cfg.get("cache") or {}).get("dir")
        self._built: dict[str, dict[str, Any]] = {}

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in BACKEND_NAMES:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(BACKEND_NAMES)

    def __len__(self) -> int:
        return len(BACKEND_NAMES)

    def _build(self, name: str) -> dict[str, Any]:
        if name == self._default.get("name"):
            base: dict[str, Any] = self._default
        else:
            path = CONF_DIR / "backend" / f"{name}.yaml"
            base = to_dict(OmegaConf.load(path)) if path.is_file() else {"name": name}
        out = to_dict(OmegaConf.merge(base, self._per.get(name) or {}))
        # Tiny built-in models live beside the run's cache unless told otherwise (where they are built
        # does not change any cache key: their identity is a version string).
        if name in ("diffusers", "xdit") and self._cache_dir and not out.get("models_dir"):
            out["models_dir"] = str(Path(str(self._cache_dir)).expanduser() / "models")
        return out


def backend_configs(cfg: Mapping[str, Any]) -> BackendConfigs:
    return BackendConfigs(cfg)


def default_cache_dir() -> Path:
    return Path(os.environ.get("WANBATCH_CACHE_DIR", Path.home() / ".cache" / "wanbatch"))
