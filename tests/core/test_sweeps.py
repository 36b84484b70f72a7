"""Hydra sweeps (`wanbatch -m ...`) share one cache: a job in several members renders once.

Renders are counted from the members' manifests: a job is "rendered" in the one member that made it and
"cached" in every other, so the rendered statuses of all members add up to the number of distinct cache
keys. Without a shared cache (or with a broken key lock) they add up to more.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import CHECKOUT, DATA

REPO_ROOT = CHECKOUT

SWEEP = DATA / "sweep"
FAST = ["stitch.enabled=false", "report=false", "executor.progress=none"]


def _wanbatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "wanbatch.cli", *args]


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout)


def _members(sweep_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/manifest.json"))]


def _renders_and_keys(manifests: list[dict[str, Any]]) -> tuple[int, set[str]]:
    scenes = [s for m in manifests for s in m["scenes"]]
    assert {s["status"] for s in scenes} <= {"rendered", "cached"}
    return sum(s["status"] == "rendered" for s in scenes), {s["cache_key"] for s in scenes}


def test_a_demo_seed_sweep_renders_shared_scenes_once(tmp_path):
    proc = _run(
        _wanbatch(
            "-m",
            "recipe=demo",
            "scenes.0.seed=1,2",
            f"cache.dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
            *FAST,
        )
    )
    assert proc.returncode == 0, proc.stderr
    members = _members(tmp_path / "multirun")
    assert len(members) == 2
    renders, keys = _renders_and_keys(members)
    n = len(members[0]["scenes"])
    assert len(keys) == n + 1  # only the first scene differs between the two members
    assert renders == len(keys)
    second = {s["id"]: s["status"] for s in members[1]["scenes"]}
    assert second.pop("title") == "rendered" and set(second.values()) == {"cached"}


def test_a_grid_sweep_renders_each_distinct_job_once(tmp_path):
    """2 seeds x 2 prompts: 4 members of 3 scenes, 12 scene-renders without a cache, 6 distinct jobs."""
    proc = _run(
        _wanbatch(
            "-m",
            "--config-dir",
            str(SWEEP),
            "--config-name",
            "project",
            "scenes.0.seed=1,2",
            "scenes.1.prompt=dawn,dusk",
            f"cache.dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
            "executor.progress=none",
        )
    )
    assert proc.returncode == 0, proc.stderr
    members = _members(tmp_path / "multirun")
    assert len(members) == 4
    renders, keys = _renders_and_keys(members)
    assert len(keys) == 6
    assert renders == 6
    assert len(list((tmp_path / "cache" / "blobs").glob("*/*.mp4"))) == 6


def test_members_running_at_once_on_one_cache_render_each_job_once(tmp_path):
    """What a cluster launcher does: each member in its own process, all at the same time, one cache
    directory. The per-key lock makes the late comer wait and take the clip from the cache."""
    members = ["scenes.0.seed=1", "scenes.0.seed=2", "scenes.0.seed=1"]  # the third repeats the first
    procs = [
        subprocess.Popen(
            _wanbatch(
                "--config-dir",
                str(SWEEP),
                "--config-name",
                "project",
                member,
                f"cache.dir={tmp_path / 'cache'}",
                f"hydra.run.dir={tmp_path / str(i)}",
                "executor.progress=none",
            ),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, member in enumerate(members)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    renders, keys = _renders_and_keys(_members(tmp_path))
    assert len(keys) == 4  # opening x 2 seeds, middle, ending
    assert renders == 4


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the `ray` extra")
def test_a_sweep_on_ray_starts_ray_once_and_shares_the_cache(tmp_path):
    proc = _run(
        _wanbatch(
            "-m",
            "--config-dir",
            str(SWEEP),
            "--config-name",
            "project",
            "scenes.1.prompt=dawn,dusk",
            "executor=ray",
            "executor.num_cpus=2",
            "executor.num_gpus=0",
            f"cache.dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
            "executor.progress=none",
        )
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("Started a local Ray instance") == 1  # the second member reused it
    renders, keys = _renders_and_keys(_members(tmp_path / "multirun"))
    assert len(keys) == 5  # opening shared; middle and its chained ending per prompt
    assert renders == 5
