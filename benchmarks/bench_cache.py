"""The cache's own costs: what a dry run pays to check what it calls cached, what opening a cache costs
(the index's health check, the run's registration and the sweep of leftovers), and rebuilding a lost index.

    python benchmarks/bench_cache.py [--quick]

1. Verifying blobs as a dry run does (read + sha256 of every blob it reports cached, on a few threads),
   against the size-only look it used to take, per blob of a realistic clip size (a 5 s 720p Wan clip is
   a few MB).
2. Cache() for a run on an index of many entries (SQLite's quick_check reads every page), register + sweep.
3. Rebuilding the index from the sidecars (what a deleted index costs instead of the renders).
4. Through the console script: `wanbatch recipe=demo dry_run=true` on a filled cache, as the user waits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO_ROOT, figure, median, parse_args, print_result, result

from wanbatch.cache import index
from wanbatch.cache.store import Cache


def _fill(cache: Cache, n: int, size: int, tmp: Path) -> list[str]:
    keys = []
    video = tmp / "v.mp4"
    for i in range(n):
        video.write_bytes(os.urandom(size))
        key = f"{i:032x}"
        material = {"backend": "bench", "params": {"seed": i, "prompt": f"shot {i}"}, "inputs": {}}
        cache.put(key, video, material=material, meta={"scene_id": f"s{i % 50}", "backend": "bench", "seed": i})
        keys.append(key)
    return keys


def _verify_all(cache: Cache, keys: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        states = list(pool.map(lambda k: cache.verify(k)[0], keys))
    assert states.count("cached") == len(keys)


def _drop_page_cache_hint() -> str:
    return "blobs read from the page cache (warm), as right after a run; a cold disk adds its read time"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__ or "")
    n_blobs, blob_mb = (20, 2) if args.quick else (100, 4)
    n_entries = 2000 if args.quick else 20000
    tmp = Path(tempfile.mkdtemp(prefix="wanbatch-bench-cache-"))
    figures: list[dict[str, str]] = []
    raw: dict[str, Any] = {}
    try:
        # 1. Dry-run verification per blob.
        cache = Cache(tmp / "blobs-cache")
        keys = _fill(cache, n_blobs, blob_mb * 2**20, tmp)
        _verify_all(cache, keys)  # warm the page cache, as after a run
        verify = median([_timed(lambda: _verify_all(cache, keys)) for _ in range(3)])
        peek = median([_timed(lambda: [cache.peek(k) for k in keys]) for _ in range(3)])
        per_blob_ms = verify / n_blobs * 1e3
        figures += [
            figure(f"dry run: verify {n_blobs} blobs of {blob_mb} MB (hash)", f"{per_blob_ms:.2f} ms/blob"),
            figure("  the same per MB of video", f"{per_blob_ms / blob_mb:.2f} ms/MB"),
            figure("  size-only look it replaces", f"{peek / n_blobs * 1e6:.0f} us/blob"),
        ]
        raw["verify_s"], raw["peek_s"] = verify, peek
        cache.close()

        # 2. Opening for a run: health check, registration, sweep.
        big = Cache(tmp / "index-cache")
        video = tmp / "small.mp4"
        video.write_bytes(b"x" * 1000)
        t0 = time.perf_counter()
        with big._writing, big._index.transact():
            for i in range(n_entries):
                entry = {"key": f"{i:032x}", "blob": "0" * 64, "size": 1000, "created": time.time(), "material": {}}
                big._index.set(entry["key"], entry)
        raw["fill_index_s"] = time.perf_counter() - t0
        big.close()
        db_mb = (tmp / "index-cache" / "index" / index.DB_FILE).stat().st_size / 1e6
        opened = median([_timed(lambda: Cache(tmp / "index-cache").close()) for _ in range(5)])
        check = median([_timed(lambda: _quick_check(tmp / "index-cache")) for _ in range(5)])
        figures += [
            figure(f"Cache() for a run, index of {n_entries} entries ({db_mb:.1f} MB)", f"{opened * 1e3:.1f} ms"),
            figure("  of which quick_check", f"{check * 1e3:.1f} ms"),
        ]
        c = Cache(tmp / "blobs-cache")
        start = median([_timed(lambda: _register_and_sweep(c, keys)) for _ in range(5)])
        c.close()
        figures.append(figure(f"register a run + sweep leftovers ({n_blobs} blobs)", f"{start * 1e3:.1f} ms"))

        # 3. Rebuilding a deleted index from the sidecars.
        shutil.rmtree(tmp / "blobs-cache" / "index")
        t0 = time.perf_counter()
        rebuilt = Cache(tmp / "blobs-cache")
        rebuild = time.perf_counter() - t0
        assert len(list(rebuilt.entries())) == n_blobs and rebuilt.notes
        rebuilt.close()
        figures.append(figure(f"rebuild a deleted index from {n_blobs} sidecars", f"{rebuild * 1e3:.0f} ms"))

        # 4. The user's dry run through the console script.
        figures += _console_dry_run(tmp, quick=args.quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result(
        "cache",
        "Cache: verified dry runs, opening, rebuilding",
        figures,
        notes=[_drop_page_cache_hint(), "verification runs on up to 4 threads (hashlib releases the GIL)"],
        raw=raw,
        quick=args.quick,
    )


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _quick_check(folder: Path) -> None:
    db = index.open_db(folder / "index")
    assert index.problem(db) is None
    db.close()


def _register_and_sweep(cache: Cache, keys: list[str]) -> None:
    reg = cache.register(keys)
    cache.sweep_leftovers()
    reg.close()


def _console_dry_run(tmp: Path, *, quick: bool) -> list[dict[str, str]]:
    exe = Path(sys.executable).parent / "wanbatch"
    cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "wanbatch.cli"]
    cache = tmp / "demo-cache"
    base = [*cli, "recipe=demo", f"cache.dir={cache}", "executor.progress=none"]
    first = subprocess.run([*base, f"hydra.run.dir={tmp / 'fill'}"], capture_output=True, text=True, cwd=REPO_ROOT)
    if first.returncode != 0:
        return [figure("demo dry run (console script)", f"failed: {first.stderr[-200:]}")]
    walls = []
    for i in range(2 if quick else 5):
        walls.append(
            _timed(
                lambda i=i: subprocess.run(
                    [*base, "dry_run=true", f"hydra.run.dir={tmp / f'dry{i}'}"], capture_output=True, cwd=REPO_ROOT
                )
            )
        )
    n = sum(1 for _ in (cache / "blobs").glob("*/*.mp4"))
    return [figure(f"demo: dry run through the console script ({n} blobs verified)", f"{median(walls):.2f} s")]


if __name__ == "__main__":
    print_result(main())
