"""A hostile HTTP server on 127.0.0.1: each test says, per path, how it misbehaves (a body that trickles
in, a stall before the first byte, a huge Content-Length, a redirect elsewhere) and releases its holds
when it is done, so no test waits on a clock.

Example::

    with Hostile() as bad:
        bad.route("/v.mp4", trickle(b"x" * 100))   # one byte at a time until the test releases it
        url = bad.url + "/v.mp4"
        ...
        assert bad.hits["/v.mp4"] == 1
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from wanbatch.testing.fakeprovider.server import send

Handler = Callable[[BaseHTTPRequestHandler, "Hostile"], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hostile: Hostile


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        hostile = self.server.hostile
        path = urlsplit(self.path).path
        with hostile.lock:
            hostile.hits[path] += 1
            hostile.methods.append(f"{self.command} {path}")
        hostile.arrived.set()
        route = hostile.routes.get(path)
        try:
            if route is None:
                send(self, 404, b"no route", "text/plain")
            else:
                route(self, hostile)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up on us: that is what the tests want

    do_GET = do_POST = _any


class Hostile:
    """One misbehaving server; `release` ends every hold (tests call it when done, and on exit)."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.methods: list[str] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.arrived = threading.Event()  # the first request came in
        self.stopped_early = threading.Event()  # a handler saw its client hang up while it still had bytes to send
        self._server: _Server | None = None

    def __enter__(self) -> Hostile:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hostile = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def release(self) -> None:
        self.released.set()


def serve(data: bytes, ctype: str = "video/mp4") -> Handler:
    return lambda h, _hostile: send(h, 200, data, ctype)


def trickle(data: bytes, *, every_s: float = 0.05) -> Handler:
    """Announces the whole length, then sends one byte every `every_s` until the test releases it (then the
    rest at once). Sending on a period is this fake's behaviour; no test measures it."""

    def handler(h: BaseHTTPRequestHandler, hostile: Hostile) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        for i in range(len(data)):
            try:
                h.wfile.write(data[i : i + 1])
                h.wfile.flush()
            except OSError:
                hostile.stopped_early.set()
                raise BrokenPipeError from None
            if hostile.released.wait(every_s):
                h.wfile.write(data[i + 1 :])
                return

    return handler


def stall(*, length: int = 1000, first: bytes = b"") -> Handler:
    """Headers (and `first`), then nothing until the test releases it."""

    def handler(h: BaseHTTPRequestHandler, hostile: Hostile) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        h.send_header("Content-Length", str(length))
        h.end_headers()
        h.wfile.write(first)
        h.wfile.flush()
        hostile.released.wait()
        h.close_connection = True

    return handler


def silent() -> Handler:
    """Takes the request and answers nothing (not even headers) until the test releases it."""

    def handler(h: BaseHTTPRequestHandler, hostile: Hostile) -> None:
        hostile.released.wait()
        h.close_connection = True

    return handler


def endless(*, length: int | None = None, chunk: int = 1 << 16) -> Handler:
    """Claims `length` bytes (or no length at all) and sends zeros until the client hangs up or the test
    releases it; counts what it managed to send in `sent`."""

    def handler(h: BaseHTTPRequestHandler, hostile: Hostile) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        if length is not None:
            h.send_header("Content-Length", str(length))
        h.send_header("Connection", "close")
        h.end_headers()
        block = b"\0" * chunk
        while not hostile.released.is_set():
            try:
                h.wfile.write(block)
            except OSError:
                hostile.stopped_early.set()
                raise BrokenPipeError from None
            with hostile.lock:
                hostile.hits["bytes sent"] += chunk
        h.close_connection = True

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    return lambda h, _hostile: send(h, status, b"", "text/plain", {"Location": location})
