"""What every benchmark shares: the result shape, printing, the `--quick` flag, the machine description.

A benchmark's `main(argv)` returns::

    {"name": "plan", "title": "...", "figures": [{"metric", "value", "target", "status"}],
     "notes": [...], "raw": {...}}            # or "skipped": "why" instead of figures

`value` and `target` are display strings; `status` is "ok", "over" (missed its target) or "" (no
target). Every ratio is taken between figures measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What a user runs has its bytecode: pip compiles an installed wheel's modules, and a checkout writes its
# __pycache__ on the first run. An environment that forbids writing it (this project's sandboxes set
# PYTHONDONTWRITEBYTECODE=1) makes every console-script start compile wanbatch and its dependencies from
# source, and a benchmark of start-up then measures the compiler: the console scripts the benchmarks start
# write and use it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def console_script() -> list[str]:
    """The `wanbatch` console script beside this interpreter (or on PATH); `python -m wanbatch.cli` without one."""
    beside = Path(sys.executable).parent / "wanbatch"
    found = str(beside) if beside.exists() else shutil.which("wanbatch")
    return [found] if found else [sys.executable, "-m", "wanbatch.cli"]


def parse_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (also: env BENCH_QUICK=1)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    args.quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    return args


def figure(metric: str, value: str, target: str = "", ok: bool | None = None) -> dict[str, str]:
    status = "" if ok is None else ("ok" if ok else "over")
    return {"metric": metric, "value": value, "target": target, "status": status}


def result(
    name: str,
    title: str,
    figures: list[dict[str, str]],
    *,
    notes: Sequence[str] = (),
    raw: dict[str, Any] | None = None,
    quick: bool = False,
) -> dict[str, Any]:
    return {"name": name, "title": title, "figures": figures, "notes": list(notes), "raw": raw or {}, "quick": quick}


def skipped(name: str, title: str, reason: str, *, notes: Sequence[str] = ()) -> dict[str, Any]:
    return {"name": name, "title": title, "skipped": reason, "figures": [], "notes": list(notes), "raw": {}}


def print_result(res: dict[str, Any]) -> None:
    print(f"\n== {res.get('title', res.get('name'))}{' (quick)' if res.get('quick') else ''}")
    if res.get("skipped"):
        print(f"skipped: {res['skipped']}")
    rows = res.get("figures") or []
    if rows:
        w = max(len(r["metric"]) for r in rows)
        wv = max(len(r["value"]) for r in rows)
        for r in rows:
            tail = f"   target {r['target']}" if r.get("target") else ""
            mark = {"ok": "  [ok]", "over": "  [OVER TARGET]"}.get(r.get("status", ""), "")
            print(f"  {r['metric']:<{w}}  {r['value']:>{wv}}{tail}{mark}")
    for n in res.get("notes") or []:
        print(f"  note: {n}")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def python_speed_ms() -> float:
    """Milliseconds for a fixed single-threaded pure-Python workload (JSON, dicts, a loop; the median of 5):
    how fast this machine runs Python just now. Figures from two machines compare only after this one does
    (the same code once measured 36 us/job planning on one 2-core host and 55 on another)."""
    import json

    def work() -> int:
        doc = {f"k{i}": [i, str(i), i * 0.5, {"n": i}] for i in range(2000)}
        for _ in range(10):
            json.loads(json.dumps(doc))
        total = 0
        for i in range(300_000):
            total += i % 7
        return total

    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def file_create_us(folder: Path, count: int = 200) -> float:
    """Microseconds to create one empty file in a new folder under `folder` (the median of 5 rounds of `count`):
    how fast this filesystem makes files just now. A run makes a dozen per job (its scratch folder, the download,
    the blob, the sidecar, locks, posters), and on a filesystem whose files were deleted by the thousand in the
    last minutes that can be slow: on this host's ext4, which has no journal, the kernel then reads the inode of
    each recently deleted file it passes looking for a free one (~170 us a file after a mass delete, 10-20 when
    quiet; a 100-job run took 0.3 s longer). The files are left for the caller's folder to take: deleting them
    here would slow what is measured next."""
    times = []
    for _ in range(5):
        target = Path(tempfile.mkdtemp(prefix="create-", dir=folder))
        t0 = time.perf_counter()
        for i in range(count):
            (target / f"f{i}").touch()
        times.append((time.perf_counter() - t0) / count)
    return statistics.median(times) * 1e6


def machine() -> dict[str, Any]:
    """The machine and the versions that matter, without importing torch (it takes seconds)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    ram = _ram_gib()
    try:
        import imageio_ffmpeg

        ffmpeg = str(imageio_ffmpeg.get_ffmpeg_version())
    except Exception:
        ffmpeg = "unknown"
    return {
        "cpu": _cpu_model(),
        "cores": usable,
        "ram_gib": round(ram, 1) if ram else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": _version("torch"),
        "diffusers": _version("diffusers"),
        "hydra-core": _version("hydra-core"),
        "moviepy": _version("moviepy"),
        "ffmpeg": f"{ffmpeg} (imageio-ffmpeg {_version('imageio-ffmpeg')})",
        "wanbatch": _version("wanbatch"),
    }
