"""Run every benchmark and write BENCHMARKS.md at the repo root (figures, machine, date, how to rerun).

    python benchmarks/run_all.py                 # all of them (nox -s bench runs this)
    python benchmarks/run_all.py --quick         # smaller runs (also: env BENCH_QUICK=1)
    python benchmarks/run_all.py --only plan,stitch --out /tmp/B.md

Each benchmark runs in its own Python process (`run_all.py --one NAME`, which imports
benchmarks/bench_NAME.py and calls its `main()`), so one benchmark's imports, memory and threads
never colour another's figures, and a crash in one leaves the others' figures standing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO_ROOT, machine, print_result, python_speed_ms

HERE = Path(__file__).resolve().parent

# (name, module, what it measures): in the order of issue 7
BENCHMARKS = [
    ("plan", "bench_plan", "planning + cache lookup per job; input hashing"),
    ("rerun", "bench_rerun", "fully cached rerun of the recipes"),
    ("remote", "bench_remote", "remote throughput against the fake provider"),
    ("local", "bench_local", "diffusers backend vs a plain diffusers loop (tiny model)"),
    ("stitch", "bench_stitch", "stream-copy and composed films"),
    ("gpu", "bench_gpu", "full-size Wan2.1 1.3B architecture on a GPU"),
    ("ray", "bench_ray", "Ray executor"),
    ("scale", "bench_scale", "projects at scale through the console script: dry runs, 100 remote jobs end to end"),
    ("cache", "bench_cache", "verified dry runs, opening a cache, rebuilding its index"),
    ("sweep", "bench_sweep", "seed experiments: a sweep's comparison page, takes, reproduce"),
    ("hostile", "bench_hostile", "hostile input: an alias bomb, long titles, media proved whole"),
]
TIMEOUT_S = 1200


# -- one benchmark, in this (child) process ------------------------------------------------------------
def run_one(name: str, module: str, quick: bool, out: Path) -> None:
    mod = importlib.import_module(module)
    argv = ["--quick"] if quick else []
    params = list(inspect.signature(mod.main).parameters.values())
    if not params:
        sys.argv = [str(HERE / f"{module}.py"), *argv]
        res = mod.main()
    elif params[0].name == "quick":
        res = mod.main(quick=quick)
    else:
        res = mod.main(argv)
    if not isinstance(res, dict):
        res = {"value": res}
    res.setdefault("name", name)
    if "figures" in res or res.get("skipped"):
        print_result(res)
    else:
        print(json.dumps(res, indent=2, default=str))
    out.write_text(json.dumps(res, indent=2, default=str))


# -- all of them ---------------------------------------------------------------------------------------
def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run_all(names: list[str], quick: bool) -> tuple[list[dict[str, Any]], float]:
    results = []
    t_all = time.perf_counter()
    for name, module, what in BENCHMARKS:
        if name not in names:
            continue
        if not (HERE / f"{module}.py").is_file():
            results.append({"name": name, "title": what, "missing": f"benchmarks/{module}.py does not exist yet"})
            print(f"\n== {name}: benchmarks/{module}.py does not exist yet", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix=f"wanbatch-bench-{name}-") as tmp:
            out = Path(tmp) / "result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--json", str(out)]
            if quick:
                cmd.append("--quick")
            load = _loadavg()
            speed_before = python_speed_ms()
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, cwd=REPO_ROOT, timeout=TIMEOUT_S)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = -1
            took = time.perf_counter() - t0
            if code == 0 and out.is_file():
                res = json.loads(out.read_text())
            else:
                why = f"timed out after {TIMEOUT_S} s" if code == -1 else f"exited {code} (see the log above)"
                res = {"name": name, "title": what, "error": why}
        res["took_s"] = round(took, 1)
        res["loadavg_before"] = load
        res["python_ms"] = [round(speed_before), round(python_speed_ms())]
        results.append(res)
        print(f"   [{name}: {took:.1f} s]", flush=True)
    return results, time.perf_counter() - t_all


# -- BENCHMARKS.md ---------------------------------------------------------------------------------------
def _cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _foreign_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    """A result that does not follow _common's shape: its scalar fields, one level of nesting."""
    rows = []
    for k, v in res.items():
        if k in ("name", "title", "took_s", "loadavg_before", "python_ms", "notes"):
            continue
        if isinstance(v, dict):
            rows += [(f"{k}.{k2}", v2) for k2, v2 in v.items() if not isinstance(v2, (dict, list))]
        elif not isinstance(v, list):
            rows.append((k, v))
    return [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in rows]


def render_markdown(
    results: list[dict[str, Any]],
    mach: dict[str, Any],
    total_s: float,
    quick: bool,
    started: dt.datetime,
    load_start: str,
    load_end: str,
) -> str:
    seen = [ms for r in results for ms in r.get("python_ms") or []]  # before and after each benchmark
    lines = [
        "# Benchmarks",
        "",
        "Where wanbatch spends its time, against the limits of issue 7. Every ratio is taken between figures "
        "measured in the same run of the same script; nothing here is copied from elsewhere.",
        "",
        f"- **Date**: {started.strftime('%Y-%m-%d %H:%M UTC')}{' (quick run: `--quick`)' if quick else ''}; "
        f"all benchmarks took {total_s / 60:.1f} min",
        f"- **Machine**: {mach['cpu']}, {mach['cores']} cores, {mach['ram_gib']} GiB RAM, {mach['os']}; "
        f"no GPU unless the GPU section says otherwise",
        f"- **Versions**: Python {mach['python']}, torch {mach['torch']}, diffusers {mach['diffusers']}, "
        f"hydra-core {mach['hydra-core']}, moviepy {mach['moviepy']}, ffmpeg {mach['ffmpeg']}, "
        f"wanbatch {mach['wanbatch']}",
        f"- **Load average** (1, 5, 15 min) at start: {load_start}; at end: {load_end}. The machine may be "
        "shared: wall-clock figures move with its load; ratios are taken between interleaved runs where "
        "the script says so.",
        *(
            [
                f"- **Python speed**: a fixed pure-Python workload (`_common.python_speed_ms`) took "
                f"{min(seen):.0f}-{max(seen):.0f} ms, measured before and after each benchmark (each section says "
                "its own). Compare it before comparing figures with another BENCHMARKS.md: hosts of one kind "
                "differ by half, and a host can slow down by half within a run (a run whose range is wide "
                "is not one to compare)."
            ]
            if seen
            else []
        ),
        "- **Bytecode**: written and used, as an installed wheel's is (the benchmarks unset "
        "PYTHONDONTWRITEBYTECODE, which this project's sandboxes set: every start would compile from source).",
        "",
        "## How to rerun",
        "",
        "```",
        "nox -s bench                           # all benchmarks; rewrites BENCHMARKS.md",
        "python benchmarks/run_all.py [--quick] # the same without nox (BENCH_QUICK=1 also means --quick)",
        "python benchmarks/bench_plan.py        # one benchmark: prints its figures (each has --quick)",
        "python benchmarks/bench_gpu.py         # on a machine with a CUDA GPU",
        "```",
        "",
        "## Summary",
        "",
        "| # | benchmark | figure | value | target | |",
        "|---|---|---|---|---|---|",
    ]
    for i, res in enumerate(results, 1):
        title = _cell(res.get("title", res["name"]))
        if res.get("missing") or res.get("error") or res.get("skipped"):
            why = res.get("missing") or res.get("error") or f"skipped: {res['skipped']}"
            lines.append(f"| {i} | {title} | not measured here | {_cell(why)} | | |")
            continue
        rows = res.get("figures")
        if rows is None:
            rows = [{"metric": k, "value": v} for k, v in _foreign_rows(res)]
        for j, r in enumerate(rows):
            mark = {"ok": "ok", "over": "**over**"}.get(r.get("status", ""), "")
            head = f"| {i} | {title} |" if j == 0 else "| | |"
            lines.append(f"{head} {_cell(r['metric'])} | {_cell(r['value'])} | {_cell(r.get('target', ''))} | {mark} |")
    lines += ["", "## Notes per benchmark", ""]
    for res in results:
        title = res.get("title", res["name"])
        lines.append(f"### {title}")
        lines.append("")
        lines.append(
            f"`benchmarks/bench_{res['name']}.py`; took {res.get('took_s', '?')} s; load average "
            f"before: {res.get('loadavg_before', 'n/a')}"
            + (
                f"; Python speed before / after: {res['python_ms'][0]} / {res['python_ms'][1]} ms."
                if res.get("python_ms")
                else "."
            )
        )
        lines.append("")
        for n in res.get("notes") or []:
            lines.append(f"- {n}")
        if res.get("missing") or res.get("error") or res.get("skipped"):
            lines.append(f"- Not measured here: {res.get('missing') or res.get('error') or res.get('skipped')}.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller runs (also: env BENCH_QUICK=1)")
    p.add_argument("--only", default="", help="comma-separated names: " + ", ".join(n for n, _m, _w in BENCHMARKS))
    p.add_argument("--out", default=str(Path(REPO_ROOT) / "BENCHMARKS.md"), help="where to write the report")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    if args.one:
        module = {n: m for n, m, _w in BENCHMARKS}[args.one]
        run_one(args.one, module, quick, Path(args.json))
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [n for n, _m, _w in BENCHMARKS]
    unknown = set(names) - {n for n, _m, _w in BENCHMARKS}
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    started = dt.datetime.now(dt.timezone.utc)
    load_start = _loadavg()
    results, total = run_all(names, quick)
    text = render_markdown(results, machine(), total, quick, started, load_start, _loadavg())
    Path(args.out).write_text(text)
    print(f"\nwrote {args.out} ({total / 60:.1f} min)")
    failed = [r["name"] for r in results if r.get("error")]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
