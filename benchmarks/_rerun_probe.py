"""`wanbatch ARGS...` as the console script runs it, with timestamps at the phase boundaries.

Used by bench_rerun.py: env BENCH_T0 is the parent's time.time() just before it spawned this process,
BENCH_PROBE_OUT the JSON file the marks go to. Only wrappers are added (no behaviour changes): the
wrapped functions are called exactly as the CLI calls them.
"""

from __future__ import annotations

import time

_marks: dict[str, float] = {"interpreter_up": time.time()}
_cpu: dict[str, float] = {"interpreter_up": time.process_time()}  # this process's CPU seconds at each mark

import atexit  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from wanbatch import cli  # noqa: E402  (what the console script imports; pulls in the core)

_marks["imported"] = time.time()
_cpu["imported"] = time.process_time()

from wanbatch.execute import local  # noqa: E402
from wanbatch.runs import run  # noqa: E402
from wanbatch.runs.outputs import RunOutputs  # noqa: E402


def _wrap(owner: Any, attr: str, before: str | None, after: str) -> None:
    fn: Callable[..., Any] = getattr(owner, attr)

    @functools.wraps(fn)
    def wrapper(*a: Any, **k: Any) -> Any:
        if before and before not in _marks:
            _marks[before], _cpu[before] = time.time(), time.process_time()
        try:
            return fn(*a, **k)
        finally:
            _marks[after], _cpu[after] = time.time(), time.process_time()

    setattr(owner, attr, wrapper)


_wrap(run, "run_project", "run_project_entered", "run_project_returned")  # entered = Hydra has composed
_wrap(run, "_plan", None, "planned")
_wrap(local.LocalExecutor, "run", "executor_started", "executor_done")
_wrap(RunOutputs, "stitch", "stitch_started", "stitch_done")
_wrap(RunOutputs, "report", "report_started", "report_done")


@atexit.register
def _dump() -> None:
    _marks["exiting"], _cpu["exiting"] = time.time(), time.process_time()
    out = os.environ.get("BENCH_PROBE_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"t0": float(os.environ.get("BENCH_T0", "nan")), "marks": _marks, "cpu": _cpu}, f)


if __name__ == "__main__":
    cli.console()  # as the console script: main, then its quick exit
