"""What made a run's clips: the `environment` of every manifest.

    {"wanbatch": "0.2.0", "python": "3.11.7 (CPython)", "platform": "Linux-6.1-x86_64-with-glibc2.36",
     "packages": {"torch": "2.13.0+cpu", "diffusers": "0.42.1", ...},      # those installed
     "ffmpeg": "n9.0.2-17-g2a571b6068-20260930",
     "project": {"path": "...", "git": {"commit": "1c4adf2...", "dirty": false}},   # when a git checkout
     "backends": {"diffusers": {"devices": [{"device": "cuda:0", "name": "NVIDIA H200"}], "cuda": "12.8",
                                "dtype": "bfloat16", "models": {"wan2.1-t2v-1.3b": {"commit": "..."}}}}}

`backends` holds what a backend that rendered in this run says of itself (`Backend.environment`): a local
backend's devices, dtype and each model's resolved revision; a run whose local scenes all came from the cache
imports no torch to say it. The rest is read in a background thread while the run renders (ffmpeg's version
and git each start a process), so a fully cached rerun does not wait for it.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from wanbatch.core.backend import Backend
from wanbatch.core.job import Job
from wanbatch.version import __version__, package_versions

__all__ = ["backends_ran", "changed", "collect", "collect_in_background", "flatten"]


def collect(project_root: Path | None) -> dict[str, Any]:
    """The environment of this process, without its backends. Never raises: a part that cannot be read is
    left out (git, where the project is no checkout) or says why (`ffmpeg`)."""
    env: dict[str, Any] = {
        "wanbatch": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "packages": package_versions(),
    }
    try:
        from wanbatch.av.ffmpeg import ffmpeg_version

        env["ffmpeg"] = ffmpeg_version()
    except Exception as exc:  # an environment record never fails a run
        env["ffmpeg"] = f"unknown ({type(exc).__name__}: {exc})"
    if project_root is not None:
        project: dict[str, Any] = {"path": str(project_root)}
        git = git_state(project_root)
        if git is not None:
            project["git"] = git
        env["project"] = project
    return env


def collect_in_background(project_root: Path | None) -> Callable[[bool], dict[str, Any] | None]:
    """Start `collect` on a thread; the returned function gives its result: waiting for it (`wait=True`), or
    None while it is not ready (`wait=False`, for the manifest rewrites during the run)."""
    box: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: box.update(collect(project_root)), name="wanbatch-environment", daemon=True
    )
    thread.start()

    def result(wait: bool) -> dict[str, Any] | None:
        if wait:
            thread.join()
        return dict(box) if not thread.is_alive() else None

    return result


def git_state(folder: Path) -> dict[str, Any] | None:
    """The commit of the checkout `folder` lies in, and whether anything under `folder` differs from it
    (changed, staged or untracked files); None where `folder` is no git checkout or git is missing."""
    git = shutil.which("git")
    if git is None or not folder.is_dir():
        return None
    # GIT_OPTIONAL_LOCKS=0: `status` must not take the index lock (a user's git in that checkout would fail).
    # One process says both: porcelain v2's `# branch.oid` header is the commit, any other line a change.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        status = subprocess.run(
            [git, "-C", str(folder), "status", "--porcelain=v2", "--branch", "--", "."],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if status.returncode != 0:
        return None
    lines = status.stdout.splitlines()
    commit = next((ln.split()[2] for ln in lines if ln.startswith("# branch.oid ") and len(ln.split()) > 2), None)
    if commit is None or commit == "(initial)":  # no checkout, or no commit yet
        return None
    return {"commit": commit, "dirty": any(ln and not ln.startswith("#") for ln in lines)}


def backends_ran(backends: Mapping[str, Backend], rendered: Iterable[Job]) -> dict[str, Any]:
    """What each backend that rendered `rendered` says of itself (`Backend.environment`); backends with
    nothing to say are left out. Never raises: a backend that fails to say is recorded with its error."""
    by_backend: dict[str, list[Job]] = {}
    for job in rendered:
        by_backend.setdefault(job.backend, []).append(job)
    out: dict[str, Any] = {}
    for name, jobs in sorted(by_backend.items()):
        try:
            said = backends[name].environment(jobs)
        except Exception as exc:
            said = {"error": f"{type(exc).__name__}: {exc}"}
        if said:
            out[name] = said
    return out


def flatten(env: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"packages": {"torch": "2.1"}}` -> `{"packages.torch": "2.1"}`; lists as their JSON-like text."""
    out: dict[str, str] = {}
    for key, value in env.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    out.update(flatten(item, f"{name}.{i}."))
                else:
                    out[f"{name}.{i}"] = str(item)
        else:
            out[name] = str(value)
    return out


def changed(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """The fields that differ between two environments, flattened: name -> (before, now); None on the side
    that lacks the field (a run whose local scenes all came from the cache recorded no devices)."""
    a, b = flatten(before or {}), flatten(now)
    out: dict[str, tuple[str | None, str | None]] = {}
    for name in sorted(a.keys() | b.keys()):
        if a.get(name) != b.get(name):
            out[name] = (a.get(name), b.get(name))
    return out
