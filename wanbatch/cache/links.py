"""Where each cached clip was put into a run folder (`cache.dir/links/<key>.txt`: a line per copy, the
blob's sha256 and the path), so that repairing a corrupt blob repairs those copies too.

A run folder's clip is a hard link to its blob: bytes that go bad in one go bad in the other. When a key is
stored again (its blob was found corrupt or missing and the job rendered anew), every recorded copy whose
bytes are no longer those it was given is replaced by a link to the new blob; copies that are intact stay
as they are (their run's film was made from them). Nothing is read on a first store: a key has no record
until a run has linked it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from wanbatch.av.files import link_or_copy, sha256_fresh


def _record(cache_dir: Path, key: str) -> Path:
    return cache_dir / "links" / f"{key}.txt"


def record(cache_dir: Path, key: str, digest: str, path: Path) -> None:
    """Note that `path` holds the clip of `key`, blob `digest`. One short append: atomic among concurrent runs."""
    rec = _record(cache_dir, key)
    rec.parent.mkdir(exist_ok=True)
    line = f"{digest} {path.resolve()}\n".encode()
    fd = os.open(rec, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def relink(cache_dir: Path, key: str, blob: Path, digest: str) -> list[Path]:
    """Replace every recorded copy of `key` whose bytes are not those it was given with a link to `blob`
    (sha256 `digest`); forget copies that are gone. Returns the paths replaced."""
    rec = _record(cache_dir, key)
    try:
        lines = list(dict.fromkeys(line for line in rec.read_text().splitlines() if " " in line))
    except OSError:
        return []
    blob_stat = blob.stat()
    kept: list[str] = []
    replaced: list[Path] = []
    intact: dict[tuple[int, int, str], bool] = {}  # (device, inode, digest): hard links to one inode hash once
    for line in lines:
        given, _, p = line.partition(" ")
        path = Path(p)
        try:
            st = path.stat()
        except OSError:
            continue
        ident = (st.st_dev, st.st_ino, given)
        if ident[:2] != (blob_stat.st_dev, blob_stat.st_ino):
            if ident not in intact:
                intact[ident] = sha256_fresh(path) == given
            if not intact[ident]:
                try:
                    link_or_copy(blob, path)
                except OSError:
                    pass
                else:
                    replaced.append(path)
                    line = f"{digest} {p}"
        kept.append(line)
    if kept != lines:
        tmp = rec.with_name(f".{rec.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, rec)
    return replaced


def forget(cache_dir: Path, key: str) -> None:
    with contextlib.suppress(OSError):
        _record(cache_dir, key).unlink()
