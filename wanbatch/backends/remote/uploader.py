"""Puts a local media file where a provider can fetch it, and says at which URL.

Some providers take media only as URLs (GMI's wan2.7-i2v for every input, AI/ML API for `audio_url`).
A local file given there is a validation error unless the backend has an uploader: any fsspec target
whose files are served at a public URL. Example::

    # conf: backend.uploader = {target: "s3://bucket/wb", public_url: "https://bucket.s3.amazonaws.com/wb"}
    up = Uploader.from_config(UploaderConfig(target="file:///srv/www/x", public_url="http://localhost/x"), issues)
    url = up.upload(Path("frame.png"))   # -> "http://localhost/x/<sha256>.png"

Files are named by their content hash, so a file is uploaded once and its URL never changes. S3, GCS or
Azure need only their fsspec package (s3fs, gcsfs, adlfs) and, where needed, `storage_options`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from wanbatch.av.files import sha256_file
from wanbatch.config.backends import UploaderConfig
from wanbatch.config.checks import mapping, text
from wanbatch.errors import Issue


@dataclass(frozen=True)
class Uploader:
    target: str  # an fsspec URL: file:///srv/www/x, s3://bucket/prefix, gcs://bucket/prefix, memory://x
    public_url: str  # the http(s) URL at which `target` is served
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, cfg: UploaderConfig | None, issues: list[Issue], where: str = "backend.uploader"
    ) -> Uploader | None:
        """The uploader a config asks for (None for `null`); problems are appended to `issues`. The keys and
        their types are the schema's (UploaderConfig); this checks that fsspec can open `target` and that
        `public_url` is an http(s) URL."""
        if cfg is None:
            return None
        n_before = len(issues)
        if text(issues, f"{where}.target", cfg.target, allowed="an fsspec URL such as s3://bucket/prefix"):
            protocol = cfg.target.split("://", 1)[0] if "://" in cfg.target else "file"
            try:
                fsspec.get_filesystem_class(protocol)
            except (ImportError, ValueError) as exc:
                issues.append(Issue(None, f"{where}.target", cfg.target, f"a target fsspec can open ({exc})"))
        text(issues, f"{where}.public_url", cfg.public_url, url=True, allowed="the http(s) URL that serves `target`")
        mapping(issues, f"{where}.storage_options", cfg.storage_options, allowed="a mapping passed to fsspec")
        if len(issues) > n_before:
            return None
        return cls(cfg.target, cfg.public_url, dict(cfg.storage_options or {}))

    def upload(self, path: Path, sha256: str | None = None) -> str:
        """Copy `path` to the target (unless already there) and return its public URL."""
        digest = sha256 or sha256_file(path)
        name = f"{digest}{path.suffix.lower()}"
        fs, root = fsspec.core.url_to_fs(self.target, **dict(self.storage_options))
        root = root.rstrip("/")
        dest = f"{root}/{name}"
        with _lock_for(dest):  # two scenes sharing one image upload it once; other files go in parallel
            if not (fs.exists(dest) and fs.size(dest) == path.stat().st_size):
                fs.makedirs(root, exist_ok=True)
                # A half-written file under its final name would be served; write aside, then move.
                staged = f"{root}/.{name}.partial"
                fs.put_file(str(path), staged)
                fs.mv(staged, dest)
        return f"{self.public_url.rstrip('/')}/{name}"


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(dest: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(dest, threading.Lock())


__all__ = ["Uploader"]
