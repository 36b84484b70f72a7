"""`executor=ray` against `executor=local` on the tiny Wan models, with 2 logical GPUs, and Ray's start-up cost.

    python benchmarks/bench_ray.py [--quick]

1. Ray's own start-up on this machine: `ray.init` of a local instance (2 logical GPUs), two render actors
   started and answering, `ray.shutdown`.
2. One project (half text-to-video on tiny-t2v, half image-to-video on tiny-i2v) rendered from an empty
   cache by the console script in a fresh process, once per executor: wall time of the whole command
   and of the run itself (manifest `started` to `finished`), summed model time (pipeline load + denoise),
   and how the jobs spread over the Ray actors. Both runs must give byte-identical clips.
3. The same in this process with torch already imported and Ray already up (what a notebook or a
   sweep's members see): local, then ray twice on empty caches; the second ray run finds the render
   actors of the first with their pipelines loaded (`executor.keep_actors`), as a sweep's next member does.

On CPU the two logical GPUs share the machine's cores, so Ray cannot be faster here than the local
executor (which already uses every core in one process); the figures show what Ray's scheduling, actor
start-up (a fresh Python importing torch per actor) and transfer of clip bytes cost. On a machine with
N real GPUs the model time divides by up to N.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO_ROOT, figure, parse_args, print_result, result, skipped

TITLE = "Ray executor vs local executor (tiny Wan models, 2 logical GPUs)"
DAY = Path(REPO_ROOT) / "recipes" / "demo" / "assets" / "day.png"


def project_yaml(n_scenes: int) -> str:
    """n scenes: the first half on tiny-t2v, the second half on tiny-i2v from the demo's first frame."""
    lines = [
        "defaults:",
        "  - wanbatch",
        "  - _self_",
        "project:",
        "  name: bench-ray",
        "  defaults: {resolution: 720P, duration: 2.0, steps: 4}",
        "scenes:",
    ]
    for i in range(n_scenes):
        if i < n_scenes // 2:
            lines += [
                f"  - id: t2v_{i}",
                f"    prompt: a fox crossing a field, take {i}",
                f"    seed: {i}",
                "    model: tiny-t2v",
            ]
        else:
            lines += [
                f"  - id: i2v_{i}",
                f"    prompt: the hills at dawn, take {i}",
                f"    seed: {i}",
                "    model: tiny-i2v",
                f"    image: {DAY}",
            ]
    return "\n".join(lines) + "\n"


def overrides(models: Path, cache: Path, run_dir: Path, executor: list[str]) -> list[str]:
    return [
        "backend=diffusers",
        "backend.model=tiny-t2v",
        f"backend.models_dir={models}",
        "backend.warm_models=2",
        f"cache.dir={cache}",
        f"hydra.run.dir={run_dir}",
        "stitch.enabled=false",
        "report=false",
        "executor.progress=none",
        *executor,
    ]


RAY = ["executor=ray", "executor.num_gpus=2", "executor.num_cpus=4"]
LOCAL: list[str] = []


def summarise(run_dir: Path) -> dict[str, Any]:
    m = json.loads((run_dir / "manifest.json").read_text())
    scenes = m["scenes"]
    assert {s["status"] for s in scenes} == {"rendered"}, [(s["id"], s["status"], s["error"]) for s in scenes]
    workers: dict[str, int] = {}
    for s in scenes:
        w = s["info"].get("worker")
        if w:
            workers[w] = workers.get(w, 0) + 1
    return {
        "run_s": m["finished"] - m["started"],
        "model_s": sum(s["info"].get("load_s", 0.0) + s["info"].get("render_s", 0.0) for s in scenes),
        "loads": sum(1 for s in scenes if not s["info"].get("warm", True)),
        "workers": workers,
        "clips": [hashlib.sha256((run_dir / s["clip"]).read_bytes()).hexdigest() for s in scenes],
    }


def cli_run(project: Path, models: Path, tmp: Path, name: str, executor: list[str]) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "wanbatch.cli",
        "--config-dir",
        str(project.parent),
        "--config-name",
        project.stem,
        *overrides(models, tmp / f"cache-{name}", tmp / f"run-{name}", executor),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{name} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, **summarise(tmp / f"run-{name}")}


def in_process_run(project: Path, models: Path, tmp: Path, name: str, executor: list[str]) -> dict[str, Any]:
    from wanbatch.config.load import load_config
    from wanbatch.runs.run import run_project

    cfg = load_config(project, overrides(models, tmp / f"cache-{name}", tmp / f"run-{name}", executor))
    t0 = time.perf_counter()
    code = run_project(cfg, tmp / f"run-{name}", project.parent, out=open(os.devnull, "w")).exit_code  # noqa: SIM115
    wall = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"{name} run failed with exit status {code}")
    return {"wall_s": wall, **summarise(tmp / f"run-{name}")}


def ray_startup() -> dict[str, float]:
    """ray.init of a local instance, two render actors up and answering, shutdown."""
    import ray

    from wanbatch.execute.ray.actors import RenderWorker

    t0 = time.perf_counter()
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    t1 = time.perf_counter()
    cls = ray.remote(max_concurrency=1, concurrency_groups={"control": 2})(RenderWorker)
    actors = [cls.options(num_gpus=1, num_cpus=1).remote(f"gpu-{i}") for i in range(2)]
    ray.get([a.stats.options(concurrency_group="control").remote() for a in actors])
    t2 = time.perf_counter()
    for a in actors:
        ray.kill(a)
    ray.shutdown()
    t3 = time.perf_counter()
    return {"init_s": t1 - t0, "actors_s": t2 - t1, "shutdown_s": t3 - t2}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__.splitlines()[0])
    missing = [m for m in ("ray", "torch", "diffusers") if importlib.util.find_spec(m) is None]
    if missing:
        return skipped("ray", TITLE, f"needs {', '.join(missing)} (pip install 'wanbatch[local,ray]')")
    n = 4 if args.quick else 8
    tmp = Path(tempfile.mkdtemp(prefix="wanbatch-bench-ray-"))
    try:
        project = tmp / "project.yaml"
        project.write_text(project_yaml(n))
        models = tmp / "models"
        from wanbatch.backends.local.models.tiny import ensure_tiny

        for name in ("tiny-t2v", "tiny-i2v"):  # built once, outside every timing
            ensure_tiny(name, models)

        # 1. Ray alone, 2. cold processes, 3. a warm process (Ray up, torch imported)
        start = ray_startup()
        cold_local = cli_run(project, models, tmp, "cold-local", LOCAL)
        cold_ray = cli_run(project, models, tmp, "cold-ray", RAY)
        warm_local = in_process_run(project, models, tmp, "warm-local", LOCAL)
        import ray

        from wanbatch.execute.ray.executor import release_actors

        ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
        try:
            warm_ray = in_process_run(project, models, tmp, "warm-ray", RAY)
            next_ray = in_process_run(project, models, tmp, "next-ray", RAY)
            one = [*RAY, "executor.actor_threads=1"]  # new actors: the pool's shape changed
            warm_ray1 = in_process_run(project, models, tmp, "warm-ray-1t", one)
            next_ray1 = in_process_run(project, models, tmp, "next-ray-1t", one)
        finally:
            release_actors()
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    runs = (cold_local, cold_ray, warm_local, warm_ray, next_ray)
    same = all(r["clips"] == cold_local["clips"] for r in runs)
    spread = ", ".join(f"{w}: {k} jobs" for w, k in sorted(cold_ray["workers"].items()))
    figures = [
        figure("ray.init, local instance with 2 logical GPUs", f"{start['init_s']:.2f} s"),
        figure("2 render actors started and answering", f"{start['actors_s']:.2f} s"),
        figure("ray.shutdown", f"{start['shutdown_s']:.2f} s"),
        figure(f"cold CLI, {n} scenes: local executor", f"{cold_local['wall_s']:.2f} s"),
        figure(f"cold CLI, {n} scenes: ray executor", f"{cold_ray['wall_s']:.2f} s"),
        figure(
            "cold run (manifest started -> finished): local / ray",
            f"{cold_local['run_s']:.2f} / {cold_ray['run_s']:.2f} s",
        ),
        figure(
            "model time summed over scenes (load + denoise): local / ray",
            f"{cold_local['model_s']:.2f} / {cold_ray['model_s']:.2f} s",
        ),
        figure("pipeline loads: local / ray", f"{cold_local['loads']} / {cold_ray['loads']}"),
        figure("ray jobs per actor", spread),
        figure(
            "one process (torch imported, Ray up): local / ray / ray again",
            f"{warm_local['wall_s']:.2f} / {warm_ray['wall_s']:.2f} / {next_ray['wall_s']:.2f} s",
        ),
        figure(
            "pipeline loads: ray / ray again (actors kept, models loaded)", f"{warm_ray['loads']} / {next_ray['loads']}"
        ),
        figure(
            "same with executor.actor_threads=1: ray / ray again",
            f"{warm_ray1['wall_s']:.2f} / {next_ray1['wall_s']:.2f} s",
        ),
        figure(
            "actor_threads=1 clips identical to local's",
            "yes" if next_ray1["clips"] == cold_local["clips"] else "no (fewer threads, other float sums)",
        ),
        figure(f"clips byte-identical across the {len(runs)} runs", "yes" if same else "NO", "yes", same),
    ]
    notes = [
        f"{n} scenes: {n // 2} on tiny-t2v, {n - n // 2} on tiny-i2v; 128x80, 33 frames, 4 steps; "
        "tiny models built before any timing.",
        "Ray runs: executor.num_gpus=2 (logical) and num_cpus=4 on this machine's cores. Render actors run "
        "torch with this process's thread setting (as executor=local does, so the pixels match), so on CPU "
        "two actors oversubscribe the cores that the local executor's single process uses alone; "
        "executor.actor_threads=1 avoids that, at the price of other pixels (thread count changes float sums).",
        "A ray run's 'again' may still load a model: an idle actor takes a job of a model it does not hold "
        "rather than wait.",
        "A process's first ray run starts its render actors (a new Python importing torch and diffusers per "
        "actor) and loads each model once per actor that renders it; its next runs reuse them, models loaded "
        "(executor.keep_actors).",
    ]
    raw = {
        "startup": start,
        "cold_local": cold_local,
        "cold_ray": cold_ray,
        "warm_local": warm_local,
        "warm_ray": warm_ray,
        "next_ray": next_ray,
        "warm_ray_1t": warm_ray1,
        "next_ray_1t": next_ray1,
    }
    for r in raw.values():
        if isinstance(r, dict):
            r.pop("clips", None)
    return result("ray", TITLE, figures, notes=notes, raw=raw, quick=args.quick)


if __name__ == "__main__":
    print_result(main())
