"""What a user watches while a run goes: counts by state, a line per scene, an ETA.

A rich live table on a terminal; plain lines (one per state change) in CI logs and pipes.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from wanbatch.execute.reporter import ACTIVE, ENDED, STATES, State


@dataclass
class _Row:
    scene: str
    backend: str
    state: State = "waiting"
    message: str = ""
    started: float | None = None
    ended: float | None = None


@dataclass
class Progress:
    """Thread-safe progress sink. `mode`: auto | rich | plain | none."""

    mode: str
    concurrency: int  # jobs at work at once (`executor.concurrency`)
    stream: Any = field(default_factory=lambda: sys.stderr)
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
            if row is None:
                return
            changed = state != row.state
            row.state, row.message = state, message
            now = time.monotonic()
            if state == "running" and row.started is None:
                row.started = now
            if state in ENDED:
                row.ended = now
        if self.mode == "plain" and changed:
            extra = f" ({message})" if message else ""
            print(f"[{self.counts_line()}] {scene}: {state}{extra}", file=self.stream, flush=True)
        elif self.mode == "rich" and self._live is not None:
            self._live.update(self._render())

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
        return (
            f"{done}/{len(self._rows)} done: {c['rendered']} rendered, {c['cached']} cached, "
            f"{c['failed']} failed{eta_s}"
        )

    def eta(self) -> float | None:
        """Remaining seconds: mean render time of finished renders x jobs left / concurrency."""
        took = [
            r.ended - r.started
            for r in self._rows.values()
            if r.state == "rendered" and r.started is not None and r.ended is not None
        ]
        left = sum(1 for r in self._rows.values() if r.state in ACTIVE)
        if not took or not left:
            return None
        return sum(took) / len(took) * left / max(1, self.concurrency)

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
