"""The render command: `wanbatch recipe=NAME ...` or `wanbatch --config-dir DIR [--config-name NAME] ...`,
a Hydra app composed on wanbatch's config groups (`pkg://wanbatch.conf`)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wanbatch.config.load import CONF_SEARCH_PATH, PROJECT_FILE, open_backends, recipe_dir, recipe_names

CRASHED = 3  # as runs.run.CRASHED: wanbatch itself failed (see `_task`)
_exit_codes: list[int] = []
_tasks_started: list[bool] = []
_scenes: list[Any] = []  # the ScenesApart of this run's project file (wanbatch.config.apart), when it has one
_NOT_A_RUN = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")


def main(argv: list[str]) -> None:
    argv = open_backends(_expand_recipe(_default_config_name(argv)))
    sys.argv = [sys.argv[0], *argv]
    try:
        with _scenes_apart(argv):
            _hydra_entry()
    except _ComposeError as exc:
        # The config did not compose (an unknown key, a value of the wrong type): one line naming it, exit 2.
        print(_one_line(exc.error), file=sys.stderr)
        sys.exit(2)
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


@contextlib.contextmanager
def _scenes_apart(argv: list[str]) -> Iterator[None]:
    """For a run (not --cfg, --help, --info): Hydra composes the project once, its scenes kept apart (see
    wanbatch.config.apart); `_task` puts them back."""
    project = _project_file(argv)
    if project is None or any(a.split("=", 1)[0] in _NOT_A_RUN for a in argv):
        yield
        return
    from wanbatch.config.apart import apart

    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    with apart(project, overrides, compose_once=True) as scenes:
        _scenes[:] = [scenes]
        try:
            yield
        finally:
            _scenes.clear()


def _project_file(argv: list[str]) -> Path | None:
    """The project file `--config-dir DIR --config-name NAME` names, if it is one."""

    def value(*names: str) -> str | None:
        for i, a in enumerate(argv):
            if a in names and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(tuple(f"{n}=" for n in names)):
                return a.split("=", 1)[1]
        return None

    folder, name = value("--config-dir", "-cd"), value("--config-name", "-cn")
    if folder is None or name is None:
        return None
    path = Path(folder) / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return path if path.is_file() else None


def _project_root() -> Path:
    """The folder of the project file: the `--config-dir` Hydra was given."""
    from hydra.core.hydra_config import HydraConfig

    from wanbatch.config.load import project_root_from

    return project_root_from(HydraConfig.get().runtime.config_sources) or Path.cwd()


def _task(cfg: Any) -> int:
    from hydra.core.hydra_config import HydraConfig

    from wanbatch.config.load import to_config
    from wanbatch.errors import ConfigError
    from wanbatch.runs.run import run_project

    scenes = _scenes[0] if _scenes else None
    try:
        typed = to_config(cfg, scenes)
    except ConfigError as exc:
        print(_one_line(exc), file=sys.stderr)
        _exit_codes.append(2)
        return 2
    _tasks_started.append(True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if scenes is not None and scenes.active and not typed.dry_run:  # a dry run leaves no record to complete
        _record_scenes(cfg, typed.scenes, run_dir)
    try:
        code = run_project(typed, run_dir, _project_root()).exit_code
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


def _record_scenes(cfg: Any, scenes: list[Any], run_dir: Path) -> None:
    """Hydra's record of the run (`.hydra/config.yaml`) with the whole scene list, as if Hydra had composed it
    (it saw only the scenes overrides name). The scenes are written one a line as JSON, which is YAML too: a
    YAML dump costs per scene about what keeping the scenes apart saved."""
    import json

    import yaml
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    subdir = HydraConfig.get().output_subdir
    path = run_dir / str(subdir) / "config.yaml" if subdir else None
    if path is None or not path.is_file():
        return
    data = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(data, dict)
    data.pop("scenes", None)
    lines = [yaml.safe_dump(data, sort_keys=False, allow_unicode=True), "scenes:\n" if scenes else "scenes: []\n"]
    lines += [f"- {json.dumps(scene, ensure_ascii=False, default=str)}\n" for scene in scenes]
    path.write_text("".join(lines), encoding="utf-8")


def _one_line(error: Any) -> str:
    """A schema error (OmegaConf stops at the first) as one line; several problems one a line."""
    issues = error.issues
    return f"error: {issues[0]}" if len(issues) == 1 else f"error: {error}"


class _ComposeError(Exception):
    def __init__(self, error: Any):
        self.error = error


def _hydra_entry() -> None:
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from wanbatch.config.load import composition_error
    from wanbatch.config.schema import register

    register()
    # Hydra prints a composition error its own way and exits 1; with HYDRA_FULL_ERROR it raises it instead, so
    # it can be told in the project's words (the key, its value, what is allowed). Only for this call: a user
    # who set it keeps Hydra's full traces.
    full = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra.main(config_path=CONF_SEARCH_PATH, config_name="wanbatch", version_base="1.3")(_task)()
    except (HydraException, OmegaConfBaseException) as exc:
        if full == "1":
            raise
        raise _ComposeError(
            composition_error(exc, [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")])
        ) from None
    finally:
        if full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full
