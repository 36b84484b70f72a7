"""The typed config: a dataclass per config group and one for the whole, registered in Hydra's ConfigStore.

These dataclasses are the only place a default lives. conf/wanbatch.yaml starts with `defaults: [base_wanbatch,
...]` and each option of a group with `defaults: [base_<kind>]`, so a YAML sets only what differs from its schema.
Composition (Hydra, OmegaConf) rejects a key that is not a field and a value of the wrong type, naming it; what a
value may be beyond its type (a range, a choice) is checked where it is used, with `wanbatch.config.checks`.

    cfg = load_config("recipes/demo/project.yaml", ["executor.concurrency=2"])   # a WanbatchConfig
    cfg.executor.concurrency, cfg.backend.name, cfg.stitch.mode                  # 2, 'preview', 'auto'

The groups: `backend` (wanbatch.config.backends), `cache`, `executor` (local, ray), `stitch`, `encode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from wanbatch.av.encode import EncodeSettings
from wanbatch.config.backends import BACKEND_SCHEMAS, BackendConfig


@dataclass
class CacheConfig:
    """One cache can serve many projects, runs and sweep members (safe for concurrent processes on one machine;
    on a cluster, put it on storage with working POSIX locks)."""

    dir: str = "${oc.env:WANBATCH_CACHE_DIR,${oc.env:HOME}/.cache/wanbatch}"


@dataclass
class ExecutorConfig:
    """Where the jobs run. Remote jobs are bounded per provider by the backend's `max_in_flight` as well."""

    name: str = MISSING  # local | ray
    concurrency: int = 4  # jobs at work at once (rendering, or at a provider; a finished remote job's download is not)
    progress: str = "auto"  # auto (rich live display on a terminal, plain lines otherwise) | rich | plain | none


@dataclass
class LocalExecutorConfig(ExecutorConfig):
    """`executor=local`: jobs in this process; local GPU jobs run one per device with the pipeline kept warm."""

    name: str = "local"


@dataclass
class RayExecutorConfig(ExecutorConfig):
    """`executor=ray`: one render actor per GPU keeps its pipeline warm across jobs; remote-API and preview jobs
    run as Ray tasks. The driver alone writes the cache and the manifest; workers send clip bytes back. A Ray
    already initialised in this process is used as it is (the init options below are then ignored)."""

    name: str = "ray"
    address: str | None = None  # null: start a local Ray; auto: the running cluster; or ray://HOST:10001
    num_gpus: int | None = None  # GPUs of a local Ray; null = detect. Logical GPUs work on CPU too (tests: 2)
    num_cpus: int | None = None  # CPUs of a local Ray; null = detect
    num_actors: int | None = None  # render actors for local models; null = one per GPU (one CPU actor if none)
    # CPUs each render actor reserves besides its GPU; null = fitted: min(1, what is left once a preview task has
    # its share), so the actors never take every CPU
    actor_num_cpus: float | None = None
    # CPUs each preview (cpu) task reserves; null = min(1, CPUs / (actors + 1)). Remote-API tasks reserve none
    # (they wait on HTTP). A set that cannot run exits 2 with the numbers.
    task_num_cpus: float | None = None
    # torch/OpenMP threads per render actor; null = as a process started here (OMP_NUM_THREADS, else torch's
    # default), so CPU renders match executor=local bit for bit
    actor_threads: int | None = None
    concurrency: int = 8  # Ray tasks out at once; each backend also keeps to its max_in_flight
    # keep the render actors, pipelines loaded, for the next run in this process (a sweep's next member);
    # wanbatch.execute.ray.executor.release_actors() or the process's exit ends them
    keep_actors: bool = True
    cancel_grace_s: float = 30  # after Ctrl-C, how long running jobs get to stop (their clips are kept)
    # when no job has finished or moved this long while jobs wait, say what waits on which resources and what
    # the cluster has free (again every stall_s); null or 0: never
    stall_s: float | None = 120
    log_to_driver: bool = False  # print workers' stdout/stderr here (failures reach the manifest either way)
    runtime_env: dict[str, Any] | None = None  # Ray runtime_env for the workers, e.g. {env_vars: {HF_HOME: /models}}
    init: dict[str, Any] = field(default_factory=dict)  # more ray.init keyword arguments, passed as they are


@dataclass
class StitchConfig:
    """film.mp4 from the clips in scene order (wanbatch/film/stitch.py). Stream copy (no re-encode) when every
    clip shares codec and codec parameters, size, fps and audio layout, every transition is a cut, and there is
    no soundtrack, fade or title caption; otherwise moviepy composes and encodes with the `encode` settings."""

    enabled: bool = True
    mode: str = "auto"  # auto | copy (a ConfigError saying why, if a copy is not possible) | compose
    fade_in: float = 0.0  # seconds of fade from black at the start of the film (picture and sound)
    fade_out: float = 0.0  # seconds of fade to black at the end
    width: int | None = None  # film size when composing; null = the first clip's (one of the two keeps its aspect)
    height: int | None = None
    fps: float | None = None  # film fps when composing; null = the first clip's
    fit: str = "letterbox"  # a clip of another shape: letterbox (bars) | crop (fill, centre crop) | stretch
    title_seconds: float = 2.5  # how long a clip's title caption stays on screen
    duck_ramp: float = 0.3  # seconds the soundtrack takes to duck under a scene's own audio, and to come back
    silence_db: float = -60.0  # a scene whose audio peaks below this (dBFS) counts as silent: no ducking for it
    loop_soundtrack: bool = False  # a soundtrack shorter than the film: stop (false) or loop (true)
    # A scene that failed: slate (the film is joined with a title card naming it, as long as the scene, in its
    # place: the storyboard can be watched while the shot is redone) | skip (joined without it) | none (no film)
    on_failure: str = "slate"


@dataclass
class EncodeConfig(EncodeSettings):
    """Codec settings of every clip wanbatch encodes: near-lossless H.264 that plays everywhere. Part of every
    cache key of a clip wanbatch encodes itself (remote providers' bytes are kept as they come)."""

    codec: str = "libx264"
    crf: int | None = 12
    bitrate: str | None = None  # e.g. "8M"; used instead of crf when set
    preset: str = "medium"
    pix_fmt: str = "yuv420p"
    audio_codec: str = "aac"
    audio_bitrate: str = "192k"
    audio_rate: int = 48000


@dataclass
class SoundtrackConfig:
    """`project.soundtrack`: music laid under the whole film, given as a path or as this mapping. Checked by
    wanbatch.core.project (a project's fields stay free-form in the composed config)."""

    path: str = MISSING
    volume: float = 0.4
    duck: float = 0.15  # its volume while a scene has its own audio


@dataclass
class ProjectConfig:
    name: str | None = None  # the run folder's and the report's name; null = the project file's folder name
    defaults: dict[str, Any] = field(default_factory=dict)  # scene fields applied to every scene that does not set them
    soundtrack: Any = None  # a path, or {path, volume, duck} (SoundtrackConfig)


@dataclass
class WanbatchConfig:
    """A composed project: the groups (chosen by conf/wanbatch.yaml's defaults list, or `backend=NAME` ...) and
    the project's own keys. Scenes stay as written (a list of mappings): wanbatch.core.project checks them."""

    backend: BackendConfig = MISSING  # the project's default backend; a scene may name another
    cache: CacheConfig = MISSING
    executor: ExecutorConfig = MISSING
    stitch: StitchConfig = MISSING
    encode: EncodeConfig = MISSING
    recipe: str | None = None  # set by `wanbatch recipe=NAME` (renders recipes/NAME/project.yaml)
    dry_run: bool = False  # plan, validate, print the cost/cache summary; touch nothing
    report: bool = True  # write index.html (and the timeline export) into the run directory
    # USD; a run whose estimated cost (the backends' price_per_second) exceeds it stops before any request (exit 2);
    # null = no budget
    budget: float | None = None
    # scene ids whose ambiguous submit you checked was not accepted: wanbatch sends them again
    # (`wanbatch cache ambiguous` lists them); a submit that may have been accepted is never resent otherwise
    resubmit_ambiguous: list[str] = field(default_factory=list)
    # per-backend overrides for scenes using a non-default backend, e.g. backends.novita_wan21_t2v.base_url;
    # each is checked against that backend's schema
    backends: dict[str, Any] = field(default_factory=dict)
    project: ProjectConfig = field(default_factory=ProjectConfig)
    # the list of scenes, as written; wanbatch.core.project checks them. (Typed Any, null until a project gives
    # some: while Hydra composes, the scenes it need not see are kept apart and this holds the others by index,
    # see wanbatch.config.apart; a composed WanbatchConfig always holds the list.)
    scenes: Any = None
    # more scenes, read from a data file (relative to the project file): .jsonl, .csv (a header row of scene
    # fields) or .yaml (a list); appended after `scenes`, checked the same way, never loaded into OmegaConf
    scenes_file: str | None = None
    # write the whole plan here, one JSON line per scene (relative to the working directory); a dry run of
    # more than a screenful of scenes prints a summary, and this holds every row
    plan_out: str | None = None


#: the schema of each group option that is not a backend, by the name its YAML's `defaults` list gives it
GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "backend": dict(BACKEND_SCHEMAS),
    "cache": {"base_cache": CacheConfig},
    "executor": {"base_local": LocalExecutorConfig, "base_ray": RayExecutorConfig},
    "stitch": {"base_stitch": StitchConfig},
    "encode": {"base_encode": EncodeConfig},
}


def register() -> None:
    """Put the schemas in Hydra's ConfigStore: `base_wanbatch` for conf/wanbatch.yaml, `<group>/base_<kind>` for
    the group options. Idempotent; composing (`load_config`, the CLI) calls it first."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_wanbatch", node=WanbatchConfig)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=group, name=name, node=node)


__all__ = [
    "GROUP_SCHEMAS",
    "CacheConfig",
    "EncodeConfig",
    "ExecutorConfig",
    "LocalExecutorConfig",
    "ProjectConfig",
    "RayExecutorConfig",
    "SoundtrackConfig",
    "StitchConfig",
    "WanbatchConfig",
    "register",
]
