"""Scene ids, project names and the file names made from them.

A scene id (and a project name, which names the run's folder) is a name, not a path: letters (any
script), digits, `_`, `-` and `.`, not starting with `.`, at most 64 characters. It is checked at plan
time; still, no file name is ever the raw id: files for a scene (its clip in the run directory, its
poster, its last frame for a chained scene) are named by `file_stem`, a sanitised id cut to a byte
budget, plus the start of the scene's cache key. Example::

    id_problem("act1/shot1")             # -> "letters, digits, `_`, `-` and `.` ..." (a reason), or None
    file_stem("harbour", "3fa9c1d2e4…")  # -> "harbour-3fa9c1d2"
"""

from __future__ import annotations

import re

MAX_ID_CHARS = 64
NAME_RULE = f"letters (any script), digits, `_`, `-` and `.`, not starting with `.`, at most {MAX_ID_CHARS} characters"
ID_RULE = f"a scene id is {NAME_RULE}"
# \w is a letter or digit of any script, or `_` (str.isalnum); nothing that a path or a shell treats specially.
_ID = re.compile(rf"(?!\.)[\w.-]{{1,{MAX_ID_CHARS}}}")
STEM_BYTES = 64  # of the sanitised id in a file name: far under any filesystem's 255, whatever the script
KEY_CHARS = 8
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


def id_problem(value: str, rule: str = ID_RULE) -> str | None:
    """Why `value` is not a scene id (`rule`, with what is wrong), or None if it is one."""
    if _ID.fullmatch(value):
        return None
    if not value:
        return f"{rule} (it is empty)"
    bad = sorted({c for c in value if not (c.isalnum() or c in "_.-")})
    why = []
    if bad:
        why.append("it holds " + ", ".join(repr(c) for c in bad[:5]))
    if value.startswith("."):
        why.append("it starts with `.`")
    if len(value) > MAX_ID_CHARS:
        why.append(f"it has {len(value)} characters")
    return f"{rule} ({'; '.join(why)})"


def sanitise(name: str) -> str:
    """`name` with every character but letters, digits, `_`, `-` and `.` replaced by `_`, no leading dot,
    cut at a character boundary to STEM_BYTES bytes of UTF-8."""
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in name).lstrip(".") or "scene"
    encoded = safe.encode("utf-8")[:STEM_BYTES]
    return encoded.decode("utf-8", "ignore") or "scene"


def file_stem(scene_id: str, key: str | None) -> str:
    """The file name (without suffix) of something made for a scene: its sanitised id and its key's start."""
    stem = sanitise(scene_id)
    tag = "".join(c for c in (key or "") if c.isalnum())[:KEY_CHARS]
    return f"{stem}-{tag}" if tag else stem


def safe_suffix(filename: str) -> str:
    """A file's extension if it is a plain one (`.png`), else nothing."""
    dot = filename.rfind(".")
    suffix = filename[dot:] if dot > 0 else ""
    return suffix if _SUFFIX.fullmatch(suffix) else ""


__all__ = ["ID_RULE", "MAX_ID_CHARS", "NAME_RULE", "file_stem", "id_problem", "safe_suffix", "sanitise"]
