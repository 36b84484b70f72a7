"""A project file is data: it is read as YAML and checked before Hydra composes it, so that opening a
shared project runs no code, reads no environment variable and cannot place its run anywhere.

What a project file (and every file of its folder that it or the command line pulls in) may not hold:

    YAML aliases that expand past a small budget    a 1 KB alias bomb took 28 s and 360 MB to compose
    a `hydra:` section with more than the run or    callbacks, launchers and logging handlers are code
      sweep folder, or one outside the working      Hydra runs; a run folder elsewhere overwrote another
      directory                                     project's report
    a `defaults:` entry for a `hydra/...` group     a launcher or callbacks chosen by the project
    `_target_`, at any depth                        what Hydra's instantiate turns into a call
    a backend's `base_url` or `api_key_env`         where your API key (or any variable) is sent
    `${oc.env:...}`, `${oc.decode:...}`, any        a project that reads your environment can send any
      resolver but now/oc.select/oc.dict.*          variable (a key) to a provider in a prompt

Each is an Issue naming the file and the key. Example::

    issues = check_project(Path("myfilm"), "project", overrides)   # [] for a project that is data
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wanbatch.config.fastyaml import load_text
from wanbatch.errors import Issue

# libyaml's C parser where PyYAML has it: a project of 10k inline scenes is read several times here (for its
# aliases, its data and its defaults list), in milliseconds each instead of seconds. The nodes are the same.
_PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Alias expansion may add this many nodes to a file (a real project's anchors add tens), and nothing may
# nest deeper than NESTING_LIMIT: both are checked on the composed node graph, in time linear in the file.
ALIAS_BUDGET = 10_000
NESTING_LIMIT = 64
HYDRA_ALLOWED = {("run", "dir"), ("sweep", "dir"), ("sweep", "subdir")}
# The resolvers a project file may call: none reads the environment or turns text into config (`oc.decode` of
# an escaped `\${oc.env:KEY}` read the variable). Matched escaped or not, anywhere in a string.
RESOLVERS_ALLOWED = {"now", "oc.select", "oc.dict.keys", "oc.dict.values"}  # not `hydra:` (its overrides hold a key)
_RESOLVER = re.compile(r"\$\{\s*([\w.-]+)\s*:")
# Where a backend sends its key (`base_url`) and which variable it reads it from (`api_key_env`).
_CREDENTIAL_ROUTE = re.compile(r"^(backend|backends\.[^.]+)\.(base_url|api_key_env)$")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class _Source:
    path: Path
    package: str  # where its content goes: "_global_" (the root), or a dotted path such as "backend"


def check_project(config_dir: Path, config_name: str, overrides: Sequence[str] = ()) -> list[Issue]:
    """Every issue of the project `config_dir/config_name.yaml` and of the files of `config_dir` that its
    defaults lists or the command line's `group=option` overrides pull in."""
    issues: list[Issue] = []
    files = _Files()  # each file parsed once: for its defaults list (which files), then for its issues
    for source in _sources(config_dir, config_name, overrides, issues, files):
        issues += check_file(source.path, source.package, where=_shown(source.path, config_dir), load=files.load)
    return issues


def _load(path: Path) -> tuple[str, Any]:
    """A YAML file's text and data, the data read (on libyaml) only once its aliases are known to be within
    budget. Raises OSError or UnicodeDecodeError (unreadable), _TooBig, RecursionError or yaml.YAMLError."""
    text = path.read_text(encoding="utf-8")
    node = yaml.compose(text, Loader=_PARSER)
    if node is None:
        return text, None
    _within_budget(node)
    return text, load_text(text)


class _Files:
    """`_load` once per file, its outcome (data or error) kept for the next asker."""

    def __init__(self) -> None:
        self._got: dict[Path, tuple[str, Any] | BaseException] = {}

    def load(self, path: Path) -> tuple[str, Any]:
        if path not in self._got:
            try:
                self._got[path] = _load(path)
            except (OSError, UnicodeDecodeError, _TooBig, RecursionError, yaml.YAMLError) as exc:
                self._got[path] = exc
        got = self._got[path]
        if isinstance(got, BaseException):
            raise got
        return got


def check_file(
    path: Path,
    package: str = "_global_",
    *,
    where: str | None = None,
    load: Callable[[Path], tuple[str, Any]] = _load,
) -> list[Issue]:
    """The issues of one YAML file whose content lands at `package` ("_global_": the config's root)."""
    where = where or str(path)
    try:
        text, data = load(path)
    except (OSError, UnicodeDecodeError) as exc:
        return [Issue(None, where, None, f"a readable UTF-8 YAML file ({exc})")]
    except _TooBig as exc:
        return [Issue(None, where, "YAML aliases", f"{exc}; write the repeated part out, or pass it as an override")]
    except RecursionError:
        return [Issue(None, where, "nesting", f"YAML nested at most {NESTING_LIMIT} levels deep")]
    except yaml.YAMLError:
        return []  # config.load.check_project_file, run next, names the file, line and column of a syntax error
    header = _PACKAGE.search(text[:2000])
    if header:
        package = header.group(1)
    if data is None:
        return []
    if not isinstance(data, Mapping):
        return [Issue(None, where, type(data).__name__, "a YAML mapping of config keys")]
    issues: list[Issue] = []
    body = {k: v for k, v in data.items() if k != "defaults"}
    root: Mapping[str, Any] = body if package in ("_global_", "") else _nest(package, body)
    _check_hydra(root.get("hydra"), where, issues)
    for key_path, value in _walk(root):
        if _CREDENTIAL_ROUTE.match(key_path):
            issues.append(
                Issue(
                    None,
                    f"{key_path} (in {where})",
                    value,
                    "no endpoint or key variable set by a project file: a shared project could send your API key "
                    "(or any variable) to its own server; where your API key is sent is chosen on the command line "
                    f"(`{key_path}=...`) or in wanbatch's backend config",
                )
            )
        elif key_path.rsplit(".", 1)[-1] == "_target_":
            issues.append(
                Issue(
                    None,
                    f"{key_path} (in {where})",
                    value,
                    "no `_target_` in a project: it names code to call, and a project file is data",
                )
            )
        elif isinstance(value, str) and any(r not in RESOLVERS_ALLOWED for r in _RESOLVER.findall(value)):
            issues.append(
                Issue(
                    None,
                    f"{key_path} (in {where})",
                    value,
                    "no environment variable read by a project file, and no resolver that could read one "
                    f"(allowed: {', '.join(sorted(RESOLVERS_ALLOWED))}): a shared project could send one, an API key, "
                    f"to a provider; pass the value on the command line instead: `{key_path}=VALUE` "
                    f"(`'{key_path}=${{oc.env:VAR}}'` works there); API keys come only from the variable each "
                    "backend names (`api_key_env`)",
                )
            )
    _check_defaults(data.get("defaults"), where, issues)
    return issues


# -- which files --------------------------------------------------------------------------------------------


def _sources(
    config_dir: Path, config_name: str, overrides: Sequence[str], issues: list[Issue], files: _Files
) -> list[_Source]:
    """The primary file, then what its defaults lists (recursively) and `group=option` overrides pull in
    from `config_dir`; files elsewhere (wanbatch's own conf/) are not the project's."""
    config_dir = config_dir.resolve()
    primary = _find(config_dir, config_name)
    if primary is None:
        return []
    found: list[_Source] = []
    seen: set[Path] = set()
    queue: list[_Source] = [_Source(primary, "_global_")]
    for override in overrides:
        group, sep, option = override.lstrip("+~").partition("=")
        if sep and "." not in group and "/" not in option and "," not in option:
            path = _find(config_dir / group.split("@")[0], option)
            if path is not None:
                queue.append(_Source(path, _package_of(group)))
    while queue:
        source = queue.pop(0)
        if source.path in seen:
            continue
        seen.add(source.path)
        found.append(source)
        queue += _included(source.path, config_dir, files)
    return found


def _included(path: Path, config_dir: Path, files: _Files) -> Iterator[_Source]:
    try:
        _text, data = files.load(path)
    except (OSError, UnicodeDecodeError, _TooBig, RecursionError, yaml.YAMLError):
        return  # check_file reports it
    entries = data.get("defaults") if isinstance(data, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str):
            name = entry.lstrip("/")
            if name != "_self_":
                base = config_dir if entry.startswith("/") else path.parent
                if (found := _find(base, name)) is not None:
                    yield _Source(found, "_global_")
        elif isinstance(entry, Mapping):
            for key, options in entry.items():
                group = str(key).removeprefix("override ").strip()
                for option in options if isinstance(options, list) else [options]:
                    if isinstance(option, str) and (found := _find(config_dir / group.split("@")[0], option)):
                        yield _Source(found, _package_of(group))


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.yaml", folder / f"{name}.yml"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _package_of(group: str) -> str:
    """The package a `group[@package]` entry puts its file at: `backend` -> backend, `x@_global_` -> root."""
    group, _, package = group.partition("@")
    return package or group.replace("/", ".")


def _shown(path: Path, config_dir: Path) -> str:
    try:
        return str(path.relative_to(config_dir.resolve().parent))
    except ValueError:
        return str(path)


# -- the checks ---------------------------------------------------------------------------------------------


class _TooBig(Exception):
    pass


def _within_budget(root: yaml.Node) -> None:
    """Raise _TooBig if expanding the aliases of the node graph adds more than ALIAS_BUDGET nodes, nests
    deeper than NESTING_LIMIT, or loops. Each distinct node is sized once (an alias shares its node), and
    each reuse adds that size to the count: a bomb costs as little to measure as its text."""
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    active: set[int] = set()
    extra = 0

    def size(node: yaml.Node, depth: int) -> int:
        nonlocal extra
        key = id(node)
        if key in sizes:  # an alias: its subtree again
            extra += sizes[key]
            if extra > ALIAS_BUDGET:
                raise _TooBig(f"at most {ALIAS_BUDGET} nodes added by expanding its aliases (YAML `*name`)")
            if depth + heights[key] > NESTING_LIMIT:
                raise _TooBig(f"YAML nested at most {NESTING_LIMIT} levels deep, aliases expanded")
            return sizes[key]
        if key in active:
            raise _TooBig("no YAML alias inside its own anchor")
        if depth > NESTING_LIMIT:
            raise _TooBig(f"YAML nested at most {NESTING_LIMIT} levels deep, aliases expanded")
        active.add(key)
        total, height = 1, 0
        children: Iterable[yaml.Node] = ()
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        for child in children:
            total += size(child, depth + 1)
            height = max(height, heights[id(child)] + 1)
        active.discard(key)
        sizes[key], heights[key] = total, height
        return total

    size(root, 0)


def _check_hydra(section: Any, where: str, issues: list[Issue]) -> None:
    if section is None:
        return
    allowed = (
        "a project file may set only the run or sweep folder (`hydra.run.dir`, `hydra.sweep.dir`, "
        "`hydra.sweep.subdir`); callbacks, launchers, logging and every other Hydra setting belong on the "
        "command line"
    )
    if not isinstance(section, Mapping):
        issues.append(Issue(None, f"hydra (in {where})", section, allowed))
        return
    for key, value in section.items():
        inner = value if isinstance(value, Mapping) else None
        if inner is None or key not in ("run", "sweep"):
            issues.append(Issue(None, f"hydra.{key} (in {where})", value, allowed))
            continue
        for name, folder in inner.items():
            if (key, name) not in HYDRA_ALLOWED:
                issues.append(Issue(None, f"hydra.{key}.{name} (in {where})", folder, allowed))
            elif problem := _folder_problem(folder):
                issues.append(Issue(None, f"hydra.{key}.{name} (in {where})", folder, problem))


def _folder_problem(folder: Any) -> str | None:
    """Why a run folder pattern could leave the working directory (None if it cannot)."""
    rule = (
        "a relative folder inside the working directory (e.g. outputs/${project.name}/${now:%Y-%m-%d_%H-%M-%S}); "
        "a run folder elsewhere is set on the command line (`hydra.run.dir=PATH`)"
    )
    if not isinstance(folder, (str, int)):
        return rule
    text = str(folder).strip()
    parts = re.split(r"[/\\]+", text)
    if not text or text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", text) or ".." in parts:
        return rule
    return None


def _check_defaults(entries: Any, where: str, issues: list[Issue]) -> None:
    for entry in entries if isinstance(entries, list) else []:
        names = [entry] if isinstance(entry, str) else list(entry) if isinstance(entry, Mapping) else []
        for name in names:
            group = str(name).removeprefix("override ").strip().lstrip("/")
            package = group.partition("@")[2]
            if group.split("@")[0].split("/")[0] == "hydra" or package.split(".")[0] == "hydra":
                issues.append(
                    Issue(
                        None,
                        f"defaults (in {where})",
                        entry,
                        "no Hydra group (`hydra/launcher`, `hydra/callbacks`, `hydra/job_logging`, ...) chosen by "
                        "a project file: they run code; choose one on the command line",
                    )
                )


def _nest(package: str, body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(body)
    for part in reversed(package.split(".")):
        out = {part: out}
    return out


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every entry, depth first; a container reached twice (an alias) is walked once."""
    seen: set[int] = set()

    def walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(value, (Mapping, list)):
            if id(value) in seen:
                return
            seen.add(id(value))
        items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
        for key, inner in items:
            here = f"{path}.{key}" if path else str(key)
            yield here, inner
            yield from walk(inner, here)

    yield from walk(node, prefix)


__all__ = ["ALIAS_BUDGET", "NESTING_LIMIT", "RESOLVERS_ALLOWED", "check_file", "check_project"]
