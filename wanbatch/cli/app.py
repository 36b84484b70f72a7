"""The render command: `wanbatch recipe=NAME ...` or `wanbatch --config-dir DIR [--config-name NAME] ...`,
a Hydra app composed on wanbatch's config groups (`pkg://wanbatch.conf`).

Before Hydra sees the command line, the project it names is found and read: a recipe becomes `--config-dir`, a
folder alone means its project.yaml, and a project file that is not valid YAML or lacks its `defaults` line is
told in one line (exit 2). `--help`, `--info`, `--cfg` and `-sc` work with or without a project.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wanbatch.config.load import CONF_SEARCH_PATH, PROJECT_FILE, open_overrides, recipe_dir, recipe_names

if TYPE_CHECKING:
    from wanbatch.config.schema import WanbatchConfig
    from wanbatch.errors import Issue

CRASHED = 3  # as runs.run.CRASHED: wanbatch itself failed (see `_task`)
_exit_codes: list[int] = []
_tasks_started: list[bool] = []
_scenes: list[Any] = []  # the ScenesApart of this run's project file (wanbatch.config.apart), when it has one

# Flags that do not run the project, so they need none (each shows wanbatch's own config without one).
NO_PROJECT_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")
# Hydra's flags that take a value: the word after them is not an override.
VALUE_FLAGS = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp", "--cfg", "-c", "--package", "-p")
INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def main(argv: list[str]) -> None:
    from wanbatch.errors import ConfigError

    try:
        argv = _expand_recipe(_default_config_name(argv))
        # Read as data first, aliases counted (an alias bomb must not be expanded by the syntax check), then
        # the syntax and the defaults line, each a one-line error.
        _check_project_files(argv)
        project = _project_file(argv)
        if project is not None:
            from wanbatch.config.load import check_project_file

            check_project_file(project, _shown(project))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    argv = _open(_info_takes_all(argv))
    sys.argv = [sys.argv[0], *argv]
    try:
        with _scenes_apart(argv):
            hydra_main(_task, project)
    except _ComposeError as exc:
        # The config did not compose (an unknown key, a value of the wrong type): one line naming it, exit 2.
        print(f"error: {exc.error}", file=sys.stderr)
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


def _check_project_files(argv: list[str]) -> None:
    """The project's own files are read as data before Hydra composes them: a `hydra:` callback, a `_target_`,
    an `${oc.env:...}` or an alias bomb in a shared project exits 2 here, before Hydra can run, read or make
    anything (it makes the run folder and calls callbacks while composing)."""
    from wanbatch.config.project_files import check_project

    config_dir = _option(argv, "--config-dir", "-cd")
    config_name = _option(argv, "--config-name", "-cn")
    if config_dir is None or config_name is None:
        return
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    issues = check_project(Path(config_dir), config_name, overrides)
    if issues:
        for issue in issues:
            print(f"error: {issue}", file=sys.stderr)
        sys.exit(2)


def _option(argv: list[str], long: str, short: str) -> str | None:
    """The value of `--opt VALUE` or `--opt=VALUE` (the last one given), as Hydra reads it."""
    found = None
    for i, a in enumerate(argv):
        if a in (long, short) and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith((f"{long}=", f"{short}=")):
            found = a.split("=", 1)[1]
    return found


def _default_config_name(argv: list[str]) -> list[str]:
    """`--config-dir DIR` alone means DIR/project.yaml (the file `wanbatch init` writes). A folder without one is
    an error naming what it holds, rather than wanbatch's empty base config."""
    from wanbatch.errors import ConfigError, Issue

    if _flag_value(argv, ("--config-name", "-cn")) is not None:
        return argv
    folder = _flag_value(argv, ("--config-dir", "-cd"))
    if folder is None:
        return argv
    if (Path(folder) / PROJECT_FILE).is_file():
        return [*argv, "--config-name", Path(PROJECT_FILE).stem]
    if any(a in NO_PROJECT_FLAGS for a in argv):
        return argv
    if not Path(folder).is_dir():
        raise ConfigError([Issue(None, "--config-dir", folder, "a folder that exists (it holds your project.yaml)")])
    held = sorted(p.stem for p in Path(folder).glob("*.yaml"))
    pick = f"; it holds {', '.join(held)}: pick one with --config-name NAME" if held else "; it holds no .yaml file"
    raise ConfigError([Issue(None, "--config-dir", folder, f"a folder holding {PROJECT_FILE}{pick}")])


def _expand_recipe(argv: list[str]) -> list[str]:
    """`recipe=NAME` means: the project file recipes/NAME/project.yaml, composed on wanbatch's conf/."""
    from wanbatch.errors import ConfigError, Issue

    recipe = next((a.split("=", 1)[1] for a in argv if a.startswith("recipe=")), None)
    has_config = _flag_value(argv, ("--config-dir", "-cd", "--config-name", "-cn")) is not None
    if recipe is None:
        if not has_config and not any(a in NO_PROJECT_FLAGS for a in argv):
            print(
                f"error: no project: pass `recipe=NAME` (one of: {', '.join(recipe_names())}) or `--config-dir DIR` "
                "(DIR/project.yaml; `wanbatch init DIR` writes one); `wanbatch --help` says more",
                file=sys.stderr,
            )
            sys.exit(2)
        return argv
    if "," in recipe:
        raise ConfigError([Issue(None, "recipe", recipe, "one recipe at a time (a sweep varies its fields)")])
    folder = recipe_dir(recipe)
    if folder is None:
        from wanbatch.config.checks import did_you_mean

        names = recipe_names()
        raise ConfigError([Issue(None, "recipe", recipe, f"one of: {', '.join(names)}{did_you_mean(recipe, names)}")])
    return ["--config-dir", str(folder), "--config-name", Path(PROJECT_FILE).stem, *argv]


@contextlib.contextmanager
def _scenes_apart(argv: list[str]) -> Iterator[None]:
    """For a run (not --cfg, --help, --info): Hydra composes the project once, its scenes kept apart (see
    wanbatch.config.apart); `_task` puts them back."""
    project = _project_file(argv)
    if project is None or any(a.split("=", 1)[0] in NO_PROJECT_FLAGS for a in argv):
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


def _flag_value(argv: list[str], names: tuple[str, ...]) -> str | None:
    for i, a in enumerate(argv):
        if a in names and i + 1 < len(argv):
            return argv[i + 1]
        for n in names:
            if a.startswith(f"{n}="):
                return a.split("=", 1)[1]
    return None


def _project_file(argv: list[str]) -> Path | None:
    folder, name = _flag_value(argv, ("--config-dir", "-cd")), _flag_value(argv, ("--config-name", "-cn"))
    if folder is None or name is None:
        return None
    path = Path(folder) / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return path if path.is_file() else None


def _shown(path: Path) -> str:
    """A project file's path as a user would type it: relative to the working directory where it is inside."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _info_takes_all(argv: list[str]) -> list[str]:
    """`--info recipe=demo`: argparse would take `recipe=demo` as --info's value; Hydra's own default is `all`."""
    out = list(argv)
    for i, a in enumerate(out):
        if a in ("--info", "-i") and (i + 1 == len(out) or out[i + 1] not in INFO_CHOICES):
            out.insert(i + 1, "all")
            break
    return out


def _open(argv: list[str]) -> list[str]:
    """`open_overrides` on the overrides only (not on a flag's value, such as a folder named `scenes.1.x=y`)."""
    out: list[str] = []
    for i, a in enumerate(argv):
        is_value = i > 0 and argv[i - 1] in VALUE_FLAGS
        out.append(a if is_value or a.startswith("-") else open_overrides([a])[0])
    return out


def _project_root() -> Path:
    """The folder of the project file: the `--config-dir` Hydra was given."""
    from hydra.core.hydra_config import HydraConfig

    from wanbatch.config.load import project_root_from

    return project_root_from(HydraConfig.get().runtime.config_sources) or Path.cwd()


def _task(cfg: Any) -> int:
    from hydra.core.hydra_config import HydraConfig

    from wanbatch.cli.logs import capture_warnings
    from wanbatch.config.load import to_config
    from wanbatch.errors import ConfigError
    from wanbatch.runs.run import run_project
    from wanbatch.secrets import register_config

    scenes = _scenes[0] if _scenes else None
    capture_warnings()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        typed = to_config(cfg, scenes)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _refused(run_dir)
    register_config(typed)
    if (issue := _run_dir_issue(run_dir, typed)) is not None:
        print(f"error: {issue}", file=sys.stderr)
        return _refused(run_dir)
    _tasks_started.append(True)
    # Hydra saw only the scenes overrides name: its record gets the whole list (a dry run leaves no record)
    whole = typed.scenes if scenes is not None and scenes.active else None
    written = [] if typed.dry_run else _write_hydra_files(cfg, run_dir, whole)
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
    if code == 2 or typed.dry_run:  # no run folder for these (Hydra made it before the project was read)
        _remove_run_dir(run_dir, written)
    _exit_codes.append(code)
    return code


def _refused(run_dir: Path) -> int:
    _remove_run_dir(run_dir, [])
    _exit_codes.append(2)
    return 2


def _run_dir_as_written() -> Path:
    """The run folder as the config spells it, `..` and all (Hydra's `output_dir` is normalised)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return Path(str(hc.sweep.dir)) / str(hc.sweep.subdir)
    return Path(str(hc.run.dir))


def _run_dir_issue(run_dir: Path, cfg: WanbatchConfig) -> Issue | None:
    """A run folder outside the working directory is the command line's to ask for (`hydra.run.dir=PATH`),
    never a project's: a shared project set it to another project's folder and overwrote its report. (A
    bad `project.name` is what usually put it there: that is the issue then.)"""
    from hydra.core.hydra_config import HydraConfig

    from wanbatch.core.project import project_name_issue
    from wanbatch.errors import Issue

    asked = {str(o).split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.hydra}
    if asked & {"hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir"}:
        return None
    cwd = Path.cwd().resolve()
    if cwd in run_dir.resolve().parents:
        return None
    if (bad_name := project_name_issue(cfg.project.name)) is not None:
        return bad_name
    return Issue(
        None,
        "hydra.run.dir",
        str(run_dir),
        f"a folder inside the working directory {cwd} (outputs/<project>/<time> unless set); a run folder "
        "elsewhere is chosen on the command line (`hydra.run.dir=PATH`), never by a project file",
    )


def _write_hydra_files(cfg: object, run_dir: Path, scenes: list[Any] | None = None) -> list[Path]:
    """Hydra's record of the run (`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`), written here with
    every secret masked: conf/wanbatch.yaml turns Hydra's own copy off (`hydra.output_subdir: null`); where
    a user turned it back on, Hydra's files are overwritten with masked ones. `scenes`: the whole scene list
    where Hydra composed only some (see wanbatch.config.apart), recorded as if it had composed them all: one a
    line as JSON, which is YAML too (a YAML dump costs per scene about what keeping the scenes apart saved)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from wanbatch.secrets import redact, redact_data

    hydra_cfg: Any = HydraConfig.instance().cfg  # {hydra: ...}, as Hydra saves it
    folder = run_dir / str(hydra_cfg.hydra.output_subdir or ".hydra")
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "config.yaml": cfg,
        "hydra.yaml": hydra_cfg,
        "overrides.yaml": hydra_cfg.hydra.overrides.task,
    }
    written = []
    for name, node in files.items():
        # Masked as data, then dumped: the file stays YAML that Hydra and OmegaConf read back.
        data = redact_data(OmegaConf.to_container(node, resolve=False, enum_to_str=True))
        path = folder / name
        if name == "config.yaml" and scenes is not None and isinstance(data, dict):
            import json

            data.pop("scenes", None)
            lines = [_to_yaml(data), "scenes:\n" if scenes else "scenes: []\n"]
            lines += [f"- {json.dumps(redact_data(s), ensure_ascii=False, default=str)}\n" for s in scenes]
            text = "".join(lines)
        else:
            text = _to_yaml(data)
        path.write_text(redact(text), encoding="utf-8")
        written.append(path)
    return written


def _to_yaml(data: Any) -> str:
    """What `OmegaConf.to_yaml(OmegaConf.create(data))` writes, dumped straight from the plain data: making
    OmegaConf nodes of it only to turn them back into data took 12 of the 16 ms the three files cost."""
    try:
        import yaml
        from omegaconf._utils import get_omega_conf_dumper
    except ImportError:  # OmegaConf moved its dumper: the long way round
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(OmegaConf.create(data))
    text: str = yaml.dump(
        data, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=get_omega_conf_dumper()
    )
    return text


def _remove_run_dir(run_dir: Path, written: list[Path]) -> None:
    """Remove what this process put in `run_dir` (the Hydra record, Hydra's job log), then the folder if
    that left it empty; anything else in it stays."""
    import contextlib
    import logging
    import os

    logs = [Path(h.baseFilename) for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for path in [*written, *logs]:
        if path.parent in (run_dir, *(w.parent for w in written)):
            with contextlib.suppress(OSError):
                path.unlink()
    # The run folder last, then the folders Hydra made on the way to it (outputs/<name>/, and each folder a
    # `..` in the path passed through) while they are empty: below the folder shared with the working
    # directory, never above.
    cwd = Path.cwd().resolve()
    shared = {cwd, *cwd.parents}
    parts = (cwd / _run_dir_as_written()).parts
    on_the_way = {Path(os.path.normpath(Path(*parts[:i]))) for i in range(2, len(parts))}
    made = sorted((p for p in on_the_way if p not in shared), key=lambda p: len(p.parts), reverse=True)
    for folder in [*sorted({w.parent for w in written} - {run_dir}), run_dir, *made]:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only ever an empty folder


class _ComposeError(Exception):
    def __init__(self, error: Any):
        self.error = error


def hydra_main(task: Callable[[Any], Any], project: Path | None = None) -> None:
    """Run Hydra on sys.argv with wanbatch's config groups, schemas and help. A composition error is raised as
    `_ComposeError` carrying a ConfigError in the project's words (HYDRA_FULL_ERROR=1: Hydra's own traceback)."""
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from wanbatch.cli.help import register as register_help
    from wanbatch.config.load import composition_error
    from wanbatch.config.schema import register

    register()
    register_help()
    # Hydra prints a composition error its own way and exits 1; with HYDRA_FULL_ERROR it raises it instead, so
    # it can be told in the project's words (the key, its value, what is allowed). Only for this call: a user
    # who set it keeps Hydra's full traces.
    full = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra.main(config_path=CONF_SEARCH_PATH, config_name="wanbatch", version_base="1.3")(task)()
    except (HydraException, OmegaConfBaseException) as exc:
        if full == "1":
            raise
        overrides = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
        raise _ComposeError(composition_error(exc, overrides, project)) from None
    finally:
        if full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full
