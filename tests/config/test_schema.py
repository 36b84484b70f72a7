"""The typed config: a wrong type or an unknown key, in any group, in `backends.<name>` and in a project file,
exits 2 with one line naming the key, its value and what is allowed; and every default lives in the schema only."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

import wanbatch
from wanbatch.config.load import CONF_DIR, RECIPES_DIR, backend_config, load_config
from wanbatch.config.schema import GROUP_SCHEMAS, SoundtrackConfig, WanbatchConfig
from wanbatch.core.scene import SCENE_FIELDS
from wanbatch.errors import ConfigError

from conftest import REPO, tree

DEMO = RECIPES_DIR / "demo" / "project.yaml"
PACKAGE = Path(wanbatch.__file__).parent


def problem(*overrides: str, project: Path = DEMO) -> Any:
    """The one Issue composing the demo with `overrides` raises."""
    with pytest.raises(ConfigError) as err:
        load_config(project, list(overrides))
    [issue] = err.value.issues
    return issue


# -- a wrong type, in each group ---------------------------------------------------------------------------
WRONG_TYPES = [
    ("backend.default_fps=fast", "backend.default_fps", "fast", "an integer"),
    ("cache.dir=[a,b]", "cache.dir", ["a", "b"], "a string"),
    ("executor.concurrency=many", "executor.concurrency", "many", "an integer"),
    ("stitch.fade_in=soon", "stitch.fade_in", "soon", "a number"),
    ("stitch.loop_soundtrack=sometimes", "stitch.loop_soundtrack", "sometimes", "true or false"),
    ("encode.crf=high", "encode.crf", "high", "an integer, or null"),
    ("dry_run=maybe", "dry_run", "maybe", "true or false"),
    ("project.defaults=3", "project.defaults", 3, "a mapping"),
    ("backends.gmi_wan21_i2v.poll.initial_s=soon", "backends.gmi_wan21_i2v.poll.initial_s", "soon", "a number"),
    ("backends.diffusers.warm_models=two", "backends.diffusers.warm_models", "two", "an integer"),
]


@pytest.mark.parametrize(("override", "key", "value", "allowed"), WRONG_TYPES, ids=[w[1] for w in WRONG_TYPES])
def test_a_wrong_type_in_any_group_names_the_key_the_value_and_what_is_allowed(override, key, value, allowed):
    issue = problem(override)
    assert (issue.field, issue.value) == (key, value)
    assert issue.allowed.startswith(allowed), issue.allowed


def test_a_wrong_type_in_a_group_option_other_than_the_default():
    issue = problem("executor=ray", "executor.num_gpus=x")
    assert (issue.field, issue.value, issue.allowed) == ("executor.num_gpus", "x", "an integer, or null")
    issue = problem("backend=novita_wan21_t2v", "backend.poll.jitter=[1]")
    assert (issue.field, issue.value, issue.allowed) == ("backend.poll.jitter", [1], "a number")


# -- an unknown key, in each group ---------------------------------------------------------------------------
UNKNOWN_KEYS = [
    ("backend.default_fsp=24", "backend.default_fsp", 24, "default_fps"),
    ("+backend.default_fsp=24", "backend.default_fsp", 24, "default_fps"),  # `+` adds keys: still not one of ours
    ("cache.folder=/tmp/x", "cache.folder", "/tmp/x", "dir"),
    ("executor.concurency=2", "executor.concurency", 2, "concurrency"),
    ("stitch.fade=1", "stitch.fade", 1, "fade_in"),
    ("+encode.quality=3", "encode.quality", 3, "crf"),
    ("dry_rn=true", "dry_rn", True, "dry_run"),
    ("project.nam=x", "project.nam", "x", "name"),
    ("backends.gmi_wan21_i2v.max_in_fligth=3", "backends.gmi_wan21_i2v.max_in_fligth", 3, "max_in_flight"),
    ("backends.novita_wan21_t2v.poll.intial_s=1", "backends.novita_wan21_t2v.poll.intial_s", 1, "initial_s"),
]


@pytest.mark.parametrize(("override", "key", "value", "known"), UNKNOWN_KEYS, ids=[u[0] for u in UNKNOWN_KEYS])
def test_an_unknown_key_in_any_group_names_itself_and_the_known_ones(override, key, value, known):
    issue = problem(override)
    assert (issue.field, issue.value) == (key, value)
    assert "unknown" in issue.allowed and known in issue.allowed.split("known: ")[1].split(", ")


def test_a_backends_entry_must_name_a_backend():
    issue = problem("backends.sora.base_url=http://x")
    assert issue.field == "backends.sora" and "preview" in issue.allowed


@pytest.mark.parametrize(
    ("text", "key", "value", "allowed"),
    [
        ("stitch:\n  fade_inn: 0.5\n", "stitch.fade_inn", 0.5, "unknown option (did you mean fade_in"),
        ("backend:\n  default_fps: soon\n", "backend.default_fps", "soon", "an integer"),
        ("titel: My film\n", "titel", "My film", "unknown key; known: "),
        (
            "backends:\n  aiml_wan27_i2v:\n    uploader: {target: x, bucket: y}\n",
            "backends.aiml_wan27_i2v.uploader.bucket",
            "y",
            "unknown option",
        ),
    ],
)
def test_a_typo_in_a_project_file_names_the_key(tmp_path, text, key, value, allowed):
    project = tmp_path / "project.yaml"
    project.write_text("defaults: [wanbatch, _self_]\nscenes: [{id: a, prompt: p}]\n" + text)
    issue = problem(project=project)
    assert (issue.field, issue.value) == (key, value) and issue.allowed.startswith(allowed)


def test_a_backend_option_built_in_python_is_checked_too():
    with pytest.raises(ConfigError) as err:
        backend_config("preview", {"default_fps": "fast"})
    assert [(i.field, i.value) for i in err.value.issues] == [("backends.preview.default_fps", "fast")]


# -- the command line: exit 2, one line ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["backend=preview", "backend.default_fps=fast"],
            "error: project: `backend.default_fps` = 'fast' is not allowed; an integer",
        ),
        (
            ["backends.novita_wan21_t2v.pol.interval_s=1"],
            "error: project: `backends.novita_wan21_t2v.pol` = {'interval_s': 1} is not allowed; unknown option",
        ),
        (
            ["executor.concurency=2"],
            "error: project: `executor.concurency` = 2 is not allowed; "
            "unknown option (did you mean concurrency?); known:",
        ),
    ],
)
def test_the_cli_exits_2_with_one_line_naming_the_key(tmp_path, args, line):
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wanbatch.cli",
            "recipe=demo",
            f"cache.dir={cache}",
            *args,
            f"hydra.run.dir={tmp_path}/r",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), proc.stderr
    assert tree(cache) == {}  # nothing rendered, nothing cached


# -- one source of defaults -----------------------------------------------------------------------------------
OPTIONS = sorted((p.parent.name, p.stem) for p in CONF_DIR.glob("*/*.yaml"))


def _yaml(group: str, option: str) -> tuple[type, dict[str, Any]]:
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
    assert isinstance(raw, dict)
    [schema] = raw.pop("defaults")
    return GROUP_SCHEMAS[group][schema], raw


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_a_yaml_option_sets_only_what_differs_from_its_schema(group, option):
    """A YAML that restates a schema default is a second source of it (and the two drift apart)."""
    schema, raw = _yaml(group, option)
    defaults = _flat(dataclasses.asdict(schema()))  # a required field (MISSING) is "???": the YAML must set it
    restated = {k: v for k, v in _flat(raw).items() if k in defaults and defaults[k] == v}
    assert restated == {}, f"conf/{group}/{option}.yaml restates {schema.__name__}'s defaults: {restated}"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_what_a_yaml_leaves_unset_composes_to_its_schema_default(group, option):
    schema, raw = _yaml(group, option)
    composed = _flat(dataclasses.asdict(getattr(load_config(None, [f"{group}={option}"]), group)))
    expected = _flat(OmegaConf.to_container(OmegaConf.structured(schema), resolve=True))  # resolved, as composed
    expected.update(_flat(raw))
    assert composed == expected


def option_names() -> set[str]:
    """Every key of every config group, nested sections included, but the scene fields (a scene's `fps` is the
    scene's business, checked by core/scene.py, not a config option)."""
    todo: list[type] = [WanbatchConfig, SoundtrackConfig, *(c for g in GROUP_SCHEMAS.values() for c in g.values())]
    seen: set[type] = set()
    names: set[str] = set()
    while todo:
        schema = todo.pop()
        if schema in seen:
            continue
        seen.add(schema)
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):  # type: ignore[arg-type]
            names.add(f.name)
            todo += [a for a in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(a)]
    return names - set(SCENE_FIELDS)


def _literal(node: ast.AST | None) -> bool:
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and node.value is not None


def defaults_in(source: str, names: set[str]) -> list[tuple[int, str]]:
    """Where a module holds a literal default for one of `names`: `x.get("name", 4)`, `getattr(x, "name", 4)`,
    a dataclass field or a parameter `name = 4`, a dict {"name": 4, "other": 5}. None is no default."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            fn = node.func
            key, default = (
                (node.args[0], node.args[1]) if isinstance(fn, ast.Attribute) and fn.attr == "get" else (None, None)
            )
            if isinstance(fn, ast.Name) and fn.id == "getattr" and len(node.args) == 3:
                key, default = node.args[1], node.args[2]
            if isinstance(key, ast.Constant) and key.value in names and _literal(default):
                hits.append((node.lineno, f"a default for {key.value!r} in a lookup"))
        elif isinstance(node, ast.ClassDef):
            for st in node.body:
                if (
                    isinstance(st, ast.AnnAssign)
                    and isinstance(st.target, ast.Name)
                    and st.target.id in names
                    and "ClassVar" not in ast.unparse(st.annotation)
                    and _literal(st.value)
                ):
                    hits.append((st.lineno, f"field {node.name}.{st.target.id}"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = [
                *zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True),
                *zip(a.kwonlyargs, a.kw_defaults, strict=True),
            ]
            hits += [
                (node.lineno, f"parameter {node.name}({p.arg}=...)") for p, d in pairs if p.arg in names and _literal(d)
            ]
        elif isinstance(node, ast.Dict):
            keys = [
                k.value
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value in names and _literal(v)
            ]
            if len(keys) >= 2:
                hits.append((node.lineno, f"a dict of defaults for {keys}"))
    return hits


# Names a module uses for something that is not the config option of that name.
NOT_OPTIONS = {
    ("backends/remote/run.py", "field Run.retries"),  # the retries one render has made, a counter
    # a job's flag, set by the plan for the jobs whose ids the option `resubmit_ambiguous` lists
    ("core/job.py", "field Job.resubmit_ambiguous"),
}


def test_no_module_outside_config_holds_a_default_for_a_config_option():
    """The schema (wanbatch/config/) is the one place a config default lives. (testing/ is the fake provider: its
    defaults are the providers'.)"""
    names = option_names()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(("config/", "testing/")):
            continue
        found += [
            f"{rel}:{line}: {what}"
            for line, what in defaults_in(path.read_text(), names)
            if (rel, what) not in NOT_OPTIONS
        ]
    assert found == []


def test_the_defaults_check_finds_what_it_looks_for():
    """The check above can fail: the defaults this branch removed from Python are each caught."""
    names = option_names()
    removed = """
from dataclasses import dataclass
DEFAULTS = {"concurrency": 8, "cancel_grace_s": 30}
@dataclass(frozen=True)
class PollSettings:
    initial_s: float = 10.0
def fps(config):
    return int(config.get("default_fps", 16))
def executor(cache, *, concurrency: int = 4, keep_actors=True, address=None): ...
"""
    assert {what for _, what in defaults_in(removed, names)} == {
        "a dict of defaults for ['concurrency', 'cancel_grace_s']",
        "field PollSettings.initial_s",
        "a default for 'default_fps' in a lookup",
        "parameter executor(concurrency=...)",
        "parameter executor(keep_actors=...)",
    }
