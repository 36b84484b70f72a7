"""Putting a file that is already on disk (a cached blob, a cached poster) into a run directory."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


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


__all__ = ["link_or_copy"]
