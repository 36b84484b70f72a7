"""Executors run a plan's jobs: `local` (threads in this process) and `ray` (a cluster)."""

from __future__ import annotations

from .common import Outcome

__all__ = ["Outcome"]
