"""Files on disk: their content hash (memoised, or fresh), putting a file that is already on disk (a cached blob, a
cached poster) into a run directory, and keeping a file in a folder that several processes share."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Callable
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


def keep_file(path: Path, write: Callable[[Path], object]) -> bool:
    """`write` the file at a staging name of this process and thread beside `path`, then rename it into place: a
    reader never finds half of it, and two writers never share a staging file. For what a cache keeps only to
    save time (a poster, a timeline, a media finding): where it cannot be written, False and nothing left behind.
    Example: `keep_file(cache / "timelines" / name, lambda p: p.write_text(text, encoding="utf-8"))`."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(staged)
        os.replace(staged, path)
    except OSError:
        with contextlib.suppress(OSError):
            staged.unlink()
        return False
    return True


__all__ = ["keep_file", "link_or_copy", "sha256_file", "sha256_fresh"]
