"""Exit codes that tell the truth, and Ctrl-C as a terminal sends it (SIGINT to the whole process group).

0 done, 1 some scene failed, 2 invalid project (nothing ran), 3 wanbatch failed after work began (the
clips that finished are kept, and it says where), 130 interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wanbatch.av.ffmpeg import ffmpeg_exe

from conftest import PROJECT, REPO, blobs

CLI = [sys.executable, "-m", "wanbatch.cli"]
BASE = ["--config-dir", str(PROJECT.parent), "--config-name", "project", "executor.progress=plain"]


def _run(cache_dir: Path, run_dir: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """The test project through the console module, from the checkout, its output captured."""
    return subprocess.run(
        [*CLI, *BASE, f"cache.dir={cache_dir}", f"hydra.run.dir={run_dir}", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _statuses(run_dir: Path) -> dict[str, str]:
    return {s["id"]: s["status"] for s in json.loads((run_dir / "manifest.json").read_text())["scenes"]}


def test_a_crash_after_work_began_exits_3_and_says_where_the_clips_are(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    (run_dir / "manifest.json").mkdir(parents=True)  # the manifest cannot be written: an environment failure
    (run_dir / "manifest.json" / "in-the-way").write_text("x")
    done = _run(cache_dir, run_dir, "executor.concurrency=1", timeout=300)
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"clips kept in {run_dir / 'clips'}" in done.stderr and "a rerun renders only what is missing" in done.stderr
    kept = list((run_dir / "clips").glob("*.mp4"))
    assert kept and len(blobs(cache_dir)) >= len(kept)  # what finished is in the run folder and in the cache


def test_a_bad_override_still_exits_2_having_run_nothing(tmp_path, cache_dir):
    done = _run(cache_dir, tmp_path / "run", "executor=nope", timeout=120)
    assert done.returncode == 2 and not cache_dir.exists()


# -- Ctrl-C from a terminal ------------------------------------------------------------------------------
@pytest.fixture
def held_ffmpeg(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """An ffmpeg that stops, before it starts, on calls whose arguments match `hold/pattern` until the file
    `hold/release` exists: a Ctrl-C can then arrive at a known moment of a render. Each stop is announced by
    a file `hold/held.<pid>`. (The real ffmpeg does the work; this only waits in front of it.)"""
    hold = tmp_path / "hold"
    hold.mkdir()
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'pattern=$(cat "{hold}/pattern")\n'
        'case "$*" in\n'
        '  *"$pattern"*)\n'
        f'    touch "{hold}/held.$$"\n'
        "    i=0\n"
        f'    while [ ! -e "{hold}/release" ] && [ $i -lt 6000 ]; do sleep 0.05; i=$((i+1)); done ;;\n'
        "esac\n"
        f'exec "{ffmpeg_exe()}" "$@"\n'
    )
    wrapper.chmod(0o755)
    yield hold, {**os.environ, "IMAGEIO_FFMPEG_EXE": str(wrapper), "PYTHONUNBUFFERED": "1"}
    (hold / "release").touch()


def _wait_for(condition: object, what: str, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def _ctrl_c(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group


def test_ctrl_c_while_a_preview_is_encoded_cancels_it_and_fails_nothing(held_ffmpeg, tmp_path, cache_dir, ctrl_c):
    hold, env = held_ffmpeg
    (hold / "pattern").write_text(" -map 0:v:0 -map 1:a:0 ")  # the step that lays the audio under the frames
    # (not plan time's whole-media check, which decodes the demo's audio with `-map 0`)
    run_dir = tmp_path / "run"
    cmd = [*CLI, *BASE, f"cache.dir={cache_dir}", f"hydra.run.dir={run_dir}", "executor.concurrency=1"]
    proc = subprocess.Popen(
        [*cmd, "stitch.enabled=false"], env=env, cwd=REPO, start_new_session=True, text=True, stdout=subprocess.PIPE
    )
    try:
        _wait_for(lambda: any(hold.glob("held.*")), "a scene's encode reached ffmpeg")
        _ctrl_c(proc)
        (hold / "release").touch()
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    statuses = _statuses(run_dir)
    assert "failed" not in statuses.values(), statuses
    assert statuses["title"] in ("rendered", "cancelled")  # the one being encoded: kept, or to do again
    assert "cancelled" in statuses.values()


def test_ctrl_c_while_planning_exits_130_without_a_traceback(held_ffmpeg, tmp_path, cache_dir, ctrl_c):
    hold, env = held_ffmpeg
    (hold / "pattern").write_text("narration.wav")  # the plan probes the driving audio
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, *BASE, f"cache.dir={cache_dir}", f"hydra.run.dir={run_dir}"],
        env=env,
        cwd=REPO,
        start_new_session=True,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: any(hold.glob("held.*")), "the plan probed the audio")
        _ctrl_c(proc)
        _, err = proc.communicate(timeout=120)
    finally:
        (hold / "release").touch()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted while planning: nothing ran" in err
    assert not (run_dir / "clips").exists() and blobs(cache_dir) == []
