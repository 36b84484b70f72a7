"""One place that checks a config value and says what is allowed, in the project's words.

Two kinds of check, one wording. The schema's (a key no dataclass has, a value of the wrong type) stop composition
at the first one OmegaConf finds; `schema_issue` turns that error into an Issue. Ranges and choices are checked
where the value is used, with the helpers below, which append an Issue and carry on, so a run reports every such
problem at once::

    issues: list[Issue] = []
    number(issues, "executor.concurrency", 0, minimum=1, integer=True)    # False
    str(issues[0])    # "project: `executor.concurrency` = 0 is not allowed; an integer >= 1"
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from wanbatch.errors import Issue

# -- ranges and choices: where a value is used ---------------------------------------------------------------


def number(
    issues: list[Issue],
    field: str,
    value: Any,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    nullable: bool = False,
    allowed: str | None = None,
    scene: str | None = None,
) -> bool:
    """True if `value` is a number (an int where `integer`; never a bool) within the bounds, or None where
    `nullable`; otherwise appends an Issue saying what is allowed (`allowed`, or words made from the bounds)."""
    if value is None and nullable:
        return True
    kinds = (int,) if integer else (int, float)
    ok = (
        not isinstance(value, bool)
        and isinstance(value, kinds)
        and (minimum is None or value >= minimum)
        and (above is None or value > above)
        and (maximum is None or value <= maximum)
    )
    if not ok:
        issues.append(Issue(scene, field, value, allowed or _number_words(minimum, above, maximum, integer, nullable)))
    return ok


def _number_words(
    minimum: float | None, above: float | None, maximum: float | None, integer: bool, nullable: bool
) -> str:
    kind = "an integer" if integer else "a number"
    if minimum is not None and maximum is not None:
        words = f"{kind} from {minimum:g} to {maximum:g}"
    elif above is not None:
        words = f"{kind} > {above:g}"
    elif minimum is not None:
        words = f"{kind} >= {minimum:g}"
    elif maximum is not None:
        words = f"{kind} <= {maximum:g}"
    else:
        words = kind
    return words + (", or null" if nullable else "")


def choice(
    issues: list[Issue],
    field: str,
    value: Any,
    choices: Iterable[Any],
    *,
    nullable: bool = False,
    allowed: str | None = None,
    scene: str | None = None,
) -> bool:
    """True if `value` is one of `choices` (or None where `nullable`); otherwise appends an Issue listing them."""
    options = tuple(choices)
    if (value is None and nullable) or (value is not None and not isinstance(value, bool) and value in options):
        return True
    words = f"one of {', '.join(str(c) for c in options)}" + (", or null" if nullable else "")
    if isinstance(value, str):
        words += did_you_mean(value, [str(c) for c in options])
    issues.append(Issue(scene, field, value, allowed or words))
    return False


def flag(issues: list[Issue], field: str, value: Any, *, allowed: str | None = None, scene: str | None = None) -> bool:
    """True if `value` is a bool (`choice` takes no bools: True == 1 would pass for a choice of 1). `allowed`
    words an option that takes a word beside true and false (`auto, true or false`), checked before."""
    if isinstance(value, bool):
        return True
    issues.append(Issue(scene, field, value, allowed or "true or false"))
    return False


def text(issues: list[Issue], field: str, value: Any, *, url: bool = False, allowed: str | None = None) -> bool:
    """True if `value` is a non-empty string (an http(s) URL where `url`); a field left MISSING (a dataclass built
    in Python without a required value) is not."""
    ok = (
        isinstance(value, str)
        and bool(value)
        and value != MISSING
        and (not url or value.startswith(("http://", "https://")))
    )
    if not ok:
        issues.append(Issue(None, field, value, allowed or ("an http(s) URL" if url else "a non-empty string")))
    return ok


def mapping(issues: list[Issue], field: str, value: Any, *, allowed: str | None = None) -> bool:
    """True if `value` is a mapping or None."""
    if value is None or isinstance(value, Mapping):
        return True
    issues.append(Issue(None, field, value, allowed or "a mapping (or null)"))
    return False


# -- keys and types: the schema's ------------------------------------------------------------------------------


def type_words(tp: Any) -> str:
    """What a value of a schema field's type is, in words: `int | None` -> "an integer, or null"."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (type_words(rest[0]) if len(rest) == 1 else "a value") + ", or null"
    origin = typing.get_origin(tp) or tp
    if dataclasses.is_dataclass(origin):
        return "a mapping of " + ", ".join(f.name for f in dataclasses.fields(origin))
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}
    return words.get(origin, "a list" if origin is list else "a value")


def field_type(schema: type, name: str) -> Any:
    """The type of field `name` of dataclass `schema` (annotations evaluated), or Any."""
    try:
        return typing.get_type_hints(schema).get(name, Any)
    except (NameError, TypeError):
        return Any


def schema_issue(exc: Exception, *, prefix: str = "", value_of: Callable[[str], Any] | None = None) -> Issue | None:
    """The Issue an OmegaConf error stands for: a key the schema does not know, a value of the wrong type, a
    required value not set. Hydra wraps OmegaConf's errors, so the chain of causes is searched; None if no
    OmegaConf error is in it. `prefix` is put before the key (`backends.gmi_wan21_i2v.`); `value_of(key)` finds
    a value OmegaConf does not report (an unknown key's: it was never stored)."""
    found = _omegaconf_error(exc)
    if found is None:
        return None
    key = f"{prefix}{found.full_key}" if found.full_key else prefix.rstrip(".") or "config"
    typed = isinstance(found.object_type, type) and dataclasses.is_dataclass(found.object_type)
    schema = found.object_type if typed else None
    value = found.value if found.value is not None or value_of is None else value_of(key)
    if isinstance(found, (ConfigKeyError, ConfigAttributeError)):
        if schema is not None:
            return Issue(None, key, value, unknown_words(schema, key))
        # a free-form mapping (a scene, project.defaults): Hydra changes only what is there
        return Issue(None, key, value, f"a key that is set already; add one with `+{key}=...`")
    if isinstance(found, MissingMandatoryValue):
        tp = field_type(schema, str(found.key)) if schema is not None else Any
        return Issue(None, key, None, f"{type_words(tp)}: it has no default, so it must be set")
    if isinstance(found, ValidationError) and schema is not None and found.key is not None:
        return Issue(None, key, value, type_words(field_type(schema, str(found.key))))
    return Issue(None, key, value, str(found.msg or found).splitlines()[0])


def merge_issue(schema: type, layer: Mapping[str, Any], prefix: str = "") -> Issue | None:
    """The key of `layer` that cannot merge onto `schema`, as an Issue; for OmegaConf errors that do not say
    which key they are about (a list given where a mapping belongs). None if every key merges."""
    base = OmegaConf.structured(schema)
    for key, value in layer.items():
        try:
            OmegaConf.merge(base, {key: value})
        except OmegaConfBaseException:
            tp = field_type(schema, str(key))
            inner = [a for a in (*typing.get_args(tp), tp) if isinstance(a, type) and dataclasses.is_dataclass(a)]
            if inner and isinstance(value, Mapping):
                deeper = merge_issue(inner[0], value, f"{prefix}{key}.")
                if deeper is not None:
                    return deeper
            return Issue(None, f"{prefix}{key}", value, type_words(tp))
    return None


def unknown_words(schema: type, key: str | None = None) -> str:
    """What an unknown key of `schema` could have been: the close names of its fields (to `key`'s last part),
    then every field. A schema that is not a dataclass (a free-form mapping) has no names to offer."""
    what = "key" if schema.__name__ in ("WanbatchConfig", "ProjectConfig") else "option"
    if not dataclasses.is_dataclass(schema):
        return f"unknown {what}"
    names = sorted(f.name for f in dataclasses.fields(schema))
    hint = did_you_mean(str(key).rsplit(".", 1)[-1], names) if key is not None else ""
    return f"unknown {what}{hint}; known: {', '.join(names)}"


def close_names(word: str, names: Iterable[str]) -> list[str]:
    """The names a misspelt `word` most likely meant: near in spelling, or sharing its start."""
    names = list(names)
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    close += [n for n in names if len(word) >= 3 and n.startswith(word[:3]) and n not in close]
    return close[:3]


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """` (did you mean prompt?)`, or "" when nothing is close."""
    close = close_names(word, names)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _omegaconf_error(exc: BaseException | None) -> OmegaConfBaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OmegaConfBaseException):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def unknown_keys(node: DictConfig, prefix: str = "") -> list[Issue]:
    """Keys under a typed node that its schema has no field for. Hydra's `+key=value` adds a key even to a typed
    node, and OmegaConf's to_object then sets it on the dataclass as an attribute: a typo passed silently. Only
    typed nodes are searched (never `scenes`, nor a free-form mapping), so this costs nothing per scene."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return []
    names = {f.name for f in dataclasses.fields(schema)}
    issues = []
    for key in node:
        child = node._get_node(key)
        if key not in names:
            value = OmegaConf.to_container(child) if isinstance(child, (DictConfig, ListConfig)) else child._value()  # type: ignore[union-attr]
            issues.append(Issue(None, f"{prefix}{key!s}", value, unknown_words(schema, str(key))))  # type: ignore[arg-type]
        elif isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            issues += unknown_keys(child, f"{prefix}{key}.")
    return issues


__all__ = [
    "choice",
    "close_names",
    "did_you_mean",
    "field_type",
    "flag",
    "mapping",
    "merge_issue",
    "number",
    "schema_issue",
    "text",
    "type_words",
    "unknown_keys",
    "unknown_words",
]
