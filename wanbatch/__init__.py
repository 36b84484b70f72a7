"""wanbatch: render whole video projects with the Wan models.

The core (plan, cache, remote backends, stitch) imports and works without torch; local rendering needs
the `[local]` extra, multi-GPU rendering `[xdit]`, clusters `[ray]`.

    from wanbatch import compose, run_project
    cfg = load_config("recipes/demo/project.yaml", ["cache.dir=/tmp/cache"])
    exit_code = run_project(cfg, run_dir=Path("outputs/demo"), project_root=Path("recipes/demo"))
"""

from __future__ import annotations

from wanbatch.cache.store import Cache
from wanbatch.config.load import load_config
from wanbatch.core.job import Job
from wanbatch.core.plan import Plan, make_plan
from wanbatch.core.project import Project, load_project
from wanbatch.core.scene import Scene
from wanbatch.errors import ConfigError, Issue, MissingExtraError, ProviderError, RenderError, WanbatchError
from wanbatch.runs.run import run_project
from wanbatch.version import __version__

__all__ = [
    "Cache",
    "ConfigError",
    "Issue",
    "Job",
    "MissingExtraError",
    "Plan",
    "Project",
    "ProviderError",
    "RenderError",
    "Scene",
    "WanbatchError",
    "__version__",
    "load_config",
    "load_project",
    "make_plan",
    "run_project",
]
