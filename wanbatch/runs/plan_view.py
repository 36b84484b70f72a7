"""The plan as a dry run shows it, at any size.

Up to `TABLE_MAX` scenes: a table of every scene (scene, backend, model, seed, seconds of video, est. cost,
cached or why it missed). Beyond: what a person can read, a summary per backend and cache state (scenes,
seconds of video, estimated cost) with the first rows of each group; the whole plan goes to a file on request
(`plan_out=plan.jsonl`, one JSON object per scene), never as thousands of table rows. Notes (decisions the user
did not spell out) are printed up to `NOTES_MAX`, then counted; the plan file has every one. Example::

    rows = plan_rows(plan, cache)
    show(rows, plan.project.name, console)     # the table, or the summary
    write_plan(Path("plan.jsonl"), rows)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wanbatch.core.plan import Plan

TABLE_MAX = 50  # beyond this many scenes, a summary instead of a table
FIRST_ROWS = 3  # rows shown under each group of the summary
NOTES_MAX = 10  # notes printed; the rest are counted (and written to the plan file)


@dataclass
class PlanRow:
    scene: str
    backend: str
    model: str
    seed: int
    random_seed: bool
    seconds: float
    cost: float | None  # estimated USD this run spends on it (0 when cached); None when its price is unknown
    cache: str  # "cached", or why it missed ("new: ...", "changed: params.seed", ...)
    key: str
    notes: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """The cache state in one word: cached, new, changed or repair."""
        if self.cache == "cached":
            return "cached"
        if self.cache.startswith("accepted by the provider"):
            return "re-attach"  # paid already: the run fetches it
        if self.cache.startswith("an earlier submit was ambiguous"):
            return "ambiguous"  # not sent again unless resubmit_ambiguous names it
        head = self.cache.split(":", 1)[0]
        return {"blob missing or corrupt": "repair"}.get(head, head)

    def cells(self) -> tuple[str, ...]:
        seed = f"{self.seed}{' (random)' if self.random_seed else ''}"
        cost = "unknown" if self.cost is None else f"${self.cost:.2f}"
        return (self.scene, self.backend, self.model, seed, f"{self.seconds:.2f}", cost, self.cache)


def plan_rows(plan: Plan, state_of: Callable[[Any], str], cost_of: Callable[[Any], float | None]) -> list[PlanRow]:
    """A row per job: `state_of(job)` says "cached" or why it missed, `cost_of(job)` its estimated cost."""
    rows = []
    for job in plan.jobs:
        notes = plan.backends[job.backend].notes(job.scene, job.params)
        rows.append(
            PlanRow(
                job.id,
                job.backend,
                job.model,
                job.scene.seed,
                job.seed_was_random,
                job.seconds,
                cost_of(job),
                state_of(job),
                job.key,
                list(notes),
            )
        )
    return rows


def show(
    rows: Sequence[PlanRow],
    title: str,
    out: Any,
    *,
    table: bool = True,
    written: bool = False,
    cached_notes: bool = True,
) -> None:
    """Print the plan (the table, or the summary beyond TABLE_MAX scenes) and its notes to the file `out`;
    `written`: the whole plan is in a file already (so the summary does not suggest one); `cached_notes`: the
    notes of cached scenes too (a real run tells only those about to render)."""
    notes = [(r.scene, n) for r in rows if cached_notes or r.cache != "cached" for n in r.notes]
    if not table and not notes:
        return  # a real run with nothing to say: rich is not even imported (~20 ms of a cached rerun)
    from rich.console import Console

    console = Console(file=out, width=max(110, int(os.environ.get("COLUMNS", "0") or 0)), soft_wrap=True)
    if table:
        if len(rows) <= TABLE_MAX:
            _table(console, f"plan for {title}", rows)
        else:
            _summary(console, title, rows, written)
    for scene, note in notes[:NOTES_MAX]:  # decisions the user did not spell out: never silent
        console.print(f"note: scene `{scene}`: {note}", highlight=False)
    if len(notes) > NOTES_MAX:
        console.print(
            f"note: {len(notes) - NOTES_MAX} more notes like these (every one is in the plan file: plan_out=PATH)",
            highlight=False,
        )


def _table(console: Any, title: str, rows: Sequence[PlanRow]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("scene", "backend", "model", "seed", "video s", "est. cost", "cache"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row.cells())
    console.print(table)


def _summary(console: Any, title: str, rows: Sequence[PlanRow], written: bool) -> None:
    from rich.table import Table

    groups: dict[tuple[str, str], list[PlanRow]] = {}
    for row in rows:
        groups.setdefault((row.backend, row.state), []).append(row)
    table = Table(title=f"plan for {title}: {len(rows)} scenes by backend and cache state")
    for col in ("backend", "cache", "scenes", "video s", "est. cost"):
        table.add_column(col, overflow="fold")
    for (backend, state), members in sorted(groups.items()):
        cost = _cost([r.cost for r in members])  # cached (and re-attached) scenes cost this run nothing
        table.add_row(backend, state, str(len(members)), f"{sum(r.seconds for r in members):.1f}", cost)
    console.print(table)
    for (backend, state), members in sorted(groups.items()):
        more = len(members) - FIRST_ROWS
        _table(
            console,
            f"{backend}, {state}: first {min(FIRST_ROWS, len(members))} of {len(members)}",
            members[:FIRST_ROWS],
        )
        if more > 0:
            console.print(f"... and {more} more", highlight=False)
    if not written:
        console.print("the whole plan, a JSON line per scene: add plan_out=plan.jsonl", highlight=False)


def _cost(costs: Sequence[float | None]) -> str:
    known = [c for c in costs if c is not None]
    if not known:
        return "unknown" if costs else ""
    text = f"${sum(known):.2f}"
    return text if len(known) == len(costs) else f"{text} + unknown for {len(costs) - len(known)}"


def write_plan(path: Path, rows: Sequence[PlanRow]) -> None:
    """Every row, one JSON object a line, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    with open(part, "w", encoding="utf-8") as f:
        for r in rows:
            doc = {
                "scene": r.scene,
                "backend": r.backend,
                "model": r.model,
                "seed": r.seed,
                "random_seed": r.random_seed,
                "video_s": r.seconds,
                "cost": r.cost,
                "cache": r.state,
                "why": r.cache,
                "key": r.key,
            }
            if r.notes:
                doc["notes"] = r.notes
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    os.replace(part, path)


__all__ = ["FIRST_ROWS", "NOTES_MAX", "TABLE_MAX", "PlanRow", "plan_rows", "show", "write_plan"]
