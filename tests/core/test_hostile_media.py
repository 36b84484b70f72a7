"""Inputs that used to pass validation and fail later (after a remote backend had sent them): a truncated
image or WAV, an image too large to decode, a URL for a backend that cannot fetch one, a size or length no
backend should attempt. Each is now an issue at plan time: exit 2, nothing sent, nothing written."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from wanbatch.config.load import load_config
from wanbatch.errors import ConfigError

import remote_fixtures as rf
from conftest import tree, write_project
from remote_fixtures import *  # noqa: F403 - fixtures


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height and holds a few bytes of pixels: what a decompression bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def cut(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def noisy(path: Path, fmt: str = "PNG") -> Path:
    pixels = np.random.default_rng(1).integers(0, 255, (192, 320, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, fmt)
    return path


def run(tmp_path: Path, run_cfg: Any, scene: dict[str, Any], *overrides: str) -> tuple[int, Path, Path]:
    project = write_project(tmp_path / "proj", [{"id": "s", "seed": 1, "prompt": "p", **scene}])
    cache_dir = tmp_path / "cache"
    cfg = load_config(project, [f"cache.dir={cache_dir}", "executor.progress=none", *overrides])
    code, run_dir, _ = run_cfg(cfg, root=project.parent)
    return code, run_dir, cache_dir


def refused(tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str], scene: dict[str, Any]) -> str:
    code, run_dir, cache_dir = run(tmp_path, run_cfg, scene)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert tree(cache_dir) == {} and not run_dir.exists()
    return err


def test_a_truncated_png_is_an_issue(tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "proj").mkdir()
    cut(noisy(tmp_path / "proj" / "first.png"))
    err = refused(tmp_path, run_cfg, capsys, {"image": "first.png"})
    assert "scene `s`: `image` = 'first.png' is not allowed" in err and "not whole: it is cut short" in err


def test_a_truncated_jpeg_last_image_is_an_issue(
    tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "proj").mkdir()
    noisy(tmp_path / "proj" / "first.png")
    cut(noisy(tmp_path / "proj" / "last.jpg", "JPEG"))
    err = refused(tmp_path, run_cfg, capsys, {"image": "first.png", "last_image": "last.jpg"})
    assert "scene `s`: `last_image` = 'last.jpg' is not allowed" in err and "not whole" in err


@pytest.mark.parametrize("side", [12000, 30000])
def test_an_image_past_the_pixel_cap_is_refused_before_decoding(
    side: int, tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "proj").mkdir()
    png_header(tmp_path / "proj" / "huge.png", side, side)
    err = refused(tmp_path, run_cfg, capsys, {"image": "huge.png"})
    assert "scene `s`: `image` = 'huge.png' is not allowed" in err and "megapixels" in err


def test_a_truncated_wav_is_an_issue(tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "proj").mkdir()
    cut(rf.write_wav(tmp_path / "proj" / "voice.wav", 2.0))
    err = refused(tmp_path, run_cfg, capsys, {"audio": "voice.wav"})
    assert "scene `s`: `audio` = 'voice.wav' is not allowed" in err and "cut short" in err


def test_a_truncated_soundtrack_is_an_issue(tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(
        tmp_path / "proj",
        [{"id": "s", "seed": 1, "prompt": "p"}],
        project={"name": "x", "soundtrack": "music.wav", "defaults": {"width": 64, "height": 48, "duration": 0.5}},
    )
    cut(rf.write_wav(project.parent / "music.wav", 2.0))
    cfg = load_config(project, [f"cache.dir={tmp_path / 'cache'}", "executor.progress=none"])
    code, run_dir, _ = run_cfg(cfg, root=project.parent)
    err = capsys.readouterr().err
    assert code == 2 and "`audio` = 'music.wav' is not allowed" in err and "cut short" in err
    assert not run_dir.exists()


def test_a_url_on_the_preview_backend_is_an_issue(
    tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(tmp_path, run_cfg, capsys, {"image": "http://127.0.0.1:9/first.png"})
    assert "scene `s`: `image` = 'http://127.0.0.1:9/first.png' is not allowed; a local file" in err
    assert "`preview` backend" in err


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"width": 20000, "height": 48}, "`width` = 20000"),
        ({"width": 64, "height": 20000}, "`height` = 20000"),
        ({"num_frames": 100_000_000, "duration": None}, "`num_frames` = 100000000"),
        ({"duration": 1e6}, "`duration` = 1000000.0"),
        ({"fps": 100_000}, "`fps` = 100000"),
    ],
)
def test_sizes_and_lengths_are_bounded_on_the_preview_backend(
    fields: dict[str, Any], named: str, tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(
        tmp_path / "proj",
        [{"id": "s", "seed": 1, "prompt": "p", **fields}],
        project={"name": "x", "defaults": {"width": 64, "height": 48, "fps": 8}},
    )
    cfg = load_config(project, [f"cache.dir={tmp_path / 'cache'}", "executor.progress=none"])
    code, run_dir, _ = run_cfg(cfg, root=project.parent)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"scene `s`: {named} is not allowed; at most" in err and "`preview` backend" in err
    assert not run_dir.exists()


def test_a_truncated_image_is_never_sent_to_a_provider(remote: rf.Remote, tmp_path: Path) -> None:
    remote.root = tmp_path
    cut(noisy(tmp_path / "first.png"))
    scene = {"id": "s", "backend": "gmi_wan21_i2v", "prompt": "p", "image": "first.png", "seed": 1}
    with pytest.raises(ConfigError, match=r"scene `s`: `image` = 'first\.png' is not allowed.*not whole"):
        remote.plan([scene], default="gmi_wan21_i2v")
    assert remote.fake.stats()["total"].get("submit_attempts", 0) == 0


def test_whole_inputs_still_pass(tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "proj").mkdir()
    noisy(tmp_path / "proj" / "first.png")
    noisy(tmp_path / "proj" / "last.jpg", "JPEG")
    rf.write_wav(tmp_path / "proj" / "voice.wav", 1.0)
    code, run_dir, _ = run(tmp_path, run_cfg, {"image": "first.png", "last_image": "last.jpg", "audio": "voice.wav"})
    assert code == 0, capsys.readouterr().err
    assert (run_dir / "film.mp4").is_file()
