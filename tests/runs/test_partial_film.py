"""One failed scene still gives a film to watch (`stitch.on_failure`): a slate naming the scene, as long as the
scene, in its place (default), or the film without it, or no film; the manifest, report and last lines say the
film is partial."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wanbatch.av.ffmpeg import probe, read_frames

from conftest import CountingPreview


def _run(compose_demo, run_cfg, *overrides: str, fail: set[str]):
    cfg = compose_demo(*overrides)
    code, run_dir, out = run_cfg(cfg, backends={"preview": CountingPreview(cfg.backend, fail=fail)})
    return code, run_dir, out, json.loads((run_dir / "manifest.json").read_text())


def test_a_slate_stands_in_for_a_failed_scene_for_as_long_as_it_lasts(compose_demo, run_cfg):
    code, run_dir, out, data = _run(compose_demo, run_cfg, fail={"sunrise"})
    assert code == 1  # a scene failed: the exit status says so, the film is still there to watch
    assert data["film"] == "film.mp4"
    code, full_dir, _, full = _run(compose_demo, run_cfg, fail=set())  # the rerun: sunrise alone renders
    assert code == 0 and "partial" not in full["stitch"]
    assert data["stitch"]["partial"] == {"on_failure": "slate", "scenes": ["sunrise"]}
    assert probe(run_dir / "film.mp4").duration == pytest.approx(probe(full_dir / "film.mp4").duration, abs=0.15)
    assert f"film: {run_dir / 'film.mp4'} (partial: slates for sunrise)" in out
    assert (
        "partial film" in (run_dir / "index.html").read_text()
        and "sunrise (failed)" in (run_dir / "index.html").read_text()
    )
    # the slate is in the film where sunrise was (2 s scenes, sunrise second): there, this film differs from the
    # full one; in the title before it, it does not
    slated, real = read_frames(run_dir / "film.mp4"), read_frames(full_dir / "film.mp4")
    per_s = len(real) / probe(full_dir / "film.mp4").duration
    at = round(2.6 * per_s)
    assert np.abs(slated[at].astype(int) - real[at].astype(int)).mean() > 10
    assert np.abs(slated[5].astype(int) - real[5].astype(int)).mean() < 3


def test_skip_joins_without_it_and_none_makes_no_film(compose_demo, run_cfg):
    code, run_dir, _, data = _run(compose_demo, run_cfg, "stitch.on_failure=skip", fail={"title"})
    assert code == 1 and data["stitch"]["partial"] == {"on_failure": "skip", "scenes": ["title"]}
    assert (run_dir / "film.mp4").is_file()
    code, run_dir, _, data = _run(compose_demo, run_cfg, "stitch.on_failure=none", fail={"title"})
    assert code == 1 and data["film"] is None and not (run_dir / "film.mp4").exists()


def test_on_failure_is_checked(compose_demo, run_cfg):
    cfg = compose_demo("stitch.on_failure=slates")
    code, _, _ = run_cfg(cfg)
    assert code == 2
