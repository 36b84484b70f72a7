"""The fake provider's memory: settings, jobs, fault rules, holds and counters.

A job's status is computed from the clock (submitted at t, done at t + latency), so thousands of jobs in
flight cost nothing between polls: no thread, no timer per job. A hold keeps a job from finishing, or a
request from being answered, until the test releases it: a test that needs a job in a given state waits for
that state, never for a latency.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Each fault kind and the phase it hits unless told otherwise.
FAULT_KINDS = {
    "429": "submit",  # HTTP 429 with Retry-After; a submit is not accepted
    "500": "poll",
    "502": "poll",
    "503": "poll",  # with Retry-After; a submit is not accepted
    "slow": "poll",  # the answer comes after `delay` s (a submit is accepted first: ambiguous for the client)
    "drop": "poll",  # the connection closes without an answer (a submit is accepted first)
    "reset": "submit",  # the connection is reset (RST) without an answer, after the submit was accepted
    "reset_before_body": "submit",  # reset after the request's headers, its body unread: nothing is accepted
    "malformed": "poll",  # 200 with a cut-off JSON body (a submit is accepted first)
    "failed": "result",  # the next job ends `failed` with `reason`
    "cancelled": "result",  # the next job ends `cancelled`
    "404": "download",
    "truncate": "download",  # full Content-Length announced, half the bytes sent, connection closed
    "truncate_unsized": "download",  # no Content-Length, half the bytes, connection closed
    "not_video": "download",  # 200 with an HTML error page
    "expired": "download",  # the job's URL is expired from now on (HTTP 403, as a signed URL answers)
}
PHASES = ("submit", "poll", "list", "download", "result")
# How the GMI request list answers (its shape is undocumented): the shape wanbatch reads, and others.
LIST_SHAPES = (
    "requests",  # {"requests": [...], "total": n}
    "list",  # a bare list
    "data",  # {"data": [...]}: a shape wanbatch does not read
    "empty",  # {"requests": []}: a list that lags or leaves requests out
    "no_model",  # items without `model`
    "no_payload",  # items without their `payload` echo
)


@dataclass(eq=False)
class Hold:
    """Jobs or requests held in place until `release()`. Example::

        hold = fake.hold("result")          # jobs submitted from now on stay queued/processing
        ...                                 # the client submits; hold.wait_arrivals(1) returns once it has
        hold.release()                      # they finish now (or at their latency, if that is later)

        hold = fake.hold("download")        # video downloads wait before their first byte
        hold = fake.hold("result", after_polls=5)   # a job finishes at its 5th poll, however slow the client

    `phase` is `result` (the job), or `submit`, `poll`, `list` or `download` (the request waits before it is
    answered; a submit before it is accepted). A held request lets go by itself after `limit_s` (a test that
    forgets must not hang), and `reset()` releases every hold."""

    phase: str
    model: str | None = None
    after_polls: int | None = None
    limit_s: float = 120.0
    arrivals: int = 0  # jobs (or requests) that met this hold
    released_at: float | None = None
    _arrived: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _released: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; known: {', '.join(PHASES)}")

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def arrive(self) -> None:
        with self._arrived:
            self.arrivals += 1
            self._arrived.notify_all()

    def wait_arrivals(self, n: int = 1, timeout: float = 120.0) -> bool:
        """Block until `n` jobs or requests have met the hold; False if they did not within `timeout` s."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.arrivals >= n, timeout)

    def release(self) -> None:
        if self.released_at is None:
            self.released_at = time.time()
        self._released.set()

    def wait_released(self) -> None:
        """Where a held request waits."""
        self._released.wait(self.limit_s)


@dataclass
class Settings:
    latency_s: float = 2.0  # submit to terminal state
    latency_by_model: dict[str, float] = field(default_factory=dict)
    response_delay_s: float = 0.0  # added to every API answer (a network round trip)
    slow_s: float = 5.0  # how long a `slow` fault stalls unless the fault says
    retry_after_s: float = 1.0  # Retry-After of 429/503 faults unless the fault says
    url_ttl_s: float = 3600.0  # a new job's video URL expires this long after the job is done
    fps: int = 8  # the served clips: this frame rate...
    scale: float = 0.1  # ...and this fraction of the requested size (real mp4s, a few KB each)
    api_keys: dict[str, str] = field(default_factory=dict)  # provider -> the only key accepted; else any
    list_shape: str = "requests"  # how the GMI request list answers (LIST_SHAPES)

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        if "list_shape" in values and values["list_shape"] not in LIST_SHAPES:
            raise ValueError(f"unknown list_shape {values['list_shape']!r}; known: {', '.join(LIST_SHAPES)}")
        for key, value in values.items():
            setattr(self, key, value)


@dataclass
class Fault:
    """A rule: the next `times` matching requests misbehave as `kind` (times -1: all of them)."""

    kind: str
    phase: str | None = None
    model: str | None = None  # only requests for this model id
    times: int = 1
    retry_after: float | None = None
    delay: float | None = None
    reason: str | None = None  # for failed/cancelled

    def __post_init__(self) -> None:
        self.kind = str(self.kind)
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        self.phase = self.phase or FAULT_KINDS[self.kind]
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; known: {', '.join(PHASES)}")


@dataclass
class FakeJob:
    id: str
    provider: str
    model: str
    payload: dict[str, Any]
    created: float
    latency: float
    width: int  # the size and length the model would render (the served file is scaled down)
    height: int
    seconds: int
    seed: int
    url_ttl: float = 3600.0  # its video URL is signed once: valid until done_at + url_ttl
    outcome: str = "success"  # success | failed | cancelled
    reason: str = ""
    expired: bool = False
    gate: Hold | None = None  # a `result` hold: not done before it is released
    polls: int = 0

    @property
    def done_at(self) -> float:
        nominal = self.created + self.latency
        if self.gate is None:
            return nominal
        released = self.gate.released_at
        if released is None:
            return math.inf
        return released if self.gate.after_polls is not None else max(nominal, released)

    def eta(self, now: float) -> float:
        """Seconds left, as the provider would guess: a held job past its latency guesses one more latency."""
        if self.gate is not None and self.gate.released_at is None:
            left = self.created + self.latency - now
            return left if left > 0 else self.latency
        return max(0.0, self.done_at - now)

    def status(self, now: float) -> str:
        """queued (first fifth of its latency), processing, then its outcome."""
        if now >= self.done_at:
            return self.outcome
        return "queued" if now < self.created + self.latency / 5 else "processing"

    def summary(self) -> dict[str, Any]:
        now = time.time()
        return {
            "id": self.id,
            "provider": self.provider,
            "model": self.model,
            "payload": self.payload,
            "status": self.status(now),
            "created": self.created,
            "expired": self.expired,
            "polls": self.polls,
        }


class State:
    def __init__(self, settings: Settings | None = None):
        self.lock = threading.Lock()
        self._initial = asdict(settings or Settings())
        self.settings = Settings(**self._initial)
        self.jobs: dict[str, FakeJob] = {}
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.max_active: Counter[str] = Counter()
        self.interrupt = threading.Event()  # set by reset(): `slow` answers stop stalling
        # ("open" | "answer" | "other answer", connection) in the order they happened ("answer": to an API call;
        # "other answer": to a download or a control call): how a client's connections came, all at once or a
        # few at a time as answers came back. `opened_for`: each connection's first request, "api" or "download".
        self.timeline: list[tuple[str, int]] = []
        self.opened_for: dict[int, str] = {}

    def reset(self) -> None:
        with self.lock:
            self.settings = Settings(**self._initial)
            self.jobs.clear()
            self.faults.clear()
            for hold in self.holds:
                hold.release()
            self.holds.clear()
            self.counts.clear()
            self.max_active.clear()
            self.timeline.clear()
            self.opened_for.clear()
            self.interrupt.set()
            self.interrupt = threading.Event()

    def event(self, what: str, connection: int) -> None:
        with self.lock:
            self.timeline.append((what, connection))

    def add_hold(self, hold: Hold) -> Hold:
        with self.lock:
            self.holds.append(hold)
        return hold

    def take_hold(self, phase: str, model: str | None) -> Hold | None:
        """The first unreleased hold on this phase and model, counting the arrival."""
        with self.lock:
            hold = next(
                (h for h in self.holds if h.phase == phase and not h.released and h.model in (None, model)), None
            )
        if hold is not None:
            hold.arrive()
        return hold

    def polled(self, job: FakeJob) -> None:
        """Count a poll of `job`; a `result` hold with `after_polls` lets the job finish at that poll."""
        with self.lock:
            job.polls += 1
            gate = job.gate
        if gate is not None and gate.after_polls is not None and job.polls >= gate.after_polls:
            gate.release()

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, phase: str, model: str | None, kinds: frozenset[str] | None = None) -> Fault | None:
        """The first rule for this phase and model (and of one of `kinds`, if given), used up by one."""
        with self.lock:
            for fault in self.faults:
                if fault.phase == phase and fault.model in (None, model) and (kinds is None or fault.kind in kinds):
                    if fault.times > 0:
                        fault.times -= 1
                        if fault.times == 0:
                            self.faults.remove(fault)
                    self.counts["faults"][fault.kind] += 1
                    return fault
        return None

    def count(self, what: str, model: str) -> None:
        with self.lock:
            self.counts[what][model] += 1

    def create_job(
        self, provider: str, model: str, payload: dict[str, Any], *, width: int, height: int, seconds: int, seed: int
    ) -> FakeJob:
        result = self.take_fault("result", model)
        gate = self.take_hold("result", model)
        now = time.time()
        with self.lock:
            job = FakeJob(
                id=str(uuid.uuid4()),
                provider=provider,
                model=model,
                payload=payload,
                created=now,
                latency=float(self.settings.latency_by_model.get(model, self.settings.latency_s)),
                width=width,
                height=height,
                seconds=seconds,
                seed=seed,
                url_ttl=self.settings.url_ttl_s,
                gate=gate,
            )
            if result is not None:
                job.outcome = result.kind
                job.reason = result.reason or f"the fake provider {result.kind} this job on request"
            self.jobs[job.id] = job
            self.counts["submissions"][model] += 1
            active = sum(1 for j in self.jobs.values() if j.provider == provider and j.done_at > now)
            self.max_active[provider] = max(self.max_active[provider], active)
        return job

    def stats(self) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {name: dict(c) for name, c in self.counts.items()}
            for name in ("submissions", "submit_attempts", "polls", "lists", "downloads", "faults"):
                out.setdefault(name, {})
            out["max_active"] = dict(self.max_active)
            out["connections"] = sum(1 for what, _ in self.timeline if what == "open")
            out["jobs"] = len(self.jobs)
            out["total"] = {name: sum(c.values()) for name, c in self.counts.items()}
            return out
