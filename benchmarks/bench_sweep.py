"""Seed experiments, end to end through the console script: a sweep and its comparison page, takes, reproduce.

    python benchmarks/bench_sweep.py [--quick]

1. `wanbatch -m recipe=demo scenes.0.seed=1,2,3` on a cache the demo filled: the whole sweep's wall (each member
   renders its one new take of `title`, takes the rest from the cache), and the comparison page's share: the
   page written again in this process, with the posters the sweep cut (what the sweep itself paid) and with
   none (every shown cell cut: the worst case, e.g. `wanbatch compare` on runs whose reports are off).
2. Takes: `+scenes.1.takes=3` (two new renders), then `+scenes.1.pick=2` (no render: the film is joined again).
3. `wanbatch reproduce` of the demo run: every scene rendered again and compared, against the demo's first run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO_ROOT, console_script, figure, median, parse_args, print_result, result


def _run(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run([*console_script(), *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"wanbatch {' '.join(args[:3])} ... exited {proc.returncode}: {proc.stderr[-600:]}")
    return time.perf_counter() - t0, proc


def _counts(run_dir: Path) -> dict[str, int]:
    return dict(json.loads((run_dir / "manifest.json").read_text())["counts"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__.splitlines()[0])
    reps = 1 if args.quick else 3
    from wanbatch.cli.sweep_page import sweep_members
    from wanbatch.runs.compare import write_comparison

    figures = []
    notes = []
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wanbatch-bench-sweep-") as tmp_name:
        tmp = Path(tmp_name)
        cache = tmp / "cache"
        common = [f"cache.dir={cache}", "executor.progress=none"]
        first_s, _ = _run("recipe=demo", *common, f"hydra.run.dir={tmp / 'demo'}")
        figures.append(figure("demo: first run (fills the cache)", f"{first_s:.2f} s"))

        # 1. The sweep, and its page
        sweep = tmp / "sweep"
        sweep_s, proc = _run("-m", "recipe=demo", "scenes.0.seed=1,2,3", *common, f"hydra.sweep.dir={sweep}")
        members = sweep_members(sweep)
        rendered = sum(_counts(m).get("rendered", 0) for m in members)
        figures.append(figure("sweep of 3 seeds: wall (console script)", f"{sweep_s:.2f} s"))
        figures.append(figure("sweep: renders (manifests)", str(rendered), "2", rendered == 2))
        warm, cold = [], []
        for i in range(reps):
            t0 = time.perf_counter()
            write_comparison(members, sweep)  # the posters are in the cache: linked
            warm.append(time.perf_counter() - t0)
            out = tmp / f"cold{i}"
            t0 = time.perf_counter()
            write_comparison(members, out, poster_cache=tmp / f"no-posters{i}")  # an empty poster cache: cut all
            cold.append(time.perf_counter() - t0)
        shown = len(list((out / "posters").glob("*.png")))
        figures.append(figure(f"sweep page, posters linked from the cache (median of {reps})", f"{median(warm):.3f} s"))
        figures.append(figure(f"sweep page, {shown} posters cut (median of {reps})", f"{median(cold):.3f} s"))
        figures.append(figure("sweep page (linked) / sweep wall", f"{median(warm) / sweep_s:.1%}"))

        # 2. Takes
        takes_s, _ = _run("recipe=demo", "+scenes.1.takes=3", *common, f"hydra.run.dir={tmp / 'takes'}")
        pick_s, _ = _run(
            "recipe=demo", "+scenes.1.takes=3", "+scenes.1.pick=2", *common, f"hydra.run.dir={tmp / 'pick'}"
        )
        takes_counts, pick_counts = _counts(tmp / "takes"), _counts(tmp / "pick")
        figures.append(figure("takes: 3 (two new takes rendered)", f"{takes_s:.2f} s"))
        figures.append(
            figure(
                "pick: 2 (renders, from the manifest; the film joined again)",
                f"{pick_s:.2f} s, {pick_counts.get('rendered', 0)} renders",
                "0 renders",
                pick_counts.get("rendered", 0) == 0,
            )
        )

        # 3. Reproduce
        rep_s, proc = _run("reproduce", str(tmp / "demo"))
        identical = proc.stdout.count(": bit-identical")
        figures.append(figure("reproduce the demo: wall", f"{rep_s:.2f} s"))
        figures.append(figure("reproduce / the demo's first run", f"{rep_s / first_s:.2f}"))
        figures.append(figure("reproduce: clips bit-identical", f"{identical} of 8", "8 of 8", identical == 8))
        raw = {"sweep_s": sweep_s, "warm": warm, "cold": cold, "takes": takes_counts, "pick": pick_counts}
    notes.append(
        "The page's figures write the sweep folder's index.html again in this process; the sweep wrote it once "
        "already, at its end, with the same posters (its members' reports had cut them into the cache)."
    )
    notes.append(
        "reproduce renders every scene again without the cache (concurrency as the run's executor), so it costs "
        "about a first run; its tiny Wan pipelines load once each."
    )
    return result(
        "sweep",
        "Seed experiments: a sweep's comparison page, takes, reproduce",
        figures,
        notes=notes,
        raw=raw,
        quick=args.quick,
    )


if __name__ == "__main__":
    print_result(main())
