"""Media inputs found whole are kept in the cache (`checked/`): a rerun in a new process does not decode them again.
Any write to an input has it decoded again, a broken input is never remembered, and a run that may not write to
the cache (a dry run, an invalid project) keeps nothing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from wanbatch import version
from wanbatch.av import files
from wanbatch.cache.checked import CheckedMedia
from wanbatch.cache.store import Cache
from wanbatch.config.load import load_config
from wanbatch.core import media

from conftest import PROJECT, tree, write_project

ASSETS = PROJECT.parent / "assets"


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the inputs decoded (by Pillow or ffmpeg) to prove them whole, in order."""
    names: list[str] = []
    real = media._inspect

    def counting(kind: str, path: Path) -> Any:
        names.append(Path(path).name)
        return real(kind, path)

    monkeypatch.setattr(media, "_inspect", counting)
    return names


def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what this process found and hashed, as the next `wanbatch` process starts without it."""
    monkeypatch.setattr(media, "_memo", {})
    monkeypatch.setattr(files, "_memo", {})


def project(tmp_path: Path, *extra: dict[str, Any]) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    shutil.copy(ASSETS / "day.png", folder / "day.png")
    shutil.copy(ASSETS / "narration.wav", folder / "voice.wav")
    scene = {"id": "hills", "seed": 1, "prompt": "hills", "image": "day.png", "audio": "voice.wav"}
    return write_project(folder, [scene, *extra])


def run(run_cfg: Any, path: Path, cache_dir: Path, *overrides: str) -> int:
    cfg = load_config(path, [f"cache.dir={cache_dir}", "executor.progress=none", *overrides])
    code, _, _ = run_cfg(cfg, root=path.parent)
    return code


def test_a_rerun_decodes_no_input_again(tmp_path, run_cfg, cache_dir, decoded, monkeypatch):
    path = project(tmp_path)
    assert run(run_cfg, path, cache_dir) == 0
    assert sorted(decoded) == ["day.png", "voice.wav"]
    assert len(list((cache_dir / "checked").glob("*.json"))) == 2

    new_process(monkeypatch)
    decoded.clear()
    assert run(run_cfg, path, cache_dir) == 0
    assert decoded == []


def test_an_input_written_to_is_decoded_again_even_with_its_size_and_mtime_kept(
    tmp_path, run_cfg, cache_dir, decoded, monkeypatch, capsys
):
    path = project(tmp_path)
    assert run(run_cfg, path, cache_dir) == 0
    image = path.parent / "day.png"
    st = image.stat()
    data = bytearray(image.read_bytes())
    data[len(data) // 2 :] = b"\xff" * (len(data) - len(data) // 2)  # the same size, its second half garbage
    image.write_bytes(bytes(data))
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p` or an archive would leave it
    assert (image.stat().st_size, image.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    new_process(monkeypatch)
    decoded.clear()
    capsys.readouterr()
    before = tree(cache_dir / "checked")
    assert run(run_cfg, path, cache_dir) == 2
    err = capsys.readouterr().err
    assert decoded == ["day.png"]  # the audio is unchanged: not decoded again
    assert "scene `hills`: `image` = 'day.png' is not allowed" in err and "not whole" in err
    assert tree(cache_dir / "checked") == before  # the invalid run kept nothing


def test_a_broken_input_is_never_remembered(tmp_path, run_cfg, cache_dir, decoded, monkeypatch, capsys):
    path = project(tmp_path)
    (path.parent / "voice.wav").write_bytes(b"RIFF\x00\x00")
    assert run(run_cfg, path, cache_dir) == 2
    new_process(monkeypatch)
    assert run(run_cfg, path, cache_dir) == 2
    assert decoded.count("voice.wav") == 2
    assert "`audio` = 'voice.wav' is not allowed" in capsys.readouterr().err
    assert tree(cache_dir) == {}


def test_a_dry_run_keeps_nothing_and_the_run_after_it_keeps_what_it_found(
    tmp_path, run_cfg, cache_dir, decoded, monkeypatch
):
    path = project(tmp_path)
    assert run(run_cfg, path, cache_dir, "dry_run=true") == 0
    assert tree(cache_dir) == {}
    assert run(run_cfg, path, cache_dir) == 0  # same process: nothing decoded again, and now it is kept
    assert sorted(decoded) == ["day.png", "voice.wav"]
    new_process(monkeypatch)
    assert run(run_cfg, path, cache_dir) == 0
    assert sorted(decoded) == ["day.png", "voice.wav"]


def test_a_finding_that_is_not_one_is_ignored(tmp_path):
    checks = CheckedMedia(tmp_path)
    checks.put("identity one", (320, 192, None))
    assert checks.get("identity one") is None  # kept only once flushed
    assert checks.flush() == 1
    assert checks.get("identity one") == (320, 192, None)
    assert checks.get("identity two") is None
    kept = next((tmp_path / "checked").glob("*.json"))
    for text in ("{", '{"identity": "identity one", "found": [1, 2]}', '{"identity": "other", "found": [1, 2, 3]}'):
        kept.write_text(text)
        assert checks.get("identity one") is None


def test_prune_drops_findings_and_timelines_with_what_they_belong_to(tmp_path, run_cfg, cache_dir):
    pytest.importorskip("opentimelineio")
    path = project(tmp_path, {"id": "night", "seed": 2, "prompt": "night"})
    assert run(run_cfg, path, cache_dir) == 0
    assert len(list((cache_dir / "checked").glob("*.json"))) == 2
    assert len(list((cache_dir / "timelines").glob("*.otio"))) == 1
    cache = Cache(cache_dir)
    try:
        cache.prune(older_than_s=3600)  # all of it is younger
        assert len(list((cache_dir / "checked").glob("*.json"))) == 2
        assert len(list((cache_dir / "timelines").glob("*.otio"))) == 1
        cache.prune(everything=True)
    finally:
        cache.close()
    assert list((cache_dir / "checked").glob("*")) == [] and list((cache_dir / "timelines").glob("*")) == []


def test_a_wanbatch_whose_checks_changed_checks_again(tmp_path, run_cfg, cache_dir, decoded, monkeypatch):
    path = project(tmp_path)
    assert run(run_cfg, path, cache_dir) == 0
    new_process(monkeypatch)
    monkeypatch.setattr(media, "source_digest", lambda *modules: "checks of a later wanbatch")
    decoded.clear()
    assert run(run_cfg, path, cache_dir) == 0
    assert sorted(decoded) == ["day.png", "voice.wav"]


def test_the_source_digest_follows_every_edit(tmp_path, monkeypatch):
    module = tmp_path / "checking_code.py"
    module.write_text("LIMIT = 40\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = version.source_digest("checking_code")
    assert version.source_digest("checking_code") == before  # computed once per process
    module.write_text("LIMIT = 30\n")
    monkeypatch.delitem(sys.modules, "checking_code")
    version._source_digest.cache_clear()  # as the next process starts
    assert version.source_digest("checking_code") != before
