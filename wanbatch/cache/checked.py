"""Media inputs found whole by earlier runs on this cache: `checked/<name>.json`, one file per finding.

Proving an input whole decodes it (Pillow for an image, ffmpeg for audio), which cost a fully cached rerun of the
demo ~60 ms of its ~0.55 s. A finding is kept under the file's identity (`wanbatch.core.media.file_identity`:
path, inode, size, modification and change times), so an input that is written to in any way is decoded again.
Only findings of whole files are kept: a broken file is told again on every run.

Read by any run, a dry run too; written only by `flush`, which a run calls once it is valid and its cache open
for writing (an invalid run writes nothing). A finding is only a memo: losing one (pruned, a half-written file,
two processes racing) costs one decode.

Example::

    checks = CheckedMedia(cache_dir)
    project = load_project(cfg, root, configs, checks=checks)   # decodes only what no earlier run checked
    checks.flush()                                               # once the run may write to the cache
"""

from __future__ import annotations

import hashlib
import json
import threading
from functools import partial
from pathlib import Path

from wanbatch.av.files import keep_file
from wanbatch.core.media import Found

FOLDER = "checked"


class CheckedMedia:
    def __init__(self, cache_dir: Path):
        self.dir = Path(cache_dir) / FOLDER
        self._new: dict[str, Found] = {}
        self._lock = threading.Lock()

    def get(self, identity: str) -> Found | None:
        try:
            data = json.loads((self.dir / _name(identity)).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("identity") != identity:
            return None
        found = data.get("found")
        if not (isinstance(found, list) and len(found) == 3 and all(_plain(v) for v in found)):
            return None
        width, height, duration = found
        return width, height, duration

    def put(self, identity: str, found: Found) -> None:
        with self._lock:
            self._new[identity] = found

    def flush(self) -> int:
        """Write what this run found; returns how many. A failure to write is no failure of the run."""
        with self._lock:
            new, self._new = self._new, {}
        written = 0
        for identity, found in new.items():
            path = self.dir / _name(identity)
            if path.exists():  # kept by an earlier run (its name is the identity's hash; what it says follows)
                continue
            text = json.dumps({"identity": identity, "found": list(found)})
            written += keep_file(path, partial(Path.write_text, data=text, encoding="utf-8"))
        return written


def _name(identity: str) -> str:
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:40] + ".json"


def _plain(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


__all__ = ["FOLDER", "CheckedMedia"]
