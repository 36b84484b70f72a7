"""From a composed config to a validated Project: every scene typed, every media file inspected.

Everything here runs before any render, request or cache write; every problem found is reported
together in one ConfigError (exit 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from wanbatch.config.backends import BackendConfig
from wanbatch.config.checks import number
from wanbatch.config.schema import SoundtrackConfig, WanbatchConfig
from wanbatch.core.media import Checks, Media, inspect_local, is_url, remote
from wanbatch.core.names import NAME_RULE, id_problem
from wanbatch.core.scene import MEDIA_FIELDS, Scene, parse_fields
from wanbatch.core.scene_file import read_scene_rows
from wanbatch.errors import ConfigError, Issue
from wanbatch.secrets import holds_secret, redact

SOUNDTRACK_KEYS = {f.name for f in fields(SoundtrackConfig)}


@dataclass(frozen=True)
class Soundtrack:
    """Music laid under the whole film; `duck` is its volume while a scene has its own audio."""

    media: Media
    volume: float
    duck: float


@dataclass
class Project:
    name: str
    root: Path  # folder of the project file: media paths are relative to it
    scenes: list[Scene]
    default_backend: str
    backend_configs: dict[str, BackendConfig] = field(default_factory=dict)
    soundtrack: Soundtrack | None = None

    def scene(self, scene_id: str) -> Scene:
        return next(s for s in self.scenes if s.id == scene_id)


def load_project(
    cfg: WanbatchConfig,
    root: Path,
    backend_configs: Mapping[str, BackendConfig],
    *,
    checks: Checks | None = None,
) -> Project:
    """Validate a composed config into a Project: its keys and types are the schema's already, its scenes are
    checked here. `backend_configs` holds the config of every known backend by name (the default backend's
    already merged with CLI overrides); its names are the backends a scene may ask for. `checks`: media files
    found whole by earlier runs (see wanbatch.core.media.inspect_local)."""
    issues: list[Issue] = []
    proj = cfg.project
    name = str(proj.name or root.name)
    if (bad_name := project_name_issue(proj.name)) is not None:
        issues.append(bad_name)
    defaults_raw = proj.defaults or {}
    if not isinstance(defaults_raw, dict):
        issues.append(Issue(None, "project.defaults", defaults_raw, "a mapping of scene fields"))
        defaults_raw = {}
    if "id" in defaults_raw or "chain_from" in defaults_raw:
        issues.append(Issue(None, "project.defaults", defaults_raw, "scene defaults cannot set `id` or `chain_from`"))
    defaults = parse_fields(defaults_raw, None, issues, prefix="project.defaults.")

    default_backend = cfg.backend.name
    raw_scenes = cfg.scenes
    if not isinstance(raw_scenes, list):
        issues.append(Issue(None, "scenes", raw_scenes, "a list of scenes"))
        raw_scenes = []
    rows: list[tuple[Any, str | None]] = [(raw, None) for raw in raw_scenes]
    if cfg.scenes_file:
        shown = str(cfg.scenes_file)
        found = read_scene_rows((root / shown).expanduser(), shown, issues)
        file_name = Path(shown).name
        rows += [(raw, f"{file_name} line {line}") for line, raw in found]
    if not rows and not any(i.field == "scenes_file" for i in issues):
        issues.append(Issue(None, "scenes", raw_scenes, "a non-empty list of scenes (or a `scenes_file`)"))

    _refuse_secrets(
        {"name": proj.name, "defaults": proj.defaults, "soundtrack": proj.soundtrack}, "project.", None, issues
    )
    known_backends = frozenset(backend_configs)
    media_memo: dict[tuple[str, str], Media | str] = {}
    scenes: list[Scene] = []
    seen: dict[str, int] = {}
    duplicates: set[str] = set()
    for i, (raw, where) in enumerate(rows):
        if not isinstance(raw, dict):
            at = f"scenes.{i}" if where is None else "scene"
            issues.append(Issue(f"#{i}", at, raw, "a mapping of scene fields", where))
            continue
        n_before = len(issues)
        sid = raw.get("id")
        if not isinstance(sid, str) or not sid.strip():
            sid = f"scene{i + 1:02d}"
        elif problem := id_problem(sid):
            # The id is not shown as the scene's name: it may hold a newline or a terminal escape.
            issues.append(Issue(f"#{i}", "id", sid, problem))
            sid = f"#{i}"
        if sid in seen:
            duplicates.add(sid)
            issues.append(Issue(sid, f"scenes.{i}.id", sid, f"a unique id: it duplicates the id of scenes.{seen[sid]}"))
        else:
            seen[sid] = i
        _refuse_secrets(raw, "", sid, issues)
        own = parse_fields(raw, sid, issues)
        fields = {**_defaults_for(own, defaults), **own}
        fields["id"] = sid
        _check_takes(sid, fields, issues)
        fields["declared"] = tuple(own)  # a tuple of str: the garbage collector stops counting it
        for mf in MEDIA_FIELDS:
            if mf in fields:
                got = _resolve_media(sid, mf, fields[mf], root, media_memo, issues, checks)
                if got is None:
                    del fields[mf]
                else:
                    fields[mf] = got
        backend = fields.get("backend", default_backend)
        if backend not in known_backends:
            issues.append(Issue(sid, "backend", backend, f"one of {', '.join(sorted(known_backends))}"))
        fields["backend"] = backend
        if where is not None and len(issues) > n_before:  # say where in the file, so it can be found
            issues[n_before:] = [dataclasses.replace(x, where=where) for x in issues[n_before:]]
        scenes.append(Scene(index=i, **fields))

    # A chain through a duplicated id cannot be told apart (which `quay`?): the duplicate is the issue then.
    _check_chains([s for s in scenes if s.id not in duplicates and s.chain_from not in duplicates], issues)
    soundtrack = _soundtrack(proj.soundtrack, root, media_memo, issues, checks)

    used = sorted({s.backend for s in scenes if s.backend in known_backends} | {default_backend} & known_backends)
    configs = {b: backend_configs[b] for b in used}
    if issues:
        raise ConfigError(issues)
    return Project(
        name=name,
        root=root,
        scenes=scenes,
        default_backend=default_backend,
        backend_configs=configs,
        soundtrack=soundtrack,
    )


def project_name_issue(declared: Any) -> Issue | None:
    """The issue with a declared `project.name`, if any. It names the run's folder (outputs/<name>/...):
    `../..` put a run, and its index.html, in another folder."""
    if declared is None:
        return None
    rule = f"a project name is {NAME_RULE}"
    problem = id_problem(declared, rule) if isinstance(declared, str) else rule
    return Issue(None, "project.name", declared, problem) if problem else None


def _refuse_secrets(fields: Mapping[str, Any], prefix: str, sid: str | None, issues: list[Issue]) -> None:
    """A scene's text is sent to the provider and written into the manifest, the report and the cache: one
    holding an API key or another credential (`${oc.env:GMI_API_KEY}` in a prompt) is refused, not sent."""
    for key, value in fields.items():
        if isinstance(value, Mapping):
            _refuse_secrets(value, f"{prefix}{key}.", sid, issues)
        elif isinstance(value, (list, tuple)):
            _refuse_secrets({str(i): v for i, v in enumerate(value)}, f"{prefix}{key}.", sid, issues)
        elif isinstance(value, str) and holds_secret(value):
            issues.append(
                Issue(
                    sid,
                    f"{prefix}{key}",
                    redact(value),
                    "text without an API key or credential: scene fields are sent to the provider and written "
                    "into the manifest, the report and the cache; a backend reads its key only from the "
                    "environment variable it names",
                )
            )


# Fields that say the same thing two ways: a scene that sets one side overrides the defaults' other side,
# so `num_frames: 33` in a scene is not a conflict with a project-wide `duration: 5`.
ALTERNATIVES = ({"duration"}, {"num_frames"}), ({"resolution"}, {"width", "height"}), ({"seed"}, {"seeds"})


def _defaults_for(own: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    if not out:
        return out
    for a, b in ALTERNATIVES:  # per scene: isdisjoint builds no set
        if not a.isdisjoint(own):
            for k in b:
                out.pop(k, None)
        elif not b.isdisjoint(own):
            for k in a:
                out.pop(k, None)
    return out


def _check_takes(sid: str, fields: dict[str, Any], issues: list[Issue]) -> None:
    """`takes`, `pick` and `seeds` agree (after defaults): `takes` defaults to the number of `seeds`, and
    `pick` names one of the takes."""
    seeds = fields.get("seeds")
    if seeds is not None and "seed" in fields:
        allowed = "unset when `seed` is set: the takes get seed, seed+1, ... or the listed seeds"
        issues.append(Issue(sid, "seeds", list(seeds), allowed))
    takes = fields.get("takes")
    if seeds is not None:
        if takes is not None and takes != len(seeds):
            issues.append(Issue(sid, "takes", takes, f"{len(seeds)}, one take per listed seed (or leave it unset)"))
        fields["takes"] = takes = len(seeds)
    pick = fields.get("pick")
    if pick is not None and pick > (takes or 1):
        issues.append(Issue(sid, "pick", pick, f"a take from 1 to {takes or 1} (the scene has {takes or 1})"))


def _resolve_media(
    sid: str | None,
    field_name: str,
    value: str,
    root: Path,
    memo: dict[tuple[str, str], Media | str],
    issues: list[Issue],
    checks: Checks | None,
) -> Media | None:
    if is_url(value):
        return remote(field_name, value)
    path = (root / value).expanduser()
    memo_key = (field_name, str(path))
    if memo_key not in memo:
        try:
            memo[memo_key] = inspect_local(field_name, path, checks)
        except ValueError as exc:
            memo[memo_key] = str(exc)
    got = memo[memo_key]
    if isinstance(got, str):
        kind = {"image": "an image", "last_image": "an image", "audio": "an audio file", "first_clip": "a video"}
        issues.append(
            Issue(
                sid,
                field_name,
                value,
                f"{kind.get(field_name, 'a media file')} that exists and is readable (looked at {path}: {got})",
            )
        )
        return None
    return got


def _check_chains(scenes: list[Scene], issues: list[Issue]) -> None:
    ids = {s.id for s in scenes}
    parent = {s.id: s.chain_from for s in scenes if s.chain_from}
    for s in scenes:
        if s.chain_from is None:
            continue
        if s.chain_from == s.id:
            issues.append(Issue(s.id, "chain_from", s.chain_from, "the id of another scene (not itself)"))
        elif s.chain_from not in ids:
            issues.append(
                Issue(s.id, "chain_from", s.chain_from, f"the id of a scene in this project: {', '.join(sorted(ids))}")
            )
        elif s.image is not None:
            issues.append(Issue(s.id, "image", s.image.describe(), "unset: `chain_from` provides the first frame"))
    reported: set[str] = set()
    for s in scenes:
        seen: list[str] = []
        cur: str | None = s.id
        while cur is not None and cur in parent and cur not in seen:
            seen.append(cur)
            cur = parent[cur]
        if cur is not None and cur in seen and cur not in reported:
            cycle = seen[seen.index(cur) :]
            reported.update(cycle)
            issues.append(
                Issue(
                    s.id,
                    "chain_from",
                    s.chain_from,
                    f"an acyclic chain; these scenes form a cycle: {' -> '.join([*cycle, cur])}",
                )
            )


def _soundtrack(
    raw: Any, root: Path, memo: dict[tuple[str, str], Media | str], issues: list[Issue], checks: Checks | None
) -> Soundtrack | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"path": raw}
    if not isinstance(raw, dict) or "path" not in raw or set(raw) - SOUNDTRACK_KEYS:
        issues.append(Issue(None, "project.soundtrack", raw, "a path, or {path, volume (0-1), duck (0-1)}"))
        return None
    given = {k: v for k, v in raw.items() if v is not None}
    st = SoundtrackConfig(**{**given, "path": str(raw["path"])})
    ok = True
    for key in ("volume", "duck"):
        ok = number(issues, f"project.soundtrack.{key}", getattr(st, key), minimum=0, maximum=1) and ok
    media = _resolve_media(None, "audio", st.path, root, memo, issues, checks)
    if media is None or not ok:
        return None
    if not media.is_local:
        issues.append(Issue(None, "project.soundtrack.path", raw["path"], "a local audio file"))
        return None
    return Soundtrack(media, float(st.volume), float(st.duck))
