"""The one seam every renderer plugs into: plan-time `prepare`, run-time `render`.

A backend turns a scene into canonical parameters (defaults applied, every limit checked, nothing
sent), and later turns a planned job into a video file. The planner hashes what `prepare` returns,
so anything that changes the pixels must be in it, and nothing else.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Protocol

from wanbatch.av.encode import EncodeSettings
from wanbatch.config.backends import BackendConfig
from wanbatch.core.job import Job
from wanbatch.core.price import tier_of
from wanbatch.core.scene import Scene
from wanbatch.errors import Issue


class BackendKind(str, Enum):
    """How an executor schedules a backend's jobs."""

    REMOTE = "remote"  # at a provider: many at once, up to the provider's max_in_flight
    LOCAL = "local"  # a model on a device: one job per device, the pipeline kept warm
    CPU = "cpu"  # cheap work in this process (the preview animatic)


class Journal(Protocol):
    """Where a remote backend writes a request id before it polls, so a crashed run re-attaches to it
    (the cache's journal; a Ray worker's own handle on it)."""

    def record(self, key: str, **fields: Any) -> None: ...

    def get(self, key: str) -> dict[str, Any] | None: ...

    def remove(self, key: str) -> None: ...

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]: ...

    def observe(self, kind: str, seconds: float) -> None: ...  # a render time seen, by kind of job

    def expected(self, kind: str) -> float | None: ...  # the typical render time of that kind, once seen


@dataclass
class RenderContext:
    """What a running job may use. Everything that talks to the outside is injected here."""

    workdir: Path  # private scratch folder on the cache's filesystem, so the result moves in atomically
    journal: Journal  # remote request ids, written before polling so a crashed run re-attaches
    encode: EncodeSettings
    cancel: threading.Event = field(default_factory=threading.Event)
    # Set by a second Ctrl-C: stop even the download of a render already paid for (the first one, `cancel`,
    # lets it finish: its URL may expire before a rerun could fetch it, and then it would be paid again).
    abandon: threading.Event = field(default_factory=threading.Event)
    status: Callable[[str], None] = lambda _msg: None  # a short per-scene status for the progress display
    # Called by a backend once what is left of its job is local I/O (a remote render done at the provider, its
    # video still to download and check): the executor may start its next job now instead of after the download.
    # Idempotent; the executor also calls it when the job ends.
    off_backend: Callable[[], None] = lambda: None


@dataclass
class RenderResult:
    video: Path  # an mp4 inside ctx.workdir; the executor moves it into the cache
    model: str
    request_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # e.g. polls, provider timings; goes to the manifest


class Backend(ABC):
    """Base class of every backend. Subclasses live one per file in `wanbatch/backends/`.

    A backend is built from its typed config (`config_type`, a schema of wanbatch/config/backends.py, where
    its defaults live), which must pickle: Ray workers rebuild backends from it. Example::

        backend = get_backend_class("preview")(backend_config("preview"))
        params = backend.prepare(scene, issues)   # plan time: validate, apply defaults
        result = backend.render(job, ctx)         # run time: make the video
    """

    name: ClassVar[str]
    kind: ClassVar[BackendKind] = BackendKind.CPU
    config_type: ClassVar[type[BackendConfig]] = BackendConfig

    def __init__(self, config: BackendConfig):
        if not isinstance(config, self.config_type):
            raise TypeError(
                f"backend `{self.name}` is built from a {self.config_type.__name__} "
                f"(wanbatch.config.load.backend_config({self.name!r})), not a {type(config).__name__}"
            )
        self.config = config

    # -- plan time ---------------------------------------------------------------------------------
    def check_ready(self, issues: list[Issue]) -> None:  # noqa: B027 - optional hook
        """Project-level preconditions (API key set, extra installed). Append issues; send nothing."""

    @abstractmethod
    def model_identity(self, scene: Scene) -> dict[str, Any]:
        """Model name and revision this scene renders with; part of the cache key."""

    @abstractmethod
    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        """Canonical render parameters for `scene` (defaults applied). Append an Issue for every value
        this backend cannot honour. `chained` means `image` will be the parent's last frame."""

    def notes(self, scene: Scene, params: Mapping[str, Any]) -> list[str]:
        """What `prepare` decided that the scene did not say (frame rounding, a derived size). Shown in
        dry runs and before every run; never part of the cache key."""
        return []

    def seconds_of_video(self, params: Mapping[str, Any]) -> float:
        """How long the clip will be; used for the dry-run summary and cost estimates."""
        if "num_frames" in params and "fps" in params:
            return float(params["num_frames"]) / float(params["fps"])
        return float(params.get("duration", 0.0))

    def resolution_of(self, params: Mapping[str, Any]) -> str | None:
        """The resolution tier (480P, 720P, 1080P) a job renders at: what a `price_per_second` mapping is
        looked up by. From `resolution` in the params, else from their `width` and `height`."""
        if isinstance(params.get("resolution"), str):
            return str(params["resolution"]).upper()
        if isinstance(params.get("width"), int) and isinstance(params.get("height"), int):
            return tier_of(params["width"], params["height"])
        return None

    @property
    @abstractmethod
    def max_in_flight(self) -> int:
        """Jobs of this backend an executor lets run at once."""

    # -- run time ----------------------------------------------------------------------------------
    @abstractmethod
    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        """Make the clip. Raise RenderError (or a subclass) on failure; never leave partial output."""

    def warm(self) -> None:  # noqa: B027 - optional hook
        """The run has jobs for this backend and is about to start them: begin, in the background, what its
        first job would otherwise wait for (a remote backend's HTTP client). Never raises; a dry run, or a run
        whose jobs are all cached, does not call it."""

    def expect(self, job: Job) -> None:  # noqa: B027 - optional hook
        """`job` holds its executor slots and is on its way to `render`: jobs take their slots in the order the
        executor hands them out (grouped by model), but their threads reach `render` in any order. A backend
        that queues jobs inside (the pipeline pool) uses this to wait for them. `settle` follows in any case."""

    def settle(self, job: Job) -> None:  # noqa: B027 - optional hook
        """`job` is done with this backend, rendered or not (a cache hit, an error, a cancel)."""

    def environment(self, jobs: Sequence[Job]) -> dict[str, Any]:
        """What this backend rendered `jobs` with, beyond the package versions every manifest records: a local
        backend's devices (names, CUDA version), dtype and the resolved revision of each model. Called after
        the jobs ran (so what they loaded may be read), for the manifest's `environment`; {} says nothing."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients, pipelines, threads."""
