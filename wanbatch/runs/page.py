"""What the HTML pages wanbatch writes share (the run report, the comparison page): escaping, relative
links, small formatting helpers and the base style. Every page is one self-contained file: inline CSS, no
script, nothing from the network, only relative links."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote


def e(value: Any) -> str:
    """HTML-escaped text (quotes too: it goes into attributes as well)."""
    return html.escape(str(value), quote=True)


def safe_relative(path: str) -> bool:
    """Only paths inside the run folder are linked: no scheme, no absolute path, no `..`."""
    p = Path(path)
    return bool(path) and ":" not in path and not path.startswith(("/", "\\")) and ".." not in p.parts


def local_file(run_dir: Path, value: Any) -> str | None:
    """`value` if it names a file inside `run_dir` (relative, no `..`) that is there; else None."""
    if isinstance(value, str) and safe_relative(value) and (run_dir / value).is_file():
        return value
    return None


def url(rel: str) -> str:
    """A relative path as an attribute value."""
    return e(quote(Path(rel).as_posix()))


def relative(target: Path, page_dir: Path) -> str:
    """`target` relative to the folder of the page that links it (`..` where it lies outside)."""
    return Path(os.path.relpath(target, page_dir)).as_posix()


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def css_word(value: str) -> str:
    return "".join(c for c in value if c.isalnum() or c == "-") or "unknown"


def badge(status: Any) -> str:
    """A status (rendered, cached, failed, ...) as a coloured badge."""
    return f'<span class="badge {e(css_word(str(status)))}">{e(status)}</span>'


def table(rows: list[tuple[str, Any]]) -> str:
    """A definition list of the rows whose value is set."""
    cells = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows if v is not None and v != "")
    return f"<dl>{cells}</dl>" if cells else ""


def environment_section(env: Any) -> str:
    """The manifest's `environment`, collapsed: what made the clips (versions, devices, models, git)."""
    if not isinstance(env, Mapping) or not env:
        return ""
    from wanbatch.runs.environment import flatten

    rows = list(flatten(env).items())
    return f'<details class="environment"><summary>Environment</summary>{table(rows)}</details>'


def when(timestamp: Any) -> str:
    import datetime as dt

    t = number(timestamp)
    return "" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def write_page(path: Path, text: str) -> Path:
    """Write a page atomically: a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


BASE_CSS = """
:root { color-scheme: dark; --bg: #0f1218; --card: #181d26; --line: #2a3140; --text: #e8eaee; --dim: #98a2b3;
        --ok: #3fb27f; --hit: #4f8cff; --bad: #ff5d5d; --pick: #f5b942; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; background: var(--bg); color: var(--text);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header h1 { margin: 0 0 4px; font-size: 24px; }
.summary, footer { color: var(--dim); }
footer { margin-top: 32px; font-size: 12px; }
h2 { font-size: 18px; margin: 28px 0 12px; }
a { color: var(--hit); }
.badge { font-size: 11px; padding: 1px 7px; border-radius: 10px; background: var(--line); vertical-align: middle; }
.badge.rendered { background: var(--ok); color: #04120b; }
.badge.cached { background: var(--hit); color: #020a1c; }
.badge.failed { background: var(--bad); color: #1c0202; }
.badge.picked { background: var(--pick); color: #1c1402; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; font-size: 12px; }
dt { color: var(--dim); }
dd { margin: 0; word-break: break-all; }
code { font-size: 12px; background: #0b0e13; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
video, img.poster { width: 100%; display: block; background: #000; aspect-ratio: 16 / 9; object-fit: contain; }
.environment { margin-top: 28px; padding: 10px 14px; border: 1px solid var(--line); border-radius: 6px; }
.environment summary { cursor: pointer; color: var(--dim); }
.environment dl { margin-top: 8px; }
"""
