"""manifest.json has exactly the shape its types (`Manifest`, `SceneRecord`) say, key for key and in order."""

from __future__ import annotations

import json
from typing import get_args, get_type_hints

from wanbatch.runs.manifest import Manifest, SceneRecord, SceneStatus, TransitionRecord

from conftest import CountingPreview


def _statuses() -> set[str]:
    return {word for part in get_args(SceneStatus) for word in get_args(part)}


def test_the_manifest_written_is_the_typed_manifest(compose_demo, run_cfg):
    cfg = compose_demo()
    code, run_dir, _ = run_cfg(cfg, backends={"preview": CountingPreview(cfg.backend)})
    assert code == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert list(manifest)[:6] == list(get_type_hints(Manifest))[:6]  # project, scenes, film, counts, ...
    assert Manifest.__required_keys__ <= set(manifest) <= set(get_type_hints(Manifest))
    assert {"stitch", "cache_dir", "repaired", "executor", "report"} <= set(manifest)
    for scene in manifest["scenes"]:
        assert list(scene) == list(get_type_hints(SceneRecord))
        assert list(scene["transition"]) == list(get_type_hints(TransitionRecord))
        assert scene["status"] in _statuses()
    assert set(manifest["counts"]) <= _statuses()


def test_a_failed_run_fits_the_types_too(compose_demo, run_cfg):
    cfg = compose_demo("stitch.enabled=false")
    preview = CountingPreview(cfg.backend, fail={"harbour_voice"})  # and its chained scene with it
    code, run_dir, _ = run_cfg(cfg, backends={"preview": preview})
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert code == 1 and manifest["film"] is None
    assert manifest["counts"]["failed"] == 2
    for scene in manifest["scenes"]:
        assert list(scene) == list(get_type_hints(SceneRecord))
