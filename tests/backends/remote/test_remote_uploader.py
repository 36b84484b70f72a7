"""The fsspec uploader: content-addressed names, one upload per file, clear issues for bad targets."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import fsspec
import pytest
from PIL import Image

from wanbatch.av.files import sha256_file
from wanbatch.backends.remote.uploader import Uploader
from wanbatch.config.backends import RemoteConfig
from wanbatch.config.load import backend_config
from wanbatch.errors import ConfigError


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "Frame One.PNG"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path, format="PNG")
    return path


def make(cfg: dict[str, Any]) -> tuple[Uploader | None, list[Any]]:
    """The uploader a backend's `uploader` option makes, through the schema as a composed config is."""
    issues: list[Any] = []
    config = backend_config("gmi_wan27_i2v", {"uploader": cfg})
    assert isinstance(config, RemoteConfig)
    return Uploader.from_config(config.uploader, issues), issues


def test_a_local_folder_served_at_a_url(image: Path, tmp_path: Path) -> None:
    served = tmp_path / "www" / "x"
    up, issues = make({"target": f"file://{served}", "public_url": "http://127.0.0.1:8000/x/"})
    assert issues == [] and up is not None
    url = up.upload(image)
    digest = sha256_file(image)
    assert url == f"http://127.0.0.1:8000/x/{digest}.png"  # named by content, not by path
    assert (served / f"{digest}.png").read_bytes() == image.read_bytes()
    assert [p.name for p in served.iterdir()] == [f"{digest}.png"]  # no staging file left behind


def test_a_file_is_uploaded_once(image: Path) -> None:
    up, _ = make({"target": "memory://wanbatch-once", "public_url": "https://cdn.example/o"})
    assert up is not None
    fs = fsspec.filesystem("memory")
    first = up.upload(image)
    dest = f"/wanbatch-once/{first.rsplit('/', 1)[1]}"
    stamp = fs.info(dest)["created"]
    assert up.upload(image, sha256_file(image)) == first
    assert fs.info(dest)["created"] == stamp


def test_different_files_upload_at_once_the_same_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    real_put = MemoryFileSystem.put_file
    puts: list[str] = []
    errors: list[BaseException] = []
    # Each of the three files waits at the bucket until all three are there: uploads one after another
    # never meet (the first waits its minute out, then the test fails).
    all_three = threading.Barrier(3, timeout=60)

    def meeting_put(self: Any, lpath: str, rpath: str, **kw: Any) -> None:
        puts.append(Path(lpath).name)
        try:
            all_three.wait()
        except threading.BrokenBarrierError as exc:
            errors.append(exc)
        real_put(self, lpath, rpath, **kw)

    monkeypatch.setattr(MemoryFileSystem, "put_file", meeting_put)
    up, _ = make({"target": "memory://wanbatch-parallel", "public_url": "https://cdn.example/p"})
    assert up is not None
    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}.png")
        Image.new("RGB", (8, 8), (i, 0, 0)).save(files[-1], format="PNG")
    work = [*files, files[0]]  # the first file twice: uploaded once
    threads = [threading.Thread(target=up.upload, args=(f,)) for f in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []  # the three were at the bucket side by side, not one after another
    assert sorted(puts) == ["f0.png", "f1.png", "f2.png"]


@pytest.mark.parametrize(
    ("cfg", "fields"),
    [
        ({"target": "memory://b", "public_url": "ftp://b"}, {"backend.uploader.public_url"}),
        ({"target": "", "public_url": "https://x"}, {"backend.uploader.target"}),
        ({"target": "nosuchproto://x", "public_url": "https://x"}, {"backend.uploader.target"}),
        ({"target": "", "public_url": "ftp://b"}, {"backend.uploader.target", "backend.uploader.public_url"}),
    ],
)
def test_bad_configs_are_issues(cfg: Any, fields: set[str]) -> None:
    up, issues = make(cfg)
    assert up is None and {i.field for i in issues} == fields


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ("s3://bucket", "uploader"),
        ({"target": "memory://b"}, "uploader.public_url"),
        ({"target": "memory://x", "public_url": "https://x", "bucket": "b"}, "uploader.bucket"),
        ({"target": "memory://x", "public_url": "https://x", "storage_options": [1]}, "uploader.storage_options"),
    ],
)
def test_a_mistyped_or_unknown_uploader_key_is_the_schemas_to_name(cfg: Any, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make(cfg)
    assert [i.field for i in err.value.issues] == [f"backends.gmi_wan27_i2v.{field}"]


def test_null_means_no_uploader() -> None:
    assert make(None) == (None, [])


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed here")
def test_s3_without_s3fs_names_the_package_to_install() -> None:
    _, issues = make({"target": "s3://bucket/prefix", "public_url": "https://bucket.s3.amazonaws.com/prefix"})
    (issue,) = issues
    assert issue.field == "backend.uploader.target" and "s3fs" in issue.allowed
