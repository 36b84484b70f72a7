"""Where configs live and how a project is composed outside the CLI (tests, tools, `wanbatch cache why`).

A project file is a Hydra primary config that starts with `defaults: [wanbatch, _self_]`, so every
config group of `conf/` (backend, cache, executor, stitch, encode) can be swapped from the command line.
What comes out is a `WanbatchConfig` (wanbatch/config/schema.py), every value typed and defaulted by the schema::

    cfg = load_config("recipes/demo/project.yaml", ["backend.default_fps=24"])
    cfg.backend.default_fps                          # 24
    backend_config("gmi_wan21_i2v").poll.initial_s   # 20.0: conf/backend/gmi_wan21_i2v.yaml over GmiConfig
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.resources
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wanbatch.config.apart import GROUPS, ScenesApart, apart
from wanbatch.config.backends import BACKEND_SCHEMAS, BackendConfig, DiffusersConfig
from wanbatch.config.checks import choice, did_you_mean, merge_issue, schema_issue, unknown_keys
from wanbatch.config.fastyaml import load_text
from wanbatch.config.project_files import check_project
from wanbatch.config.schema import (
    CacheConfig,
    EncodeConfig,
    LocalExecutorConfig,
    RayExecutorConfig,
    StitchConfig,
    WanbatchConfig,
    register,
)
from wanbatch.errors import ConfigError, Issue, ProjectFileError
from wanbatch.secrets import register_overrides

# conf/ and recipes/ sit at the top of the source tree and are installed as the packages `wanbatch.conf` and
# `wanbatch.recipes` (pyproject's package-dir), so an editable checkout and a wheel find them the same way.
CONF_DIR = Path(str(importlib.resources.files("wanbatch.conf")))
RECIPES_DIR = Path(str(importlib.resources.files("wanbatch.recipes")))
PROJECT_FILE = "project.yaml"
CONF_SEARCH_PATH = "pkg://wanbatch.conf"  # how Hydra finds conf/: through the installed package


def group_options(group: str) -> tuple[str, ...]:
    """The options of config group `group` (a folder of conf/): its YAML files' names, sorted."""
    return tuple(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))


#: every backend name: the options of the `backend` config group
BACKEND_NAMES = group_options("backend")


@functools.cache
def key_variables() -> tuple[str, ...]:
    """Every environment variable a built-in backend reads its API key from: the schemas' `api_key_env`, and any
    conf/backend/ option that sets its own. Their values are secrets in every run, whichever backends it uses."""
    found = {
        f.default
        for schema in BACKEND_SCHEMAS.values()
        for f in dataclasses.fields(schema)
        if f.name == "api_key_env" and isinstance(f.default, str) and f.default != "???"
    }
    for path in (CONF_DIR / "backend").glob("*.yaml"):  # as text: no YAML parse on the way to the first output
        match = re.search(r"^api_key_env:\s*([A-Za-z_]\w*)", path.read_text(encoding="utf-8"), re.MULTILINE)
        if match:
            found.add(match.group(1))
    return tuple(sorted(found))


def recipe_dir(name: str, cwd: Path | None = None) -> Path | None:
    """`recipes/<name>` under the working directory first (a user's own checkout), then the package's."""
    for base in ((cwd or Path.cwd()) / "recipes", RECIPES_DIR):
        if (base / name / PROJECT_FILE).is_file():
            return base / name
    return None


def recipe_names(cwd: Path | None = None) -> list[str]:
    """Every name `recipe=NAME` takes: the built-in recipes and those under ./recipes."""
    found = {
        p.parent.name for base in ((cwd or Path.cwd()) / "recipes", RECIPES_DIR) for p in base.glob(f"*/{PROJECT_FILE}")
    }
    return sorted(found)


def load_config(project_file: str | Path | None = None, overrides: Sequence[str] = ()) -> WanbatchConfig:
    """Compose a project file with wanbatch's config groups and Hydra overrides into a typed `WanbatchConfig`
    (without a project file: conf/wanbatch.yaml alone, no scenes). An unknown key or a value of the wrong type,
    in any group, in the project file or in an override, raises ConfigError naming it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    register_overrides(overrides)  # before Hydra can print one in an error
    register()
    path = Path(project_file).resolve() if project_file is not None else CONF_DIR / "wanbatch.yaml"
    if project_file is not None:
        # Read as data first, aliases counted: an alias bomb must not be expanded by the syntax check, and Hydra
        # would run a callback while composing.
        if issues := check_project(path.parent, path.stem, overrides):
            raise ConfigError(issues)
        check_project_file(path, str(project_file))
    GlobalHydra.instance().clear()
    try:
        with apart(path, overrides) as scenes, initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
            cfg = hydra_compose(
                config_name=path.stem,
                overrides=[f"hydra.searchpath=[{CONF_SEARCH_PATH}]", *open_overrides(overrides)],
            )
    except (HydraException, OmegaConfBaseException) as exc:
        raise composition_error(exc, overrides, path if project_file is not None else None) from None
    return to_config(cfg, scenes)


def project_root_from(config_sources: Iterable[Any]) -> Path | None:
    """The folder of the project file, from Hydra's `runtime.config_sources` (the live HydraConfig's, or those a
    run saved in `.hydra/hydra.yaml`): the `--config-dir` it was given. None where there is none."""
    for src in config_sources:
        if src.get("provider") == "command-line" and src.get("schema") == "file" and src.get("path"):
            return Path(str(src["path"])).resolve()
    return None


def saved_config(path: Path) -> WanbatchConfig:
    """The typed config a run saved (`RUN_DIR/.hydra/config.yaml`, the composed config as Hydra wrote it): what
    was saved over the schema of each group option it chose (the backend's by `backend.name`, the executor's by
    `executor.name`). Raises ConfigError as `to_config` does, ValueError for a file that is not a config."""
    register()
    saved = OmegaConf.load(path)
    if not isinstance(saved, DictConfig):
        raise ValueError(f"{path} does not hold a mapping")
    backend = str(OmegaConf.select(saved, "backend.name", default=""))
    if backend not in BACKEND_NAMES:
        raise ValueError(f"{path}: `backend.name` = {backend!r} is not a backend ({', '.join(BACKEND_NAMES)})")
    ray = OmegaConf.select(saved, "executor.name", default="local") == "ray"
    base = OmegaConf.structured(
        WanbatchConfig(
            backend=backend_schema(backend)(),
            cache=CacheConfig(),
            executor=RayExecutorConfig() if ray else LocalExecutorConfig(),
            stitch=StitchConfig(),
            encode=EncodeConfig(),
        )
    )
    try:
        merged = OmegaConf.merge(base, saved)
    except OmegaConfBaseException as exc:
        raise composition_error(exc) from None
    assert isinstance(merged, DictConfig)
    return to_config(merged)


def open_overrides(overrides: Sequence[str]) -> list[str]:
    """Overrides whose keys a project may not have yet get Hydra's `++` (add or set), so the plain form works:
    `backends.<name>.<key>=v` (`backends` starts empty) and `scenes.<i>.<field>=v` (a scene holds only the
    fields it sets; `+scenes.<i>.<field>=v` for a field it sets is fine too). A scene field's name is checked
    with the scene (wanbatch.core.scene), which names the close known ones when it is misspelt."""
    return [f"++{o.lstrip('+')}" if re.match(r"^\+{0,2}(backends\.|scenes\.\d+\.)[^=]*=", o) else o for o in overrides]


def to_config(cfg: DictConfig, scenes: ScenesApart | None = None) -> WanbatchConfig:
    """A composed config (Hydra's) as the typed `WanbatchConfig`; `scenes` puts back the scenes composition
    kept apart. Raises ConfigError for a key added with `+key=value` that the schema has no field for, for a
    value OmegaConf cannot resolve, and for a bad `backends.<name>.<key>` (checked against that backend's
    schema)."""
    issues = unknown_keys(cfg)
    if issues:
        raise ConfigError(issues)
    try:
        out = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise composition_error(exc) from None
    assert isinstance(out, WanbatchConfig), type(out)
    if scenes is not None:
        out.scenes = scenes.merged(out.scenes)
    if out.scenes is None:
        out.scenes = []
    BackendConfigs(out)  # every `backends.<name>` through its schema now, used by a scene or not
    return out


def composition_error(
    exc: BaseException, overrides: Sequence[str] = (), project_file: Path | None = None
) -> ConfigError:
    """A ConfigError (exit 2) for an error Hydra or OmegaConf raised while composing: one Issue naming the key,
    its value and what is allowed (OmegaConf stops at the first). The value of an unknown key, which OmegaConf
    never stores, is looked up in `overrides`, then in the project file."""
    from hydra.errors import MissingConfigException

    def value_of(key: str) -> Any:
        for o in reversed(overrides):
            k, eq, v = o.lstrip("~+").partition("=")
            if eq and k == key:
                try:
                    return yaml.safe_load(v)
                except yaml.YAMLError:
                    return v
        if project_file is not None and project_file.is_file():
            return OmegaConf.select(OmegaConf.load(project_file), key, default=None)
        return None

    if "index out of range" in str(exc) or "index out of range" in str(exc.__cause__ or ""):
        issue = _scene_index_issue(overrides, project_file)
        if issue is not None:
            return ConfigError([issue])
    if "Merge error" in str(exc) and "str is not a subclass of" in str(exc):
        issue = _group_named_in_file(project_file)
        if issue is not None:
            return ConfigError([issue])
    issue = schema_issue(exc if isinstance(exc, Exception) else Exception(exc), value_of=value_of)
    if issue is None and isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, option = str(exc.missing_cfg_file).rpartition("/")
        options = [o for o in exc.options if not o.startswith("base_")]  # not the schemas stored beside them
        issue = Issue(None, group or "config", option, f"one of {', '.join(options)}{did_you_mean(option, options)}")
    if issue is None:
        issue = Issue(None, "config", None, " ".join(str(exc).split()))
    return ConfigError([issue])


def _group_named_in_file(project_file: Path | None) -> Issue | None:
    """`backend: novita_wan21_t2v` in a project file: a group's option named where its options (a mapping) go.
    OmegaConf says only "Merge error: str is not a subclass of PreviewConfig"; say where the choice is made."""
    if project_file is None or not project_file.is_file():
        return None
    with contextlib.suppress(Exception):
        raw = OmegaConf.load(project_file)
        for group in GROUPS:
            value = raw.get(group) if isinstance(raw, DictConfig) else None
            if isinstance(value, str):
                options = group_options(group)
                if value not in options:
                    return Issue(None, group, value, f"one of {', '.join(options)}{did_you_mean(value, options)}")
                return Issue(
                    None,
                    group,
                    value,
                    f"`{group}:` in the project file holds the {group}'s options (a mapping); choose the {group} "
                    f"in the file's defaults list (`- override {group}: {value}`, before `_self_`) or on the "
                    f"command line (`{group}={value}`)",
                )
    return None


def _scene_index_issue(overrides: Sequence[str], project_file: Path | None) -> Issue | None:
    """`scenes.5.seed=1` for a project of three scenes: name the override and the indexes there are."""
    count = None
    if project_file is not None and project_file.is_file():
        with contextlib.suppress(Exception):
            raw = OmegaConf.load(project_file)
            count = len(raw.get("scenes") or []) if isinstance(raw, DictConfig) else None
    for o in overrides:
        match = re.match(r"^[+~]*scenes\.(\d+)(\.[^=]*)?=?(.*)$", o)
        if match and (count is None or int(match.group(1)) >= count):
            key = f"scenes.{match.group(1)}{match.group(2) or ''}"
            there = (
                f"this project has {count} scene{'s' if count != 1 else ''}, scenes.0 to scenes.{count - 1}"
                if count
                else "this project has no scene at that index"
            )
            return Issue(None, key, _yaml_value(match.group(3)), f"the index of a scene: {there} (counted from 0)")
    return None


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _brings_wanbatch(path: Path, depth: int) -> bool:
    if depth > 4:
        return False
    try:
        check_project_file(path, depth=depth + 1)
    except ConfigError:
        return False
    return True


def check_project_file(path: Path, shown: str | None = None, depth: int = 0) -> None:
    """Read a project file as Hydra will and stop, in one line, at what would otherwise be a traceback or a puzzle:
    a YAML syntax error (`file:line:column: message`), a top level that is not a mapping, and a missing
    `defaults: [wanbatch, _self_]` line (without it no config group composes). Raises ProjectFileError; `shown`
    is the path as the user gave it."""
    shown = shown or str(path)
    try:
        # libyaml's parser with OmegaConf's rules: a large project is read in milliseconds. Only a file that
        # fails is read again by OmegaConf itself, whose error (and so Hydra's) is the one named.
        raw = load_text(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        _name_the_yaml_error(path, shown)
        raise
    except UnicodeDecodeError:
        raise ProjectFileError(shown, "not UTF-8 text") from None
    except OSError as exc:
        raise ProjectFileError(shown, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(raw, Mapping):
        raise ProjectFileError(shown, "a project file holds a mapping (defaults:, project:, scenes:), not a list")
    defaults = raw.get("defaults")
    names = [str(d).lstrip("/").split("@")[0] for d in defaults if isinstance(d, str)] if defaults else []
    # A project may build on another of its folder (`defaults: [project, ...]`, as recipes/storyboard/remote.yaml
    # does): that one brings wanbatch in.
    siblings = [path.parent / f"{n}.yaml" for n in names if n not in ("wanbatch", "_self_")]
    if "wanbatch" not in names and not any(
        _brings_wanbatch(sib, depth) for sib in siblings if sib.is_file() and sib.resolve() != path.resolve()
    ):
        raise ProjectFileError(
            shown,
            "no `defaults: [wanbatch, _self_]` line; add it at the top: it brings in wanbatch's config groups "
            "(backend, cache, executor, stitch, encode)"
            + (f"; this file's defaults are {defaults}" if defaults else ""),
        )


def _name_the_yaml_error(path: Path, shown: str) -> None:
    """Raise ProjectFileError naming the YAML error in `path` as OmegaConf's loader words it (`file:line:column:
    message`); returns if OmegaConf reads the file after all."""
    try:
        OmegaConf.load(path)
    except yaml.MarkedYAMLError as exc:
        message = exc.problem or exc.context or "not valid YAML"
        if exc.context and exc.problem and exc.context_mark is not None:
            start = exc.context_mark
            message += f" ({exc.context}, which starts at {start.line + 1}:{start.column + 1})"
        elif exc.context and exc.problem:
            message = f"{exc.context}: {message}"
        mark = exc.problem_mark or exc.context_mark
        raise ProjectFileError(
            shown, message, mark.line + 1 if mark else None, mark.column + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise ProjectFileError(shown, " ".join(str(exc).split())) from None
    except OSError as exc:
        raise ProjectFileError(shown, f"cannot be read ({exc.strerror or exc})") from None


def backend_schema(name: str) -> type[BackendConfig]:
    """The schema of backend `name`: the one its conf/backend/<name>.yaml names in its `defaults` list."""
    raw = _option_yaml(name)
    defaults = list(raw.get("defaults") or [])
    schema = BACKEND_SCHEMAS.get(str(defaults[0])) if len(defaults) == 1 else None
    if schema is None:
        raise ValueError(f"conf/backend/{name}.yaml must start with `defaults: [base_<kind>]`, not {defaults}")
    return schema


def _option_yaml(name: str) -> DictConfig:
    raw = OmegaConf.load(CONF_DIR / "backend" / f"{name}.yaml")
    assert isinstance(raw, DictConfig), name
    return raw


def backend_config(name: str, *overrides: Mapping[str, Any]) -> BackendConfig:
    """The typed config of backend `name`: conf/backend/<name>.yaml over its schema, then each of `overrides` in
    turn (e.g. a project's `backends.<name>`). Raises ConfigError naming `backends.<name>.<key>` for an unknown
    key or a value of the wrong type; KeyError for an unknown backend."""
    if name not in BACKEND_NAMES:
        raise KeyError(name)
    body = {str(k): v for k, v in _option_yaml(name).items() if k != "defaults"}
    base = OmegaConf.merge(OmegaConf.structured(backend_schema(name)), body)
    assert isinstance(base, DictConfig)
    return _merged(base, overrides, f"backends.{name}.")


def _merged(base: DictConfig, overrides: Sequence[Mapping[str, Any]], prefix: str) -> BackendConfig:
    node: Any = base
    for layer in overrides:
        given = dict(layer)
        try:
            node = OmegaConf.merge(node, given)
        except OmegaConfBaseException as exc:
            issue = schema_issue(exc, prefix=prefix, value_of=partial(_value_in, given, prefix))
            if issue is None or issue.field == prefix.rstrip("."):  # OmegaConf did not say which key
                issue = merge_issue(OmegaConf.get_type(node), given, prefix) or issue  # type: ignore[arg-type]
            raise ConfigError([issue] if issue else str(exc)) from None
    issues = unknown_keys(node, prefix)
    if issues:
        raise ConfigError(issues)
    try:
        out = OmegaConf.to_object(node)
    except OmegaConfBaseException as exc:
        issue = schema_issue(exc, prefix=prefix)
        raise ConfigError([issue] if issue else str(exc)) from None
    assert isinstance(out, BackendConfig)
    return out


def _value_in(tree: Mapping[str, Any], prefix: str, key: str) -> Any:
    """The value at `key` (which starts with `prefix`) in a nested mapping, or None."""
    node: Any = tree
    for part in key[len(prefix) :].split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class BackendConfigs(Mapping[str, BackendConfig]):
    """The typed config of every known backend, built on first use (a project touches only a few, and each
    YAML load costs milliseconds): conf/backend/<name>.yaml over its schema, then `backends.<name>` overrides.
    The project's default backend takes the composed `backend` group instead (it carries CLI overrides).
    Every `backends.<name>` the config sets is checked at once, used by a scene or not."""

    def __init__(self, cfg: WanbatchConfig):
        self._default = cfg.backend
        self._per: dict[str, Any] = dict(cfg.backends or {})
        self._cache_dir = cfg.cache.dir if isinstance(cfg.cache, CacheConfig) else None
        self._built: dict[str, BackendConfig] = {}
        issues: list[Issue] = []
        for name in sorted(self._per):
            if choice(
                issues, f"backends.{name}", name, BACKEND_NAMES, allowed=f"a backend: {', '.join(BACKEND_NAMES)}"
            ):
                self._built[name] = self._build(name)  # now, so a bad key fails before anything runs
        if issues:
            raise ConfigError(issues)

    def __getitem__(self, name: str) -> BackendConfig:
        if name not in BACKEND_NAMES:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(BACKEND_NAMES)

    def __len__(self) -> int:
        return len(BACKEND_NAMES)

    def _build(self, name: str) -> BackendConfig:
        per = self._per.get(name) or {}
        if name == self._default.name:
            schema = backend_schema(name)
            if not isinstance(self._default, schema):  # `backend.name=X` renames the option; it does not pick X
                chosen = f"the name of the chosen `backend` option (a {type(self._default).__name__})"
                pick = f"choose another with `backend={name}` (`override backend: {name}` in a project file)"
                raise ConfigError([Issue(None, "backend.name", name, f"{chosen}; {pick}")])
            out = _merged(OmegaConf.structured(self._default), [per], f"backends.{name}.") if per else self._default
        else:
            out = backend_config(name, per)
        # Tiny built-in models live beside the run's cache unless told otherwise (where they are built
        # does not change any cache key: their identity is a version string).
        if isinstance(out, DiffusersConfig) and self._cache_dir and not out.models_dir:
            out = dataclasses.replace(out, models_dir=str(Path(str(self._cache_dir)).expanduser() / "models"))
        return out


def backend_configs(cfg: WanbatchConfig) -> BackendConfigs:
    return BackendConfigs(cfg)


def default_cache_dir() -> Path:
    """The cache folder when no project says otherwise: the `cache` group's default ($WANBATCH_CACHE_DIR, else
    ~/.cache/wanbatch), resolved."""
    out = OmegaConf.to_object(OmegaConf.structured(CacheConfig))
    assert isinstance(out, CacheConfig)
    return Path(out.dir).expanduser()
