"""The public API is exactly `wanbatch.__all__` (as httpx guards its own), and importing any submodule never
shadows an exported name (once, `wanbatch.compose` the function became the film module of that name)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import types

import wanbatch

SUBPACKAGES = {
    "av",
    "backends",
    "cache",
    "cli",
    "config",
    "core",
    "errors",
    "execute",
    "film",
    "runs",
    "secrets",
    "testing",
    "version",
    "conf",
    "recipes",
}


def _import_every_submodule() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(wanbatch.__path__, "wanbatch."):
        if info.name.endswith("__main__") or ".recipes." in info.name:
            continue  # running the console script; the recipes' asset generators
        importlib.import_module(info.name)
        names.append(info.name)
    return names


def test_all_lists_every_public_member_and_nothing_else():
    _import_every_submodule()
    public = {name for name in dir(wanbatch) if not name.startswith("_")} - SUBPACKAGES
    assert sorted(public | {"__version__"}) == sorted(wanbatch.__all__)


def test_no_submodule_shadows_an_exported_name():
    modules = _import_every_submodule()
    assert len(modules) > 50
    for name in wanbatch.__all__:
        value = getattr(wanbatch, name)
        assert not isinstance(value, types.ModuleType), f"wanbatch.{name} is a module"
        if name != "__version__":
            assert inspect.isclass(value) or inspect.isfunction(value), name


def test_the_exports_are_where_they_are_defined():
    for name in wanbatch.__all__:
        if name == "__version__":
            continue
        value = getattr(wanbatch, name)
        assert value.__module__.startswith("wanbatch."), name
        assert getattr(importlib.import_module(value.__module__), name) is value


def test_import_wanbatch_is_light():
    """The public names load on first use: `import wanbatch` (what the console script's --version needs)
    imports neither Hydra nor the run machinery."""
    code = (
        "import sys, wanbatch; heavy = [m for m in ('hydra', 'omegaconf', 'wanbatch.runs.run', 'rich', 'numpy') "
        "if m in sys.modules]; assert not heavy, heavy; print(wanbatch.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == wanbatch.__version__
