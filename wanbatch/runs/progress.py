"""What a user watches while a run goes: counts by state, a line per scene, an ETA.

A rich live table on a terminal; plain lines otherwise (CI logs, pipes): one state change per line, plus a
running scene's detail (`step 3/20`, a provider's status) at most once every `detail_every_s` per scene, then the
phases after rendering (`phase("joining film")`). Every line is written under one lock with the counts it names,
so lines never interleave and counts never go back: a scene that ended stays ended.

The ETA is per backend, from that backend's own finished renders (a preview clip says nothing about a diffusers
one); a remote scene's `eta Ns` hint from its provider stands in for the scene's remaining time.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from wanbatch.execute.reporter import ACTIVE, ENDED, STATES, State

_log = logging.getLogger(__name__)  # every update, unthrottled: the run's wanbatch.log (not the console)
_ETA_HINT = re.compile(r"\beta (\d+(?:\.\d+)?)s\b")


@dataclass
class _Row:
    scene: str
    backend: str
    state: State = "waiting"
    message: str = ""
    started: float | None = None
    ended: float | None = None
    shown: float = float("-inf")  # when plain mode last printed this row's detail


@dataclass
class Progress:
    """Thread-safe progress sink. `mode`: auto | rich | plain | none."""

    mode: str
    concurrency: int  # jobs at work at once (`executor.concurrency`)
    stream: Any = field(default_factory=lambda: sys.stderr)
    detail_every_s: float = 5.0  # plain mode: a running scene's detail at most this often
    _rows: dict[str, _Row] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live: Any = None
    _t0: float = field(default_factory=time.monotonic)

    def start(self, jobs: list[tuple[str, str]]) -> None:
        self._rows = {sid: _Row(sid, backend) for sid, backend in jobs}
        self._t0 = time.monotonic()
        mode = self.mode
        if mode == "auto":
            mode = "rich" if getattr(self.stream, "isatty", lambda: False)() else "plain"
        self.mode = mode
        if mode == "rich":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(file=self.stream), refresh_per_second=4, transient=False)
            self._live.start()

    def update(self, scene: str, state: State, message: str = "") -> None:
        with self._lock:
            row = self._rows.get(scene)
            if row is None or row.state in ENDED:  # an ended scene stays ended: counts never go back
                return
            changed = state != row.state
            row.state, row.message = state, message
            now = time.monotonic()
            if state == "running" and row.started is None:
                row.started = now
            if state in ENDED:
                row.ended = now
            _log.info("%s: %s%s", scene, state, f" ({message})" if message else "")
            if self.mode == "plain":
                detail = state == "running" and message and now - row.shown >= self.detail_every_s
                if changed or detail:
                    if state == "running":
                        row.shown = now
                    extra = f" ({message})" if message else ""
                    print(f"[{self.counts_line()}] {scene}: {state}{extra}", file=self.stream, flush=True)
            elif self.mode == "rich" and self._live is not None:
                self._live.update(self._render())

    def phase(self, what: str) -> None:
        """A step after rendering (`joining film`, `writing report`), so a long one is not silence."""
        if self.mode in ("plain", "rich"):
            with self._lock:
                print(f"{what} ...", file=self.stream, flush=True)
        _log.info("%s", what)

    def counts(self) -> dict[State, int]:
        out = dict.fromkeys(STATES, 0)
        for r in self._rows.values():
            out[r.state] += 1
        return out

    def counts_line(self) -> str:
        c = self.counts()
        done = sum(c[s] for s in ENDED)
        eta = self.eta()
        eta_s = f" eta {eta:.0f}s" if eta is not None else ""
        cancelled = f", {c['cancelled']} cancelled" if c["cancelled"] else ""
        return (
            f"{done}/{len(self._rows)} done: {c['rendered']} rendered, {c['cached']} cached, "
            f"{c['failed']} failed{cancelled}{eta_s}"
        )

    def eta(self) -> float | None:
        """Remaining seconds: per backend, the mean of its finished renders x its jobs left / concurrency (a
        running scene's provider hint instead, where given), summed. None while some backend with work left has
        finished no render yet and gave no hint: a guess from another backend would mislead."""
        now = time.monotonic()
        total = 0.0
        for backend in {r.backend for r in self._rows.values() if r.state in ACTIVE}:
            rows = [r for r in self._rows.values() if r.backend == backend]
            took = [r.ended - r.started for r in rows if r.state == "rendered" and r.started and r.ended]
            mean = sum(took) / len(took) if took else None
            for r in rows:
                if r.state not in ACTIVE:
                    continue
                hint = _ETA_HINT.search(r.message) if r.state == "running" else None
                if hint:
                    total += float(hint.group(1))
                elif mean is None:
                    return None
                else:
                    total += max(0.0, mean - (now - r.started)) if r.started is not None else mean
        return total / max(1, self.concurrency) if total else None

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(title=self.counts_line(), expand=False)
        for col in ("scene", "backend", "state", "time", "detail"):
            table.add_column(col)
        now = time.monotonic()
        style: dict[State, str] = {"rendered": "green", "cached": "cyan", "failed": "red", "running": "yellow"}
        for r in self._rows.values():
            t = ""
            if r.started is not None:
                t = f"{(r.ended or now) - r.started:.1f}s"
            table.add_row(r.scene, r.backend, f"[{style.get(r.state, 'white')}]{r.state}[/]", t, r.message[:60])
        return table

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None
