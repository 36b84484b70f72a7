"""The render command: `wanbatch recipe=NAME ...` or `wanbatch --config-dir DIR [--config-name NAME] ...`,
a Hydra app composed on wanbatch's config groups (`pkg://wanbatch.conf`)."""

from __future__ import annotations

import sys
from pathlib import Path

from wanbatch.config.load import CONF_SEARCH_PATH, PROJECT_FILE, open_backends, recipe_dir, recipe_names

CRASHED = 3  # as runs.run.CRASHED: wanbatch itself failed (see `_task`)
_exit_codes: list[int] = []
_tasks_started: list[bool] = []


def main(argv: list[str]) -> None:
    argv = open_backends(_expand_recipe(_default_config_name(argv)))
    sys.argv = [sys.argv[0], *argv]
    try:
        _hydra_entry()
    except SystemExit as exc:
        # Hydra exits 1 when it cannot compose (a bad override, a missing group option) before any task ran:
        # nothing was sent or written, an invalid project, exit 2 by our contract. After a task began, a 1
        # from Hydra is a failure of wanbatch's, not of the project: never "nothing ran".
        if exc.code == 1:
            sys.exit(CRASHED if _tasks_started else 2)
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(max([130, *_exit_codes]))
    sys.exit(max(_exit_codes, default=0))


def _default_config_name(argv: list[str]) -> list[str]:
    """`--config-dir DIR` alone means DIR/project.yaml (the file `wanbatch init` writes), when it exists."""
    names = ("--config-name", "-cn")
    if any(a in names or a.startswith(tuple(f"{n}=" for n in names)) for a in argv):
        return argv
    for i, a in enumerate(argv):
        folder = argv[i + 1] if a in ("--config-dir", "-cd") and i + 1 < len(argv) else None
        if a.startswith(("--config-dir=", "-cd=")):
            folder = a.split("=", 1)[1]
        if folder is not None and (Path(folder) / PROJECT_FILE).is_file():
            return [*argv, "--config-name", Path(PROJECT_FILE).stem]
    return argv


def _expand_recipe(argv: list[str]) -> list[str]:
    """`recipe=NAME` means: the project file recipes/NAME/project.yaml, composed on wanbatch's conf/."""
    recipe = next((a.split("=", 1)[1] for a in argv if a.startswith("recipe=")), None)
    has_config = any(a.startswith(("--config-name", "-cn", "--config-dir", "-cd")) for a in argv)
    wants_help = any(a in ("--help", "-h", "--hydra-help", "--info", "--cfg", "-c") for a in argv)
    if recipe is None:
        if not has_config and not wants_help:
            print(
                "error: no project: pass `recipe=NAME` (one of: "
                + ", ".join(recipe_names())
                + ") or `--config-dir DIR --config-name NAME`",
                file=sys.stderr,
            )
            sys.exit(2)
        return argv
    if "," in recipe:
        print(f"error: `recipe` = {recipe!r} is not allowed; sweep one recipe at a time", file=sys.stderr)
        sys.exit(2)
    folder = recipe_dir(recipe)
    if folder is None:
        print(f"error: `recipe` = {recipe!r} is not allowed; one of: {', '.join(recipe_names())}", file=sys.stderr)
        sys.exit(2)
    return ["--config-dir", str(folder), "--config-name", Path(PROJECT_FILE).stem, *argv]


def _project_root() -> Path:
    """The folder of the project file: the `--config-dir` Hydra was given."""
    from hydra.core.hydra_config import HydraConfig

    for src in HydraConfig.get().runtime.config_sources:
        if src.provider == "command-line" and src.schema == "file":
            return Path(src.path).resolve()
    return Path.cwd()


def _task(cfg: object) -> int:
    from hydra.core.hydra_config import HydraConfig

    from wanbatch.config.load import to_dict
    from wanbatch.runs.run import run_project

    _tasks_started.append(True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        code = run_project(to_dict(cfg), run_dir, _project_root()).exit_code
    except Exception as exc:
        # run_project answers for everything once work has begun (it keeps the clips and says where); what
        # gets here broke before anything ran. A sweep's other members still run.
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(
            f"error: wanbatch failed before anything ran ({type(exc).__name__}: {exc}); nothing was sent or cached",
            file=sys.stderr,
        )
        code = CRASHED
    _exit_codes.append(code)
    return code


def _hydra_entry() -> None:
    import hydra

    hydra.main(config_path=CONF_SEARCH_PATH, config_name="wanbatch", version_base="1.3")(_task)()
