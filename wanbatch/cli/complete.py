"""TAB completion: `eval "$(wanbatch -sc install=bash)"` (zsh the same; fish: `wanbatch -sc install=fish | source`).

The installed script asks `wanbatch -sc query=bash` (or `query=fish`) with the line typed so far in `COMP_LINE`.
Hydra answers for config groups, their options and the keys of the composed config; wanbatch adds what Hydra
cannot know: the recipe names after `recipe=`, and every scene field after `scenes.<i>.` (Hydra would offer only
the fields that scene already sets). A recipe or `--config-dir` earlier on the line is the project completed
against, so `scenes.` offers that project's scenes. Completion never fails loudly: a line that does not compose
completes with what is known without it.

    COMP_LINE="wanbatch recipe=demo backend=nov" wanbatch -sc query=bash    # backend=novita_wan21_t2v
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from pathlib import Path

from wanbatch.config.load import PROJECT_FILE, open_overrides, recipe_dir, recipe_names

_SCENE_FIELD = re.compile(r"^(\+{0,2})scenes\.(\d+)\.(\w*)$")


def main(argv: list[str]) -> int:
    shell = _query_shell(argv)
    if shell is None:  # install / uninstall: Hydra prints the script, naming this program
        from wanbatch.cli.app import main as app_main

        app_main(argv)
        return 0
    words, current = _split(os.environ.get("COMP_LINE", ""))
    found = own_candidates(current)
    if found is None:
        found = _hydra_candidates(shell, words, current)
    found = sorted({c for c in found if c.startswith(current) and "base_" not in c})
    print(("\n" if shell == "fish" else " ").join(found))
    return 0


def own_candidates(current: str) -> list[str] | None:
    """What wanbatch completes itself (None: ask Hydra)."""
    if current.startswith("recipe="):
        return [f"recipe={name}" for name in recipe_names()]
    match = _SCENE_FIELD.match(current)
    if match:
        from wanbatch.core.scene import SCENE_FIELDS

        plus, index, _ = match.groups()
        return [f"{plus}scenes.{index}.{name}=" for name in sorted(SCENE_FIELDS)]
    return None


def _query_shell(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        value = None
        if arg in ("-sc", "--shell-completion") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(("-sc=", "--shell-completion=")):
            value = arg.split("=", 1)[1]
        if value is not None and value.startswith("query="):
            return value.split("=", 1)[1]
    return None


def _split(line: str) -> tuple[list[str], str]:
    """The words after the program's name, and the word being completed ("" after a space)."""
    try:
        words = shlex.split(line)
    except ValueError:  # an open quote: complete what is there
        words = line.split()
    words = words[1:]
    if words and words[0].endswith(".py"):  # `python script.py`: not ours, but harmless
        words = words[1:]
    if not line or line[-1].isspace() or not words:
        return words, ""
    return words[:-1], words[-1]


def _project_args(words: list[str]) -> list[str]:
    """--config-dir/--config-name for the project the line names, so Hydra completes its keys and scenes."""
    for i, w in enumerate(words):
        if w.startswith("recipe=") and (folder := recipe_dir(w.split("=", 1)[1])) is not None:
            return ["--config-dir", str(folder), "--config-name", Path(PROJECT_FILE).stem]
        if w in ("--config-dir", "-cd") and i + 1 < len(words):
            args = ["--config-dir", words[i + 1]]
            names = [words[j + 1] for j, n in enumerate(words[:-1]) if n in ("--config-name", "-cn")]
            if names or (Path(words[i + 1]) / PROJECT_FILE).is_file():
                return [*args, "--config-name", names[0] if names else Path(PROJECT_FILE).stem]
    return []


def _hydra_candidates(shell: str, words: list[str], current: str) -> list[str]:
    """Hydra's own answer (groups, options, config keys), read from what it prints."""
    from wanbatch.cli.app import hydra_main

    overrides = open_overrides([w for w in words if "=" in w and not w.startswith("-")])
    line = " ".join(["wanbatch", *(shlex.quote(w) for w in overrides), current])
    saved_argv, saved_line = sys.argv, os.environ.get("COMP_LINE")
    sys.argv = [sys.argv[0], *_project_args(words), "-sc", f"query={'fish' if shell == 'fish' else 'bash'}"]
    os.environ["COMP_LINE"] = line
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
            hydra_main(lambda _cfg: 0)
    except (Exception, SystemExit):
        return []  # a line that does not compose: nothing from Hydra
    finally:
        sys.argv = saved_argv
        if saved_line is None:
            os.environ.pop("COMP_LINE", None)
        else:
            os.environ["COMP_LINE"] = saved_line
    return printed.getvalue().split()


__all__ = ["main", "own_candidates"]
