"""Shared pieces of the local-rendering tests (diffusers, xdit, models): tiny models built once per
session, scenes and jobs planned through the real planner, a render context on a real cache.

Test modules import the fixtures they use: `from local_fixtures import tiny_models_dir, ...`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from wanbatch.cache.store import Cache
from wanbatch.config.backends import DiffusersConfig
from wanbatch.config.schema import EncodeConfig
from wanbatch.core.backend import Backend, RenderContext
from wanbatch.core.job import Job
from wanbatch.core.media import inspect_local
from wanbatch.core.plan import Plan, make_plan
from wanbatch.core.project import Project
from wanbatch.core.scene import Scene


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tiny model, built once for the whole session."""
    from wanbatch.backends.local.models.tiny import TINY_MODELS, ensure_tiny

    root = tmp_path_factory.mktemp("models")
    for name in TINY_MODELS:
        ensure_tiny(name, root)
    return root


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small RGB images with different content and a non-square aspect ratio."""
    root = tmp_path_factory.mktemp("images")
    out = {}
    for i, name in enumerate(("first", "last")):
        rng = np.random.default_rng(i)
        path = root / f"{name}.png"
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(path)
        out[name] = path
    return out


@pytest.fixture
def render_cache(tmp_path: Path) -> Iterator[Cache]:
    c = Cache(tmp_path / "cache")
    yield c
    c.close()


def tiny_config(models_dir: Path, **extra: Any) -> DiffusersConfig:
    return DiffusersConfig(**{"model": "tiny-t2v", "device": "cpu", "models_dir": str(models_dir), **extra})


def scene(sid: str = "s1", **fields: Any) -> Scene:
    """A scene as the project loader makes it: media fields become inspected Media."""
    for name in ("image", "last_image", "audio"):
        if isinstance(fields.get(name), (str, Path)):
            fields[name] = inspect_local(name, Path(fields[name]))
    fields.setdefault("prompt", "a red kite over a green hill")
    fields.setdefault("seed", 1)
    fields.setdefault("backend", "diffusers")
    return Scene(id=sid, **fields)


def plan(backend: Backend, *scenes: Scene, root: Path | None = None) -> Plan:
    """Jobs through the real planner (cache keys, seeds, chains) with `backend` in place."""
    scenes = tuple(dataclasses.replace(s, index=i, backend=backend.name) for i, s in enumerate(scenes))
    project = Project(
        name="t",
        root=root or Path.cwd(),
        scenes=list(scenes),
        default_backend=backend.name,
        backend_configs={backend.name: backend.config},
    )
    return make_plan(project, backends={backend.name: backend}, encode=EncodeConfig())


def job(backend: Backend, sc: Scene) -> Job:
    return plan(backend, sc).jobs[0]


def context(cache: Cache, workdir: Path, cancel: threading.Event | None = None) -> RenderContext:
    workdir.mkdir(parents=True, exist_ok=True)
    return RenderContext(
        workdir=workdir, journal=cache.journal, encode=EncodeConfig(), cancel=cancel or threading.Event()
    )


__all__ = ["context", "images", "job", "plan", "render_cache", "scene", "tiny_config", "tiny_models_dir"]
