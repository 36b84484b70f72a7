"""What every remote backend shares: settings, keys, HTTP with retries, limits and the job life cycle.

A remote render is one procedure, `RemoteBackend.render`:

    1. re-attach to the request id in the journal, or submit. A submit is retried only where it cannot
       have been accepted (connection refused, 429, 503); an ambiguous one (a timeout after sending) is
       reconciled against the provider's request list where there is one, and otherwise reported.
    2. write the id to the journal before the first poll, so a crashed run re-attaches instead of paying twice
    3. poll with backoff and jitter (or the provider's `eta` hint) until a terminal state
    4. download the video into the job's workdir and check it (status 200, type, full length, container)

A provider module (gmi.py, aiml.py, novita.py) adds only its protocol: URLs, request body, how to read
the answers, and the plan-time mapping of scene fields. The API key is read from the environment when
used, sent only in the Authorization header of API calls (never to a download host) and redacted from
every message and log line this module produces.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import mimetypes
import os
import random
import threading
import time
import uuid
import weakref
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import tenacity

from ..errors import Cancelled, DownloadError, Issue, ProviderError, RenderError
from ..ffmpeg import probe
from ..media import Media
from ..uploader import Uploader
from .base import Backend, RenderContext, RenderResult

if TYPE_CHECKING:
    from ..plan import Job
    from ..scene import Scene

log = logging.getLogger("wanbatch.remote")

SEED_MAX = 2**31 - 1


class AmbiguousSubmit(RenderError):
    """A submit may have been accepted but its id never came back, and no request list could settle it."""


# -- keys and redaction ----------------------------------------------------------------------------
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Make `redact` (and every log line of httpx and this module) hide `value`."""
    if len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a log record that would show a registered key. Attached to httpx's loggers and ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
            if record.exc_info and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = RedactingFilter()
for _name in ("wanbatch.remote", "httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_FILTER)


# -- settings --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PollSettings:
    initial_s: float = 10.0  # first poll this long after the submit
    interval_s: float = 5.0  # then this, growing by `backoff` up to `max_interval_s`
    backoff: float = 1.5
    max_interval_s: float = 60.0
    min_interval_s: float = 1.0  # floor under a provider's `eta` hint
    jitter: float = 0.2  # +-20% on every wait, so parallel jobs do not poll in step
    timeout_s: float = 3600.0  # give up waiting (the id stays journalled: a rerun re-attaches)


@dataclass(frozen=True)
class TimeoutSettings:
    connect_s: float = 10.0
    read_s: float = 60.0
    write_s: float = 60.0
    pool_s: float = 60.0
    download_s: float = 300.0  # per read while downloading
    download_total_s: float = 1800.0  # a whole download, however slowly the bytes trickle in


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 6
    initial_s: float = 1.0  # exponential backoff with jitter from here...
    max_wait_s: float = 30.0  # ...up to this
    retry_after_max_s: float = 300.0  # a Retry-After is honoured up to this long
    total_s: float = 900.0  # no call retries for longer than this
    reconcile_wait_s: float = 3.0  # wait before listing again when an ambiguous submit is not listed yet


_SECTIONS: dict[str, type] = {"poll": PollSettings, "timeouts": TimeoutSettings, "retries": RetrySettings}
_TOP = {
    "name",
    "model",
    "base_url",
    "path",
    "api_key_env",
    "max_in_flight",
    "requests_per_second",
    "image_encoding",
    "uploader",
    *_SECTIONS,
}
IMAGE_ENCODINGS = ("data_uri", "base64")


@dataclass(frozen=True)
class RemoteSettings:
    model: str
    base_url: str
    path: str
    api_key_env: str
    max_in_flight: int = 4
    requests_per_second: float | None = 5.0  # API calls per second per provider; null = no limit
    image_encoding: str = "data_uri"
    poll: PollSettings = field(default_factory=PollSettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    uploader: Any = None

    @classmethod
    def parse(
        cls, cfg: Mapping[str, Any], where: str, issues: list[Issue], extra: Iterable[str] = ()
    ) -> RemoteSettings:
        """Settings from a backend config, appending an Issue for each unknown or bad option."""
        for key in sorted(set(cfg) - _TOP - set(extra)):
            if not str(key).startswith("_"):
                issues.append(
                    Issue(None, f"{where}.{key}", cfg[key], f"unknown option; known: {', '.join(sorted(_TOP))}")
                )
        out: dict[str, Any] = {}
        for key in ("model", "base_url", "path", "api_key_env"):
            value = cfg.get(key)
            if not isinstance(value, str) or not value:
                issues.append(Issue(None, f"{where}.{key}", value, "a non-empty string"))
            out[key] = str(value or "")
        if out["base_url"] and not out["base_url"].startswith(("http://", "https://")):
            issues.append(Issue(None, f"{where}.base_url", out["base_url"], "an http(s) URL"))
        out["max_in_flight"] = _number(cfg, "max_in_flight", 4, where, issues, integer=True)
        rps = cfg.get("requests_per_second", 5.0)
        out["requests_per_second"] = None if rps is None else _number(cfg, "requests_per_second", 5.0, where, issues)
        encoding = cfg.get("image_encoding", "data_uri")
        if encoding not in IMAGE_ENCODINGS:
            issues.append(Issue(None, f"{where}.image_encoding", encoding, f"one of {', '.join(IMAGE_ENCODINGS)}"))
            encoding = "data_uri"
        out["image_encoding"] = encoding
        for name, section in _SECTIONS.items():
            raw = cfg.get(name) or {}
            known = {f.name: f for f in fields(section)}
            if not isinstance(raw, Mapping):
                issues.append(Issue(None, f"{where}.{name}", raw, f"a mapping of {', '.join(known)}"))
                raw = {}
            for key in sorted(set(raw) - set(known)):
                issues.append(
                    Issue(None, f"{where}.{name}.{key}", raw[key], f"unknown option; known: {', '.join(known)}")
                )
            values = {
                k: _number(raw, k, known[k].default, f"{where}.{name}", issues, integer=k == "attempts")
                for k in raw
                if k in known
            }
            out[name] = section(**values)
        out["uploader"] = cfg.get("uploader")
        return cls(**out)


def _number(
    cfg: Mapping[str, Any], key: str, default: Any, where: str, issues: list[Issue], *, integer: bool = False
) -> Any:
    value = cfg.get(key, default)
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float)) and value >= 0
    if key in ("max_in_flight", "attempts", "requests_per_second"):
        ok = ok and value > 0
    if not ok:
        issues.append(Issue(None, f"{where}.{key}", value, "a positive integer" if integer else "a number >= 0"))
        return default
    return value


# -- shared limits ---------------------------------------------------------------------------------
class ProviderPool:
    """In-flight slots and a request-rate limit shared by every backend of one provider account in the
    process (the three GMI models draw on one pool). Where their configs differ, the strictest applies."""

    _pools: ClassVar[dict[tuple[str, str], ProviderPool]] = {}
    _pools_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._members: weakref.WeakKeyDictionary[object, tuple[int, float | None]] = weakref.WeakKeyDictionary()
        self.in_flight = 0
        self.peak = 0  # most jobs in flight at once (for tests and reports)
        self._next_request = 0.0

    @classmethod
    def join(cls, provider: str, base_url: str, member: object, max_in_flight: int, rps: float | None) -> ProviderPool:
        with cls._pools_lock:
            pool = cls._pools.setdefault((provider, base_url.rstrip("/")), ProviderPool())
        with pool._cond:
            pool._members[member] = (max_in_flight, rps)
            pool._cond.notify_all()
        return pool

    def leave(self, member: object) -> None:
        with self._cond:
            self._members.pop(member, None)
            self._cond.notify_all()

    def _capacity(self) -> int:
        return min((m for m, _ in self._members.values()), default=1)

    def _interval(self) -> float:
        rates = [r for _, r in self._members.values() if r]
        return 1.0 / min(rates) if rates else 0.0

    @contextmanager
    def slot(self, cancel: threading.Event) -> Iterator[None]:
        """Hold one of `max_in_flight` slots for a job's whole life at the provider."""
        with self._cond:
            while self.in_flight >= self._capacity():
                if cancel.is_set():
                    raise Cancelled("cancelled while waiting for a free slot; nothing was sent")
                self._cond.wait(0.2)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def throttle(self, cancel: threading.Event) -> None:
        """Wait for this call's turn under `requests_per_second` (evenly spaced, no bursts)."""
        with self._cond:
            now = time.monotonic()
            at = max(now, self._next_request)
            self._next_request = at + self._interval()
        if at > now and cancel.wait(at - now):
            raise Cancelled("cancelled")


# -- answers and failures --------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    """A provider's answer to a status poll, in wanbatch's words."""

    state: str  # running | succeeded | failed
    raw: str  # the provider's own word for it
    video_url: str | None = None
    reason: str | None = None
    eta_s: float | None = None  # when the provider expects to finish (Novita)
    url_ttl_s: float | None = None  # how long `video_url` stays valid, where the provider says


class _Transient(Exception):
    """A retryable HTTP status (429, 5xx); carries Retry-After when the server sent one."""

    def __init__(self, response: httpx.Response):
        self.status = response.status_code
        self.retry_after = _retry_after(response.headers.get("retry-after"))
        super().__init__(f"HTTP {self.status}" + (f" (Retry-After {self.retry_after:g}s)" if self.retry_after else ""))


class _Malformed(Exception):
    """A 2xx answer that is not JSON (a proxy's error page, a cut-off body). Retried on reads."""


class _Incomplete(Exception):
    """A download ended before Content-Length bytes arrived."""


class _Ambiguous(Exception):
    """A submit whose outcome is unknown: it may have been accepted."""


class _Gone(Exception):
    """What was journalled can no longer be fetched: an expired video URL, a request the provider forgot."""


SAFE_TRANSPORT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
SAFE_SUBMIT_STATUS = frozenset({429, 503})  # refused before acceptance
BINARY_TYPES = {"application/octet-stream", "binary/octet-stream", "application/mp4"}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Wait what a 429/503's Retry-After asks (up to a cap), else exponential backoff with jitter."""

    def __init__(self, fallback: tenacity.wait.wait_base, cap: float):
        self.fallback, self.cap = fallback, cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return float(self.fallback(retry_state))


@dataclass
class _Run:
    """One render's state and counters (they go to the manifest through RenderResult.info)."""

    job: Job
    ctx: RenderContext
    reattached: bool = False
    reconciled: bool = False
    submits: int = 0
    polls: int = 0
    retries: int = 0
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


# -- the base class --------------------------------------------------------------------------------
# Every scene field a model could map; one it does not take must be unset (never silently dropped).
RENDER_FIELDS = ("prompt", "negative_prompt", "image", "last_image", "audio", "first_clip", "resolution", "width",
                 "height", "duration", "num_frames", "fps", "steps", "guidance_scale", "flow_shift", "loras",
                 "prompt_extend", "watermark")
_HINTS = {
    "num_frames": "; give `duration` in seconds",
    "fps": "; the provider fixes the frame rate",
    "width": "; use `resolution`",
    "height": "; use `resolution`",
}


class RemoteBackend(Backend):
    """A model behind an asynchronous HTTP queue. Subclasses add a protocol and a scene mapping."""

    kind: ClassVar[str] = "remote"
    provider: ClassVar[str]  # one pool of slots and one rate limit per provider account
    provider_title: ClassVar[str]
    default_config: ClassVar[dict[str, Any]]  # model, base_url, path, api_key_env
    extra_options: ClassVar[frozenset[str]] = frozenset()
    takes: ClassVar[frozenset[str]]  # the scene fields this model maps; others must be unset
    can_list: ClassVar[bool] = False  # the provider lists requests, so an ambiguous submit can be reconciled

    def __init__(self, config: Mapping[str, Any], *, client: httpx.Client | None = None):
        super().__init__({**self.default_config, **dict(config)})
        self._config_issues: list[Issue] = []
        where = f"backends.{self.name}"
        self.settings = RemoteSettings.parse(self.config, where, self._config_issues, self.extra_options)
        self.uploader = Uploader.from_config(self.settings.uploader, self._config_issues, f"{where}.uploader")
        self._client = client
        self._own_client = client is None
        self._client_lock = threading.Lock()
        self.pool = ProviderPool.join(
            self.provider, self.settings.base_url, self, self.settings.max_in_flight, self.settings.requests_per_second
        )
        if key := os.environ.get(self.settings.api_key_env):
            register_secret(key)

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def max_in_flight(self) -> int:
        return self.settings.max_in_flight

    @property
    def client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout(),
                    limits=httpx.Limits(max_connections=max(10, 2 * self.max_in_flight)),
                    follow_redirects=True,
                )
            return self._client

    def timeout(self, *, download: bool = False) -> httpx.Timeout:
        """Every call passes its own timeout, so an injected client cannot make one hang forever."""
        t = self.settings.timeouts
        return httpx.Timeout(
            connect=t.connect_s, read=t.download_s if download else t.read_s, write=t.write_s, pool=t.pool_s
        )

    def close(self) -> None:
        self.pool.leave(self)
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def api_url(self, suffix: str = "") -> str:
        return self.settings.base_url.rstrip("/") + "/" + self.settings.path.strip("/") + suffix

    # -- protocol hooks (one set per provider module) ---------------------------------------------
    @abstractmethod
    def body(self, job: Job) -> dict[str, Any]:
        """The submit request's JSON body for a planned job (media encoded or uploaded here)."""

    @abstractmethod
    def read_submit(self, data: Any) -> str:
        """The request id in a submit answer (raise ProviderError on a shape not understood)."""

    @abstractmethod
    def status_request(self, request_id: str) -> tuple[str, dict[str, str] | None]:
        """URL and query parameters of the status poll."""

    @abstractmethod
    def read_status(self, data: Any, request_id: str) -> Status:
        """A poll answer in wanbatch's words (raise ProviderError on a shape not understood)."""

    def find_submitted(self, run: _Run, body: Mapping[str, Any], since: float) -> str | None:
        """The id of a request matching `body` submitted after `since` (only where `can_list`)."""
        return None

    # -- plan time --------------------------------------------------------------------------------
    def check_ready(self, issues: list[Issue]) -> None:
        issues.extend(self._config_issues)
        env = self.settings.api_key_env
        key = os.environ.get(env, "") if env else ""
        if not key.strip():
            issues.append(
                Issue(
                    None,
                    f"${env}",
                    "<unset>",
                    f"your {self.provider_title} API key in the "
                    f"environment (`export {env}=...`); backend `{self.name}` needs it",
                )
            )
        else:
            register_secret(key)

    def model_identity(self, scene: Scene) -> dict[str, Any]:
        identity = {"provider": self.provider, "model": self.model}
        # A render from another endpoint (a fake server, a proxy) must never pass for the real one.
        if self.settings.base_url.rstrip("/") != self.default_config["base_url"].rstrip("/"):
            identity["endpoint"] = self.settings.base_url.rstrip("/")
        return identity

    def check_scene(self, scene: Scene, issues: list[Issue], *, chained: bool) -> None:
        """An Issue for each field this model cannot honour that the scene sets."""
        for name in RENDER_FIELDS:
            value = getattr(scene, name)
            if name in self.takes or value is None or value == ():
                continue
            if value is False and name in ("prompt_extend", "watermark"):
                continue  # a model without the option does not extend prompts nor add watermarks
            issues.append(
                Issue(
                    scene.id,
                    name,
                    _show(value),
                    f"unset: {self.model} on {self.provider_title} does not take `{name}`{_HINTS.get(name, '')}",
                )
            )
        if scene.model is not None and scene.model != self.model:
            issues.append(
                Issue(
                    scene.id,
                    "model",
                    scene.model,
                    f"unset or `{self.model}`: backend `{self.name}` renders that model only; pick another backend",
                )
            )
        if chained and "image" not in self.takes:
            issues.append(Issue(scene.id, "chain_from", scene.chain_from, f"unset: {self.model} takes no first frame"))

    def check_media(
        self,
        scene: Scene,
        issues: list[Issue],
        name: str,
        provider_field: str,
        *,
        send_as: str,
        required: bool = False,
        chained: bool = False,
    ) -> None:
        """Check that a media field can be sent the way the provider takes it.
        `send_as`: "data" (file bytes in the body), "url" (an address the provider fetches) or "either"."""
        media: Media | None = getattr(scene, name)
        if name == "image" and chained:
            if send_as == "url" and self.uploader is None:
                issues.append(
                    Issue(
                        scene.id,
                        "chain_from",
                        scene.chain_from,
                        f"a backend with an uploader: "
                        f"{self.provider_title} fetches `{provider_field}` from a URL, and the chained "
                        f"first frame is a local file; set backends.{self.name}.uploader",
                    )
                )
            return
        if media is None:
            if required:
                need = " (or `chain_from`)" if name == "image" else ""
                issues.append(Issue(scene.id, name, None, f"an input{need}: {self.model} requires `{provider_field}`"))
            return
        if send_as == "data" and not media.is_local:
            issues.append(
                Issue(
                    scene.id,
                    name,
                    media.describe(),
                    f"a local file: {self.provider_title} takes `{provider_field}` as file data, not a URL",
                )
            )
        if send_as == "url" and media.is_local and self.uploader is None:
            issues.append(
                Issue(
                    scene.id,
                    name,
                    media.describe(),
                    f"an http(s) URL: {self.provider_title} fetches "
                    f"`{provider_field}` from a URL; give one, or set backends.{self.name}.uploader "
                    "to upload local files",
                )
            )

    # -- media at run time -------------------------------------------------------------------------
    def image_data(self, media: Media) -> str:
        """A local image as the body carries it: a data URI or bare base64 (`image_encoding`)."""
        if media.path is None:
            raise RenderError(f"`{media.field}` must be a local file to be sent as data; got {media.describe()}")
        encoded = base64.b64encode(media.path.read_bytes()).decode("ascii")
        if self.settings.image_encoding == "base64":
            return encoded
        mime = mimetypes.guess_type(media.path.name)[0] or "image/png"
        return f"data:{mime};base64,{encoded}"

    def media_url(self, media: Media) -> str:
        """A URL the provider can fetch: the scene's own URL, or the uploaded local file's."""
        if media.url is not None:
            return media.url
        if self.uploader is None or media.path is None:
            raise RenderError(f"`{media.field}` is a local file and backend `{self.name}` has no uploader")
        return self.uploader.upload(media.path, media.sha256)

    # -- run time ----------------------------------------------------------------------------------
    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        try:
            return self._render(_Run(job, ctx))
        except Exception as exc:
            # The one exit of every failure: whatever a provider echoed, no message carries a key.
            exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
            raise

    def _render(self, run: _Run) -> RenderResult:
        job, ctx = run.job, run.ctx
        with self.pool.slot(ctx.cancel):
            # 1. Re-attach to the journalled request, or submit a new one (journalled before any poll).
            request_id = self._journalled(run) or self._submit(run)
            # 2-4. Poll, download, check. What was journalled may be gone: report it, then render again once.
            try:
                video = self._complete(run, request_id)
            except _Gone as gone:
                self._note(run, f"{gone}; submitting scene `{job.id}` again")
                request_id = self._submit(run)
                try:
                    video = self._complete(run, request_id)
                except _Gone as again:
                    raise DownloadError(f"scene `{job.id}`: {again}, twice; nothing was cached") from None
        info = {
            "provider": self.provider,
            "polls": run.polls,
            "submits": run.submits,
            "retries": run.retries,
            "reattached": run.reattached,
            "reconciled": run.reconciled,
            "seconds": round(time.monotonic() - run.started, 3),
        }
        if run.notes:
            info["notes"] = list(run.notes)
        return RenderResult(video=video, model=self.model, request_id=request_id, info=info)

    def _journalled(self, run: _Run) -> str | None:
        entry = run.ctx.journal.get(run.job.key) or {}
        request_id = entry.get("request_id")
        if entry.get("backend") != self.name or not request_id:
            if entry.get("state") == "ambiguous":
                self._note(
                    run,
                    f"an earlier submit of scene `{run.job.id}` was ambiguous "
                    f"({entry.get('submitted_at_utc', 'time unknown')}); submitting again as asked",
                )
            return None
        run.reattached = True
        run.ctx.status(f"re-attaching to {request_id}")
        log.info(
            "scene %s: re-attaching to %s request %s (state %s)",
            run.job.id,
            self.provider_title,
            request_id,
            entry.get("state"),
        )
        return str(request_id)

    def _record(self, run: _Run, **fields: Any) -> None:
        run.ctx.journal.record(
            run.job.key, backend=self.name, provider=self.provider, model=self.model, scene=run.job.id, **fields
        )

    def _note(self, run: _Run, message: str) -> None:
        message = redact(message)
        log.warning("%s", message)
        run.notes.append(message)
        run.ctx.status(message)

    # 1. Submit ------------------------------------------------------------------------------------
    def _submit(self, run: _Run) -> str:
        body = self.body(run.job)
        since = time.time()
        try:
            request_id = self._send(run, body)
        except _Ambiguous as amb:
            request_id = self._reconcile(run, body, since, amb)
        self._record(run, request_id=request_id, state="submitted", submitted_at=time.time())
        log.info("scene %s: submitted to %s as %s", run.job.id, self.provider_title, request_id)
        run.ctx.status(f"submitted ({request_id})")
        return request_id

    def _send(self, run: _Run, body: Mapping[str, Any]) -> str:
        run.submits += 1
        data = self._api(run, "POST", self.api_url(), what="submit", json=body, submit=True)
        try:
            return self.read_submit(data)
        except ProviderError as exc:  # accepted (2xx) but its id cannot be read: as good as unknown
            raise _Ambiguous(str(exc)) from None

    def _reconcile(self, run: _Run, body: Mapping[str, Any], since: float, amb: _Ambiguous) -> str:
        if self.can_list:
            for attempt in range(2):
                if attempt:
                    self._wait(run, self.settings.retries.reconcile_wait_s)
                found = self.find_submitted(run, body, since)
                if found:
                    run.reconciled = True
                    self._note(
                        run,
                        f"the submit of scene `{run.job.id}` was ambiguous ({amb}); "
                        f"found it in {self.provider_title}'s request list as {found}",
                    )
                    return found
            self._note(
                run,
                f"the submit of scene `{run.job.id}` was ambiguous ({amb}) and is not in "
                f"{self.provider_title}'s request list, so it was not accepted; sending it again",
            )
            try:
                return self._send(run, body)
            except _Ambiguous as again:
                amb = again
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
        self._record(run, request_id=None, state="ambiguous", submitted_at_utc=stamp)
        raise AmbiguousSubmit(
            f"scene `{run.job.id}`: the submit to {self.provider_title} may have been accepted ({amb}), "
            "but no request id came back. Nothing was resubmitted, so nothing is paid twice. Check your "
            f"{self.provider_title} requests for model {self.model} made around {stamp}; "
            "a rerun submits again."
        )

    # 2. Poll --------------------------------------------------------------------------------------
    def _poll(self, run: _Run, request_id: str) -> Status:
        p = self.settings.poll
        deadline = time.monotonic() + p.timeout_s
        delay, interval = (0.0 if run.reattached else p.initial_s), p.interval_s
        first = True
        while True:
            self._wait(run, delay * (1 + random.uniform(-p.jitter, p.jitter)))
            url, params = self.status_request(request_id)
            try:
                data = self._api(run, "GET", url, what=f"status poll of request {request_id}", params=params)
            except ProviderError as exc:
                if first and run.reattached and exc.status == "404":
                    raise _Gone(f"{self.provider_title} no longer knows journalled request {request_id}") from None
                raise
            first = False
            status = self.read_status(data, request_id)
            if status.state != "running":
                return status
            run.ctx.status(f"{status.raw} ({request_id})")
            if time.monotonic() > deadline:
                raise RenderError(
                    f"scene `{run.job.id}`: request {request_id} is still `{status.raw}` after "
                    f"{p.timeout_s:g}s; its id stays in the journal, so a rerun re-attaches to it"
                )
            if status.eta_s is not None:
                delay = min(max(status.eta_s, p.min_interval_s), p.max_interval_s)
            else:
                delay, interval = interval, min(interval * p.backoff, p.max_interval_s)

    def _complete(self, run: _Run, request_id: str) -> Path:
        status = self._poll(run, request_id)
        if status.state == "failed":
            # A failed request is final; the journal entry goes, so a rerun renders the scene anew.
            run.ctx.journal.remove(run.job.key)
            raise ProviderError(
                f"scene `{run.job.id}`: {self.provider_title} reports request {request_id} "
                f"`{status.raw}`: {status.reason or 'no reason given'}",
                request_id=request_id,
                status=status.raw,
            )
        assert status.video_url is not None
        expires = time.time() + status.url_ttl_s if status.url_ttl_s else None
        self._record(
            run, request_id=request_id, state="succeeded", video_url=status.video_url, video_url_expires=expires
        )
        video = self._download(run, status.video_url)
        self._record(run, request_id=request_id, state="downloaded")
        return video

    # 3. Download and check ------------------------------------------------------------------------
    def _download(self, run: _Run, url: str) -> Path:
        part = run.ctx.workdir / f"download-{uuid.uuid4().hex}.part"
        timeout = self.timeout(download=True)
        run.ctx.status("downloading")

        def attempt() -> None:
            # No Authorization header: the video lives on a storage host, which must never see the key.
            with self.client.stream("GET", url, timeout=timeout) as resp:
                if resp.status_code in (403, 410):
                    said = _snippet(resp.read().decode("utf-8", "replace"), 120)
                    raise _Gone(f"the video URL answered HTTP {resp.status_code}: expired ({said})")
                if resp.status_code in RETRY_STATUS:
                    raise _Transient(resp)
                if resp.status_code != 200:
                    raise DownloadError(
                        f"scene `{run.job.id}`: the video URL answered HTTP {resp.status_code}, "
                        "not 200; nothing was cached"
                    )
                ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype and not (ctype.startswith("video/") or ctype in BINARY_TYPES):
                    raise DownloadError(
                        f"scene `{run.job.id}`: the video URL sent `{ctype}`, not a video; nothing was cached"
                    )
                expected = resp.headers.get("content-length")
                deadline = time.monotonic() + self.settings.timeouts.download_total_s
                with open(part, "wb") as f:
                    for chunk in resp.iter_bytes(1 << 16):
                        if run.ctx.cancel.is_set():
                            raise Cancelled(f"scene `{run.job.id}`: cancelled while downloading")
                        if time.monotonic() > deadline:
                            raise DownloadError(
                                f"scene `{run.job.id}`: the download took longer than "
                                f"{self.settings.timeouts.download_total_s:g}s; nothing was cached"
                            )
                        f.write(chunk)
                if expected is not None and resp.num_bytes_downloaded != int(expected):
                    raise _Incomplete(f"{resp.num_bytes_downloaded} of {expected} bytes")

        try:
            self._retrying(run, (httpx.TransportError, _Transient, _Incomplete))(attempt)
            _check_video(part, run.job.id)
        except (httpx.TransportError, _Transient, _Incomplete) as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"scene `{run.job.id}`: the download failed ({type(exc).__name__}: {exc}); nothing was cached"
            ) from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        video = run.ctx.workdir / "clip.mp4"
        part.replace(video)
        return video

    # -- HTTP ----------------------------------------------------------------------------------------
    def _api(
        self,
        run: _Run,
        method: str,
        url: str,
        *,
        what: str,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        submit: bool = False,
    ) -> Any:
        """One API call with retries. A submit is retried only where it cannot have been accepted; any
        other doubt raises _Ambiguous. Returns the parsed JSON answer."""
        key = self._key()
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        timeout = self.timeout()

        def attempt() -> Any:
            self.pool.throttle(run.ctx.cancel)
            if counts_as_poll:
                run.polls += 1
            try:
                resp = self.client.request(method, url, json=json, params=params, headers=headers, timeout=timeout)
            except httpx.TransportError as exc:
                if submit and not isinstance(exc, SAFE_TRANSPORT):
                    raise _Ambiguous(f"{type(exc).__name__} after the request was sent") from None
                raise
            if resp.status_code in (SAFE_SUBMIT_STATUS if submit else RETRY_STATUS):
                raise _Transient(resp)
            if submit and resp.status_code >= 500:
                raise _Ambiguous(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise self._refused(what, resp)
            try:
                return resp.json()
            except ValueError:
                if submit:
                    raise _Ambiguous("an answer that is not JSON") from None
                raise _Malformed(f"an answer that is not JSON: {_snippet(resp.text, 80)!r}") from None

        counts_as_poll = what.startswith("status poll")
        retrying = self._retrying(run, (httpx.TransportError, _Transient, _Malformed))
        try:
            return retrying(attempt)
        except (httpx.TransportError, _Transient, _Malformed) as exc:
            n = retrying.statistics.get("attempt_number", 1)
            raise RenderError(
                f"scene `{run.job.id}`: {self.provider_title} {what} failed after {n} attempt(s): "
                f"{type(exc).__name__}: {exc}"
                + ("" if submit else "; a journalled request id is kept, so a rerun re-attaches")
            ) from None

    def _retrying(self, run: _Run, retry_on: tuple[type[BaseException], ...]) -> tenacity.Retrying:
        r = self.settings.retries

        def before_sleep(state: tenacity.RetryCallState) -> None:
            run.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            log.info(
                "scene %s: %s; retrying in %.1fs (attempt %d of %d)",
                run.job.id,
                redact(f"{type(exc).__name__}: {exc}"),
                state.upcoming_sleep,
                state.attempt_number + 1,
                r.attempts,
            )

        def sleep(seconds: float) -> None:
            self._wait(run, seconds)

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(retry_on),
            wait=_WaitRetryAfter(
                tenacity.wait_exponential_jitter(initial=r.initial_s, max=r.max_wait_s, jitter=r.initial_s),
                r.retry_after_max_s,
            ),
            stop=tenacity.stop_after_attempt(r.attempts) | tenacity.stop_after_delay(r.total_s),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def _refused(self, what: str, resp: httpx.Response) -> ProviderError:
        hint = ""
        if resp.status_code in (401, 403):
            hint = f"; check that ${self.settings.api_key_env} holds a valid {self.provider_title} key"
        return ProviderError(
            f"{self.provider_title} refused the {what} (HTTP {resp.status_code}): {_snippet(resp.text)}{hint}",
            status=str(resp.status_code),
        )

    def _key(self) -> str:
        key = os.environ.get(self.settings.api_key_env, "").strip()
        if not key:
            raise RenderError(f"${self.settings.api_key_env} is not set; {self.provider_title} needs an API key")
        register_secret(key)
        return key

    def _wait(self, run: _Run, seconds: float) -> None:
        if run.ctx.cancel.wait(max(0.0, seconds)):
            raise Cancelled(f"scene `{run.job.id}`: cancelled; a journalled request id is kept, so a rerun re-attaches")


def _check_video(path: Path, scene_id: str) -> None:
    """A whole video ffmpeg can open, or DownloadError."""
    try:
        p = probe(path)
    except (ValueError, OSError) as exc:
        raise DownloadError(
            f"scene `{scene_id}`: the download is not a video ffmpeg can open ({exc}); nothing was cached"
        ) from None
    if not p.has_video or not p.duration:
        raise DownloadError(f"scene `{scene_id}`: the download has no video stream; nothing was cached")
    if not _mp4_whole(path):
        raise DownloadError(
            f"scene `{scene_id}`: the download is cut short (its mp4 boxes run past the end "
            "of the file); nothing was cached"
        )


def _mp4_whole(path: Path) -> bool:
    """Whether an ISO-BMFF (mp4/mov) file's top-level boxes end exactly at the end of the file. A cut-off
    mp4 whose index comes first still opens in ffmpeg; its last box tells. Other containers pass."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(8)[4:8] != b"ftyp":
            return True
        pos = 0
        while pos < size:
            f.seek(pos)
            head = f.read(8)
            if len(head) < 8:
                return False
            n = int.from_bytes(head[:4], "big")
            if n == 1:
                n = int.from_bytes(f.read(8), "big")
            elif n == 0:  # the last box runs to the end of the file
                return True
            if n < 8:
                return False
            pos += n
        return pos == size


# -- plan-time helpers shared by the provider modules ----------------------------------------------
def _show(value: Any) -> Any:
    if isinstance(value, Media):
        return value.describe()
    if isinstance(value, tuple):
        return [_show(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return value


def whole_seconds(scene: Scene, issues: list[Issue], allowed: Iterable[int], default: int, allowed_text: str) -> int:
    """`duration` as the whole seconds a provider takes (the default when unset)."""
    if scene.duration is None:
        return default
    choices = set(allowed)
    if float(scene.duration).is_integer() and int(scene.duration) in choices:
        return int(scene.duration)
    issues.append(Issue(scene.id, "duration", scene.duration, f"whole seconds, {allowed_text}"))
    return default


def in_range(scene: Scene, issues: list[Issue], name: str, value: Any, lo: float, hi: float) -> Any:
    if value is not None and not lo <= value <= hi:
        issues.append(Issue(scene.id, name, value, f"from {lo:g} to {hi:g}"))
    return value


def text(scene: Scene, issues: list[Issue], name: str, *, required: bool, max_len: int | None = None) -> str | None:
    """A text field, required or not, within the provider's length limit (None: the doc gives none)."""
    value: str | None = getattr(scene, name)
    if required and not (value or "").strip():
        issues.append(Issue(scene.id, name, value, "a non-empty text: this model requires it"))
    elif value is not None and max_len is not None and len(value) > max_len:
        issues.append(Issue(scene.id, name, value[:40] + "...", f"at most {max_len} characters (it has {len(value)})"))
    return value


def choice(scene: Scene, issues: list[Issue], name: str, value: Any, allowed: Iterable[Any], why: str = "") -> Any:
    options = list(allowed)
    if value is not None and value not in options:
        issues.append(Issue(scene.id, name, value, f"one of {', '.join(map(str, options))}{why}"))
    return value


def drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


__all__ = [
    "SEED_MAX",
    "AmbiguousSubmit",
    "ProviderPool",
    "RedactingFilter",
    "RemoteBackend",
    "RemoteSettings",
    "Status",
    "choice",
    "drop_none",
    "in_range",
    "redact",
    "register_secret",
    "text",
    "whole_seconds",
]
