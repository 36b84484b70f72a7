"""`wanbatch reproduce RUN_DIR`: a run's scenes rendered again from its saved config (not from the cache) and
each new clip compared with the recorded one: bit-identical on the same machine, or `differs` with the PSNR
and the environment fields that changed. Remote scenes are re-sent only with --remote (counted at the fake)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wanbatch.av.encode import write_clip
from wanbatch.av.ffmpeg import read_frames
from wanbatch.config.schema import EncodeConfig
from wanbatch.errors import ConfigError
from wanbatch.runs.reproduce import JOURNAL_PREFIX, reproduce
from wanbatch.testing.fakeprovider import FakeProvider

from conftest import REPO, tree
from remote_fixtures import *  # noqa: F403 - fixtures

DEMO_SCENES = ["title", "sunrise", "day_to_night", "harbour_voice", "harbour_after"]  # the animatics
DEMO_SCENES += ["tiny_t2v", "tiny_i2v", "tiny_flf2v"]  # real (tiny) Wan pipelines


def _wanbatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=600
    )


def _manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, rendered through the console script (which saves the config it ran in .hydra/)."""
    tmp = tmp_path_factory.mktemp("demo")
    run_dir = tmp / "run"
    proc = _wanbatch("recipe=demo", f"cache.dir={tmp / 'cache'}", f"hydra.run.dir={run_dir}", "executor.progress=none")
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_the_demo_reproduces_bit_identical(demo_run):
    proc = _wanbatch("reproduce", str(demo_run))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for scene in DEMO_SCENES:  # the tiny Wan pipelines as well as the animatics
        assert f"{scene}: bit-identical" in proc.stdout
    assert "reproduced 8 clips: 8 bit-identical" in proc.stdout
    report = json.loads(next((demo_run / "reproduce").glob("*/reproduce.json")).read_text())
    assert {c["job"]: c["result"] for c in report["checks"]} == dict.fromkeys(DEMO_SCENES, "bit-identical")
    for check in report["checks"]:
        assert Path(check["new"]).read_bytes() == Path(check["recorded"]).read_bytes()
    # The run recorded what made it; a local backend rendered, so its devices and models are in it too.
    env = _manifest(demo_run)["environment"]
    assert {"torch", "diffusers"} <= env["packages"].keys()
    assert env["backends"]["diffusers"]["models"].keys() == {"tiny-t2v", "tiny-i2v", "tiny-flf2v"}
    assert report["changed"] == {}  # the same machine, the same software


def test_a_clip_that_is_not_reproduced_is_named_with_its_psnr_and_what_changed(demo_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("reproduce"))  # copies, not the cache's links
    # The recorded clip is made a little different (as another torch would), and the run said it used another torch.
    row = next(s for s in _manifest(run_dir)["scenes"] if s["id"] == "tiny_t2v")
    clip = run_dir / row["clip"]
    noise = np.random.default_rng(0).integers(-6, 7, size=(96, 160, 3))
    frames = [np.clip(f.astype(int) + noise, 0, 255).astype(np.uint8) for f in read_frames(clip)]
    clip.unlink()
    write_clip(frames, clip, fps=16, settings=EncodeConfig())
    manifest = _manifest(run_dir)
    manifest["environment"]["packages"]["torch"] = "2.0.0"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))

    result = reproduce(run_dir, scenes=["tiny_t2v", "title"])
    by_job = {c.job: c for c in result.checks}
    assert by_job.keys() == {"tiny_t2v", "title"}
    assert by_job["title"].result == "bit-identical"
    check = by_job["tiny_t2v"]
    assert check.result == "differs" and check.psnr is not None and 25 < check.psnr < 60
    assert check.detail == f"PSNR {check.psnr:.2f} dB over 17 frames"
    assert result.changed["packages.torch"][0] == "2.0.0"
    assert result.exit_code == 1


def test_a_chained_scene_starts_from_its_parents_recorded_clip(demo_run, tmp_path):
    result = reproduce(demo_run, scenes=["harbour_after"], out_dir=tmp_path / "out")
    assert [(c.job, c.result) for c in result.checks] == [("harbour_after", "bit-identical")]
    assert sorted(p.name for p in (tmp_path / "out" / "clips").iterdir()) == ["005-harbour_after.mp4"]


def test_what_cannot_be_reproduced_is_refused_before_anything_renders(demo_run, tmp_path):
    proc = _wanbatch("reproduce", str(demo_run), "--scene", "nope")
    assert proc.returncode == 2
    assert "`--scene` = 'nope' is not allowed; a scene of the run:" in proc.stderr

    bare = tmp_path / "api-run"
    bare.mkdir()
    shutil.copy(demo_run / "manifest.json", bare)
    proc = _wanbatch("reproduce", str(bare))
    assert proc.returncode == 2
    assert "`RUN_DIR`" in proc.stderr and "its .hydra/config.yaml holds the config it ran" in proc.stderr
    assert tree(bare) == {"manifest.json": (demo_run / "manifest.json").stat().st_size}


REMOTE_PROJECT = """\
defaults: [wanbatch, _self_]
project: {name: paid}
scenes:
  - {id: card, backend: preview, prompt: a title card, width: 160, height: 96, fps: 8, duration: 1.0, seed: 1}
  - {id: paid, prompt: a paid render, seed: 5}
"""


def test_remote_scenes_are_sent_again_only_when_asked(fake: FakeProvider, api_keys, tmp_path):
    (tmp_path / "project.yaml").write_text(REMOTE_PROJECT)
    cache = tmp_path / "cache"
    run_dir = tmp_path / "run"
    proc = _wanbatch(
        "--config-dir",
        str(tmp_path),
        "backend=novita_wan21_t2v",
        f"backend.base_url={fake.url}",
        "backend.poll={initial_s:0.05,interval_s:0.05,backoff:1.5,max_interval_s:0.2,min_interval_s:0.05}",
        f"cache.dir={cache}",
        f"hydra.run.dir={run_dir}",
        "executor.progress=none",
    )
    assert proc.returncode == 0, proc.stderr
    assert fake.stats()["submissions"] == {"wan2.1-t2v": 1}

    result = reproduce(run_dir)
    paid = next(c for c in result.checks if c.job == "paid")
    assert paid.result == "skipped" and "sending it again costs money" in paid.detail and "--remote" in paid.detail
    assert fake.stats()["submissions"] == {"wan2.1-t2v": 1}  # nothing was sent
    assert result.exit_code == 0

    result = reproduce(run_dir, remote=True)
    paid = next(c for c in result.checks if c.job == "paid")
    assert fake.stats()["submissions"] == {"wan2.1-t2v": 2}  # sent once more, as asked
    # The fake marks each job's file with its id: the same pixels in other bytes, and reproduce says so.
    assert paid.result == "differs"
    assert paid.detail == "the same pixels in another file (the container or its metadata differ)"
    from wanbatch.cache.store import Cache

    c = Cache(cache)
    try:
        assert [k for k, _ in c.journal.items() if k.startswith(JOURNAL_PREFIX)] == []  # its request id is done with
    finally:
        c.close()


def test_reproduce_of_a_config_that_no_longer_validates_is_a_config_error(demo_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("reproduce", "clips", "posters"))
    saved = run_dir / ".hydra" / "config.yaml"
    # the scenes are recorded one a line as JSON (wanbatch.cli.app._record_scenes), which is YAML too
    text, n = re.subn(r'("?seed"?: )7\b', r"\g<1>-7", saved.read_text(), count=1)
    assert n == 1
    saved.write_text(text)
    with pytest.raises(ConfigError, match="`seed` = -7 is not allowed"):
        reproduce(run_dir)
    assert not (run_dir / "reproduce").exists()
