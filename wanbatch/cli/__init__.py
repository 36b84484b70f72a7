"""The `wanbatch` console script.

    wanbatch recipe=demo                         render a built-in recipe (or ./recipes/demo)
    wanbatch --config-dir DIR [--config-name N]  render your own project (DIR/project.yaml, or DIR/N.yaml)
    wanbatch recipe=demo dry_run=true            plan, validate, print the cache summary; touch nothing
    wanbatch -m recipe=demo scenes.0.seed=1,2,3  a Hydra sweep; members share one cache
    wanbatch init DIR                            a starter project that renders as it is
    wanbatch cache list|why|prune ...            see `wanbatch cache --help`
    wanbatch compare RUN_DIR... [--out DIR]      one page comparing runs (a sweep writes its own)
    wanbatch reproduce RUN_DIR [--scene ID ...]  render a run's scenes again and compare the clips
    wanbatch --version

Each sub-command lives in its own module and is imported only when asked for, so `--version` and `init`
start without Hydra.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"] or argv[:1] == ["-V"]:
        from wanbatch.cli.version import version_text

        print(version_text())
        sys.exit(0)
    if argv[:1] == ["init"]:
        from wanbatch.cli.init import main as init_main

        sys.exit(init_main(argv[1:]))
    if argv[:1] == ["cache"]:
        from wanbatch.cli.cache import main as cache_main

        sys.exit(cache_main(argv[1:]))
    if argv[:1] == ["compare"]:
        from wanbatch.cli.compare import main as compare_main

        sys.exit(compare_main(argv[1:]))
    if argv[:1] == ["reproduce"]:
        from wanbatch.cli.reproduce import main as reproduce_main

        sys.exit(reproduce_main(argv[1:]))
    from wanbatch.cli.app import main as app_main

    app_main(argv)
