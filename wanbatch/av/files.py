"""Files on disk: their content hash (memoised, or fresh), and putting a file that is already on disk (a cached blob, a
cached poster) into a run directory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from pathlib import Path

_HASH_CHUNK = 1 << 20
_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, memoised on (realpath, size, mtime_ns) for the life of the process."""
    st = os.stat(path)
    memo_key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _memo_lock:
        hit = _memo.get(memo_key)
    if hit is not None:
        return hit
    digest = sha256_fresh(path)
    with _memo_lock:
        _memo[memo_key] = digest
    return digest


def sha256_fresh(path: str | Path) -> str:
    """sha256 of a file's bytes as they are now, never from the memo: for checking stored files (cache blobs,
    their copies), whose bytes can go bad without their size or mtime changing."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        # readinto a reused buffer: hashing runs at hashlib's speed instead of the allocator's.
        buf = bytearray(_HASH_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link `src` at `dest` (instant, no extra space), replacing what is there; copy across filesystems.
    Editing a linked file in place changes the cached one too, but every cache read verifies the hash, so
    such an entry is a miss and re-rendered, never served corrupt."""
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


__all__ = ["link_or_copy", "sha256_file", "sha256_fresh"]
