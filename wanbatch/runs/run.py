"""One run, top to bottom: validate, plan, look up, execute, stitch, report. Returns a `RunResult`, whose
`exit_code` is the console script's exit status:

0  every scene is done (rendered or cached)
1  some scene failed; every other clip is kept and cached
2  the project is invalid: nothing ran, nothing was sent, nothing was cached
130 interrupted (Ctrl-C); every finished clip is kept and cached, and so is every remote render the
    provider had finished (paid for), whose download completes first unless Ctrl-C comes again
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from wanbatch.av.encode import EncodeSettings
from wanbatch.backends import build_backends
from wanbatch.cache.store import Cache
from wanbatch.config.checks import choice, number
from wanbatch.config.load import backend_configs
from wanbatch.config.schema import ExecutorConfig, RayExecutorConfig, WanbatchConfig
from wanbatch.core.backend import Backend
from wanbatch.core.outcome import Outcome
from wanbatch.core.plan import Plan, make_plan
from wanbatch.core.project import load_project
from wanbatch.errors import ConfigError, Issue
from wanbatch.film.clips import check_stitch
from wanbatch.runs.manifest import Manifest
from wanbatch.runs.progress import Progress

EXECUTORS = ("local", "ray")
PROGRESS = ("auto", "rich", "plain", "none")


@dataclass(frozen=True)
class RunResult:
    """How a run ended. `run_dir`, `film` and `manifest` are None where the run wrote nothing (an invalid
    project, a dry run) or made no film (a failed or interrupted run, `stitch.enabled: false`)."""

    exit_code: int  # 0 done, 1 some scene failed, 2 invalid project (nothing ran), 130 interrupted
    run_dir: Path | None = None
    film: Path | None = None
    manifest: Manifest | None = None  # what manifest.json holds

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_project(
    cfg: WanbatchConfig,
    run_dir: Path,
    project_root: Path,
    *,
    backends: Mapping[str, Backend] | None = None,
    out: TextIO | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Run a composed project config (what `load_config` returns) with its outputs in `run_dir`; media paths are
    relative to `project_root`. `backends` replaces backends by name (tests, tools).

    Example::

        cfg = load_config("recipes/demo/project.yaml", ["cache.dir=/tmp/wan-cache"])
        result = run_project(cfg, Path("outputs/demo"), Path("recipes/demo"))
        result.exit_code, result.film      # (0, PosixPath('outputs/demo/film.mp4'))
    """
    out = out or sys.stdout
    started = time.time()
    # 1. Validate and plan. Nothing outside this process is touched until both have passed.
    try:
        with _no_cyclic_gc():
            plan, encode = _plan(cfg, project_root, backends)
        _check_executor(cfg)
        if cfg.stitch.enabled:
            check_stitch(cfg.stitch)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return RunResult(2)

    # 2. Look up the cache. A dry run stops here, having written nothing.
    cache_dir = Path(cfg.cache.dir).expanduser()
    plan_out = Path(cfg.plan_out).expanduser() if cfg.plan_out else None
    if cfg.dry_run:
        cache = Cache(cache_dir) if (cache_dir / "index").is_dir() else None
        with _no_cyclic_gc():
            print_summary(plan, cache, out, plan_out=plan_out)
        _close(plan)
        return RunResult(0)
    cache = Cache(cache_dir)
    print_summary(plan, cache, out, brief=True, plan_out=plan_out)

    # 3. Execute. Each finished clip is cached at once and recorded in the manifest as it lands.
    run_dir.mkdir(parents=True, exist_ok=True)
    from wanbatch.runs import manifest
    from wanbatch.runs.outputs import RunOutputs
    from wanbatch.runs.posters import EarlyPosters

    # The report's posters are cut as the clips land, alongside the renders (not after the last one)
    early = EarlyPosters(run_dir, cache.dir / "posters") if cfg.report else None
    outputs = RunOutputs(run_dir, plan, started, posters=early, probe=cfg.stitch.enabled)
    progress = Progress(mode=cfg.executor.progress, concurrency=cfg.executor.concurrency)
    progress.start([(j.id, j.backend) for j in plan.jobs])
    executor = _executor(cfg.executor, cache, encode, progress, cancel)
    interrupted = False
    outcomes: dict[str, Outcome] = {}
    try:
        outcomes = executor.run(plan, on_done=outputs.add)
    except KeyboardInterrupt:
        interrupted = True
        outcomes = outputs.outcomes
    finally:
        progress.stop()
        _close(plan)

    # 4. Film and report: only from a complete set of clips, so the film never silently skips a scene.
    failed = [o for o in outcomes.values() if not o.ok]
    film = None
    notes: dict[str, Any] = {}
    if not failed and not interrupted and cfg.stitch.enabled:
        try:
            film, notes = outputs.stitch(cfg.stitch, encode, plan.project.soundtrack, cache)
        except Exception as exc:  # the clips are safe; say what went wrong with the film
            print(f"error: the clips are kept in {run_dir}/clips, but the film failed: {exc}", file=sys.stderr)
            failed.append(Outcome("film", "failed", "", error=str(exc)))
    data = outputs.manifest(
        film=film,
        extra={
            "stitch": notes,
            "cache_dir": str(cache.dir),
            "repaired": cache.repaired,
            "executor": _summary(executor),
        },
    )
    if cfg.report:
        outputs.report(data)
    outputs.close()
    manifest.write(run_dir, data)
    cache.close()
    _print_result(data, run_dir, out, interrupted)
    code = 130 if interrupted else 1 if failed else 0
    return RunResult(code, run_dir, run_dir / film if film else None, data)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Planning makes several objects per scene and frees few: Python's cyclic collector would walk them all
    over and over as they pile up (a quarter of a 100k-scene dry run). Reference counting still frees what
    is dropped; the collector runs again afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _plan(cfg: WanbatchConfig, root: Path, backends: Mapping[str, Backend] | None) -> tuple[Plan, EncodeSettings]:
    encode = cfg.encode
    project = load_project(cfg, root, backend_configs(cfg))
    return make_plan(project, build_backends(project.backend_configs, backends), encode=encode), encode


def _check_executor(cfg: WanbatchConfig) -> None:
    ex = cfg.executor
    issues: list[Issue] = []
    if choice(issues, "executor.name", ex.name, EXECUTORS) and ex.name != type(ex)().name:
        issues.append(
            Issue(None, "executor.name", ex.name, f"`{type(ex)().name}`: choose executors with `executor={ex.name}`")
        )
    number(issues, "executor.concurrency", ex.concurrency, minimum=1, integer=True)
    choice(issues, "executor.progress", ex.progress, PROGRESS)
    if isinstance(ex, RayExecutorConfig):  # every ray option, and the `ray` extra, before anything starts
        from wanbatch.execute.ray.executor import check_config

        issues += [i for i in check_config(ex) if i not in issues]
    if issues:
        raise ConfigError(issues)


def _executor(
    ex: ExecutorConfig, cache: Cache, encode: EncodeSettings, progress: Progress, cancel: threading.Event | None
) -> Any:
    if isinstance(ex, RayExecutorConfig):
        from wanbatch.execute.ray.executor import RayExecutor

        return RayExecutor(cache, config=ex, encode=encode, progress=progress, cancel=cancel)
    from wanbatch.execute.local import LocalExecutor

    return LocalExecutor(cache, concurrency=ex.concurrency, encode=encode, progress=progress, cancel=cancel)


def _summary(executor: Any) -> dict[str, Any]:
    """What the executor reports for the manifest (ray: start-up time, what each render actor did)."""
    summary = getattr(executor, "summary", None)
    return summary() if callable(summary) else {"name": "local"}


def _close(plan: Plan) -> None:
    for b in plan.backends.values():
        b.close()


def print_summary(
    plan: Plan, cache: Cache | None, out: TextIO, *, brief: bool = False, plan_out: Path | None = None
) -> dict[str, Any]:
    """The dry-run plan (a table up to TABLE_MAX scenes, a summary per backend and cache state beyond; see
    wanbatch.runs.plan_view), its notes, then totals; `plan_out` gets every row as a JSON line."""
    from wanbatch.runs.plan_view import plan_rows, show, write_plan

    def state_of(job: Any) -> str:
        if cache is None:
            return "new: empty cache"
        return "cached" if cache.peek(job.key) is not None else cache.explain_miss(job.id, job.material)

    rows = plan_rows(plan, state_of, lambda job: job.cost)
    totals = {"jobs": len(rows), "cached": 0, "to_render": 0, "seconds_to_render": 0.0, "cost": 0.0}
    for row in rows:
        if row.cache == "cached":
            totals["cached"] += 1
        else:
            totals["to_render"] += 1
            totals["seconds_to_render"] += row.seconds
            totals["cost"] += row.cost or 0.0
    if plan_out is not None:
        write_plan(plan_out, rows)
    show(rows, plan.project.name, out, table=not brief, written=plan_out is not None)
    cost = f", est. cost ${totals['cost']:.2f}" if totals["cost"] else ""
    written = f"; the plan is in {plan_out}" if plan_out is not None else ""
    print(
        f"{totals['jobs']} scenes: {totals['cached']} cached, {totals['to_render']} to render "
        f"({totals['seconds_to_render']:.1f} s of video{cost}){written}",
        file=out,
    )
    return totals


def _print_result(data: Manifest, run_dir: Path, out: TextIO, interrupted: bool) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(data["counts"].items()))
    head = "interrupted" if interrupted else "done"
    print(f"{head}: {counts}; run directory {run_dir}", file=out)
    if data["film"]:
        print(f"film: {run_dir / data['film']}", file=out)
    for s in data["scenes"]:
        if s["status"] == "failed":
            print(f"failed: scene `{s['id']}`: {s['error']}", file=out)
