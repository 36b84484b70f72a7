"""Render a finished run's scenes again and compare each new clip with the one it recorded.

The run's own saved config (`RUN_DIR/.hydra/config.yaml`, as composed with its overrides) is planned again;
each chosen job is rendered anew (the cache is not read, and not written: the recorded clip stays what the
cache holds) into `RUN_DIR/reproduce/<time>/clips/`, and compared with the clip the run recorded:
`bit-identical`, or `differs` with the PSNR of its pixels and the environment fields that changed since
(wanbatch, torch, ffmpeg, the device, ...). A chained scene starts from the last frame of its parent's
*recorded* clip, so each scene is judged on its own. Remote scenes are skipped unless `remote=True`: each is
paid for again. Example::

    result = reproduce(Path("outputs/demo/2026-01-01_10-00-00"))
    [(c.job, c.result) for c in result.checks]     # [('title', 'bit-identical'), ...]
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from wanbatch.av.encode import EncodeSettings
from wanbatch.av.files import sha256_file
from wanbatch.av.similarity import video_psnr
from wanbatch.backends import build_backends
from wanbatch.cache.store import Cache, diff_material
from wanbatch.config.load import backend_configs, project_root_from, saved_config
from wanbatch.config.schema import WanbatchConfig
from wanbatch.core.backend import BackendKind, RenderContext
from wanbatch.core.job import Job, take_id
from wanbatch.core.plan import Plan, make_plan
from wanbatch.core.project import load_project
from wanbatch.errors import ConfigError, Issue
from wanbatch.execute.common import first_line_of, with_chain_input
from wanbatch.runs import environment
from wanbatch.runs.outputs import clip_name

__all__ = ["Check", "Reproduction", "reproduce"]

Result = Literal["bit-identical", "differs", "failed", "skipped"]
JOURNAL_PREFIX = "reproduce:"  # a re-sent remote job's request id, beside (never over) the run's own


@dataclass
class Check:
    """One job of the run, rendered again (or not, and why)."""

    job: str  # the job id: the scene id, or `scene#k` for take k
    scene: str
    backend: str
    result: Result
    detail: str = ""  # why skipped or failed; what differs
    psnr: float | None = None  # dB over every frame of the two clips, for `differs`
    recorded: str | None = None  # the recorded clip
    new: str | None = None  # the new clip
    seconds: float = 0.0


@dataclass
class Reproduction:
    run_dir: Path
    out_dir: Path
    checks: list[Check]
    environment: dict[str, Any]  # this process's, as a manifest records it
    changed: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # field -> (recorded, now)

    @property
    def exit_code(self) -> int:
        """0: every clip rendered again is bit-identical; 1: one differs or failed (skipped ones do not count)."""
        return 1 if any(c.result in ("differs", "failed") for c in self.checks) else 0


def reproduce(
    run_dir: Path,
    *,
    scenes: Sequence[str] = (),
    remote: bool = False,
    out_dir: Path | None = None,
    on_check: Any = None,
) -> Reproduction:
    """Render the run's jobs (those of `scenes`: scene ids, or `scene#k` for one take) again and compare
    each with its recorded clip. Raises ConfigError (nothing rendered) when the run folder cannot be
    reproduced: no saved config, a config that no longer validates, an unknown scene."""
    run_dir = Path(run_dir)
    # 1. The run as it was: its manifest, its saved config, its project folder
    manifest, cfg, project_root = _saved_run(run_dir)
    encode = cfg.encode
    project = load_project(cfg, project_root, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs), encode=encode)
    try:
        jobs = _chosen(plan, scenes)
        recorded = _recorded(run_dir, manifest)
        out_dir = out_dir or run_dir / "reproduce" / time.strftime("%Y-%m-%d_%H-%M-%S")
        (out_dir / "clips").mkdir(parents=True, exist_ok=True)
        cache_dir = Path(cfg.cache.dir)

        # 2. What can be rendered again; the rest is skipped, saying why
        checks: dict[str, Check] = {}
        todo: list[tuple[Job, Path, Path | None]] = []
        for job in jobs:
            check = Check(job.id, job.scene.id, job.backend, "skipped")
            checks[job.id] = check
            rec = recorded.get(job.id)
            clip = _clip_of(run_dir, rec)
            if rec is None or clip is None:
                check.detail = "the run has no clip of it to compare with" + (f" ({rec['status']})" if rec else "")
            elif rec.get("cache_key") != job.key:
                check.detail = "its saved config now plans another render: " + _what_changed(
                    cache_dir, rec.get("cache_key"), job
                )
            elif plan.backends[job.backend].kind == BackendKind.REMOTE and not remote:
                check.detail = (
                    "a remote render: sending it again costs money"
                    + (f" (est. ${job.cost:.2f})" if job.cost else "")
                    + "; pass --remote to send it"
                )
            elif job.parent is not None and _clip_of(run_dir, recorded.get(job.parent)) is None:
                check.detail = f"its parent `{job.parent}` has no recorded clip to start from"
            else:
                check.recorded = str(clip)
                parent = _clip_of(run_dir, recorded.get(job.parent)) if job.parent else None
                todo.append((job, clip, parent))

        # 3. Render them again, compare each as it lands
        rendered: list[Job] = []
        with _journal(cache_dir, any(plan.backends[j.backend].kind == BackendKind.REMOTE for j, _, _ in todo)) as jr:

            def one(item: tuple[Job, Path, Path | None]) -> Check:
                job, clip, parent = item
                check = checks[job.id]
                _render_and_compare(plan, job, clip, parent, out_dir, encode, jr, check)
                if check.result != "failed":
                    rendered.append(job)
                if on_check is not None:
                    on_check(check)
                return check

            with ThreadPoolExecutor(max_workers=max(1, min(cfg.executor.concurrency, len(todo) or 1))) as pool:
                list(pool.map(one, todo))

        # 4. What changed around them since the run
        env = environment.collect(project_root)
        env["backends"] = environment.backends_ran(plan.backends, rendered)
    finally:
        for backend in plan.backends.values():
            backend.close()
    changed = environment.changed(manifest.get("environment"), env)
    result = Reproduction(run_dir, out_dir, [checks[j.id] for j in jobs], env, changed)
    _write(result)
    return result


# -- the run as it was ------------------------------------------------------------------------------------


def _saved_run(run_dir: Path) -> tuple[dict[str, Any], WanbatchConfig, Path]:
    from omegaconf import OmegaConf

    def bad(what: str) -> ConfigError:
        return ConfigError([Issue(None, "RUN_DIR", str(run_dir), what)])

    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise bad(f"a run folder holding manifest.json ({type(exc).__name__}: {exc})") from exc
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise bad(
            "a run made by the console script: its .hydra/config.yaml holds the config it ran "
            "(runs made through the Python API, or with hydra.output_subdir=null, saved none)"
        )
    try:
        cfg = saved_config(saved)
        hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
        root = project_root_from(hydra.runtime.config_sources)
        cwd = Path(str(hydra.runtime.cwd))
    except ConfigError:
        raise
    except Exception as exc:
        raise bad(f"a run whose saved config can be read again ({type(exc).__name__}: {exc})") from exc
    if root is None:
        raise bad("a run whose .hydra/hydra.yaml names its project folder (`--config-dir`)")
    # The cache the run used, as its manifest recorded it (the saved config may say `${oc.env:...}`, which
    # resolves to wherever this process points); relative paths were relative to where the run was started.
    recorded = manifest.get("cache_dir") if isinstance(manifest.get("cache_dir"), str) else None
    cache_dir = Path(recorded or cfg.cache.dir).expanduser()
    cfg.cache.dir = str(cache_dir if cache_dir.is_absolute() else cwd / cache_dir)
    return manifest, cfg, root


def _chosen(plan: Plan, scenes: Sequence[str]) -> list[Job]:
    if not scenes:
        return list(plan.jobs)
    known = {j.id for j in plan.jobs} | {j.scene.id for j in plan.jobs}
    unknown = [s for s in scenes if s not in known]
    if unknown:
        raise ConfigError(
            [Issue(None, "--scene", s, f"a scene of the run: {', '.join(sorted(known))}") for s in unknown]
        )
    wanted = set(scenes)
    return [j for j in plan.jobs if j.id in wanted or j.scene.id in wanted]


def _recorded(run_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """What the run recorded of each job, by job id (a scene's takes are listed in its row)."""
    out: dict[str, Mapping[str, Any]] = {}
    for row in manifest.get("scenes") or []:
        takes = [t for t in row.get("takes") or [] if isinstance(t, Mapping)]
        if not takes:
            out[str(row["id"])] = row
        for t in takes:
            out[take_id(str(row["id"]), int(t["take"]), len(takes))] = t
    return out


def _clip_of(run_dir: Path, record: Mapping[str, Any] | None) -> Path | None:
    if record is None or record.get("status") not in ("rendered", "cached") or not record.get("clip"):
        return None
    path = run_dir / str(record["clip"])
    return path if path.is_file() else None


def _what_changed(cache_dir: Path, recorded_key: Any, job: Job) -> str:
    """The fields of the render that differ from the recorded one, where the cache still knows what it was."""
    entry = None
    if isinstance(recorded_key, str) and (cache_dir / "index").is_dir():
        cache = Cache(cache_dir)
        try:
            entry = cache.peek(recorded_key)
        finally:
            cache.close()
    if entry is None or not isinstance(entry.get("material"), Mapping):
        return "its cache key differs from the recorded one (an input file or a default changed)"
    return "changed: " + ", ".join(diff_material(entry["material"], job.material))


# -- rendering and comparing --------------------------------------------------------------------------------


class _MemoryJournal:
    """A journal for jobs that send nothing anywhere (local renders): nothing to re-attach to after a crash."""

    def __init__(self) -> None:
        self._d: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def record(self, key: str, **fields: Any) -> None:
        with self._lock:
            self._d[key] = {**self._d.get(key, {}), **fields}

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return dict(self._d[key]) if key in self._d else None

    def remove(self, key: str) -> None:
        with self._lock:
            self._d.pop(key, None)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._lock:
            return iter(list(self._d.items()))


class _Prefixed:
    """The cache's journal under keys of their own: a re-sent remote job's request id is journalled before
    its first poll like any other (a crashed reproduce re-attaches to it next time, instead of paying again),
    and never touches the entry of the run's render under the same cache key."""

    def __init__(self, journal: Any):
        self._j = journal

    def record(self, key: str, **fields: Any) -> None:
        self._j.record(JOURNAL_PREFIX + key, **fields)

    def get(self, key: str) -> dict[str, Any] | None:
        got = self._j.get(JOURNAL_PREFIX + key)
        return dict(got) if got is not None else None

    def remove(self, key: str) -> None:
        self._j.remove(JOURNAL_PREFIX + key)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for k, v in self._j.items():
            if k.startswith(JOURNAL_PREFIX):
                yield k[len(JOURNAL_PREFIX) :], v


class _journal:
    """The journal the renders write to: the cache's (prefixed) when remote jobs are sent, else in memory."""

    def __init__(self, cache_dir: Path, remote: bool):
        self._cache = Cache(cache_dir) if remote else None
        self.journal: Any = _Prefixed(self._cache.journal) if self._cache is not None else _MemoryJournal()

    def __enter__(self) -> Any:
        return self.journal

    def __exit__(self, *exc: object) -> None:
        if self._cache is not None:
            self._cache.close()


def _render_and_compare(
    plan: Plan,
    job: Job,
    recorded: Path,
    parent_clip: Path | None,
    out_dir: Path,
    encode: EncodeSettings,
    journal: Any,
    check: Check,
) -> None:
    t0 = time.perf_counter()
    dest = out_dir / "clips" / clip_name(job)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".job-") as tmp:
            workdir = Path(tmp)
            ctx = RenderContext(workdir=workdir, journal=journal, encode=encode)
            result = plan.backends[job.backend].render(with_chain_input(job, parent_clip, workdir), ctx)
            os.replace(result.video, dest)
        journal.remove(job.key)  # the clip is kept: nothing left to re-attach to
    except Exception as exc:
        check.result, check.detail = "failed", first_line_of(exc)
        check.seconds = round(time.perf_counter() - t0, 3)
        return
    check.new, check.seconds = str(dest), round(time.perf_counter() - t0, 3)
    if sha256_file(dest) == sha256_file(recorded):
        check.result = "bit-identical"
        return
    check.result = "differs"
    similarity = video_psnr(recorded, dest)
    if similarity.psnr is None:
        check.detail = similarity.note
    elif similarity.psnr == float("inf"):
        check.detail = "the same pixels in another file (the container or its metadata differ)"
    else:
        check.psnr = round(similarity.psnr, 2)
        check.detail = f"PSNR {check.psnr:.2f} dB over {similarity.frames} frames"


def _write(result: Reproduction) -> None:
    data = {
        "run": str(result.run_dir),
        "checks": [asdict(c) for c in result.checks],
        "environment": result.environment,
        "changed": {k: {"recorded": a, "now": b} for k, (a, b) in result.changed.items()},
    }
    path = result.out_dir / "reproduce.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
