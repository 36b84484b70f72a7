"""Planning and cache lookup per job, and local input hashing.

    python benchmarks/bench_plan.py [--quick]

1. A sweep of prompts x seeds (1k, 10k, 100k jobs) built as the composed config dict (no YAML), then
   timed through what a run does before rendering: `backend_configs` + `load_project` + `make_plan`,
   and `Cache.peek` of every job's key against a cache that holds 10% of them. Target: <= 100 us/job,
   growing linearly (the per-job cost at 100k over the one at 1k is printed). `backend_configs` costs
   the same whatever the size, so it is printed apart, as the fixed cost of a plan.
2. wanbatch's `sha256_file` over a few hundred MB of files against `hashlib` on the same bytes in
   memory, then a second pass over the same files (memoised on size and mtime: should be ~free).
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO_ROOT, figure, median, parse_args, print_result, result

from wanbatch.av.files import sha256_file
from wanbatch.backends import build_backends
from wanbatch.cache.store import Cache
from wanbatch.config.backends import PreviewConfig
from wanbatch.config.load import backend_configs
from wanbatch.config.schema import EncodeConfig, ProjectConfig, WanbatchConfig
from wanbatch.core.plan import Plan, make_plan
from wanbatch.core.project import load_project

SEEDS = 100  # a sweep of N jobs is N/100 prompts x 100 seeds
HIT_SHARE = 10  # the cache holds every 10th job's key
TARGET_US = 100.0
ROOT = Path(REPO_ROOT) / "recipes" / "demo"  # the sweep's first frame is the demo's assets/day.png


def sweep_config(n_jobs: int) -> WanbatchConfig:
    """What `load_config` returns for a prompts x seeds sweep on the preview backend (every scene has a
    local first-frame image, so media resolution and the content hash are on the path too)."""
    prompts = max(1, n_jobs // SEEDS)
    return WanbatchConfig(
        project=ProjectConfig(
            name=f"sweep{n_jobs}",
            defaults={"width": 320, "height": 192, "fps": 16, "duration": 2.0, "image": "assets/day.png"},
        ),
        backend=PreviewConfig(),
        encode=EncodeConfig(),
        scenes=[
            {"id": f"p{p:05d}-s{s:03d}", "prompt": f"Prompt {p}: a slow pan over hills at sunrise.", "seed": s}
            for p in range(prompts)
            for s in range(SEEDS)
        ],
    )


def plan_of(cfg: WanbatchConfig) -> Plan:
    project = load_project(cfg, ROOT, backend_configs(cfg))
    return make_plan(project, build_backends(project.backend_configs), encode=cfg.encode)


def fill_cache(cache: Cache, plan: Plan, blob: Path) -> int:
    """Index every HIT_SHARE-th job (all entries share one small blob, as identical clips would)."""
    n = 0
    for job in plan.jobs[::HIT_SHARE]:
        cache.put(job.key, blob, material=job.material, meta={"scene_id": job.id, "backend": job.backend})
        n += 1
    return n


def time_once(cfg: WanbatchConfig, cache: Cache, *, gc_off: bool = False) -> dict[str, float]:
    """Per-job costs of one plan + lookup. `backend_configs` (which reads every backend's YAML) costs
    the same for 1 job or 100k, so it is timed on its own as the fixed cost of a plan."""
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        tf = time.perf_counter()
        configs = backend_configs(cfg)
        c0, t0 = time.process_time(), time.perf_counter()
        project = load_project(cfg, ROOT, configs)
        t1 = time.perf_counter()
        plan = make_plan(project, build_backends(project.backend_configs), encode=cfg.encode)
        t2 = time.perf_counter()
        hits = sum(1 for job in plan.jobs if cache.peek(job.key) is not None)
        t3, c3 = time.perf_counter(), time.process_time()
    finally:
        gc.enable()
    n = len(plan.jobs)
    return {
        "load_us": (t1 - t0) / n * 1e6,
        "plan_us": (t2 - t1) / n * 1e6,
        "peek_us": (t3 - t2) / n * 1e6,
        "total_us": (t3 - t0) / n * 1e6,
        "cpu_us": (c3 - c0) / n * 1e6,
        "fixed_ms": (t0 - tf) * 1e3,
        "hits": hits,
        "jobs": n,
    }


def bench_planning(
    sizes: list[tuple[int, int]], workdir: Path, gc_off_too: bool
) -> tuple[list[dict[str, float]], dict[str, float] | None]:
    blob = workdir / "blob.mp4"
    blob.write_bytes(os.urandom(4096))
    # Warm-up: first-call costs (imports inside functions, PIL opening the image) are not per job.
    warm = sweep_config(100)
    plan_of(warm)
    out = []
    no_gc = None
    for n, reps in sizes:
        cfg = sweep_config(n)
        cache = Cache(workdir / f"cache{n}")
        fill_cache(cache, plan_of(cfg), blob)
        runs = [time_once(cfg, cache) for _ in range(reps)]
        row: dict[str, float] = {k: median([r[k] for r in runs]) for k in runs[0]}
        row["reps"] = reps
        out.append(row)
        # Diagnosis of the growth with size: the same largest run with Python's cyclic GC paused.
        if gc_off_too and n == sizes[-1][0]:
            no_gc = time_once(cfg, cache, gc_off=True)
        cache.close()
    return out, no_gc


def bench_hashing(total_mb: int, n_files: int, workdir: Path, rounds: int = 5) -> dict[str, float]:
    """Files are in the page cache (just written), so this measures hashing, not the disk."""
    size = total_mb * 2**20 // n_files
    files = []
    for i in range(n_files):
        p = workdir / f"input{i}.bin"
        p.write_bytes(os.urandom(size))
        files.append(p)
    data = [p.read_bytes() for p in files]
    mb = n_files * size / 2**20
    wanbatch_s, hashlib_s = [], []
    for r in range(rounds):
        # A new mtime invalidates the memo legitimately, so each round hashes every file again.
        for p in files:
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000 * (r + 1)))
        t0 = time.perf_counter()
        digests = [sha256_file(p) for p in files]
        wanbatch_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain = [hashlib.sha256(d).hexdigest() for d in data]
        hashlib_s.append(time.perf_counter() - t0)
        assert digests == plain, "sha256_file disagrees with hashlib"
    t0 = time.perf_counter()
    again = [sha256_file(p) for p in files]
    memo_s = time.perf_counter() - t0
    assert again == plain
    return {
        "mb": mb,
        "files": n_files,
        "wanbatch_mb_s": mb / min(wanbatch_s),
        "hashlib_mb_s": mb / min(hashlib_s),
        "memo_pass_s": memo_s,
        "cold_pass_s": min(wanbatch_s),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__.splitlines()[0])
    sizes = [(1_000, 3), (10_000, 1), (100_000, 1)] if args.quick else [(1_000, 7), (10_000, 3), (100_000, 1)]
    hash_mb, hash_files = (64, 4) if args.quick else (384, 6)
    with tempfile.TemporaryDirectory(prefix="wanbatch-bench-plan-") as tmp:
        rows, no_gc = bench_planning(sizes, Path(tmp), gc_off_too=not args.quick)
        h = bench_hashing(hash_mb, hash_files, Path(tmp))

    figures = []
    for r in rows:
        n = int(r["jobs"])
        figures.append(
            figure(
                f"plan + lookup, {n // 1000}k jobs ({n // SEEDS} prompts x {SEEDS} seeds)",
                f"{r['cpu_us']:.1f} us/job CPU ({r['total_us']:.1f} wall)",
                f"<= {TARGET_US:.0f} us/job",
                r["cpu_us"] <= TARGET_US,
            )
        )
    for r in rows:
        n = int(r["jobs"])
        figures.append(
            figure(
                f"{n // 1000}k split: load_project / make_plan / cache.peek",
                f"{r['load_us']:.1f} / {r['plan_us']:.1f} / {r['peek_us']:.1f} us",
            )
        )
    figures.append(
        figure(
            "fixed cost per plan: backend_configs (every backend's YAML)",
            f"{median([r['fixed_ms'] for r in rows]):.1f} ms",
        )
    )
    big, small = int(rows[-1]["jobs"]) // 1000, int(rows[0]["jobs"]) // 1000
    growth = rows[-1]["cpu_us"] / rows[0]["cpu_us"]
    figures.append(figure(f"per-job CPU at {big}k / at {small}k", f"{growth:.2f}x", "~1 (linear)"))
    if no_gc is not None:
        us = no_gc["cpu_us"]
        figures.append(
            figure(
                f"{big}k with Python's cyclic GC paused (diagnosis)",
                f"{us:.1f} us/job CPU ({us / rows[0]['cpu_us']:.2f}x {small}k)",
            )
        )
    figures.append(figure(f"sha256_file, {h['files']} files, {h['mb']:.0f} MB", f"{h['wanbatch_mb_s']:.0f} MB/s"))
    figures.append(figure("hashlib.sha256 on the same bytes in memory", f"{h['hashlib_mb_s']:.0f} MB/s"))
    figures.append(figure("sha256_file / hashlib speed", f"{h['wanbatch_mb_s'] / h['hashlib_mb_s']:.2f}", "close to 1"))
    figures.append(
        figure(
            "second pass over the same files (memo)",
            f"{h['memo_pass_s'] * 1e3:.2f} ms vs {h['cold_pass_s'] * 1e3:.0f} ms cold",
        )
    )
    notes = [
        "Per-job figures are this process's CPU time (single-threaded work, so equal to wall time on an idle "
        "machine); wall time is shown beside it because a shared machine's load inflates it.",
        f"Sweep on the preview backend; every scene has a local first frame; the cache holds 1 job in "
        f"{HIT_SHARE}. Median of {', '.join(str(int(r['reps'])) for r in rows)} runs per size.",
        "Hashing: files sit in the page cache, so MB/s is hashing speed, not disk speed; best of 5 rounds, "
        "each after a new mtime invalidated the memo.",
    ]
    return result(
        "plan",
        "1. Planning and cache lookup; local input hashing",
        figures,
        notes=notes,
        raw={"planning": rows, "planning_gc_paused": no_gc, "hashing": h},
        quick=args.quick,
    )


if __name__ == "__main__":
    print_result(main())
