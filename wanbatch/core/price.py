"""What a render costs: a backend's `price_per_second`, in USD per second of video made.

The provider documents give no prices, so none is assumed: null (the default) means unknown, and a dry run
says so. A price is one number, or a mapping by resolution tier for providers that charge more for larger
videos; on a local backend it may stand for what the GPUs cost. Example::

    issues: list[Issue] = []
    price = Price.parse({"720P": 0.05, "1080P": 0.08}, "backends.gmi_wan27_i2v.price_per_second", issues)
    price.of(5.0, "1080P")     # 0.4
    price.of(5.0, "480P")      # None: no price for 480P
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wanbatch.config.checks import choice, number
from wanbatch.errors import Issue

TIERS = ("480P", "720P", "1080P")
ALLOWED = "null (unknown), a number of USD >= 0, or a mapping by resolution such as {720P: 0.05, 1080P: 0.08}"
_MAX = sys.float_info.max  # a finite price: an infinite one cannot be held to a budget


def tier_of(width: int, height: int) -> str:
    """The resolution tier of a size: its short side, up to 480, 720 or 1080 pixels (1280x704 is 720P)."""
    short = min(width, height)
    for tier in TIERS:
        if short <= int(tier[:-1]):
            return tier
    return f"{short}P"


@dataclass(frozen=True)
class Price:
    """USD per second of video: `flat` for every size, else `by_tier`; neither means unknown."""

    flat: float | None = None
    by_tier: Mapping[str, float] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.flat is not None or bool(self.by_tier)

    @classmethod
    def parse(cls, value: Any, where: str, issues: list[Issue]) -> Price:
        """A price from config (null, a number, or {tier: number}); an Issue for anything else."""
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            ok = number(issues, where, value, minimum=0, maximum=_MAX, allowed=ALLOWED)
            return cls(flat=float(value)) if ok else cls()
        if not value:  # {} prices nothing: null says unknown
            issues.append(Issue(None, where, {}, ALLOWED))
        by_tier: dict[str, float] = {}
        for tier, amount in value.items():
            name = f"{where}.{tier}"
            key = str(tier).upper()
            if choice(issues, name, key, TIERS, allowed=f"a resolution of {', '.join(TIERS)}") and number(
                issues, name, amount, minimum=0, maximum=_MAX, allowed="a price in USD >= 0"
            ):
                by_tier[key] = float(amount)
        return cls(by_tier=by_tier)

    def of(self, seconds: float, tier: str | None) -> float | None:
        """What `seconds` of video at `tier` cost, or None when the price is unknown for it."""
        if self.flat is not None:
            return seconds * self.flat
        per = self.by_tier.get(tier or "")
        return None if per is None else seconds * per

    def describe(self) -> str:
        if self.flat is not None:
            return f"${self.flat:g}/s"
        return ", ".join(f"{t} ${p:g}/s" for t, p in self.by_tier.items()) or "unknown"


__all__ = ["TIERS", "Price", "tier_of"]
