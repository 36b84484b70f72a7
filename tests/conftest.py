"""Shared fixtures: compose recipes into typed configs, run them in-process, count renders."""

from __future__ import annotations

import io
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from wanbatch.backends.preview import PreviewBackend
from wanbatch.config.backends import PreviewConfig
from wanbatch.config.load import RECIPES_DIR, load_config
from wanbatch.config.schema import WanbatchConfig
from wanbatch.core.backend import RenderContext, RenderResult
from wanbatch.core.job import Job
from wanbatch.runs.run import run_project

REPO = RECIPES_DIR.parent
TESTS = Path(__file__).resolve().parent  # the test tree mirrors wanbatch/; shared data and helpers live at its top
DATA = TESTS / "data"
CHECKOUT = TESTS.parent
# The foundation tests run on a preview-only copy of the demo, so they need no torch and never change
# when the demo recipe grows. tests/test_demo.py runs the real recipe.
PROJECT = DATA / "preview" / "project.yaml"


class CountingPreview(PreviewBackend):
    """The real preview backend, counting the renders it actually performs (not inferred from logs)."""

    def __init__(self, config: PreviewConfig, *, fail: set[str] | None = None, delay: float = 0.0):
        super().__init__(config)
        self.rendered: list[str] = []
        self.fail = fail or set()
        self.delay = delay
        self.inputs: dict[str, Job] = {}
        self.first_images: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.at_work(job, ctx)
            if job.id in self.fail:
                from wanbatch.errors import RenderError

                raise RenderError(f"scene {job.id} failed on purpose")
            if "image" in job.inputs:  # keep the pixels: the job's scratch folder goes when it ends
                self.first_images[job.id] = np.asarray(Image.open(job.inputs["image"].path).convert("RGB"))
            result = super().render(job, ctx)
            with self._lock:
                self.rendered.append(job.id)
                self.inputs[job.id] = job
            return result
        finally:
            with self._lock:
                self.active -= 1

    def at_work(self, job: Job, ctx: RenderContext) -> None:
        """Runs while the render counts as active: `delay` here; tests override it to wait for a state."""
        if self.delay:
            ctx.cancel.wait(self.delay)


@pytest.fixture
def ctrl_c() -> Any:
    """Ctrl-C as a terminal sends it reaches Python during the test: SIGINT (and `_thread.interrupt_main()`)
    raises KeyboardInterrupt in the main thread, and a console script started now handles it too (a handled
    signal is reset to its default in a child, where Python handles it). A test run started in the background by
    a shell without job control (`pytest ... &` in a script) begins with SIGINT ignored, and its children with it."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def compose_demo(cache_dir: Path) -> Callable[..., WanbatchConfig]:
    def _compose(*overrides: str, project: Path = PROJECT) -> WanbatchConfig:
        return load_config(project, [f"cache.dir={cache_dir}", "executor.progress=none", *overrides])

    return _compose


@pytest.fixture
def run_cfg(tmp_path: Path) -> Callable[..., tuple[int, Path, str]]:
    """Run a composed config in-process; returns (exit code, run dir, stdout)."""
    counter = iter(range(1000))

    def _run(
        cfg: WanbatchConfig,
        *,
        root: Path = PROJECT.parent,
        backends: dict[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[int, Path, str]:
        run_dir = tmp_path / f"run{next(counter)}"
        out = io.StringIO()
        code = run_project(cfg, run_dir, root, backends=backends, out=out, cancel=cancel).exit_code
        return code, run_dir, out.getvalue()

    return _run


def write_project(folder: Path, scenes: list[dict[str, Any]], **top: Any) -> Path:
    """A project file of tiny preview scenes in `folder` (top-level keys in `top` are added or replace)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "defaults": ["wanbatch", "_self_"],
        "project": {"name": "hostile", "defaults": {"width": 64, "height": 48, "fps": 8, "duration": 0.5}},
        "scenes": scenes,
        **top,
    }
    path = folder / "project.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


def blobs(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "blobs").glob("*/*.mp4")) if cache_dir.exists() else []


def tree(path: Path) -> dict[str, int]:
    """Every file under `path` with its size: a cheap fingerprint to assert "nothing was written"."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


class CountingProxy:
    """Wraps any real backend and counts the renders it is asked for."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        with self._lock:
            self.calls.append(job.id)
        return self._inner.render(job, ctx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def counting_backends(cfg: WanbatchConfig) -> dict[str, CountingProxy]:
    """A counting proxy around the real backend for every backend the project uses."""
    from wanbatch.backends import get_backend_class
    from wanbatch.config.load import backend_configs

    configs = backend_configs(cfg)
    used = {s.get("backend") or cfg.backend.name for s in cfg.scenes}
    return {name: CountingProxy(get_backend_class(name)(configs[name])) for name in used}
