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
    eval "$(wanbatch -sc install=bash)"          TAB completion (zsh too; fish: wanbatch -sc install=fish | source)

Each sub-command lives in its own module and is imported only when asked for, so `--version` and `init`
start without Hydra.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading


def console() -> None:
    """The console script: `main`, then a quick exit. Once a run has ended (its files closed, its threads
    joined, the atexit handlers run: logs flushed, Ray shut down), the interpreter's teardown only frees memory
    object by object, which took 0.1-0.15 s of a fully cached rerun's ~0.7 s. It is skipped when no other thread
    is left; with one still running, Python exits as usual (and waits for it)."""
    code: str | int | None
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    status = 0 if code is None else code if isinstance(code, int) else 1
    if isinstance(code, str):
        print(code, file=sys.stderr)  # as sys.exit("message") prints it
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader that left (`| head`) has nothing more to read
            stream.flush()
    os._exit(status)


def main(argv: list[str] | None = None) -> None:
    try:
        _dispatch(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # `wanbatch --help | head`: the reader left; not an error of the user's, so no traceback (and none from
        # the interpreter's own flush at exit either).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


def _dispatch(argv: list[str]) -> None:
    if argv[:1] == ["--version"] or argv[:1] == ["-V"]:
        from wanbatch.cli.version import version_text

        print(version_text())
        sys.exit(0)
    if argv[:1] == ["init"]:
        from wanbatch.cli.init import main as init_main

        sys.exit(init_main(argv[1:]))
    # From here on the console never shows a secret: the key variables' values and any credential-named
    # override (`+backend.token=sk-...`) are masked in everything printed, Hydra's own errors included.
    from wanbatch.config.load import key_variables
    from wanbatch.secrets import redacting, register_key_variables, register_overrides

    register_overrides(argv)
    register_key_variables(key_variables())
    sys.stdout, sys.stderr = redacting(sys.stdout), redacting(sys.stderr)

    if any(a in ("-sc", "--shell-completion") or a.startswith(("-sc=", "--shell-completion=")) for a in argv):
        from wanbatch.cli.complete import main as complete_main

        sys.exit(complete_main(argv))
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
