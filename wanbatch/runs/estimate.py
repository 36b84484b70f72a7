"""What a run will cost before it starts, and the `budget` it must stay within.

Only what would render counts: a cached scene costs nothing, nor does a remote job the journal shows was
accepted already (the run re-attaches to it, paid once), nor an ambiguous one the run will not send again.
A backend without `price_per_second` makes its scenes' cost unknown; a run with a `budget` then stops, since
its spend cannot be bounded. Example::

    est = estimate(plan, cache)
    est.total, est.unknown          # (0.75, ['diffusers'])
    budget_issues(est, 0.5)         # [Issue(None, 'budget', 0.5, 'at least the estimated $0.75 ...')]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from wanbatch.cache.store import Cache
from wanbatch.core.plan import Plan
from wanbatch.errors import Issue


@dataclass
class BackendCost:
    to_render: int = 0
    seconds: float = 0.0
    cost: float = 0.0  # of the scenes whose price is known
    unknown: int = 0  # scenes to render whose price is unknown

    def describe(self) -> str:
        if self.unknown == self.to_render and self.to_render:
            return "unknown (no price_per_second for it)"
        known = f"${self.cost:.2f}"
        return known if not self.unknown else f"{known} + unknown for {self.unknown} scene(s)"


@dataclass
class Estimate:
    per_scene: dict[str, float | None] = field(default_factory=dict)  # USD this run spends on it; None = unknown
    why_free: dict[str, str] = field(default_factory=dict)  # scenes that cost nothing, and why
    by_backend: dict[str, BackendCost] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)  # scenes whose blob a verifying look found missing or corrupt

    @property
    def total(self) -> float:
        """The known part of the estimate."""
        return sum(c.cost for c in self.by_backend.values())

    @property
    def unknown(self) -> list[str]:
        """Backends with scenes to render whose price is unknown."""
        return sorted(name for name, c in self.by_backend.items() if c.unknown)

    def describe(self) -> str:
        if not self.by_backend:
            return "$0.00 (nothing to render)"
        if self.unknown:
            return f"${self.total:.2f} + unknown ({', '.join(self.unknown)} without a price)"
        return f"${self.total:.2f}"

    def as_dict(self, budget: float | None) -> dict[str, Any]:
        return {
            "estimated_total": round(self.total, 6),
            "unknown": self.unknown,
            "budget": budget,
            "by_backend": {
                name: {
                    "to_render": c.to_render,
                    "seconds": round(c.seconds, 3),
                    "cost": round(c.cost, 6),
                    "unknown": c.unknown,
                }
                for name, c in sorted(self.by_backend.items())
            },
        }


def estimate(plan: Plan, cache: Cache | None, *, verify: bool = False) -> Estimate:
    """With `verify` (a dry run), "cached" means the blob was read and its hash checked, as the run will, not
    only its size seen: a corrupt blob is a render to come (and to pay for), and the estimate counts it."""
    out = Estimate()
    states = _cache_states(plan, cache, verify)
    out.corrupt = {job_id for job_id, state in states.items() if state == "corrupt"}
    for job in plan.jobs:
        why = _free(job, cache, states[job.id] == "cached")
        if why:
            out.per_scene[job.id] = 0.0
            out.why_free[job.id] = why
            continue
        out.per_scene[job.id] = job.cost
        c = out.by_backend.setdefault(job.backend, BackendCost())
        c.to_render += 1
        c.seconds += job.seconds
        if job.cost is None:
            c.unknown += 1
        else:
            c.cost += job.cost
    return out


def _cache_states(plan: Plan, cache: Cache | None, verify: bool) -> dict[str, str]:
    """cached | corrupt | absent, per scene; verifying hashes on a few threads (hashlib lets go of the GIL)."""
    if cache is None:
        return {job.id: "absent" for job in plan.jobs}
    if not verify:
        return {job.id: "cached" if cache.peek(job.key) is not None else "absent" for job in plan.jobs}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        found = pool.map(lambda job: cache.verify(job.key)[0], plan.jobs)
        return {job.id: state for job, state in zip(plan.jobs, found, strict=True)}


def _free(job: Any, cache: Cache | None, cached: bool) -> str | None:
    if cache is None:
        return None
    if cached:
        return "cached"
    entry = cache.journal_entry(job.key) or {}
    if entry.get("backend") != job.backend:
        return None
    if entry.get("request_id"):
        return "accepted by the provider already: the run re-attaches to it"
    if entry.get("state") in ("submitting", "ambiguous") and not job.resubmit_ambiguous:
        return "an earlier submit was ambiguous: nothing is sent unless `resubmit_ambiguous` names it"
    return None


def budget_issues(est: Estimate, budget: float | None) -> list[Issue]:
    """Why a run may not start under `budget` (USD, None = no budget; its range is checked with the plan)."""
    if budget is None:
        return []
    if est.unknown:
        names = ", ".join(est.unknown)
        return [
            Issue(
                None,
                "budget",
                budget,
                f"a run whose cost can be estimated: {names} has no `price_per_second`, so this run's spend "
                f"is unknown. Set `backends.<name>.price_per_second` (0 if it is free), or `budget=null`",
            )
        ]
    if est.total > budget + 1e-9:
        return [
            Issue(
                None,
                "budget",
                budget,
                f"at least the estimated ${est.total:.2f} of this run "
                f"({', '.join(f'{n} ${c.cost:.2f}' for n, c in sorted(est.by_backend.items()))}); "
                "raise `budget`, or render fewer or shorter scenes",
            )
        ]
    return []


__all__ = ["BackendCost", "Estimate", "budget_issues", "estimate"]
