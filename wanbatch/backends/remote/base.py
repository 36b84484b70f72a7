"""What every remote backend shares: the protocol hooks a provider module fills in, and the job life cycle.

A remote render is one procedure, `RemoteBackend.render`:

    1. re-attach to the request id in the journal, or submit. The journal holds the submit before it is sent
       (`submitting`), so a process killed mid-submit leaves a trace. A submit is retried only where it cannot
       have been accepted (connection refused, a connection broken before the body was written, 429, 503); an
       ambiguous one (its answer lost after the body was sent) is looked up in the provider's request list
       where there is one; when that does not settle it, the scene fails as ambiguous and is sent again only
       when the user says so (`resubmit_ambiguous`): never twice on wanbatch's own guess.
    2. write the id to the journal before the first poll, so a crashed run re-attaches instead of paying twice
    3. poll until a final state: first when the job is due, then at the provider's `eta` hint or on a backoff
    4. download the video into the job's workdir and check it (status 200, type, full length, container)

A provider module (gmi.py, aiml.py, novita.py) adds only its protocol: URLs, request body, how to read
the answers, and the plan-time mapping of scene fields. The rest lives one concern a module:

    remote_settings.py   the backend's options (typed by RemoteConfig) checked before anything is sent
    remote_scene.py      plan time: a scene's fields against what the model takes
    ambiguous.py         a submit that may have been accepted: the error, the payload summary
    (wanbatch/secrets.py) the API key is redacted from every message, log line and written file
    remote_limits.py     jobs in flight and API calls per second, per provider account
    remote_http.py       the HTTP client, and retries that never pay twice
    remote_download.py   the video downloaded at once, and kept only if it is whole (remote_probe.py: ffmpeg)
    remote_run.py        one render's state and counters

The API key is read from the environment when used, sent only in the Authorization header of API calls
(never to a download host) and redacted from every message and log line these modules produce.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import mimetypes
import os
import random
import threading
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx

from wanbatch.backends.remote.ambiguous import AmbiguousSubmit, summarize, utc
from wanbatch.backends.remote.download import download
from wanbatch.backends.remote.http import Api, _Ambiguous
from wanbatch.backends.remote.limits import SUBMITS, ProviderPool
from wanbatch.backends.remote.run import Gone, Run
from wanbatch.backends.remote.settings import check_settings
from wanbatch.backends.remote.uploader import Uploader
from wanbatch.config.backends import PollConfig, RemoteConfig
from wanbatch.core.backend import Backend, BackendKind, RenderContext, RenderResult
from wanbatch.core.media import Media
from wanbatch.errors import Cancelled, DownloadError, Issue, ProviderError, RenderError
from wanbatch.secrets import redact, register_secret

if TYPE_CHECKING:
    from wanbatch.core.job import Job
    from wanbatch.core.scene import Scene

log = logging.getLogger("wanbatch.remote")


class NotListed(Exception):
    """The provider's request list does not settle an ambiguous submit (the message says why)."""


#: Where a request stands at its provider; `Status.raw` keeps the provider's own word.
PollState = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class Status:
    """A provider's answer to a status poll, in wanbatch's words."""

    state: PollState
    raw: str  # the provider's own word for it
    video_url: str | None = None
    reason: str | None = None
    eta_s: float | None = None  # when the provider expects to finish (Novita)
    url_ttl_s: float | None = None  # how long `video_url` stays valid, where the provider says


class RemoteBackend(Backend):
    """A model behind an asynchronous HTTP queue. Subclasses add a protocol and a scene mapping."""

    kind: ClassVar[BackendKind] = BackendKind.REMOTE
    provider: ClassVar[str]  # one pool of slots and one rate limit per provider account
    provider_title: ClassVar[str]
    config_type: ClassVar[type[RemoteConfig]] = RemoteConfig  # the provider's schema: endpoint, key, poll habits
    config: RemoteConfig
    takes: ClassVar[frozenset[str]]  # the scene fields this model maps; others must be unset
    gives_eta: ClassVar[bool] = False  # a status answer says when the job will be done (Novita's `eta`)
    can_list: ClassVar[bool] = False  # the provider lists requests, so an ambiguous submit can be reconciled
    clock_skew_s: ClassVar[float] = 60.0  # between this machine's clock and the provider's timestamps

    def __init__(self, config: RemoteConfig, *, client: httpx.Client | None = None):
        super().__init__(config)
        self._config_issues: list[Issue] = []
        where = f"backends.{self.name}"
        check_settings(self.config, where, self._config_issues)
        self.uploader = Uploader.from_config(self.config.uploader, self._config_issues, f"{where}.uploader")
        self.pool = ProviderPool.join(
            self.provider, self.config.base_url, self, self.config.max_in_flight, self.config.requests_per_second
        )
        self.api = Api(self.config, self.provider_title, self.pool, client)
        if key := os.environ.get(self.config.api_key_env):
            register_secret(key)

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def max_in_flight(self) -> int:
        return self.config.max_in_flight

    @property
    def client(self) -> httpx.Client:
        return self.api.client

    def warm(self) -> None:
        # The first call's client costs 40-60 ms of CPU (httpcore imported, a TLS context loaded): made while
        # the run opens its cache and run folder (mostly file I/O), not in the first submit's way.
        threading.Thread(target=self.api.warm, name=f"wanbatch-warm-{self.name}", daemon=True).start()

    def close(self) -> None:
        self.pool.leave(self)
        self.api.close()

    def api_url(self, suffix: str = "") -> str:
        return self.config.base_url.rstrip("/") + "/" + self.config.path.strip("/") + suffix

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

    def find_submitted(
        self, run: Run, params: Mapping[str, Any], window: tuple[float, float], exclude: frozenset[str]
    ) -> str:
        """The id of the one listed request for a job with these `params` (its payload without the media),
        created within `window` (Unix seconds) and not in `exclude` (ids other jobs hold). Raise NotListed
        saying why when the list does not show exactly one (only where `can_list`)."""
        raise NotListed(f"{self.provider_title} cannot list requests")

    # -- plan time (the scene mapping itself is in remote_scene.py) --------------------------------
    def check_ready(self, issues: list[Issue]) -> None:
        issues.extend(self._config_issues)
        env = self.config.api_key_env
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
        # A render from another endpoint (a fake server, a proxy) must never pass for the real one: any
        # base_url but the provider's own (its schema's default).
        if self.config.base_url.rstrip("/") != str(self.config_type.base_url).rstrip("/"):
            identity["endpoint"] = self.config.base_url.rstrip("/")
        return identity

    # -- media at run time -------------------------------------------------------------------------
    def image_data(self, media: Media) -> str:
        """A local image as the body carries it: a data URI or bare base64 (`image_encoding`)."""
        if media.path is None:
            raise RenderError(f"`{media.field}` must be a local file to be sent as data; got {media.describe()}")
        encoded = base64.b64encode(media.path.read_bytes()).decode("ascii")
        if self.config.image_encoding == "base64":
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
            return self._render(Run(job, ctx))
        except Exception as exc:
            # The one exit of every failure: whatever a provider echoed, no message carries a key.
            exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
            raise

    def _render(self, run: Run) -> RenderResult:
        try:
            request_id, video = self._request(run, journalled=True)
        except Gone as gone:
            # What was journalled is gone (an expired URL, a forgotten request): say so, then render once more.
            self._note(run, f"{gone}; submitting scene `{run.job.id}` again")
            try:
                request_id, video = self._request(run, journalled=False)
            except Gone as again:
                raise DownloadError(f"scene `{run.job.id}`: {again}, twice; nothing was cached") from None
        return RenderResult(video=video, model=self.model, request_id=request_id, info=run.info(self.provider))

    def _request(self, run: Run, *, journalled: bool) -> tuple[str, Path]:
        """One request, from its submit (or the journal) to its checked video in the workdir."""
        # A slot stands for a job at the provider: held from the submit to the job's final state, and not
        # while the video comes down from the storage host.
        with self.pool.slot(run.ctx.cancel):
            # 1-2. Re-attach to the journalled request, or submit one (its id journalled before any poll).
            request_id = self._journalled(run) if journalled else None
            submitted_at = None
            if request_id is None:
                t0 = time.monotonic()
                request_id, submitted_at = self._submit(run)
                run.timings["submit"] = submitted_at - t0
            # 3. Poll until the provider is done with it.
            status = self._poll(run, request_id, submitted_at)
            if submitted_at is not None:
                run.timings["provider"] = time.monotonic() - submitted_at
        # The provider is done: the executor may send its next job while this one's video comes down.
        run.ctx.off_backend()
        if status.state == "failed":
            # A failed request is final; the journal entry goes, so a rerun renders the scene anew.
            run.ctx.journal.remove(run.job.key)
            raise ProviderError(
                f"scene `{run.job.id}`: {self.provider_title} reports request {request_id} "
                f"`{status.raw}`: {status.reason or 'no reason given'}",
                request_id=request_id,
                status=status.raw,
            )
        # 4. Download at once (the URL expires) and check the video; the journal says how far it got.
        assert status.video_url is not None
        expires = time.time() + status.url_ttl_s if status.url_ttl_s else None
        self._record(
            run, request_id=request_id, state="succeeded", video_url=status.video_url, video_url_expires=expires
        )
        SUBMITS.wait_turn()  # the next jobs' submits first (see SubmitsFirst); the provider is done with this one
        t0 = time.monotonic()
        video = download(self.api, run, status.video_url)
        run.timings["download"] = time.monotonic() - t0
        self._record(run, request_id=request_id, state="downloaded")
        return request_id, video

    # 1. Re-attach or submit -----------------------------------------------------------------------
    def _journalled(self, run: Run) -> str | None:
        entry = run.ctx.journal.get(run.job.key) or {}
        if entry.get("backend") != self.name:
            return None
        request_id = entry.get("request_id")
        if not request_id:
            if entry.get("state") in ("submitting", "ambiguous"):
                return self._earlier_submit(run, entry)
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

    def _earlier_submit(self, run: Run, entry: Mapping[str, Any]) -> str | None:
        """An earlier run sent this job and never learned its id (its answer was lost, or the process died
        mid-submit). Find it in the request list; else submit again only if the user said so."""
        sent_at = float(entry.get("submitted_at") or 0.0)
        summary = entry.get("payload_summary") or {}
        # A process killed mid-submit left no end time: the provider took it within a submit's retries.
        window = (sent_at, sent_at + self.config.retries.total_s)
        found, why = self._look_up(run, window) if self.can_list else (None, "")
        if found:
            self._record(run, request_id=found, state="submitted")
            self._note(run, f"an earlier submit of scene `{run.job.id}` was ambiguous; {why}")
            return found
        if run.job.resubmit_ambiguous:
            self._note(
                run,
                f"an earlier submit of scene `{run.job.id}` ({entry.get('submitted_at_utc', 'time unknown')}) "
                "was ambiguous; submitting it again, as `resubmit_ambiguous` asks",
            )
            return None
        reason = str(entry.get("reason") or "the process ended before its answer came")
        raise AmbiguousSubmit.for_scene(
            run.job.id,
            self.provider_title,
            self.model,
            sent_at,
            summary,
            why=reason + (f"; {why}" if why else ""),
            earlier=True,
        )

    def _submit(self, run: Run) -> tuple[str, float]:
        """Submit the job; returns its request id and when the provider had it (time.monotonic())."""
        body = self.body(run.job)
        sent_at = time.time()
        summary = summarize(body)
        # Written ahead: a process killed while the request is out leaves a trace that a rerun honours.
        self._record(
            run,
            request_id=None,
            state="submitting",
            submitted_at=sent_at,
            submitted_at_utc=utc(sent_at),
            payload_summary=summary,
        )
        try:
            request_id = self._send(run, body)
        except _Ambiguous as amb:
            request_id = self._settle(run, sent_at, summary, str(amb))
        except RenderError:
            # Refused (4xx), never sent (retries of safe errors ran out) or cancelled between attempts: the
            # provider has nothing, so a rerun submits it afresh.
            run.ctx.journal.remove(run.job.key)
            raise
        taken = time.monotonic()  # before the journal write: the job's clock at the provider is running
        # 2. The id goes to the journal before the first poll.
        self._record(run, request_id=request_id, state="submitted", submitted_at=time.time())
        log.info("scene %s: submitted to %s as %s", run.job.id, self.provider_title, request_id)
        run.ctx.status(f"submitted ({request_id})")
        return request_id, taken

    def _send(self, run: Run, body: Mapping[str, Any]) -> str:
        run.submits += 1
        data = self.api.call(run, "POST", self.api_url(), what="submit", json=body, submit=True)
        try:
            return self.read_submit(data)
        except ProviderError as exc:  # accepted (2xx) but its id cannot be read: as good as unknown
            raise _Ambiguous(str(exc)) from None

    def _settle(self, run: Run, sent_at: float, summary: dict[str, Any], reason: str) -> str:
        """An ambiguous submit: its id from the request list, or AmbiguousSubmit. Never sent again here."""
        self._record(run, state="ambiguous", reason=reason)
        why = f"{self.provider_title} cannot list requests to check"
        if self.can_list:
            found, why = self._look_up(run, (sent_at, time.time()))
            if found:
                run.reconciled = True
                self._note(run, f"the submit of scene `{run.job.id}` was ambiguous ({reason}); {why}")
                return found
        raise AmbiguousSubmit.for_scene(
            run.job.id, self.provider_title, self.model, sent_at, summary, why=f"{reason}; {why}"
        )

    def _look_up(self, run: Run, window: tuple[float, float]) -> tuple[str | None, str]:
        """(request id, how it was found) or (None, why the list does not settle it). Lists twice: a list
        may lag a moment behind a submit."""
        skew = self.clock_skew_s
        widened = (window[0] - skew, window[1] + skew)
        exclude = frozenset(
            str(e["request_id"])
            for k, e in run.ctx.journal.items()
            if k != run.job.key and e.get("provider") == self.provider and e.get("request_id")
        )
        why = ""
        for attempt in range(2):
            if attempt:
                run.wait(self.config.retries.reconcile_wait_s)
            try:
                found = self.find_submitted(run, run.job.params, widened, exclude)
            except NotListed as exc:
                why = str(exc)
                continue
            except RenderError as exc:  # the list itself failed (after retries): it proves nothing
                if isinstance(exc, Cancelled):
                    raise
                why = f"listing {self.provider_title}'s requests failed ({exc})"
                continue
            return found, f"found it in {self.provider_title}'s request list as {found}"
        return None, why

    # 3. Poll --------------------------------------------------------------------------------------
    def _poll(self, run: Run, request_id: str, submitted_at: float | None) -> Status:
        """Poll until a final state, on `PollSchedule`: the first poll when such a job is expected to be done
        (see `_first_poll`; at once for a journalled one, which may be long done), then at the provider's `eta`
        hint, else on a growing interval. A job seen done teaches the journal how long such jobs take."""
        p = self.config.poll
        kind = self.render_kind(run.job)
        deadline = time.monotonic() + p.timeout_s
        if submitted_at is None:
            schedule = PollSchedule(p)
            due = time.monotonic()
            run.first_poll = {"based_on": "journal: re-attached to a request sent earlier"}
        else:
            after, run.first_poll = self._first_poll(run.ctx.journal, kind)
            schedule = PollSchedule(p, first_s=after, timed=run.first_poll["based_on"] == LEARNT)
            due = submitted_at + schedule.first()
        first = True
        running_at: float | None = None  # when a poll last found the job running, and its eta then
        eta: float | None = None
        while True:
            run.wait(due - time.monotonic())
            url, params = self.status_request(request_id)
            try:
                data = self.api.call(run, "GET", url, what=f"status poll of request {request_id}", params=params)
            except ProviderError as exc:
                if first and submitted_at is None and exc.status == "404":
                    raise Gone(f"{self.provider_title} no longer knows journalled request {request_id}") from None
                raise
            first = False
            answered = time.monotonic()
            status = self.read_status(data, request_id)
            if status.state != "running":
                if status.state == "succeeded" and submitted_at is not None:
                    due_after = due - submitted_at if self.gives_eta else None
                    took = _render_time(answered - submitted_at, running_at, eta, submitted_at, due_after)
                    with contextlib.suppress(Exception):  # a lesson for next time; never a reason to fail
                        run.ctx.journal.observe(kind, took)
                return status
            running_at, eta = answered, status.eta_s
            # The provider's eta hint is passed on in the words the progress display reads (`eta 12s`).
            hint = f", eta {status.eta_s:.0f}s" if status.eta_s is not None else ""
            run.ctx.status(f"{status.raw}{hint} ({request_id})")
            if time.monotonic() > deadline:
                raise RenderError(
                    f"scene `{run.job.id}`: request {request_id} is still `{status.raw}` after "
                    f"{p.timeout_s:g}s; its id stays in the journal, so a rerun re-attaches to it"
                )
            due = time.monotonic() + schedule.next(status.eta_s)

    def render_kind(self, job: Job) -> str:
        """What makes jobs take alike long at a provider: backend, model, seconds of video and the parameters
        that shape the work (size, steps, ...), not the prompt or the seed."""
        shape = [
            f"{k}={v}"
            for k, v in sorted(job.params.items())
            if "prompt" not in k and k != "seed" and isinstance(v, (int, float, str)) and len(str(v)) <= 16
        ]
        return "/".join([self.name, self.model, f"{job.seconds:g}s", *shape])

    def _first_poll(self, journal: Any, kind: str) -> tuple[float, dict[str, Any]]:
        """When to poll first (seconds after the provider took the job) and what that was based on (for the
        manifest). In order: the median render time wanbatch has observed for such jobs; else, for a provider
        that gives an `eta`, an early poll (`min_interval_s`) to read it; else the user's `poll.initial_s`.
        `poll.learn: false` keeps initial_s. Later polls keep the user's interval and backoff."""
        p = self.config.poll
        if p.learn:
            with contextlib.suppress(Exception):  # a journal that cannot say: as if nothing were known
                expected = journal.expected(kind)
                if expected is not None:
                    after = min(max(expected, p.min_interval_s), p.timeout_s)
                    basis = {"based_on": LEARNT, "kind": kind, "expected_s": expected}
                    return after, {**basis, "after_s": round(after, 3)}
            if self.gives_eta:
                after = min(p.min_interval_s, p.initial_s)
                return after, {"based_on": "provider eta, asked early", "after_s": after}
        return p.initial_s, {"based_on": "poll.initial_s", "after_s": p.initial_s}

    # -- the journal and notes -----------------------------------------------------------------------
    def _record(self, run: Run, **fields: Any) -> None:
        run.ctx.journal.record(
            run.job.key, backend=self.name, provider=self.provider, model=self.model, scene=run.job.id, **fields
        )

    def _note(self, run: Run, message: str) -> None:
        message = redact(message)
        log.warning("%s", message)
        run.notes.append(message)
        run.ctx.status(message)


def _render_time(
    done_after: float, running_at: float | None, eta: float | None, submitted_at: float, due_after: float | None
) -> float:
    """How long such a job takes, as the polls saw it, for the next one's first poll: never an estimate that
    would poll before the job is done (a poll too early costs a wait of poll.interval_s). The last `eta` hint
    where one was given (a little past it, as polls are), else the time of the poll that found it done.

    `due_after`, for a provider that gives an eta: when the poll that found it done was due (seconds after the
    submit, as `done_after`). A job done at its first poll teaches that time, not when the answer came: a poll
    that went out or was answered late (this process busy with fifty others) taught that jobs take longer, and
    the next ones were polled later still. Should the job have been done only just after, the next first poll
    finds one running, and its eta teaches the time. (With an eta a first poll a moment early costs one poll at
    the eta; without one, a whole interval: there what was seen stays.)"""
    if running_at is not None and eta is not None:
        return min(running_at - submitted_at + eta * 1.02 + 0.05, done_after)
    if running_at is None and due_after is not None:
        return min(done_after, due_after)
    return done_after


# A poll timed to when the job should be done (its kind's observed render time, the provider's eta) is jittered
# by at most this much, not the full `poll.jitter` (20% as shipped): jitter keeps fixed-interval polls of jobs
# sent together out of step, but these are already spread as their submits were, and each percent of delay is
# paid in full by a job already done: 20% of a 10-minute render is two minutes' wait for a finished video, 5% (as
# this was) 30 s. A burst of polls due together is spaced by `requests_per_second`, not by delaying them all.
TIMED_JITTER = 0.01
LEARNT = "observed render times"  # the manifest's `first_poll.based_on` for a first poll timed by the journal


class PollSchedule:
    """When the polls of one job fall: `first()` after the submit, then `next(eta)` after each answer that
    says it is still running. Jitter only ever delays a poll: one before the job can be done is wasted.
    `first_s`: when the first poll is due (default `initial_s`; see RemoteBackend._first_poll); `timed`: first_s
    is when such a job is expected done (then, as at an eta, jitter is at most TIMED_JITTER)."""

    def __init__(self, poll: PollConfig, first_s: float | None = None, *, timed: bool = False):
        self.p = poll
        self.interval = poll.interval_s
        self.first_s = poll.initial_s if first_s is None else first_s
        self.timed = timed

    def first(self) -> float:
        return _jittered(self.first_s, min(self.p.jitter, TIMED_JITTER) if self.timed else self.p.jitter)

    def next(self, eta_s: float | None) -> float:
        if eta_s is not None:  # the provider's hint, within bounds; a little past it, since a poll a moment
            # early would wait min_interval_s for the next
            at = min(max(eta_s * 1.02 + 0.05, self.p.min_interval_s), self.p.max_interval_s)
            return _jittered(at, min(self.p.jitter, TIMED_JITTER))
        delay, self.interval = self.interval, min(self.interval * self.p.backoff, self.p.max_interval_s)
        return _jittered(delay, self.p.jitter)


def _jittered(seconds: float, jitter: float) -> float:
    return seconds * (1 + random.uniform(0, jitter))


__all__ = ["TIMED_JITTER", "AmbiguousSubmit", "NotListed", "PollSchedule", "RemoteBackend", "Status"]
