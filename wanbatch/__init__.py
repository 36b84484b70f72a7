"""wanbatch: render whole video projects with the Wan models.

The core (plan, cache, remote backends, stitch) imports and works without torch; local rendering needs
the `[local]` extra, multi-GPU rendering `[xdit]`, clusters `[ray]`.

    from wanbatch import compose, run_project
    cfg = compose("recipes/demo/project.yaml", ["cache.dir=/tmp/cache"])
    exit_code = run_project(cfg, run_dir=Path("outputs/demo"), project_root=Path("recipes/demo"))
"""

from __future__ import annotations

from .cache import Cache
from .config import compose
from .errors import ConfigError, Issue, MissingExtraError, ProviderError, RenderError, WanbatchError
from .plan import Job, Plan, make_plan
from .project import Project, load_project
from .run import run_project
from .scene import Scene

__version__ = "0.1.0"

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
    "compose",
    "load_project",
    "make_plan",
    "run_project",
]
