"""A provider's API over HTTP: one client, a timeout on every call, the key, and retries that never pay twice.

What is retried, and why:

    the request never left: a connect error or connect/pool        retried, submit included
    timeout, or a connection that broke before the whole body
    was written (httpcore's trace says how far the request got)
    429 and 503                                                    retried, submit included: refused before
                                                                   acceptance (a Retry-After is honoured)
    500, 502, 504, other transport errors, a 2xx that is not JSON  retried on reads; on a submit the job may
                                                                   have been accepted: `_Ambiguous`, which the
                                                                   life cycle reconciles or reports
    any other 4xx                                                  ProviderError at once, with the provider's reason
    a redirect (3xx)                                               ProviderError at once, never followed: a
                                                                   submit would send its body, and pay, elsewhere

Connections are opened gradually (`Ramp`): a client starts with `connection_ramp` calls at once and may run
one more for every answered call (TCP's slow start, for connections), so fifty submits at once do not open
fifty connections in the same instant: a burst a provider's front end may answer with resets.

Example::

    api = Api(settings, "Novita AI", pool)
    data = api.call(run, "GET", url, what="status poll of request 123", params={"task_id": "123"})
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import tenacity

from wanbatch.backends.remote.limits import SUBMITS, ProviderPool
from wanbatch.backends.remote.run import Run
from wanbatch.config.backends import RemoteConfig
from wanbatch.errors import Cancelled, ProviderError, RenderError
from wanbatch.secrets import redact, register_secret

log = logging.getLogger("wanbatch.remote")

SAFE_TRANSPORT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
SAFE_SUBMIT_STATUS = frozenset({429, 503})  # refused before acceptance


# The class names show in messages ("failed after 4 attempt(s): _Transient: HTTP 502"): keep them.
class _Transient(Exception):
    """A retryable HTTP status (429, 5xx); carries Retry-After when the server sent one."""

    def __init__(self, response: httpx.Response):
        self.status = response.status_code
        self.retry_after = _retry_after(response.headers.get("retry-after"))
        super().__init__(f"HTTP {self.status}" + (f" (Retry-After {self.retry_after:g}s)" if self.retry_after else ""))


class _Malformed(Exception):
    """A 2xx answer that is not JSON (a proxy's error page, a cut-off body). Retried on reads."""


class _Ambiguous(Exception):
    """A submit whose outcome is unknown: it may have been accepted."""


class _Sent:
    """httpcore's trace of one request: whether its body was written whole. A connection that breaks before
    that cannot have delivered a request the server could act on, so the call is safe to repeat."""

    BODY_DONE = ("http11.send_request_body.complete", "http2.send_request_body.complete")

    def __init__(self) -> None:
        self.traced = False  # a transport that does not trace (a mock) proves nothing
        self.body_written = False

    def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        self.traced = True
        if name in self.BODY_DONE:
            self.body_written = True

    def never_left(self, exc: Exception) -> bool:
        return isinstance(exc, SAFE_TRANSPORT) or (self.traced and not self.body_written)


class Ramp:
    """How many API calls of one client may be in progress at once: `start` at first, one more for every
    answered call (up to `cap`), back to half on a transport error. New connections are opened only for calls
    beyond the idle ones, so they are opened a few at a time, as earlier calls show the way is clear."""

    def __init__(self, start: int | None, cap: int):
        self.start = start
        self.cap = max(cap, start or 1)
        self.window = start or cap
        self.active = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def call(self, cancel: threading.Event) -> Iterator[None]:
        with self._cond:
            while self.start is not None and self.active >= self.window:
                if cancel.is_set():
                    raise Cancelled("cancelled while waiting to call the provider")
                self._cond.wait(0.2)
            self.active += 1
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify_all()

    def answered(self) -> None:
        with self._cond:
            self.window = min(self.cap, self.window + 1)
            self._cond.notify_all()

    def broke(self) -> None:
        with self._cond:
            if self.start is not None:
                self.window = max(self.start, self.window // 2)


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


def snippet(text: str, limit: int = 300) -> str:
    """`text` on one line, cut at `limit` characters: enough of a provider's answer to say what it was."""
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


class Api:
    """One backend's way to its provider: the HTTP client (injected, or its own), the key, the limits."""

    def __init__(
        self, settings: RemoteConfig, provider_title: str, pool: ProviderPool, client: httpx.Client | None = None
    ):
        self.settings, self.provider_title, self.pool = settings, provider_title, pool
        self._client = client
        self._own_client = client is None
        self._client_lock = threading.Lock()
        t = settings.timeouts
        # Every call passes its own timeout, so an injected client cannot make one hang forever.
        self._timeout = httpx.Timeout(connect=t.connect_s, read=t.read_s, write=t.write_s, pool=t.pool_s)
        self._download_timeout = httpx.Timeout(connect=t.connect_s, read=t.download_s, write=t.write_s, pool=t.pool_s)
        self.ramp = Ramp(settings.connection_ramp, self.max_connections)

    @property
    def max_connections(self) -> int:
        # room for every job in flight plus its download
        return max(10, 2 * self.settings.max_in_flight)

    @property
    def client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                # Made once and kept: a client holds the TLS context and the pool of kept-alive connections,
                # with room for every job in flight plus its download.
                self._client = httpx.Client(
                    timeout=self._timeout,
                    limits=httpx.Limits(max_connections=self.max_connections),
                    follow_redirects=False,  # API calls never follow; downloads follow each hop themselves
                )
            return self._client

    def warm(self) -> None:
        """Make the client now (see `client`), so that the first call does not wait for it; never raises."""
        with contextlib.suppress(Exception):
            _ = self.client

    def timeout(self, *, download: bool = False) -> httpx.Timeout:
        return self._download_timeout if download else self._timeout

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def key(self) -> str:
        """The API key, read from the environment when used (and registered for redaction)."""
        key = os.environ.get(self.settings.api_key_env, "").strip()
        if not key:
            raise RenderError(f"${self.settings.api_key_env} is not set; {self.provider_title} needs an API key")
        register_secret(key)
        return key

    def call(
        self,
        run: Run,
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
        headers = {"Authorization": f"Bearer {self.key()}", "Accept": "application/json"}
        counts_as_poll = what.startswith("status poll")

        def attempt() -> Any:
            sent = _Sent()
            with self.ramp.call(run.ctx.cancel):
                self.pool.throttle(run.ctx.cancel)
                if counts_as_poll:
                    run.polls += 1
                try:
                    with SUBMITS.sending() if submit else contextlib.nullcontext():
                        resp = self.client.request(
                            method,
                            url,
                            json=json,
                            params=params,
                            headers=headers,
                            timeout=self._timeout,
                            extensions={"trace": sent},
                            follow_redirects=False,  # whatever the (injected) client says
                        )
                except httpx.RequestError as exc:
                    self.ramp.broke()
                    if submit and not sent.never_left(exc):
                        raise _Ambiguous(f"{type(exc).__name__} after the request was sent") from None
                    if submit and not isinstance(exc, httpx.TransportError):
                        raise httpx.TransportError(f"{type(exc).__name__}: {exc}") from None  # retried: it never left
                    raise
            self.ramp.answered()
            if 300 <= resp.status_code < 400:
                raise self._redirected(what, resp)
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
                raise _Malformed(f"an answer that is not JSON: {snippet(resp.text, 80)!r}") from None

        retrying = self.retrying(run, (httpx.TransportError, _Transient, _Malformed))
        try:
            return retrying(attempt)
        except (httpx.TransportError, _Transient, _Malformed) as exc:
            n = retrying.statistics.get("attempt_number", 1)
            raise RenderError(
                f"scene `{run.job.id}`: {self.provider_title} {what} failed after {n} attempt(s): "
                f"{type(exc).__name__}: {exc}"
                + ("" if submit else "; a journalled request id is kept, so a rerun re-attaches")
            ) from None

    def retrying(self, run: Run, retry_on: tuple[type[BaseException], ...], *, paid: bool = False) -> tenacity.Retrying:
        """Backoff with jitter (or the server's Retry-After), bounded in attempts and in time; its waits are
        the run's, so a cancel stops them (only an `abandon` where the render is `paid` for already)."""
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

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(retry_on),
            wait=_WaitRetryAfter(
                tenacity.wait_exponential_jitter(initial=r.initial_s, max=r.max_wait_s, jitter=r.initial_s),
                r.retry_after_max_s,
            ),
            stop=tenacity.stop_after_attempt(r.attempts) | tenacity.stop_after_delay(r.total_s),
            sleep=run.wait_paid if paid else run.wait,
            before_sleep=before_sleep,
            reraise=True,
        )

    def _redirected(self, what: str, resp: httpx.Response) -> ProviderError:
        # A redirected call was not taken by the API (it asks to be sent elsewhere), so nothing is paid;
        # following it would send the body, and the bill, to a host the user never named.
        location = resp.headers.get("location") or "nowhere"
        return ProviderError(
            f"{self.provider_title} answered the {what} with a redirect (HTTP {resp.status_code}) to "
            f"{snippet(location, 200)}; API calls never follow redirects, so nothing was sent there. If you "
            f"trust that address, point the backend's `base_url` at it",
            status=str(resp.status_code),
        )

    def _refused(self, what: str, resp: httpx.Response) -> ProviderError:
        hint = ""
        if resp.status_code in (401, 403):
            hint = f"; check that ${self.settings.api_key_env} holds a valid {self.provider_title} key"
        return ProviderError(
            f"{self.provider_title} refused the {what} (HTTP {resp.status_code}): {snippet(resp.text)}{hint}",
            status=str(resp.status_code),
        )


__all__ = ["RETRY_STATUS", "Api", "snippet"]
