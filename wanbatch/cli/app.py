"""The render command: `wanbatch recipe=NAME ...` or `wanbatch --config-dir DIR [--config-name NAME] ...`,
a Hydra app composed on wanbatch's config groups (`pkg://wanbatch.conf`)."""

from __future__ import annotations

import sys
from pathlib import Path

from wanbatch.config.load import CONF_SEARCH_PATH, PROJECT_FILE, open_backends, recipe_dir, recipe_names

_exit_codes: list[int] = []


def main(argv: list[str]) -> None:
    argv = open_backends(_expand_recipe(_default_config_name(argv)))
    sys.argv = [sys.argv[0], *argv]
    try:
        _hydra_entry()
    except SystemExit as exc:
        # Hydra exits 1 when it cannot compose (a bad override, a missing group option). No task ran,
        # so nothing was sent or written: that is an invalid project, exit 2 by our contract.
        if exc.code == 1 and not _exit_codes:
            sys.exit(2)
        raise
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

    from wanbatch.config.load import project_root_from

    return project_root_from(HydraConfig.get().runtime.config_sources) or Path.cwd()


def _task(cfg: object) -> int:
    from hydra.core.hydra_config import HydraConfig

    from wanbatch.config.load import to_dict
    from wanbatch.runs.run import run_project

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    code = run_project(to_dict(cfg), run_dir, _project_root()).exit_code
    _exit_codes.append(code)
    return code


def _hydra_entry() -> None:
    import hydra

    hydra.main(config_path=CONF_SEARCH_PATH, config_name="wanbatch", version_base="1.3")(_task)()
