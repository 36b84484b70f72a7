"""Every task a developer or CI runs, each doing its own set-up.

nox -s demo        render recipes/demo into outputs/ (again: all from the cache)
nox -s tests       the test suite (installs Debian's chromium for the report's browser test when root)
nox -s load        the timing-prone tests, twice, while two CPU-bound processes compete for the cores
nox -s lint        ruff
nox -s typecheck   mypy on the package
nox -s bench       every benchmark; writes BENCHMARKS.md
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
# Reusing the environment makes the second `nox -s demo` take seconds; CI starts from a fresh clone anyway.
nox.options.reuse_existing_virtualenvs = True

PYTHON = os.environ.get("NOX_PYTHON") or None  # the interpreter nox runs with, unless told otherwise
# torch is pinned in the [local] extra: on CPU machines that is a local CPU build, not GBs of CUDA wheels.
LOCAL = ".[local]"
ALL = ".[local,ray,report,dev]"


def _install(session: nox.Session, spec: str) -> None:
    session.install("--upgrade", "pip")
    session.install("-e", spec)


def _chromium(session: nox.Session) -> None:
    """The report's browser test drives Debian's chromium; install it where we may (root with apt)."""
    if shutil.which("chromium") or os.environ.get("WANBATCH_NO_APT"):
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        session.run(
            "bash",
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null",
            external=True,
        )
    else:
        session.warn("chromium is not installed and cannot be installed here; the browser test will be skipped")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    _install(session, LOCAL)
    session.run("wanbatch", "recipe=demo", *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    _install(session, ALL)
    _chromium(session)
    # A cache of its own, outside the virtualenv: nox's create_tmp() would also point TMPDIR into the venv,
    # where Ray refuses to put its session ("temp_dir must not be child directory of virtualenv root").
    cache = tempfile.mkdtemp(prefix="wanbatch-test-cache-")
    session.run("pytest", *(session.posargs or ["-q"]), env={"WANBATCH_CACHE_DIR": cache})


# The tests that wait on other threads, processes, servers and clusters: where an assumed latency or
# scheduling order would show first on a busy machine.
TIMING_PRONE = (
    "tests/testing/test_fakeprovider.py",
    "tests/backends/remote/test_remote_lifecycle.py",
    "tests/backends/remote/test_remote_faults.py",
    "tests/backends/remote/test_remote_e2e.py",
    "tests/backends/remote/test_remote_uploader.py",
    "tests/execute/test_executor.py",
    "tests/execute/test_ray_executor.py",
    "tests/execute/test_ray_resources.py",
    "tests/core/test_sweeps.py",
    "tests/cache/test_cache_recovery.py",
    "tests/cli/test_exit_codes.py",
)


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """The timing-prone tests twice in a row while two CPU-bound processes take the cores, as on a shared CI
    machine: a test that assumes a latency or an order shows it here. `nox -s load -- tests/test_x.py` runs
    other files the same way."""
    _install(session, ALL)
    _chromium(session)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for _ in range(2):
            cache = tempfile.mkdtemp(prefix="wanbatch-load-cache-")  # as `tests`: outside the virtualenv
            session.run("pytest", "-q", *(session.posargs or TIMING_PRONE), env={"WANBATCH_CACHE_DIR": cache})
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


LINTED = ("wanbatch", "tests", "benchmarks", "recipes", "noxfile.py", "setup.py")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (checks and formatting) and the import contracts of pyproject.toml (layers, no cycles)."""
    session.install("ruff", "import-linter")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("lint-imports")  # reads the source tree from here: the package needs no install


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    # The core and mypy only: torch, ray and xfuser are imported lazily and typed as Any, so mypy needs
    # none of the heavy extras (and this session stays quick).
    _install(session, ".")
    session.install("mypy")
    session.run("mypy", "wanbatch")


@nox.session(python=PYTHON)
def installed(session: nox.Session) -> None:
    """wanbatch as a user installs it: a wheel (not editable) in a fresh virtualenv, run from an empty folder
    outside the source tree. It must find its configs and recipes inside the package."""
    session.install("--upgrade", "pip", "setuptools")
    dist = Path(tempfile.mkdtemp(prefix="wanbatch-wheel-"))
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), ".", silent=True)
    (wheel,) = dist.glob("wanbatch-*.whl")
    session.install(f"{wheel}[local]")
    here = Path(tempfile.mkdtemp(prefix="wanbatch-user-"))
    env = {"WANBATCH_CACHE_DIR": str(here / "cache")}
    session.chdir(here)
    session.run("wanbatch", "--version", env=env)
    session.run("wanbatch", "recipe=demo", env=env)
    session.run("wanbatch", "init", "myfilm", env=env)
    session.run("wanbatch", "--config-dir", "myfilm", "--config-name", "project", env=env)
    for run in ("demo", "myfilm"):  # each left a film and a manifest that names every scene rendered
        # one run folder, and `latest` pointing at it
        (manifest,) = (m for m in (here / "outputs" / run).glob("*/manifest.json") if not m.parent.is_symlink())
        if (here / "outputs" / run / "latest").resolve() != manifest.parent.resolve():
            session.error(f"{run}: outputs/{run}/latest does not point at its run folder {manifest.parent}")
        data = json.loads(manifest.read_text())
        bad = [s["id"] for s in data["scenes"] if s["status"] not in ("rendered", "cached")]
        if bad or not data["film"]:
            session.error(f"{run}: scenes not done {bad}, film {data['film']!r}")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    _install(session, ALL)
    # benchmarks/run_all.py runs each benchmark in its own process and writes BENCHMARKS.md;
    # `nox -s bench -- --quick` is a smaller run.
    session.run("python", "benchmarks/run_all.py", *session.posargs)
