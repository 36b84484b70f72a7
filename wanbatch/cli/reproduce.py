"""`wanbatch reproduce RUN_DIR [--scene ID ...] [--remote] [--out DIR]`: render a run's scenes again from its
saved config (bypassing the cache) and compare each new clip with the recorded one: `bit-identical`, or
`differs` with the PSNR of its pixels and the environment fields that changed since the run.

    wanbatch reproduce outputs/demo/2026-01-01_10-00-00
    wanbatch reproduce outputs/demo/2026-01-01_10-00-00 --scene tiny_t2v --scene sunrise#2

Remote scenes are skipped unless --remote is given: each is sent to its provider again, and paid for again.
Exit status: 0 every clip rendered again is bit-identical, 1 one differs or failed, 2 the run cannot be
reproduced (no saved config, a config that no longer validates, an unknown scene).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wanbatch reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder (it holds manifest.json)")
    parser.add_argument(
        "--scene", action="append", default=[], metavar="ID", help="only this scene (or take: ID#k); repeatable"
    )
    parser.add_argument(
        "--remote", action="store_true", help="send remote scenes again too: each costs what it cost the first time"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where the new clips go (default RUN_DIR/reproduce/<time>)"
    )
    args = parser.parse_args(argv)

    from wanbatch.errors import ConfigError
    from wanbatch.runs.reproduce import reproduce

    def show(check: Any) -> None:
        print(f"{check.job}: {check.result}{f' ({check.detail})' if check.detail else ''}", flush=True)

    try:
        result = reproduce(args.run_dir, scenes=args.scene, remote=args.remote, out_dir=args.out, on_check=show)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for check in result.checks:
        if check.result == "skipped":
            show(check)
    if result.changed and any(c.result == "differs" for c in result.checks):
        print("environment fields that changed since the run (recorded -> now):")
        for name, (before, now) in result.changed.items():
            print(f"  {name}: {before if before is not None else '(not recorded)'} -> {now or '(none)'}")
    counts: dict[str, int] = {}
    for check in result.checks:
        counts[check.result] = counts.get(check.result, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"reproduced {len(result.checks)} clips: {summary}; new clips and reproduce.json in {result.out_dir}")
    return result.exit_code
