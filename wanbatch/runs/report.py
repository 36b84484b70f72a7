"""`index.html` in the run directory: the film, then a contact sheet of every scene.

Each scene card has a poster frame (a PNG cut from its clip into `posters/`, or taken from the cache's
`posters/` when the same clip had one cut before), the clip to play inline,
and what made it: prompt, seed, backend, model, cache status, render time and the provider's request
id; a failed scene shows its error instead. A scene with several takes shows them side by side, each
with its seed, the picked one marked, and the overrides that make it permanent. The environment that
made the clips closes the page, collapsed. The page is one self-contained file: inline CSS, no script,
no fonts or anything else from the network, and only relative links, so it works from `file://` and
when the run folder is moved or zipped. Every text from the manifest is HTML-escaped.

Example::

    write_report(run_dir, json.loads((run_dir / "manifest.json").read_text()))   # -> run_dir/index.html
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wanbatch.runs.manifest import Manifest
from wanbatch.runs.page import (
    BASE_CSS,
    badge,
    css_word,
    e,
    environment_section,
    local_file,
    number,
    safe_relative,
    table,
    url,
    when,
    write_page,
)
from wanbatch.runs.posters import EarlyPosters, cut_posters, poster_name
from wanbatch.secrets import redact

__all__ = ["write_report"]


def write_report(
    run_dir: Path, manifest: Manifest, *, poster_cache: Path | None = None, early: EarlyPosters | None = None
) -> Path:
    """Write `run_dir/index.html` (and `run_dir/posters/*.png`) for `manifest`; return the page's path.
    With `poster_cache` (the cache's `posters/`), a clip whose poster was cut before gets that one; with
    `early`, a clip whose poster was cut while the run rendered (see wanbatch.runs.posters) gets that one.
    A manifest read back from disk may be from another version or edited: every field is checked as read."""
    run_dir = Path(run_dir)
    scenes: list[Mapping[str, Any]] = [s for s in manifest.get("scenes") or [] if isinstance(s, Mapping)]
    film = local_file(run_dir, manifest.get("film"))

    # 1. Posters, cut in parallel (one ffmpeg each): the film's, then each clip's (each take's)
    jobs: dict[str, tuple[Path, float | None, Any]] = {}
    if film:
        stitch = manifest.get("stitch") if isinstance(manifest.get("stitch"), Mapping) else {}
        # not at 0 s: the film may fade in
        jobs["film"] = (run_dir / film, number((stitch or {}).get("duration")), (stitch or {}).get("cache_key"))
    clips = [local_file(run_dir, s.get("clip")) for s in scenes]  # only clips that are there are shown
    for i, (s, clip) in enumerate(zip(scenes, clips, strict=True)):
        if clip:
            jobs[poster_name(i, s)] = (run_dir / clip, number(s.get("duration")), s.get("cache_key"))
        for take in _takes(s):
            take_clip = local_file(run_dir, take.get("clip"))
            if take_clip:
                name = poster_name(i, s, take.get("take"))
                jobs[name] = (run_dir / take_clip, number(s.get("duration")), take.get("cache_key"))
    posters = cut_posters(run_dir, jobs, poster_cache, early)

    # 2. The page
    # The timeline export is linked when the manifest names it or it is already there.
    timeline = manifest.get("timeline") if isinstance(manifest.get("timeline"), str) else None
    timeline = timeline or next((n for n in ("film.otio", "film.edl") if (run_dir / n).is_file()), None)
    page = _page(run_dir, manifest, scenes, clips, film, posters, timeline)
    return write_page(run_dir / "index.html", redact(page))


def _takes(scene: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    takes = scene.get("takes")
    return [t for t in takes if isinstance(t, Mapping)] if isinstance(takes, list) else []


# -- the page ---------------------------------------------------------------------------------------------


def _page(
    run_dir: Path,
    manifest: Mapping[str, Any],
    scenes: list[Mapping[str, Any]],
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
        f"<title>{e(name)} · wanbatch</title>",
        f"<style>{BASE_CSS}{_CSS}</style></head><body>",
        f"<header><h1>{e(name)}</h1><p class=summary>{len(scenes)} scenes: {e(summary)}</p></header>",
        _film_section(manifest, film, posters.get("film"), timeline),
        '<h2>Scenes</h2><main class="sheet">',
    ]
    for i, (s, clip) in enumerate(zip(scenes, clips, strict=True)):
        takes = _takes_strip(run_dir, i, s, posters)
        parts.append(_card(i, s, clip, posters.get(poster_name(i, s)), takes))
    parts.append("</main>")
    parts.append(environment_section(manifest.get("environment")))
    parts.append(f"<footer>made by wanbatch · {e(when(manifest.get('finished')))}</footer></body></html>")
    return "\n".join(parts) + "\n"


def _film_section(manifest: Mapping[str, Any], film: str | None, poster: str | None, timeline: str | None) -> str:
    if not film:
        why = "the film was not made (a scene failed, or stitching is off)"
        if manifest.get("report_error") or manifest.get("stitch_error"):
            why = str(manifest.get("stitch_error") or manifest.get("report_error"))
        return f'<section class="film missing"><p>{e(why)}</p></section>'
    rows = []
    stitch = manifest.get("stitch")
    if isinstance(stitch, Mapping) and stitch:
        for key in ("method", "duration", "seconds", "reason"):
            if stitch.get(key) is not None:
                value = stitch[key]
                if key in ("duration", "seconds"):
                    value = f"{number(value) or 0:.2f} s"
                rows.append((f"stitch {key}" if key != "duration" else "film duration", value))
        partial = stitch.get("partial")
        if isinstance(partial, Mapping):
            how = "a slate stands in for" if partial.get("on_failure") == "slate" else "it leaves out"
            rows.insert(0, ("partial film", f"{how} {', '.join(map(str, partial.get('scenes') or []))} (failed)"))
    links = [f'<a href="{url(film)}" download>{e(film)}</a>']
    for target in (timeline, "manifest.json"):
        if target and safe_relative(target):
            links.append(f'<a href="{url(target)}">{e(target)}</a>')
    poster_attr = f' poster="{url(poster)}"' if poster else ""
    return (
        f'<section class="film"><video id="film" controls preload="metadata" src="{url(film)}"{poster_attr}>'
        f"</video>{table(rows)}<p class=links>{' · '.join(links)}</p></section>"
    )


def _card(index: int, s: Mapping[str, Any], clip: str | None, poster: str | None, takes: str) -> str:
    sid = str(s.get("id") or f"scene {index + 1}")
    status = str(s.get("status") or "unknown")
    if takes:  # the takes side by side stand for the scene's clip
        media = takes
    elif clip:
        poster_attr = f' poster="{url(poster)}"' if poster else ""
        media = f'<video controls preload="metadata" src="{url(clip)}"{poster_attr}></video>'
    elif poster:
        media = f'<img src="{url(poster)}" alt="">'
    else:
        missing = f"clip missing: {s['clip']}" if isinstance(s.get("clip"), str) and s.get("clip") else "no clip"
        media = f'<div class="nomedia">{e(missing)}</div>'
    cache = _CACHE_WORDS.get(status, status)
    given = s.get("transition")
    transition = None
    if isinstance(given, Mapping) and given.get("type") not in (None, "cut"):
        transition = f"{given.get('type')} {number(given.get('duration')) or 0:g} s"
    elif given is not None and not isinstance(given, Mapping):
        transition = given
    seconds = number(s.get("seconds"))
    duration = number(s.get("duration"))
    picked = f"take {s.get('take')} of {len(_takes(s))}" if takes else None
    rows = [
        ("in the film", picked),
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
    title = f'<p class="scene-title">{e(s["title"])}</p>' if s.get("title") else ""
    prompt = s.get("prompt")
    prompt_html = f'<p class="prompt">{e(prompt)}</p>' if prompt else '<p class="prompt none">no prompt</p>'
    error = f'<pre class="error">{e(s["error"])}</pre>' if s.get("error") else ""
    wide = " has-takes" if takes else ""
    return (
        f'<article class="scene {e(css_word(status))}{wide}" id="scene-{index + 1}" data-scene="{e(sid)}" '
        f'data-status="{e(status)}"><div class="media">{media}</div>'
        f'<div class="meta"><h3>{index + 1:02d} · {e(sid)} {badge(status)}</h3>'
        f"{title}{prompt_html}{error}{table(rows)}</div></article>"
    )


#: The card's "cache" row for a scene that is done; any other status is shown as it is.
_CACHE_WORDS: dict[str, str] = {"cached": "hit (from the cache)", "rendered": "miss (rendered now)"}


def _takes_strip(run_dir: Path, index: int, s: Mapping[str, Any], posters: Mapping[str, str | None]) -> str:
    """A scene's takes side by side: each playable, with its seed, status, the picked one marked, and the
    overrides that make it permanent. Empty for a scene with one take."""
    takes = _takes(s)
    if not takes:
        return ""
    cells = []
    for t in takes:
        k = t.get("take")
        clip = local_file(run_dir, t.get("clip"))
        poster = posters.get(poster_name(index, s, k))
        status = str(t.get("status") or "unknown")
        if clip:
            poster_attr = f' poster="{url(poster)}"' if poster else ""
            media = f'<video controls preload="metadata" src="{url(clip)}"{poster_attr}></video>'
        else:
            media = f'<div class="nomedia">{e(t.get("error") or "no clip")}</div>'
        picked = t.get("picked") is True
        keep = t["keep"] if isinstance(t.get("keep"), Mapping) else {}
        hints = []
        if keep.get("pick") and not picked:
            hints.append(f"<li>put it in the film: <code>{e(keep['pick'])}</code></li>")
        if keep.get("seed"):
            hints.append(f"<li>keep only this take: <code>{e(keep['seed'])}</code></li>")
        mark = '<span class="badge picked">picked</span>' if picked else ""
        cells.append(
            f'<figure class="take{" picked" if picked else ""}" data-take="{e(k)}">{media}<figcaption>'
            f"take {e(k)} · seed {e(t.get('seed'))} {badge(status)} {mark}"
            f"<ul>{''.join(hints)}</ul></figcaption></figure>"
        )
    return f'<div class="takes">{"".join(cells)}</div>'


_CSS = """
.film video { max-width: 960px; border-radius: 6px; }
.film.missing { padding: 16px; border: 1px dashed var(--line); border-radius: 6px; color: var(--dim); }
.sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
.scene { background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
.scene.failed { border-color: var(--bad); }
.scene.has-takes { grid-column: 1 / -1; }
.nomedia { aspect-ratio: 16 / 9; display: grid; place-items: center; color: var(--dim); background: #000; }
.takes { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 8px; padding: 8px; }
.take { margin: 0; border: 2px solid transparent; border-radius: 6px; overflow: hidden; }
.take.picked { border-color: var(--pick); }
.take figcaption { padding: 6px 8px; font-size: 12px; }
.take ul { margin: 4px 0 0; padding-left: 16px; color: var(--dim); }
.meta { padding: 10px 14px 14px; }
.meta h3 { margin: 0 0 6px; font-size: 15px; }
.scene-title { margin: 0 0 4px; font-weight: 600; }
.prompt { margin: 0 0 8px; white-space: pre-wrap; }
.prompt.none { color: var(--dim); font-style: italic; }
.error { margin: 0 0 8px; padding: 8px; white-space: pre-wrap; word-break: break-word; color: #ffd7d7;
         background: #3a1414; border-radius: 4px; font-size: 12px; }
"""
