"""A comparison page for several runs: the members of a sweep (`wanbatch -m ...` writes it into the sweep
folder), or any runs (`wanbatch compare RUN_DIR... --out DIR`), e.g. yesterday's and today's.

Columns are the runs, each headed by what it changed (the Hydra overrides it does not share with every
other run, such as `scenes.0.seed=22`), its film on top; rows are the scenes (a scene with several takes
has a row per take). Each cell is a poster that plays its clip, with cached/rendered, render time and seed;
a cell whose clip is the same cache entry as the column before says so instead of repeating it. Links
are relative to the page, so the folder (with the runs it compares) can be copied or served.

Example::

    write_comparison([sweep / "0", sweep / "1", sweep / "2"], sweep)   # -> sweep/index.html
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wanbatch.runs.page import BASE_CSS, badge, e, local_file, number, relative, url, write_page
from wanbatch.runs.posters import cut_posters

__all__ = ["Member", "load_members", "write_comparison"]


@dataclass
class Member:
    """One compared run: its folder, manifest, and the column's heading (what it changed)."""

    run_dir: Path
    manifest: dict[str, Any]
    label: str


@dataclass
class _Cell:
    clip: str | None  # relative to the run folder
    status: str
    cache_key: str | None
    seed: Any
    seconds: float | None
    rendered_in: float | None  # a cached clip: how long its render took when it was made
    error: str | None
    picked: bool | None  # a take: whether the run put it in its film
    duration: float | None


def load_members(run_dirs: Sequence[Path]) -> list[Member]:
    """Read each run's manifest and name its column. Raises ValueError naming a folder that is not a run."""
    manifests = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "manifest.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"`{run_dir}` is not a wanbatch run folder: no readable manifest.json ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("scenes"), list):
            raise ValueError(f"`{run_dir}` is not a wanbatch run folder: its manifest.json has no `scenes`")
        manifests.append(data)
    labels = _labels([Path(d) for d in run_dirs])
    return [Member(Path(d), m, label) for d, m, label in zip(run_dirs, manifests, labels, strict=True)]


def _labels(run_dirs: list[Path]) -> list[str]:
    """What each run changed: its Hydra overrides (`.hydra/overrides.yaml`) that not every run shares, minus
    where each put its outputs; the folder's name where that leaves nothing (or Hydra wrote no overrides)."""
    import yaml

    overrides: list[list[str] | None] = []
    for d in run_dirs:
        try:
            got = yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
        except (OSError, yaml.YAMLError):
            got = None
        # as the user typed them: the `++` wanbatch adds to a scene's or backend's key is not theirs
        got = [str(o)[2:] if str(o).startswith("++") else str(o) for o in got] if isinstance(got, list) else None
        overrides.append([o for o in got if not _is_location(o)] if got is not None else None)
    known = [set(o) for o in overrides if o is not None]
    shared = set.intersection(*known) if len(known) == len(run_dirs) and known else set()
    labels = []
    for d, o in zip(run_dirs, overrides, strict=True):
        own = [x for x in (o or []) if x not in shared] if len(run_dirs) > 1 else []
        labels.append(" ".join(own) if own else d.name)
    return labels


def _is_location(override: str) -> bool:
    # where a run writes or caches does not change what it renders
    return override.lstrip("+~").split("=", 1)[0] in ("hydra.run.dir", "hydra.sweep.dir", "cache.dir")


def write_comparison(
    members: Sequence[Member] | Sequence[Path], out_dir: Path, *, poster_cache: Path | None = None
) -> Path:
    """Write `out_dir/index.html` (and `out_dir/posters/`) comparing the runs; return the page's path.
    `members` are run folders or loaded `Member`s. Posters come from `poster_cache` (default: the cache of
    the first run that names one) where they were cut before."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [m for m in members if isinstance(m, Member)]
    if len(runs) != len(members):
        runs = load_members([Path(str(m)) for m in members])
    if poster_cache is None:
        cache_dir = next((r.manifest.get("cache_dir") for r in runs if r.manifest.get("cache_dir")), None)
        poster_cache = Path(cache_dir) / "posters" if cache_dir else None

    rows = _rows(runs)
    cells = [_cells(r) for r in runs]

    # 1. Which cells show a clip (not the same cache entry as the column before), and their posters
    shown: dict[tuple[int, int], str] = {}  # (column, row) -> poster name
    jobs: dict[str, tuple[Path, float | None, Any]] = {}
    for col, run in enumerate(runs):
        film = local_file(run.run_dir, run.manifest.get("film"))
        if film:
            stitch = run.manifest["stitch"] if isinstance(run.manifest.get("stitch"), Mapping) else {}
            jobs[f"film-{col + 1}"] = (run.run_dir / film, number(stitch.get("duration")), stitch.get("cache_key"))
        for r, key in enumerate(rows):
            cell = cells[col].get(key)
            if cell is None or _same_as_before(cells, col, key) or not local_file(run.run_dir, cell.clip):
                continue
            name = f"{col + 1:02d}-{r + 1:03d}"
            shown[(col, r)] = name
            jobs[name] = (run.run_dir / str(cell.clip), cell.duration, cell.cache_key)
    posters = cut_posters(out_dir, jobs, poster_cache)

    # 2. The page
    head = "".join(f'<th scope="col">{_heading(run, out_dir)}</th>' for run in runs)
    films = "".join(f"<td>{_film_cell(run, col, out_dir, posters)}</td>" for col, run in enumerate(runs))
    body = []
    multi = {sid for sid, take in rows if take > 1}
    for r, key in enumerate(rows):
        sid, take = key
        name = f"{sid} · take {take}" if sid in multi else sid
        tds = []
        for col, run in enumerate(runs):
            cell = cells[col].get(key)
            same = runs[col - 1].label if _same_as_before(cells, col, key) else None
            clip = relative(run.run_dir / str(cell.clip), out_dir) if cell and (col, r) in shown else None
            poster = posters.get(shown[(col, r)]) if (col, r) in shown else None
            tds.append(f"<td>{_cell(cell, same, clip, poster)}</td>")
        body.append(f'<tr data-scene="{e(sid)}" data-take="{take}"><th scope="row">{e(name)}</th>{"".join(tds)}</tr>')
    project = next((str(r.manifest.get("project")) for r in runs if r.manifest.get("project")), "runs")
    page = "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" href="data:,">',
            f"<title>{e(project)}: {len(runs)} runs compared · wanbatch</title>",
            f"<style>{BASE_CSS}{_CSS}</style></head><body>",
            f"<header><h1>{e(project)}</h1><p class=summary>{len(runs)} runs, {len(rows)} rows "
            "(a scene, or one take of it); a cell that repeats the column before says so</p></header>",
            '<div class="scroll"><table class="compare">',
            f'<thead><tr><th scope="col">scene</th>{head}</tr></thead>',
            f'<tbody><tr class="films"><th scope="row">film</th>{films}</tr>',
            *body,
            "</tbody></table></div>",
            "<footer>made by wanbatch compare</footer></body></html>",
        ]
    )
    return write_page(out_dir / "index.html", page + "\n")


# -- what each run holds -----------------------------------------------------------------------------------


def _rows(runs: Sequence[Member]) -> list[tuple[str, int]]:
    """Every (scene id, take) in any run, in the order they first appear; a scene of one take is take 1."""
    seen: dict[tuple[str, int], None] = {}
    for run in runs:
        for key in _cells(run):
            seen.setdefault(key, None)
    return list(seen)


def _cells(run: Member) -> dict[tuple[str, int], _Cell]:
    out: dict[tuple[str, int], _Cell] = {}
    for s in run.manifest.get("scenes") or []:
        if not isinstance(s, Mapping) or s.get("id") is None:
            continue
        sid = str(s["id"])
        duration = number(s.get("duration"))
        takes = [t for t in s.get("takes") or [] if isinstance(t, Mapping)]
        for t in takes or [s]:
            take = int(t.get("take") or 1) if takes else 1
            info = t["info"] if isinstance(t.get("info"), Mapping) else {}
            out[(sid, take)] = _Cell(
                clip=t.get("clip") if isinstance(t.get("clip"), str) else None,
                status=str(t.get("status") or "unknown"),
                cache_key=t.get("cache_key") if isinstance(t.get("cache_key"), str) else None,
                seed=t.get("seed"),
                seconds=number(t.get("seconds")),
                rendered_in=number(info.get("rendered_in")),
                error=t.get("error") if isinstance(t.get("error"), str) else None,
                picked=bool(t.get("picked")) if takes else None,
                duration=duration,
            )
    return out


def _same_as_before(cells: list[dict[tuple[str, int], _Cell]], col: int, key: tuple[str, int]) -> bool:
    """The cell's clip is the cache entry of the same row in the column before."""
    if col == 0:
        return False
    mine, before = cells[col].get(key), cells[col - 1].get(key)
    return bool(mine and before and mine.cache_key and mine.cache_key == before.cache_key and mine.clip)


# -- cells ---------------------------------------------------------------------------------------------------


def _heading(run: Member, out_dir: Path) -> str:
    folder = relative(run.run_dir, out_dir)
    report = run.run_dir / "index.html"
    where = f'<a href="{url(relative(report, out_dir))}">{e(folder)}</a>' if report.is_file() else e(folder)
    return f'<code class="changed">{e(run.label)}</code><br><small>{where}</small>'


def _film_cell(run: Member, col: int, out_dir: Path, posters: Mapping[str, str | None]) -> str:
    film = local_file(run.run_dir, run.manifest.get("film"))
    if not film:
        return '<div class="nomedia">no film</div>'
    return _video(relative(run.run_dir / film, out_dir), posters.get(f"film-{col + 1}"))


def _cell(cell: _Cell | None, same_as: str | None, clip: str | None, poster: str | None) -> str:
    """One scene (or take) of one run: its clip to play, or `same clip as <the column before>`; then its
    status, seed and render time."""
    if cell is None:
        return '<div class="nomedia">not in this run</div>'
    if same_as is not None:
        media = f'<div class="same"><span>same clip as <code>{e(same_as)}</code></span></div>'
    elif clip is not None:
        media = _video(clip, poster)
    else:
        media = f'<div class="nomedia">{e(cell.error or "no clip")}</div>'
    if cell.status == "rendered" and cell.seconds is not None:
        took = f"rendered in {cell.seconds:.2f} s"
    elif cell.status == "cached":
        took = "from the cache" + (f" (rendered in {cell.rendered_in:.2f} s)" if cell.rendered_in is not None else "")
    else:
        took = ""
    picked = ' <span class="badge picked">picked</span>' if cell.picked else ""
    return (
        f'<div class="cell" data-status="{e(cell.status)}">{media}<p>{badge(cell.status)}{picked} seed '
        f"{e(cell.seed)}<br><small>{e(took)}</small></p></div>"
    )


def _video(src: str, poster: str | None) -> str:
    poster_attr = f' poster="{url(poster)}"' if poster else ""
    return f'<video controls preload="metadata" src="{url(src)}"{poster_attr}></video>'


_CSS = """
.scroll { overflow-x: auto; }
table.compare { border-collapse: separate; border-spacing: 8px; }
.compare th { text-align: left; vertical-align: top; font-weight: 600; }
.compare thead th { min-width: 240px; }
.compare tbody th { color: var(--dim); white-space: nowrap; padding-top: 8px; }
.compare td { vertical-align: top; width: 280px; background: var(--card); border: 1px solid var(--line);
              border-radius: 6px; padding: 6px; }
.compare td p { margin: 6px 0 0; font-size: 12px; }
.compare small { color: var(--dim); }
.changed { display: inline-block; margin-bottom: 4px; }
.nomedia, .same { aspect-ratio: 16 / 9; display: grid; place-items: center; text-align: center; color: var(--dim);
                  background: #000; padding: 8px; border-radius: 4px; }
.same { border: 1px dashed var(--line); background: transparent; }
"""
