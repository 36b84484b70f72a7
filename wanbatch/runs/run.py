"""One run, top to bottom: validate, plan, look up, execute, stitch, report. Returns a `RunResult`, whose
`exit_code` is the console script's exit status:

0  every scene is done (rendered or cached)
1  some scene failed; every other clip is kept and cached
2  the project is invalid: nothing ran, nothing was sent, nothing was cached
3  wanbatch itself failed after work began (a bug, a broken environment): every clip that finished is kept
   in the run folder's clips/ and in the cache, and the message says where
130 interrupted (Ctrl-C); every finished clip is kept and cached, and so is every remote render the
    provider had finished (paid for), whose download completes first unless Ctrl-C comes again
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from wanbatch.av.encode import EncodeSettings
from wanbatch.backends import build_backends
from wanbatch.cache.checked import CheckedMedia
from wanbatch.cache.live import Registration
from wanbatch.cache.store import Cache
from wanbatch.config.checks import choice, number
from wanbatch.config.load import backend_configs, key_variables
from wanbatch.config.schema import ExecutorConfig, RayExecutorConfig, WanbatchConfig
from wanbatch.core.backend import Backend
from wanbatch.core.heap import frozen_heap
from wanbatch.core.outcome import Outcome
from wanbatch.core.plan import Plan, make_plan
from wanbatch.core.project import load_project
from wanbatch.errors import ConfigError, Issue
from wanbatch.execute.common import first_line_of
from wanbatch.film.clips import check_stitch
from wanbatch.runs.estimate import Estimate, budget_issues, estimate
from wanbatch.runs.manifest import Manifest
from wanbatch.runs.progress import Progress
from wanbatch.secrets import guard_logging, redacted_console, redacting, register_config, register_key_variables

EXECUTORS = ("local", "ray")
PROGRESS = ("auto", "rich", "plain", "none")
CRASHED = 3  # the exit status of a run that wanbatch itself broke off after work began


@dataclass(frozen=True)
class RunResult:
    """How a run ended. `run_dir`, `film` and `manifest` are None where the run wrote nothing (an invalid
    project, a dry run) or made no film (a failed or interrupted run, `stitch.enabled: false`)."""

    exit_code: int  # 0 done, 1 some scene failed, 2 invalid project (nothing ran), 3 crashed, 130 interrupted
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
    # Every secret this run could meet is known before anything is printed, sent or written: the key
    # variables' values, and whatever the config holds under a credential-looking name.
    register_config(cfg)
    register_key_variables(key_variables())
    guard_logging()
    with redacted_console():
        return _run(cfg, run_dir, project_root, backends, redacting(out or sys.stdout), cancel)


def _run(
    cfg: WanbatchConfig,
    run_dir: Path,
    project_root: Path,
    backends: Mapping[str, Backend] | None,
    out: TextIO,
    cancel: threading.Event | None,
) -> RunResult:
    started = time.time()
    cache_dir = Path(cfg.cache.dir).expanduser()
    checks = CheckedMedia(cache_dir)  # media inputs earlier runs found whole; written once this run may write
    # 1. Validate and plan. Nothing outside this process is touched until both have passed.
    try:
        with _no_cyclic_gc():
            plan, encode = _plan(cfg, project_root, backends, checks)
        _check_executor(cfg)
        if cfg.stitch.enabled:
            check_stitch(cfg.stitch)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return RunResult(2)
    except KeyboardInterrupt:
        print("interrupted while planning: nothing ran, nothing was sent or cached", file=sys.stderr)
        return RunResult(130)

    # 2. Look up the cache (read only: an invalid run writes nothing) and estimate the cost; a run over its
    # budget stops here, before any request. A dry run stops here anyway.
    found = Cache(cache_dir, readonly=True) if cache_dir.is_dir() else None
    _print_notes(found, out)
    plan_out = Path(cfg.plan_out).expanduser() if cfg.plan_out else None
    with _no_cyclic_gc():
        est = estimate(plan, found, verify=cfg.dry_run)
        print_summary(plan, found, est, out, brief=not cfg.dry_run, budget=cfg.budget, plan_out=plan_out)
    over = budget_issues(est, cfg.budget)
    if found is not None:
        found.close()
    if over or cfg.dry_run:
        _close(plan)
        if over:
            print(f"error: {ConfigError(over)}", file=sys.stderr)
        return RunResult(2 if over else 0)
    for name in est.by_backend:  # the backends with jobs to render (none in a fully cached rerun)
        plan.backends[name].warm()
    cache = Cache(cache_dir)
    cache.project = plan.project.name  # recorded in each entry it puts (`wanbatch cache list --project`)
    if cache.notes != (found.notes if found is not None else []):
        _print_notes(cache, out)
    progress = Progress(mode=cfg.executor.progress, concurrency=cfg.executor.concurrency)
    try:
        if cache.readonly:
            _check_readonly_cache(plan, cache)
        executor = _executor(cfg.executor, cache, encode, progress, cancel)
        # What the executor will reserve, against what it has (ray: the cluster's CPUs and GPUs): a run that
        # could never finish stops here, with the numbers, before anything ran.
        prepare = getattr(executor, "prepare", None)
        for note in prepare(plan) if callable(prepare) else []:
            print(f"note: {note}", file=out)
        registration = None if cache.readonly else cache.register(j.key for j in plan.jobs)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _close(plan)
        cache.close()
        return RunResult(2)
    except KeyboardInterrupt:
        print("interrupted before anything ran: nothing was sent or cached", file=sys.stderr)
        _close(plan)
        cache.close()
        return RunResult(130)
    try:
        if not cache.readonly:
            checks.flush()
        swept = cache.sweep_leftovers()
        if swept["tmp"] or swept["partial"]:
            print(
                f"note: removed what runs that ended left in the cache: {swept['tmp']} scratch folder(s), "
                f"{swept['partial']} partial blob(s) ({swept['bytes'] / 1e6:.1f} MB)",
                file=out,
            )
        # what start-up and planning left alive is kept out of the cyclic collector's walks (wanbatch.core.heap)
        with frozen_heap():
            return _execute(
                cfg, plan, encode, cache, executor, progress, run_dir, project_root, started, out, registration, est
            )
    finally:
        if registration is not None:
            registration.close()
        cache.close()


def _execute(
    cfg: WanbatchConfig,
    plan: Plan,
    encode: EncodeSettings,
    cache: Cache,
    executor: Any,
    progress: Progress,
    run_dir: Path,
    project_root: Path,
    started: float,
    out: TextIO,
    registration: Registration | None,
    est: Estimate,
) -> RunResult:
    """Steps 3 and 4: once work has begun, every way out keeps what finished and says where it is."""
    from wanbatch.runs import environment, manifest
    from wanbatch.runs.outputs import RunOutputs, link_latest

    run_dir.mkdir(parents=True, exist_ok=True)
    from wanbatch.runs.posters import EarlyPosters

    # The report's posters are cut as the clips land, alongside the renders (not after the last one); what made
    # the clips (versions, ffmpeg, the project's git commit) is read while they render
    early = EarlyPosters(run_dir, cache.dir / "posters") if cfg.report else None
    outputs = RunOutputs(
        run_dir,
        plan,
        started,
        estimates=est.per_scene,
        cache=cache,
        posters=early,
        probe=cfg.stitch.enabled,
        environment=environment.collect_in_background(project_root),
    )
    interrupted = False
    try:
        # 3. Execute. Each finished clip is cached at once and recorded in the manifest as it lands.
        progress.start([(j.id, j.backend) for j in plan.jobs])
        outcomes: dict[str, Outcome] = {}
        try:
            outcomes = executor.run(plan, on_done=outputs.add, on_idle=outputs.warm)
        except KeyboardInterrupt:
            interrupted = True
            outcomes = outputs.outcomes
        finally:
            progress.stop()
            # what the backends that rendered say of themselves (devices, models), while they are still open
            rendered = [plan.job(o.scene) for o in outputs.outcomes.values() if o.status == "rendered"]
            outputs.backends_environment = environment.backends_ran(plan.backends, rendered)
            _close(plan)

        # 4. Film and report, from the picked take of every scene. A scene whose picked take failed gets a slate
        # in the film (or is left out), unless `stitch.on_failure: none`; never a film with no clip at all.
        failed = [o for o in outcomes.values() if not o.ok]
        film = None
        notes: dict[str, Any] = {}
        film_failed = [j for j in plan.film_jobs if not (j.id in outcomes and outcomes[j.id].ok)]
        partial_ok = cfg.stitch.on_failure != "none" and len(film_failed) < len(plan.film_jobs)
        if (not film_failed or partial_ok) and not interrupted and cfg.stitch.enabled:
            progress.phase("joining film")
            try:
                film, notes = outputs.stitch(cfg.stitch, encode, plan.project.soundtrack, cache, registration)
            except KeyboardInterrupt:
                interrupted = True
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
                "cost": est.as_dict(cfg.budget),
            },
        )
        if cfg.report:
            progress.phase("writing report")
            outputs.report(data)
        manifest.write(run_dir, data)
        link_latest(run_dir, plan.project.name)
    except KeyboardInterrupt:  # a second Ctrl-C while the film or the report was made
        outputs.close()
        data = _last_words(outputs, cache, executor)
        _print_result(data, run_dir, out, True)
        return RunResult(130, run_dir, None, data)
    except Exception as exc:
        # A bug or a broken environment, not a scene: say so, keep the record, point at what is kept.
        outputs.close()
        traceback.print_exc(file=sys.stderr)
        data = _last_words(outputs, cache, executor)
        done = sum(1 for o in outputs.outcomes.values() if o.ok)
        print(
            f"error: wanbatch failed after work began ({first_line_of(exc)}); clips kept in {run_dir / 'clips'} "
            f"({done} finished, every one also in the cache {cache.dir}): a rerun renders only what is missing",
            file=sys.stderr,
        )
        return RunResult(CRASHED, run_dir, None, data)
    outputs.close()
    _print_result(data, run_dir, out, interrupted)
    code = 130 if interrupted else 1 if failed else 0
    return RunResult(code, run_dir, run_dir / film if film else None, data)


def _last_words(outputs: Any, cache: Cache, executor: Any) -> Manifest:
    """The manifest of a run that stops early: every finished scene as it is; written where possible."""
    from wanbatch.runs import manifest

    try:
        summary = _summary(executor) if executor is not None else {}
    except Exception:
        summary = {}
    data: Manifest = outputs.manifest(
        extra={"cache_dir": str(cache.dir), "repaired": cache.repaired, "executor": summary}
    )
    with contextlib.suppress(OSError):
        manifest.write(outputs.run_dir, data)
    return data


def _print_notes(cache: Cache | None, out: TextIO) -> None:
    for note in cache.notes if cache is not None else []:
        print(f"note: {note}", file=out)


def _check_readonly_cache(plan: Plan, cache: Cache) -> None:
    """A cache this process may not write serves hits only: a scene it does not hold could be rendered but
    never stored (and a paid render would be paid again next time), so such a run does not start."""
    missing = [job.id for job in plan.jobs if cache.verify(job.key)[0] != "cached"]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ConfigError(
            [
                Issue(
                    None,
                    "cache.dir",
                    str(cache.dir),
                    f"it is read-only here and {len(missing)} of {len(plan.jobs)} scenes are not in it ({shown}): "
                    "pass a cache.dir you can write (e.g. a copy of this one), or dry_run=true to look",
                )
            ]
        )


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


def _plan(
    cfg: WanbatchConfig, root: Path, backends: Mapping[str, Backend] | None, checks: CheckedMedia | None = None
) -> tuple[Plan, EncodeSettings]:
    encode = cfg.encode
    project = load_project(cfg, root, backend_configs(cfg), checks=checks)
    plan = make_plan(project, build_backends(project.backend_configs, backends), encode=encode)
    issues: list[Issue] = []
    # its range here; the amount is held to the estimate once the cache has been looked up
    number(
        issues, "budget", cfg.budget, minimum=0, nullable=True, allowed="a number of USD >= 0, or null for no budget"
    )
    try:
        plan = _mark_resubmits(plan, cfg.resubmit_ambiguous)
    except ConfigError as exc:
        issues += exc.issues
    if issues:
        _close(plan)
        raise ConfigError(issues)
    return plan, encode


def _mark_resubmits(plan: Plan, ids: list[str]) -> Plan:
    """`resubmit_ambiguous=[a, b]`: the user checked that earlier ambiguous submits of these scenes were not
    accepted; their jobs may be sent again. Every id must name a scene of this project."""
    if not ids:
        return plan
    known = [j.id for j in plan.jobs]
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(
            [Issue(None, "resubmit_ambiguous", unknown, f"ids of this project's scenes: {', '.join(known)}")]
        )
    jobs = [dataclasses.replace(j, resubmit_ambiguous=True) if j.id in ids else j for j in plan.jobs]
    return dataclasses.replace(plan, jobs=jobs)


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
    plan: Plan,
    cache: Cache | None,
    est: Estimate,
    out: TextIO,
    *,
    brief: bool = False,
    budget: float | None = None,
    plan_out: Path | None = None,
) -> None:
    """The dry-run plan (a table of scene, backend, model, seed, seconds of video, estimated cost, cached or
    why it missed, up to TABLE_MAX scenes; beyond, a summary per backend and cache state, see
    wanbatch.runs.plan_view), the notes, then what would render and what it would cost, per backend and in
    total; `plan_out` gets every row as a JSON line."""
    from wanbatch.runs.plan_view import plan_rows, show, write_plan

    def state_of(job: Any) -> str:
        state = est.why_free.get(job.id)  # cached, or not sent again (the estimate looked each job up once)
        if state is None and job.id in est.corrupt:
            state = "blob missing or corrupt: will re-render"
        elif state is None:  # a take's miss is explained against its scene's other renders
            state = cache.explain_miss(job.scene.id, job.material) if cache is not None else "new: empty cache"
        return state

    rows = plan_rows(plan, state_of, lambda job: est.per_scene.get(job.id))
    if plan_out is not None:
        write_plan(plan_out, rows)
    # Decisions the user did not spell out (e.g. frames rounded to 4k+1): never silent. A real run (brief) tells
    # them for the scenes about to render; a cache hit was told when it rendered.
    show(rows, plan.project.name, out, table=not brief, written=plan_out is not None, cached_notes=not brief)
    to_render = sum(c.to_render for c in est.by_backend.values())
    seconds = sum(c.seconds for c in est.by_backend.values())
    if not brief:
        for name, c in sorted(est.by_backend.items()):
            print(f"cost: {name}: {c.to_render} to render, {c.seconds:.1f} s of video, {c.describe()}", file=out)
    limit = f" (budget ${budget:.2f})" if budget is not None else ""
    cached = sum(1 for why in est.why_free.values() if why == "cached")
    held = len(est.why_free) - cached  # paid already (re-attached) or ambiguous: not sent again
    scenes = len(plan.film_jobs)
    what = f"{scenes} scenes" if scenes == len(plan.jobs) else f"{scenes} scenes ({len(plan.jobs)} takes)"
    written = f"; the plan is in {plan_out}" if plan_out is not None else ""
    print(
        f"{what}: {cached} cached, {f'{held} not sent again, ' if held else ''}{to_render} to render "
        f"({seconds:.1f} s of video, est. cost {est.describe()}{limit}){written}",
        file=out,
    )


def _print_result(data: Manifest, run_dir: Path, out: TextIO, interrupted: bool) -> None:
    """The last lines: the four counts always (a scene not started when Ctrl-C came counts as cancelled), each
    failure once, and what to do about failures."""
    c = data["counts"]
    cancelled = c.get("cancelled", 0) + c.get("pending", 0)
    counts = (
        f"{c.get('rendered', 0)} rendered, {c.get('cached', 0)} cached, {c.get('failed', 0)} failed, "
        f"{cancelled} cancelled"
    )
    head = "interrupted" if interrupted else "done"
    print(f"{head}: {counts}; run directory {run_dir}", file=out)
    if data["film"]:
        partial = (data.get("stitch") or {}).get("partial")
        how = "slates for" if partial and partial["on_failure"] == "slate" else "without"
        note = f" (partial: {how} {', '.join(partial['scenes'])})" if partial else ""
        print(f"film: {run_dir / data['film']}{note}", file=out)
    failed = [s for s in data["scenes"] if s["status"] == "failed"]
    for s in failed:
        # An error raised for a scene often names it already; say it once.
        error = re.sub(rf"^scene `{re.escape(s['id'])}`: ", "", str(s["error"] or ""))
        print(f"failed: scene `{s['id']}`: {error}", file=out)
    if failed:
        print(
            f"{len(failed)} scene{'s' if len(failed) != 1 else ''} failed; running the same command again renders only "
            f"{'those' if len(failed) != 1 else 'that one'} (the rest come from the cache); the errors are in "
            f"{run_dir / 'manifest.json'} and {run_dir / 'wanbatch.log'}",
            file=out,
        )
