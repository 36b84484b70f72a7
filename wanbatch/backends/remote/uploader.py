"""Puts a local media file where a provider can fetch it, and says at which URL.

Some providers take media only as URLs (GMI's wan2.7-i2v for every input, AI/ML API for `audio_url`).
A local file given there is a validation error unless the backend has an uploader: any fsspec target
whose files are served at a public URL. Example::

    # conf: backend.uploader = {target: "s3://bucket/wb", public_url: "https://bucket.s3.amazonaws.com/wb"}
    up = Uploader.from_config({"target": "file:///srv/www/x", "public_url": "http://localhost/x"}, issues)
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
from wanbatch.errors import Issue

KEYS = {"target", "public_url", "storage_options"}


@dataclass(frozen=True)
class Uploader:
    target: str  # an fsspec URL: file:///srv/www/x, s3://bucket/prefix, gcs://bucket/prefix, memory://x
    public_url: str  # the http(s) URL at which `target` is served
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any, issues: list[Issue], where: str = "backend.uploader") -> Uploader | None:
        """The uploader a config asks for (None for `null`); problems are appended to `issues`."""
        if cfg is None:
            return None
        allowed = "{target: fsspec URL, public_url: http(s) URL, storage_options: {...}} or null"
        if not isinstance(cfg, Mapping):
            issues.append(Issue(None, where, cfg, allowed))
            return None
        n_before = len(issues)
        for key in sorted(set(cfg) - KEYS):
            issues.append(Issue(None, f"{where}.{key}", cfg[key], f"unknown option; known: {', '.join(sorted(KEYS))}"))
        target, public_url = cfg.get("target"), cfg.get("public_url")
        options = cfg.get("storage_options") or {}
        if not isinstance(target, str) or not target:
            issues.append(Issue(None, f"{where}.target", target, "an fsspec URL such as s3://bucket/prefix"))
        else:
            protocol = target.split("://", 1)[0] if "://" in target else "file"
            try:
                fsspec.get_filesystem_class(protocol)
            except (ImportError, ValueError) as exc:
                issues.append(Issue(None, f"{where}.target", target, f"a target fsspec can open ({exc})"))
        if not isinstance(public_url, str) or not public_url.startswith(("http://", "https://")):
            issues.append(Issue(None, f"{where}.public_url", public_url, "the http(s) URL that serves `target`"))
        if not isinstance(options, Mapping):
            issues.append(Issue(None, f"{where}.storage_options", options, "a mapping passed to fsspec"))
        if len(issues) > n_before:
            return None
        return cls(str(target), str(public_url), dict(options))

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
