"""Scenes from a data file: `scenes_file: PATH` in a project, for projects of thousands of scenes.

Three formats, told by the file's suffix; every row is one scene with the fields of a `scenes:` entry:

    .jsonl / .ndjson   one JSON object per line (blank lines are skipped)
    .csv               a header row of scene fields, then one scene per row; an empty cell leaves the field
                       unset; numbers and true/false are read by the field's type; a `transition` or `loras`
                       cell may hold JSON (`{"type": "crossfade", "duration": 0.5}`)
    .yaml / .yml       a YAML list of mappings (read as OmegaConf reads YAML, on libyaml)

Rows go straight to plain dicts (json, csv, libyaml), never through OmegaConf: that is what makes a
100k-scene file cheap. `read_scene_rows` returns each row with its line number, so every problem in it is
reported with the file and line (`scene `s12` (shots.csv line 13): ...`). Example::

    issues: list[Issue] = []
    rows = read_scene_rows(Path("shots.jsonl"), "shots.jsonl", issues)   # [(1, {"id": "a", ...}), ...]
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from wanbatch.config.fastyaml import sequence_items
from wanbatch.errors import Issue

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}
ALLOWED = "a .jsonl, .csv or .yaml file of scenes (relative to the project file) that exists and is readable"

Row = tuple[int, Any]  # (line number in the file, the row as read: a dict for a good row)


def read_scene_rows(path: Path, shown: str, issues: list[Issue]) -> list[Row]:
    """Every row of the scenes file at `path` (`shown` is how the user wrote it), in file order. A file that
    cannot be read at all is one Issue on `scenes_file`; a bad row is one Issue naming its line."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        issues.append(Issue(None, "scenes_file", shown, f"{ALLOWED}; its suffix says which format"))
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(Issue(None, "scenes_file", shown, f"{ALLOWED} (looked at {path}: {exc})"))
        return []
    if kind == "jsonl":
        return _jsonl(text, shown, issues)
    if kind == "csv":
        return _csv(text, shown, issues)
    try:
        return list(sequence_items(text))
    except (yaml.YAMLError, ValueError) as exc:
        issues.append(Issue(None, "scenes_file", shown, f"a YAML list of scenes ({' '.join(str(exc).split())})"))
        return []


def _jsonl(text: str, shown: str, issues: list[Issue]) -> list[Row]:
    rows: list[Row] = []
    loads = json.loads
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, loads(line)))
        except ValueError as exc:
            issues.append(Issue(None, "scenes_file", shown, f"one JSON object per line; line {n}: {exc}"))
    return rows


# -- CSV: every cell is text; each field's type says how to read it --------------------------------------

_INT = re.compile(r"[-+]?\d+$")


def _as_int(cell: str) -> Any:
    return int(cell) if _INT.match(cell) else cell


def _as_float(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell


def _as_bool(cell: str) -> Any:
    return {"true": True, "false": False}.get(cell.lower(), cell)


def _as_json(cell: str) -> Any:
    if cell[:1] in "{[":
        try:
            return json.loads(cell)
        except ValueError:
            return cell
    return cell


_CELL: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(("seed", "width", "height", "num_frames", "fps", "steps"), _as_int),
    **dict.fromkeys(("duration", "guidance_scale", "flow_shift"), _as_float),
    **dict.fromkeys(("prompt_extend", "watermark"), _as_bool),
    **dict.fromkeys(("transition", "loras"), _as_json),
}


def _csv(text: str, shown: str, issues: list[Issue]) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))  # a quoted cell may run over several lines
    header = next(reader, None)
    if not header:
        issues.append(Issue(None, "scenes_file", shown, "a CSV file whose first row names scene fields"))
        return []
    names = [h.strip() for h in header]
    readers = [_CELL.get(name, str) for name in names]
    rows: list[Row] = []
    while True:
        line = reader.line_num + 1  # where the row starts
        cells = next(reader, None)
        if cells is None:
            break
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(names):
            allowed = f"{len(names)} cells a row, as the header; line {line} has {len(cells)}"
            issues.append(Issue(None, "scenes_file", shown, allowed))
            continue
        # a row shorter than the header leaves its last fields unset, as empty cells do
        rows.append((line, {k: conv(c) for k, conv, c in zip(names, readers, cells, strict=False) if c != ""}))
    return rows


__all__ = ["SUFFIXES", "read_scene_rows"]
