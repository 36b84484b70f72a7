"""`index.html` in the run directory: the film, then a contact sheet of every scene.

Each scene card has a poster frame (a PNG cut from its clip into `posters/`, or taken from the cache's
`posters/` when the same clip had one cut before), the clip to play inline,
and what made it: prompt, seed, backend, model, cache status, render time and the provider's request
id; a failed scene shows its error instead. The page is one self-contained file: inline CSS, no script,
no fonts or anything else from the network, and only relative links, so it works from `file://` and
when the run folder is moved or zipped. Every text from the manifest is HTML-escaped.

Example::

    write_report(run_dir, json.loads((run_dir / "manifest.json").read_text()))   # -> run_dir/index.html
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wanbatch.runs.manifest import Manifest, SceneRecord
from wanbatch.runs.posters import EarlyPosters, cut_poster, poster_name

__all__ = ["write_report"]


def write_report(
    run_dir: Path, manifest: Manifest, *, poster_cache: Path | None = None, early: EarlyPosters | None = None
) -> Path:
    """Write `run_dir/index.html` (and `run_dir/posters/*.png`) for `manifest`; return the page's path.
    With `poster_cache` (the cache's `posters/`), a clip whose poster was cut before gets that one; with
    `early`, a clip whose poster was cut while the run rendered (see wanbatch.runs.posters) gets that one.
    A manifest read back from disk may be from another version or edited: every field is checked as read."""
    run_dir = Path(run_dir)
    scenes = [s for s in manifest.get("scenes") or [] if isinstance(s, Mapping)]
    film = _local(run_dir, manifest.get("film"))

    # 1. Posters, cut in parallel (one ffmpeg each): the film's, then each clip's
    jobs: dict[str, tuple[Path, float | None, Any]] = {}
    if film:
        stitch = manifest.get("stitch") if isinstance(manifest.get("stitch"), Mapping) else {}
        # not at 0 s: the film may fade in
        jobs["film"] = (run_dir / film, _number((stitch or {}).get("duration")), (stitch or {}).get("cache_key"))
    clips = [_local(run_dir, s.get("clip")) for s in scenes]  # only clips that are there are shown
    for i, (s, clip) in enumerate(zip(scenes, clips, strict=True)):
        if clip:
            jobs[poster_name(i, s)] = (run_dir / clip, _number(s.get("duration")), s.get("cache_key"))
    posters: dict[str, str | None] = {}
    if jobs:
        (run_dir / "posters").mkdir(exist_ok=True)

        def cut(name: str) -> tuple[str, str | None]:
            video, duration, key = jobs[name]
            return name, cut_poster(run_dir, name, video, duration, key, poster_cache)

        # Those cut while the run rendered are done, or nearly: cut the others (the film's) meanwhile.
        todo = [n for n in jobs if early is None or not early.has(n, jobs[n][0])]
        with ThreadPoolExecutor(max_workers=min(4, max(1, len(todo)))) as pool:
            cutting = pool.map(cut, todo)
            for name in jobs:
                if early is not None and name not in todo:
                    got = early.get(name, jobs[name][0])
                    posters[name] = cut(name)[1] if got is ... else got
            posters.update(cutting)

    # 2. The page
    # The timeline export is linked when the manifest names it or it is already there.
    timeline = manifest.get("timeline") if isinstance(manifest.get("timeline"), str) else None
    timeline = timeline or next((n for n in ("film.otio", "film.edl") if (run_dir / n).is_file()), None)
    page = _page(manifest, scenes, clips, film, posters, timeline)
    out = run_dir / "index.html"
    tmp = run_dir / ".index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _page(
    manifest: Manifest,
    scenes: list[SceneRecord],
    clips: list[str | None],
    film: str | None,
    posters: Mapping[str, str | None],
    timeline: str | None,
) -> str:
    name = str(manifest.get("project") or "wanbatch run")
    counts: dict[str, int] = {}
    for s in scenes:
        status = str(s.get("status") or "unknown")
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no favicon request
        f"<title>{_e(name)} · wanbatch</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(name)}</h1><p class=summary>{len(scenes)} scenes: {_e(summary)}</p></header>",
        _film_section(manifest, film, posters.get("film"), timeline),
        '<h2>Scenes</h2><main class="sheet">',
    ]
    for i, (s, clip) in enumerate(zip(scenes, clips, strict=True)):
        parts.append(_card(i, s, clip, posters.get(poster_name(i, s))))
    parts.append("</main>")
    parts.append(f"<footer>made by wanbatch · {_e(_when(manifest))}</footer></body></html>")
    return "\n".join(parts) + "\n"


def _film_section(manifest: Manifest, film: str | None, poster: str | None, timeline: str | None) -> str:
    if not film:
        why = "the film was not made (a scene failed, or stitching is off)"
        if manifest.get("report_error") or manifest.get("stitch_error"):
            why = str(manifest.get("stitch_error") or manifest.get("report_error"))
        return f'<section class="film missing"><p>{_e(why)}</p></section>'
    rows = []
    stitch = manifest.get("stitch")
    if isinstance(stitch, Mapping) and stitch:
        for key in ("method", "duration", "seconds", "reason"):
            if stitch.get(key) is not None:
                value = stitch[key]
                if key in ("duration", "seconds"):
                    value = f"{_number(value) or 0:.2f} s"
                rows.append((f"stitch {key}" if key != "duration" else "film duration", value))
    links = [f'<a href="{_url(film)}" download>{_e(film)}</a>']
    for target in (timeline, "manifest.json"):
        if target and _safe_relative(target):
            links.append(f'<a href="{_url(target)}">{_e(target)}</a>')
    poster_attr = f' poster="{_url(poster)}"' if poster else ""
    return (
        f'<section class="film"><video id="film" controls preload="metadata" src="{_url(film)}"{poster_attr}>'
        f"</video>{_table(rows)}<p class=links>{' · '.join(links)}</p></section>"
    )


def _card(index: int, s: SceneRecord, clip: str | None, poster: str | None) -> str:
    sid = str(s.get("id") or f"scene {index + 1}")
    status = str(s.get("status") or "unknown")
    if clip:
        poster_attr = f' poster="{_url(poster)}"' if poster else ""
        media = f'<video controls preload="metadata" src="{_url(clip)}"{poster_attr}></video>'
    elif poster:
        media = f'<img src="{_url(poster)}" alt="">'
    else:
        missing = f"clip missing: {s['clip']}" if isinstance(s.get("clip"), str) and s.get("clip") else "no clip"
        media = f'<div class="nomedia">{_e(missing)}</div>'
    cache = _CACHE_WORDS.get(status, status)
    given = s.get("transition")
    transition = None
    if isinstance(given, Mapping) and given.get("type") not in (None, "cut"):
        transition = f"{given.get('type')} {_number(given.get('duration')) or 0:g} s"
    elif given is not None and not isinstance(given, Mapping):
        transition = given
    seconds = _number(s.get("seconds"))
    duration = _number(s.get("duration"))
    rows = [
        ("seed", s.get("seed")),
        ("backend", s.get("backend")),
        ("model", s.get("model")),
        ("cache", cache),
        ("render time", f"{seconds:.2f} s" if seconds is not None else None),
        ("duration", f"{duration:g} s" if duration is not None else None),
        ("request id", s.get("request_id")),
        ("chained from", s.get("chain_from")),
        ("transition in", transition),
        ("cache key", s.get("cache_key")),
        ("clip", clip),
    ]
    title = f'<p class="scene-title">{_e(s["title"])}</p>' if s.get("title") else ""
    prompt = s.get("prompt")
    prompt_html = f'<p class="prompt">{_e(prompt)}</p>' if prompt else '<p class="prompt none">no prompt</p>'
    error = f'<pre class="error">{_e(s["error"])}</pre>' if s.get("error") else ""
    return (
        f'<article class="scene {_e(_css_word(status))}" id="scene-{index + 1}" data-scene="{_e(sid)}" '
        f'data-status="{_e(status)}"><div class="media">{media}</div>'
        f'<div class="meta"><h3>{index + 1:02d} · {_e(sid)} <span class="badge">{_e(status)}</span></h3>'
        f"{title}{prompt_html}{error}{_table(rows)}</div></article>"
    )


#: The card's "cache" row for a scene that is done; any other status is shown as it is.
_CACHE_WORDS: dict[str, str] = {"cached": "hit (from the cache)", "rendered": "miss (rendered now)"}


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows if v is not None and v != "")
    return f"<dl>{cells}</dl>" if cells else ""


# -- small helpers ---------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _safe_relative(path: str) -> bool:
    """Only paths inside the run folder are linked: no scheme, no absolute path, no `..`."""
    p = Path(path)
    return bool(path) and ":" not in path and not path.startswith(("/", "\\")) and ".." not in p.parts


def _local(run_dir: Path, value: Any) -> str | None:
    if isinstance(value, str) and _safe_relative(value) and (run_dir / value).is_file():
        return value
    return None


def _url(rel: str) -> str:
    return _e(quote(Path(rel).as_posix()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _css_word(value: str) -> str:
    return "".join(c for c in value if c.isalnum() or c == "-") or "unknown"


def _when(manifest: Manifest) -> str:
    import datetime as dt

    finished = _number(manifest.get("finished"))
    if finished is None:
        return ""
    return dt.datetime.fromtimestamp(finished).strftime("%Y-%m-%d %H:%M:%S")


_CSS = """
:root { color-scheme: dark; --bg: #0f1218; --card: #181d26; --line: #2a3140; --text: #e8eaee; --dim: #98a2b3;
        --ok: #3fb27f; --hit: #4f8cff; --bad: #ff5d5d; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; background: var(--bg); color: var(--text);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header h1 { margin: 0 0 4px; font-size: 24px; }
.summary, footer { color: var(--dim); }
footer { margin-top: 32px; font-size: 12px; }
h2 { font-size: 18px; margin: 28px 0 12px; }
.film video { width: 100%; max-width: 960px; display: block; background: #000; border-radius: 6px; }
.film.missing { padding: 16px; border: 1px dashed var(--line); border-radius: 6px; color: var(--dim); }
.links a { color: var(--hit); }
.sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
.scene { background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
.scene.failed { border-color: var(--bad); }
.media video, .media img { width: 100%; display: block; background: #000; aspect-ratio: 16 / 9; object-fit: contain; }
.nomedia { aspect-ratio: 16 / 9; display: grid; place-items: center; color: var(--dim); background: #000; }
.meta { padding: 10px 14px 14px; }
.meta h3 { margin: 0 0 6px; font-size: 15px; }
.badge { font-size: 11px; padding: 1px 7px; border-radius: 10px; background: var(--line); vertical-align: middle; }
.rendered .badge { background: var(--ok); color: #04120b; }
.cached .badge { background: var(--hit); color: #020a1c; }
.failed .badge { background: var(--bad); color: #1c0202; }
.scene-title { margin: 0 0 4px; font-weight: 600; }
.prompt { margin: 0 0 8px; white-space: pre-wrap; }
.prompt.none { color: var(--dim); font-style: italic; }
.error { margin: 0 0 8px; padding: 8px; white-space: pre-wrap; word-break: break-word; color: #ffd7d7;
         background: #3a1414; border-radius: 4px; font-size: 12px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; font-size: 12px; }
dt { color: var(--dim); }
dd { margin: 0; word-break: break-all; }
"""
