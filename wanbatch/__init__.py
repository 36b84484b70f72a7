"""wanbatch: render whole video projects with the Wan models.

The core (plan, cache, remote backends, stitch) imports and works without torch; local rendering needs
the `[local]` extra, multi-GPU rendering `[xdit]`, clusters `[ray]`.

    from pathlib import Path
    from wanbatch import load_config, run_project

    cfg = load_config("recipes/demo/project.yaml", ["cache.dir=/tmp/wan-cache"])
    result = run_project(cfg, Path("outputs/demo"), Path("recipes/demo"))
    result.exit_code, result.film          # 0, outputs/demo/film.mp4

The names below are the public API (tests/test_exported_members.py guards it). They are imported on first
use, so `import wanbatch` (and the console script's start-up) costs only what is used.
"""

import importlib as _importlib
import typing as _typing

from wanbatch.version import __version__

if _typing.TYPE_CHECKING:
    from wanbatch.backends import build_backends
    from wanbatch.cache.store import Cache
    from wanbatch.config.load import load_config
    from wanbatch.core.job import Job
    from wanbatch.core.outcome import Outcome
    from wanbatch.core.plan import Plan, make_plan
    from wanbatch.core.project import Project, load_project
    from wanbatch.core.scene import Scene
    from wanbatch.errors import (
        ConfigError,
        DownloadError,
        Issue,
        MissingExtraError,
        ProviderError,
        RenderError,
        WanbatchError,
    )
    from wanbatch.runs.run import RunResult, run_project

# public name -> the module that defines it
_WHERE = {
    "Cache": "wanbatch.cache.store",
    "ConfigError": "wanbatch.errors",
    "DownloadError": "wanbatch.errors",
    "Issue": "wanbatch.errors",
    "Job": "wanbatch.core.job",
    "MissingExtraError": "wanbatch.errors",
    "Outcome": "wanbatch.core.outcome",
    "Plan": "wanbatch.core.plan",
    "Project": "wanbatch.core.project",
    "ProviderError": "wanbatch.errors",
    "RenderError": "wanbatch.errors",
    "RunResult": "wanbatch.runs.run",
    "Scene": "wanbatch.core.scene",
    "WanbatchError": "wanbatch.errors",
    "build_backends": "wanbatch.backends",
    "load_config": "wanbatch.config.load",
    "load_project": "wanbatch.core.project",
    "make_plan": "wanbatch.core.plan",
    "run_project": "wanbatch.runs.run",
}

__all__ = [
    "Cache",
    "ConfigError",
    "DownloadError",
    "Issue",
    "Job",
    "MissingExtraError",
    "Outcome",
    "Plan",
    "Project",
    "ProviderError",
    "RenderError",
    "RunResult",
    "Scene",
    "WanbatchError",
    "__version__",
    "build_backends",
    "load_config",
    "load_project",
    "make_plan",
    "run_project",
]


def __getattr__(name: str) -> _typing.Any:
    if name in _WHERE:
        value = getattr(_importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'wanbatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
