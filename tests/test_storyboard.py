"""The storyboard recipe: every kind of scene, small reproducible assets, and a film composed end to end."""

from __future__ import annotations

import importlib.util
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wanbatch.config.load import RECIPES_DIR, load_config
from wanbatch.config.schema import WanbatchConfig
from wanbatch.film.clips import probe_clips
from wanbatch.runs.run import run_project

STORYBOARD = RECIPES_DIR / "storyboard"
ASSETS = STORYBOARD / "assets"


def storyboard(tmp_path: Path, *overrides: str) -> WanbatchConfig:
    return load_config(
        STORYBOARD / "project.yaml", [f"cache.dir={tmp_path / 'cache'}", "executor.progress=none", *overrides]
    )


def test_it_has_every_kind_of_scene(tmp_path):
    cfg = storyboard(tmp_path)
    scenes = cfg.scenes
    assert len(scenes) >= 6
    has = {
        "text-to-video": any(not s.get("image") and not s.get("chain_from") and not s.get("title") for s in scenes),
        "image-to-video": any(s.get("image") and not s.get("last_image") for s in scenes),
        "first-last-frame": any(s.get("image") and s.get("last_image") for s in scenes),
        "chained": any(s.get("chain_from") for s in scenes),
        "driving audio": any(s.get("audio") for s in scenes),
        "title card": any(s.get("title") for s in scenes),
        "tiny diffusers": {s.get("model") for s in scenes if s.get("backend") == "diffusers"}
        >= {"tiny-t2v", "tiny-i2v"},
    }
    assert all(has.values()), has
    transitions = [s.get("transition") or "cut" for s in scenes[1:]]
    kinds = {t if isinstance(t, str) else t["type"] for t in transitions}
    assert {"cut", "crossfade", "fade"} <= kinds
    assert cfg.project.soundtrack["path"] == "assets/soundtrack.wav"
    assert cfg.backend.name == "preview"


def test_assets_are_small_and_reproducible(tmp_path):
    committed = sorted(p.name for p in ASSETS.iterdir())
    assert committed == [
        "calm.png",
        "harbour.png",
        "hum.wav",
        "keeper.png",
        "soundtrack.wav",
        "storm_first.png",
        "storm_last.png",
    ]
    assert all((ASSETS / n).stat().st_size < 200 * 1024 for n in committed)
    spec = importlib.util.spec_from_file_location("make_assets", STORYBOARD / "make_assets.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in committed:
        if name.endswith(".png"):
            a = np.asarray(Image.open(ASSETS / name), np.int16)
            b = np.asarray(Image.open(tmp_path / name), np.int16)
            assert a.shape == b.shape == (480, 832, 3) and np.abs(a - b).max() <= 1, name
        else:
            with wave.open(str(ASSETS / name)) as wa, wave.open(str(tmp_path / name)) as wb:
                assert wa.getparams() == wb.getparams(), name
                a = np.frombuffer(wa.readframes(wa.getnframes()), "<i2").astype(int)
                b = np.frombuffer(wb.readframes(wb.getnframes()), "<i2").astype(int)
            assert np.abs(a - b).max() <= 1, name


@pytest.mark.slow
def test_it_renders_a_composed_film_with_report_and_timeline(tmp_path):
    # the two tiny-diffusers scenes as animatics too, so this needs no torch
    cfg = storyboard(tmp_path, "scenes.6.backend=preview", "scenes.7.backend=preview")
    run_dir = tmp_path / "run"
    code = run_project(cfg, run_dir, STORYBOARD).exit_code
    assert code == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["film"] == "film.mp4"
    assert manifest["stitch"]["method"] == "compose" and "soundtrack" in manifest["stitch"]["reason"]
    durations = [probe_clips([run_dir / s["clip"]])[0].duration for s in manifest["scenes"]]
    crossfades = sum(
        s["transition"]["duration"] for s in manifest["scenes"][1:] if s["transition"]["type"] == "crossfade"
    )
    film = probe_clips([run_dir / "film.mp4"])[0]
    assert film.duration == pytest.approx(sum(durations) - crossfades, abs=1 / 16)
    assert film.audio is not None
    page = (run_dir / "index.html").read_text()
    assert all(f'data-scene="{s["id"]}"' in page for s in manifest["scenes"])
    assert (run_dir / "film.otio").is_file() or (run_dir / "film.edl").is_file()
