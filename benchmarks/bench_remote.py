"""Remote throughput against the fake provider: 200 jobs, 2 s server latency, concurrency 50.

    python benchmarks/bench_remote.py [--quick]

The fake provider (`python -m wanbatch.testing.fakeprovider --latency 2`) runs in its own process, so its CPU is
not the driver's. The driver is `run_project` in this process on the `novita_wan21_t2v` backend
pointed at it (text-to-video: no inputs to upload), with `executor.concurrency` and
`backend.max_in_flight` at 50 and a fresh cache; stitching and the report are off (this measures the
renders). Ideal wall = ceil(jobs / concurrency) x latency. Printed: wall / ideal (target <= 1.15),
polls per job (wanbatch's count, checked against the server's), the driver's CPU seconds per job
(this process, and with the ffmpeg probes it starts).
"""

from __future__ import annotations

import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO_ROOT, figure, median, parse_args, print_result, result

TARGET = 1.15
BACKEND = "novita_wan21_t2v"
# Polling tuned to a provider whose jobs take ~2 s: first look at the expected latency, then follow the
# provider's `eta` hint down to 0.1 s. (The shipped defaults, initial_s 10, suit real multi-minute jobs.)
POLL = {"initial_s": 2.0, "min_interval_s": 0.1, "jitter": 0.05}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeServer:
    """`python -m wanbatch.testing.fakeprovider` in a child process, for as long as the `with` lasts."""

    def __init__(self, latency_s: float):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.latency_s = latency_s
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FakeServer:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wanbatch.testing.fakeprovider",
                "--port",
                str(self.port),
                "--latency",
                str(self.latency_s),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO_ROOT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/_fake/stats", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the fake provider exited {self.proc.returncode}") from None
                time.sleep(0.1)
        raise RuntimeError("the fake provider did not start within 60 s")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_fake/stats", timeout=10).json())

    def reset(self) -> None:
        httpx.post(f"{self.url}/_fake/reset", json={}, timeout=10)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _config(tmp: Path, url: str, jobs: int, concurrency: int) -> tuple[dict[str, Any], Path]:
    import yaml

    from wanbatch.config.load import load_config

    root = tmp / "project"
    root.mkdir(parents=True)
    scenes = [
        {"id": f"shot{i:03d}", "prompt": f"Shot {i}: a lighthouse at dusk, waves, slow dolly.", "seed": i}
        for i in range(jobs)
    ]
    (root / "project.yaml").write_text(
        yaml.safe_dump(
            {"defaults": ["wanbatch", "_self_"], "project": {"name": "remote-bench"}, "scenes": scenes}, sort_keys=False
        )
    )
    overrides = [
        f"backend={BACKEND}",
        f"backend.base_url={url}",
        f"backend.max_in_flight={concurrency}",
        "backend.requests_per_second=null",
        *(f"backend.poll.{k}={v}" for k, v in POLL.items()),
        f"executor.concurrency={concurrency}",
        "executor.progress=none",
        "stitch.enabled=false",
        "report=false",
        f"cache.dir={tmp / 'cache'}",
    ]
    return load_config(root / "project.yaml", overrides), root


def run_once(server: FakeServer, tmp: Path, jobs: int, concurrency: int) -> dict[str, Any]:
    from wanbatch.runs.run import run_project

    cfg, root = _config(tmp, server.url, jobs, concurrency)
    server.reset()
    run_dir = tmp / "run"
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, t0 = time.process_time(), time.perf_counter()
    with open(os.devnull, "w") as devnull:
        code = run_project(cfg, run_dir, root, out=devnull).exit_code
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime)
    data = json.loads((run_dir / "manifest.json").read_text())
    statuses: dict[str, int] = {}
    for s in data["scenes"]:
        statuses[s["status"]] = statuses.get(s["status"], 0) + 1
    polls = [s["info"].get("polls", 0) for s in data["scenes"] if s["status"] == "rendered"]
    job_s = [s["info"].get("seconds", 0.0) for s in data["scenes"] if s["status"] == "rendered"]
    stragglers = sum(1 for x in job_s if x > 2 * server.latency_s)
    timings = [s["info"].get("timings", {}) for s in data["scenes"] if s["status"] == "rendered"]
    phases = {k: sorted(t[k] for t in timings if k in t) for k in ("submit", "provider", "download")}
    stats = server.stats()
    return {
        "code": code,
        "wall_s": wall,
        "cpu_s": cpu,
        "child_cpu_s": child_cpu,
        "statuses": statuses,
        "polls_per_job": sum(polls) / max(1, len(polls)),
        "server_polls": stats["total"].get("polls", 0),
        "server_submissions": stats["total"].get("submissions", 0),
        "server_max_active": max(stats.get("max_active", {}).values(), default=0),
        "server_connections": stats.get("connections", 0),
        "job_s_median": median(job_s) if job_s else float("nan"),
        "job_s_max": max(job_s, default=0.0),
        "stragglers": stragglers,
        "phases": phases,
    }


def _phase(xs: list[float], scale: float, unit: str) -> str:
    if not xs:
        return "n/a"
    fmt = ".0f" if unit == "ms" else ".3f"
    return f"{median(xs) * scale:{fmt}} / {xs[int(0.9 * (len(xs) - 1))] * scale:{fmt}} {unit}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__.splitlines()[0])
    jobs, concurrency, latency = (100, 50, 2.0) if args.quick else (200, 50, 2.0)
    reps = 1 if args.quick else 3
    os.environ.setdefault("NOVITA_API_KEY", "bench-key")  # the fake takes any non-empty key
    ideal = math.ceil(jobs / concurrency) * latency
    runs = []
    with FakeServer(latency) as server:
        for i in range(reps):
            with tempfile.TemporaryDirectory(prefix="wanbatch-bench-remote-") as tmp:
                runs.append(run_once(server, Path(tmp) / f"r{i}", jobs, concurrency))
    bad = [r for r in runs if r["code"] != 0 or r["statuses"].get("rendered", 0) != jobs]
    r = sorted(runs, key=lambda x: x["wall_s"])[len(runs) // 2]  # the median run, all its figures together
    ratio = r["wall_s"] / ideal
    figures = [
        figure(
            f"wall, {jobs} jobs, {latency:g} s latency, concurrency {concurrency}",
            f"{r['wall_s']:.2f} s (ideal {ideal:g} s)",
        ),
        figure("wall / ideal", f"{ratio:.3f}", f"<= {TARGET}", ratio <= TARGET and not bad),
        figure("polls per job (wanbatch / server)", f"{r['polls_per_job']:.2f} / {r['server_polls'] / jobs:.2f}"),
        figure("driver CPU per job (this process)", f"{r['cpu_s'] / jobs * 1e3:.1f} ms"),
        figure("driver CPU per job incl. its ffmpeg probes", f"{(r['cpu_s'] + r['child_cpu_s']) / jobs * 1e3:.1f} ms"),
        figure("job time at the driver: median / max", f"{r['job_s_median']:.2f} / {r['job_s_max']:.2f} s"),
        figure(f"jobs taking over twice the latency ({2 * latency:g} s)", str(r["stragglers"])),
        figure("per job, median / p90: the submit call", _phase(r["phases"]["submit"], 1e3, "ms")),
        figure("  at the provider (taken -> seen final; incl. poll jitter)", _phase(r["phases"]["provider"], 1, "s")),
        figure("  download + check (the next job is already submitted)", _phase(r["phases"]["download"], 1e3, "ms")),
        figure(
            "submissions seen by the server; most jobs active at once; connections opened",
            f"{r['server_submissions']}; {r['server_max_active']}; {r['server_connections']}",
        ),
    ]
    walls = ", ".join(f"{x['wall_s']:.2f}" for x in runs)
    notes = [
        f"Median of {reps} runs by wall (all figures from that run; walls: {walls} s). Backend `{BACKEND}` with "
        f"backend.poll = {POLL}, requests_per_second null (the fake has no rate limit).",
        "wall = run_project in-process: plan, cache lookups, submits, polls, downloads, video checks, "
        "cache stores, manifest; CLI start-up is not in it (see the rerun benchmark for that).",
    ]
    if bad:
        notes.append(f"NOT ALL JOBS RENDERED: {[x['statuses'] for x in bad]}")
    return result(
        "remote",
        "3. Remote throughput (fake provider)",
        figures,
        notes=notes,
        raw={"runs": runs, "ideal_s": ideal},
        quick=args.quick,
    )


if __name__ == "__main__":
    print_result(main())
