"""The HTTP side of the fake provider: one ThreadingHTTPServer on 127.0.0.1 answering all five protocols.

Routes (the providers' own, under one host):

    POST /api/v1/ie/requestqueue/apikey/requests      GMI submit (also /api/v1/apikey/requests)
    GET  .../requests/{id}  .../requests?model_id=    GMI status, GMI request list
    GET  /api/v1/apikey/models[/{id}]                 GMI models
    POST /v2/video/generations, GET ?generation_id=   AI/ML API
    POST /v3/async/wan-t2v, GET /v3/async/task-result Novita AI
    GET  /_fake/videos/{id}.mp4?expires=T             the "signed" video URL
    GET  /_fake/stats  /_fake/jobs                    counters per model; jobs with their payloads
    POST /_fake/faults /_fake/settings /_fake/reset   control (JSON bodies)
    POST /_fake/holds {"phase", "model", "after_polls"}   hold jobs or requests (answers {"hold": n})
    POST /_fake/release {"hold": n} (or {}: every hold)    let them go; GET /_fake/holds lists them
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from wanbatch.testing.fakeprovider import protocols as P
from wanbatch.testing.fakeprovider.state import FAULT_KINDS, FakeJob, Fault, Hold, Settings, State
from wanbatch.testing.fakeprovider.video import clip_bytes, prepare, tagged, thumbnail

log = logging.getLogger("wanbatch.testing.fakeprovider")

API_KEY_ENV = {"gmi": "GMI_API_KEY", "aiml": "AIML_API_KEY", "novita": "NOVITA_API_KEY"}
STATUS_FAULTS = {"429", "500", "502", "503"}
BEFORE_BODY = frozenset({"reset_before_body"})  # faults that strike before the body is read (they ignore `model`)
AFTER_BODY = frozenset(FAULT_KINDS) - BEFORE_BODY
MAX_BODY = 64 * 2**20


class _Drop(Exception):
    """Close the connection without answering."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive threads idle in recv; do not wait for them on close
    request_queue_size = 512
    state: State
    connections = itertools.count(1)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs
    timeout = 120  # an idle keep-alive connection is closed after this (longer than httpx keeps one)
    # Headers and body go out as two writes; with Nagle's algorithm the body would wait for the client's
    # delayed ACK of the headers (up to 40 ms a response), a stall no real provider's front end adds.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection_id = next(self.server.connections)
        self.first_request = True
        self.state.event("open", self.connection_id)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def state(self) -> State:
        return self.server.state

    # -- dispatch -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path.rstrip("/"), {k: v[0] for k, v in parse_qs(url.query).items()}
        if self.first_request:  # what the connection was opened for: an API call, or a download
            self.first_request = False
            self.state.opened_for[self.connection_id] = "download" if path.startswith("/_fake/") else "api"
        try:
            self._route(method, path, query)
        except _Drop:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. a `slow` fault)
            self.close_connection = True

    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        gmi = next((p for p in P.GMI_PATHS if path == p or path.startswith(p + "/")), None)
        if gmi is not None:
            rest = path[len(gmi) + 1 :]
            if method == "POST" and not rest:
                return self._submit("gmi")
            if method == "GET" and rest:
                return self._status("gmi", rest)
            if method == "GET":
                return self._list(query.get("model_id", ""))
        elif path.startswith("/api/v1/apikey/models") and method == "GET":
            return self._models(path[len("/api/v1/apikey/models") + 1 :])
        elif path == P.AIML_PATH:
            if method == "POST":
                return self._submit("aiml")
            return self._status("aiml", query.get("generation_id", ""))
        elif path == P.NOVITA_SUBMIT and method == "POST":
            return self._submit("novita")
        elif path == P.NOVITA_RESULT and method == "GET":
            return self._status("novita", query.get("task_id", ""))
        elif path.startswith("/_fake/"):
            return self._control(method, path[len("/_fake/") :], query)
        self._json(404, P.error_body(404, f"no route for {method} {path}"))

    # -- the provider protocols ---------------------------------------------------------------------
    def _submit(self, provider: str) -> None:
        if self.state.take_fault("submit", None, BEFORE_BODY) is not None:
            self.state.count("submit_attempts", "?")
            self._reset()  # the body is never read: nothing can be accepted
        body = self._body_json()
        model, payload, errors = P.validate(provider, body)
        self.state.count("submit_attempts", model)
        if not self._authorized(provider):
            return
        self._wait_if_held("submit", model)
        fault = self.state.take_fault("submit", model, AFTER_BODY)
        if fault is not None and fault.kind in STATUS_FAULTS:  # refused before acceptance: no job
            return self._status_fault(fault)
        if errors:
            return self._json(400, P.error_body(400, "; ".join(errors)))
        width, height, seconds = P.clip_shape(provider, model, payload)
        seed = payload.get("seed", 0) if isinstance(payload.get("seed"), int) else 0
        job = self.state.create_job(provider, model, payload, width=width, height=height, seconds=seconds, seed=seed)
        s = self.state.settings
        prepare(width, height, seconds, seed, scale=s.scale, fps=s.fps)
        self._answer(P.submit_answer(job), fault)

    def _status(self, provider: str, job_id: str) -> None:
        job = self.state.jobs.get(job_id)
        model = job.model if job is not None and job.provider == provider else "?"
        self.state.count("polls", model)
        if not self._authorized(provider):
            return
        if job is not None and job.provider == provider:
            self.state.polled(job)
        self._wait_if_held("poll", model)
        fault = self.state.take_fault("poll", model)
        if fault is not None and fault.kind in STATUS_FAULTS:
            return self._status_fault(fault)
        if job is None or job.provider != provider:
            return self._json(404, P.error_body(404, f"no such request: {job_id}"))
        self._answer(P.status_answer(job, self._video_url(job)), fault)

    def _list(self, model: str) -> None:
        self.state.count("lists", model or "?")
        if not self._authorized("gmi"):
            return
        self._wait_if_held("list", model or None)
        fault = self.state.take_fault("list", model)
        if fault is not None and fault.kind in STATUS_FAULTS:
            return self._status_fault(fault)
        jobs = [j for j in list(self.state.jobs.values()) if j.provider == "gmi" and (not model or j.model == model)]
        items = [P.status_answer(j, self._video_url(j)) for j in jobs]
        self._answer(P.list_answer(items, self.state.settings.list_shape), fault)

    def _models(self, model: str) -> None:
        if not self._authorized("gmi"):
            return
        if not model:
            return self._json(200, {"model_ids": list(P.GMI_SPECS)})
        if model not in P.GMI_SPECS:
            return self._json(404, P.error_body(404, f"no such model: {model}"))
        self._json(200, {"model_id": model, "status": "available"})

    def _video_url(self, job: FakeJob) -> str:
        expires = round(job.done_at + job.url_ttl, 3)
        return f"{self.server.base_url}/_fake/videos/{quote(job.id)}.mp4?expires={expires}&sig=fake"

    def _download(self, name: str, query: dict[str, str]) -> None:
        job = self.state.jobs.get(name.removesuffix(".mp4"))
        model = job.model if job is not None else "?"
        self.state.count("downloads", model)
        self._wait_if_held("download", model)
        fault = self.state.take_fault("download", model)
        if job is None or job.status(time.time()) != "success" or (fault is not None and fault.kind == "404"):
            return self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        if fault is not None and fault.kind == "expired":
            job.expired = True
        if job.expired or time.time() > float(query.get("expires", "0") or 0):
            return self._send(
                403,
                b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>",
                "application/xml",
            )
        if fault is not None and fault.kind in STATUS_FAULTS:
            return self._status_fault(fault)
        if fault is not None and fault.kind == "not_video":
            return self._send(200, b"<html><body>Service Unavailable</body></html>", "text/html")
        s = self.state.settings
        data = tagged(clip_bytes(job.width, job.height, job.seconds, job.seed, scale=s.scale, fps=s.fps), job.id)
        if fault is not None and fault.kind in ("truncate", "truncate_unsized"):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            if fault.kind == "truncate":
                self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            raise _Drop
        if fault is not None and fault.kind in ("slow", "drop", "malformed"):
            return self._misbehave(fault, data, "video/mp4")
        self._send(200, data, "video/mp4")

    # -- control ------------------------------------------------------------------------------------
    def _control(self, method: str, what: str, query: dict[str, str]) -> None:
        if method == "GET" and what == "stats":
            return self._json(200, self.state.stats())
        if method == "GET" and what == "jobs":
            return self._json(200, [j.summary() for j in list(self.state.jobs.values())])
        if method == "GET" and what.startswith("videos/"):
            return self._download(what[len("videos/") :], query)
        if method == "GET" and what.startswith("thumbs/"):
            return self._send(200, thumbnail(), "image/png")
        if method == "GET" and what == "holds":
            return self._json(200, [_hold_summary(n, h) for n, h in enumerate(list(self.state.holds))])
        if method == "POST" and what in ("faults", "settings", "reset", "holds", "release"):
            body = self._body_json()
            try:
                if what == "holds":
                    held = self.state.add_hold(Hold(**dict(body or {})))
                    return self._json(200, {"hold": self.state.holds.index(held)})
                if what == "release":
                    chosen = dict(body or {}).get("hold")
                    for n, hold in enumerate(list(self.state.holds)):
                        if chosen is None or n == chosen:
                            hold.release()
                elif what == "faults":
                    for item in body if isinstance(body, list) else [body]:
                        self.state.add_fault(Fault(**item))
                elif what == "settings":
                    self.state.settings.update(dict(body or {}))
                else:
                    self.state.reset()
            except (TypeError, ValueError) as exc:
                return self._json(400, P.error_body(400, str(exc)))
            return self._json(200, {"ok": True})
        self._json(404, P.error_body(404, f"no control route {method} /_fake/{what}"))

    # -- plumbing -----------------------------------------------------------------------------------
    def _body_json(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise _Drop
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _authorized(self, provider: str) -> bool:
        got = self.headers.get("Authorization", "")
        expected = self.state.settings.api_keys.get(provider)
        token = got[len("Bearer ") :] if got.startswith("Bearer ") else ""
        if token.strip() and (expected is None or token == expected):
            return True
        # Never echo the key back: a wrong key is reported by provider, not by value.
        self._json(401, P.error_body(401, f"invalid or missing API key (set {API_KEY_ENV[provider]})"))
        return False

    def _status_fault(self, fault: Fault) -> None:
        code = int(fault.kind)
        headers = {}
        if code in (429, 503):
            retry_after = fault.retry_after if fault.retry_after is not None else self.state.settings.retry_after_s
            headers["Retry-After"] = f"{retry_after:g}"
        self._json(code, P.error_body(code, f"fault injected: HTTP {code}"), headers)

    def _answer(self, obj: Any, fault: Fault | None) -> None:
        delay = self.state.settings.response_delay_s
        if delay:
            time.sleep(delay)
        if fault is None:
            return self._json(200, obj)
        self._misbehave(fault, json.dumps(obj).encode(), "application/json")

    def _wait_if_held(self, phase: str, model: str | None) -> None:
        hold = self.state.take_hold(phase, model)
        if hold is not None:
            hold.wait_released()

    def _misbehave(self, fault: Fault, data: bytes, ctype: str) -> None:
        if fault.kind == "slow":
            # Stalls until the delay is over, or until reset(): a test's leftover stall ends with the test.
            self.state.interrupt.wait(fault.delay if fault.delay is not None else self.state.settings.slow_s)
            return self._send(200, data, ctype)
        if fault.kind == "drop":
            raise _Drop
        if fault.kind == "reset":
            self._reset()
        if fault.kind == "malformed":
            return self._send(200, data[: max(1, len(data) // 2)], ctype)
        self._send(200, data, ctype)  # a download fault on an API call: no effect

    def _reset(self) -> None:
        """Close the connection with a TCP reset (RST) instead of an answer."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Drop

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.state.event("answer" if not self.path.startswith("/_fake/") else "other answer", self.connection_id)
        send(self, status, data, ctype, headers)


def send(
    h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
) -> None:
    """One whole answer with its length: what every fake server here sends (the test servers too)."""
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


def _hold_summary(n: int, hold: Hold) -> dict[str, Any]:
    return {"hold": n, "phase": hold.phase, "model": hold.model, "arrivals": hold.arrivals, "released": hold.released}


class FakeProvider:
    """A fake GMI Cloud + AI/ML API + Novita AI on one local port, for tests and dry rehearsals.

    Example::

        with FakeProvider(latency_s=0.5) as fake:           # http://127.0.0.1:<free port>
            fake.fault("429", times=2, retry_after=1)       # the next two submits are rate limited
            ...  # point a backend at fake.url (backend.base_url=...)
            assert fake.stats()["submissions"] == {"wan2.1-t2v": 1}
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, recv_buffer: int | None = None, **settings: Any):
        """`recv_buffer` (bytes) caps each connection's receive buffer, so a large request body cannot all be
        sent before the server reads it (what a `reset_before_body` fault needs to be seen by the client)."""
        self.state = State(Settings(**settings))
        self._host, self._port = host, port
        self._recv_buffer = recv_buffer
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeProvider:
        server = _Server((self._host, self._port), _Handler, bind_and_activate=False)
        if self._recv_buffer:  # set before listen(): accepted connections inherit it
            server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
        try:
            server.server_bind()
            server.server_activate()
        except OSError:
            server.server_close()
            raise
        server.state = self.state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="wanbatch-fakeprovider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake provider first"
        return self._server.base_url

    def fault(self, kind: str, **rule: Any) -> None:
        """Add a fault rule: kind (see state.FAULT_KINDS), phase, model, times, retry_after, delay, reason."""
        self.state.add_fault(Fault(kind, **rule))

    def hold(
        self, phase: str = "result", *, model: str | None = None, after_polls: int | None = None, limit_s: float = 120
    ) -> Hold:
        """Hold jobs (`result`) or requests (`submit`, `poll`, `list`, `download`) until `.release()`; see
        `state.Hold`. Returns the hold: `hold.wait_arrivals(n)` waits until n jobs or requests met it."""
        return self.state.add_hold(Hold(phase, model=model, after_polls=after_polls, limit_s=limit_s))

    def release_all(self) -> None:
        for hold in list(self.state.holds):
            hold.release()

    def configure(self, **settings: Any) -> None:
        self.state.settings.update(settings)

    def reset(self) -> None:
        self.state.reset()

    def finish(self, job_id: str | None = None) -> None:
        """Finish a job now (every job if None): an explicit release for tests that hold jobs with a long
        `latency_s`, so they never depend on how fast the machine is."""
        now = time.time()
        with self.state.lock:
            for job in list(self.state.jobs.values()):
                if job_id in (None, job.id) and job.done_at > now:
                    job.latency = now - job.created

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def jobs(self) -> list[dict[str, Any]]:
        return [j.summary() for j in list(self.state.jobs.values())]
