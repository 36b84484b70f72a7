"""`wanbatch compare RUN_DIR... [--out DIR]`: one page comparing runs side by side (the page a sweep writes
into its folder), e.g. yesterday's run and today's.

    wanbatch compare outputs/demo/2026-01-01_10-00-00 outputs/demo/2026-01-02_09-30-00 --out review/
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wanbatch compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each holds a manifest.json)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of the page (default: outputs/compare/<time>); its links to the runs are relative",
    )
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        if not (run_dir / "manifest.json").is_file():
            print(
                f"error: `RUN_DIR` = {str(run_dir)!r} is not allowed; a run folder holding manifest.json "
                "(e.g. outputs/<project>/<time>)",
                file=sys.stderr,
            )
            return 2
    out = args.out or Path("outputs") / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S")
    from wanbatch.runs.compare import load_members, write_comparison

    try:
        members = load_members(args.runs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    page = write_comparison(members, out)
    print(f"comparison of {len(members)} runs: {page}")
    return 0
