"""A small JSON file beside each blob, one per cache key that points at the blob (almost always one):
`blobs/ab/<sha256>.<key>.json` holds the key's whole index entry (key, backend, model, scene, seed, created,
bytes, provider request id, the material) and the material's own hash.

The index can always be rebuilt from these (`index.py`), so losing the index never means rendering (or paying
for) a clip that is on disk. A sidecar is written before its blob is renamed into place and removed with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

VERSION = 1
SUFFIX = ".json"
BACKFILLED = ".sidecars-v1"  # in blobs/: every entry of the index has had its sidecar written once


def material_sha256(material: Mapping[str, Any]) -> str:
    doc = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


def path_of(blob: Path, key: str) -> Path:
    return blob.with_name(f"{blob.stem}.{key}{SUFFIX}")


def write(blob: Path, entry: Mapping[str, Any]) -> Path:
    """Write (atomically) the sidecar of `entry` beside `blob`."""
    path = path_of(blob, str(entry["key"]))
    doc = {"sidecar": VERSION, **dict(entry), "material_sha256": material_sha256(entry.get("material") or {})}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def read(path: Path) -> dict[str, Any] | None:
    """The entry a sidecar holds, or None if it is unreadable or its material does not match its hash."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("sidecar") != VERSION or not isinstance(doc.get("key"), str):
        return None
    if doc.pop("material_sha256", None) != material_sha256(doc.get("material") or {}):
        return None
    doc.pop("sidecar")
    return doc


def of_blob(blob: Path) -> list[Path]:
    """The sidecars of one blob (one per key that points at it)."""
    return sorted(blob.parent.glob(f"{blob.stem}.*{SUFFIX}"))


def blob_of(path: Path) -> Path:
    return path.with_name(path.name.split(".", 1)[0] + ".mp4")


def any_exist(cache_dir: Path) -> bool:
    return next((cache_dir / "blobs").glob(f"*/*{SUFFIX}"), None) is not None


def entries(cache_dir: Path, *, verify_size: bool) -> Iterator[dict[str, Any]]:
    """Every readable sidecar's entry whose blob is on disk (at the recorded size, with `verify_size`)."""
    for path in sorted((cache_dir / "blobs").glob(f"*/*{SUFFIX}")):
        if path.name.startswith("."):
            continue
        entry = read(path)
        if entry is None:
            continue
        blob = blob_of(path)
        try:
            size = blob.stat().st_size
        except OSError:
            continue
        if verify_size and size != entry.get("size"):
            continue
        yield entry
