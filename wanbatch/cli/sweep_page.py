"""The comparison page of a sweep: once every member of `wanbatch -m ...` has finished, `index.html` in the
sweep folder (`hydra.sweep.dir`) compares them (see `wanbatch.runs.compare`).

A Hydra callback registered by wanbatch's own base config (`conf/wanbatch.yaml`), so it works with every
launcher: Hydra calls `on_multirun_end` in the launching process after all members returned, also when they
ran elsewhere (SLURM, a Ray cluster) and wrote their run folders into a sweep folder this process sees.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class SweepPage(Callback):
    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if not config.report:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            members = sweep_members(sweep_dir, since=self.started)
            if not members:
                return
            from wanbatch.runs.compare import write_comparison

            page = write_comparison(members, sweep_dir)
        except Exception as exc:  # the members' runs are done and kept: a page that fails only says so
            print(f"error: the sweep's comparison page failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        print(f"comparison of {len(members)} runs: {page}")


def sweep_members(sweep_dir: Path, *, since: float = 0.0) -> list[Path]:
    """The run folders of this sweep under `sweep_dir`: those holding a manifest.json of a run that started
    after `since` (a fixed `hydra.sweep.dir` may still hold members of an earlier sweep), in member order."""
    import json

    found = []
    for manifest in sweep_dir.glob("**/manifest.json"):
        try:
            started = float(json.loads(manifest.read_text()).get("started") or 0.0)
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if started >= since - 1.0:  # `started` is taken a moment after the sweep began; 1 s covers clock steps
            found.append(manifest.parent)

    def order(run_dir: Path) -> tuple[Any, ...]:
        rel = run_dir.relative_to(sweep_dir).parts
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in rel)

    return sorted(found, key=order)
