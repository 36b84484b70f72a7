"""A project's `scenes:` kept out of Hydra's composition, so a 10k-scene project composes in milliseconds.

Hydra reads a config file with PyYAML's Python parser and makes an OmegaConf node of every value: about half a
millisecond per scene, and the console script composed twice (Hydra's `get_mode`, then the run). Here the
project file is read once, on libyaml (`fastyaml`), and Hydra is handed the file without its scenes, but for
the ones it must see:

- every scene an override names (`scenes.3.seed=5`, `+scenes.0.resolution=720P`, `~scenes.2`, and each such
  key of a `-m` sweep), so Hydra applies overrides, sweeps and their errors exactly as before;
- every scene holding an `${...}` interpolation, so OmegaConf resolves it as before.

Those travel as a mapping keyed by the scene's index (`scenes: {"3": {...}}`: the same dotted paths reach
them), and `ScenesApart.merged` puts the list back together: each scene Hydra saw, as Hydra left it (one it
deleted is gone), every other one as written. The project keeps the list as written when an override replaces
`scenes` as a whole, or an interpolation elsewhere reads from it: then Hydra composes it all, as before.

Hydra reads files through a `ConfigSource` per URL scheme; `apart()` puts one in for `file://` that reads the
project file this way and every other file as Hydra does, and takes it out again afterwards. Example::

    with apart(Path("big/project.yaml"), ["scenes.3.seed=5"]) as scenes:
        cfg = compose(...)                    # Hydra's composition; cfg.scenes == {"3": {..., "seed": 5}}
    cfg.scenes = scenes.merged(cfg.scenes)    # the whole list, scene 3 with seed 5
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wanbatch.config.fastyaml import load_text
from wanbatch.errors import ConfigError, Issue

_SCENE_KEY = re.compile(r"^scenes(?:\.(\d+))?(?:\.|$)")
#: the config groups of conf/: a project whose defaults list names only these (and itself) cannot set hydra.mode
GROUPS = ("backend", "cache", "executor", "stitch", "encode")


def scenes_named(overrides: Sequence[str]) -> set[int] | None:
    """The indices of the scenes `overrides` name, or None when one names `scenes` itself (`scenes=[...]`)."""
    named: set[int] = set()
    for o in overrides:
        key = o.lstrip("~+").split("=", 1)[0].strip()
        m = _SCENE_KEY.match(key)
        if m is None:
            continue
        if m.group(1) is None:
            return None
        named.add(int(m.group(1)))
    return named


def _interpolates(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(_interpolates(v) for v in value.values())
    if isinstance(value, list):
        return any(_interpolates(v) for v in value)
    return False


class ScenesApart:
    """What was kept out of Hydra for one project file, and how to put it back."""

    def __init__(self, project_file: Path, overrides: Sequence[str]):
        self.file = Path(os.path.realpath(project_file))
        self.named = scenes_named(overrides)
        self.raw: list[Any] | None = None  # the scenes as written; None while nothing was taken apart
        self.shown: set[int] = set()  # the indices Hydra was given
        self._data: dict[str, Any] | None = None

    def read(self, text: str) -> dict[str, Any] | None:
        """The project file's data with its scenes apart, or None to let Hydra read it as usual."""
        if self._data is None:
            data = load_text(text)
            if not isinstance(data, dict) or self.named is None:
                return None
            scenes = data.get("scenes")
            rest = {k: v for k, v in data.items() if k != "scenes"}
            if not isinstance(scenes, list) or ("scenes" in str(rest) and _interpolates(rest)):
                return None
            self.raw = scenes
            self.shown = {i for i, s in enumerate(scenes) if i in self.named or _interpolates(s)}
            self._data = data
        assert self.raw is not None
        # Built anew for each composition (a sweep composes once per member; OmegaConf copies what it is given)
        return {**self._data, "scenes": {str(i): self.raw[i] for i in sorted(self.shown)}}

    @property
    def active(self) -> bool:
        return self.raw is not None

    def merged(self, composed: Any) -> list[Any]:
        """The whole scene list from what Hydra composed (`cfg.scenes`, as plain data)."""
        if self.raw is None:
            return list(composed) if isinstance(composed, list) else composed
        if not isinstance(composed, dict):  # a config group replaced the list as a whole: Hydra's word stands
            return composed  # type: ignore[no-any-return]
        extra = sorted(k for k in composed if not (str(k).isdigit() and int(k) < len(self.raw)))
        if extra:
            n, key, value = len(self.raw), f"scenes.{extra[0]}", composed[extra[0]]
            if isinstance(value, dict) and len(value) == 1:  # one field set (`scenes.5.seed=1`): named as typed
                field, value = next(iter(value.items()))
                key = f"{key}.{field}"
            there = (
                f"this project has {n} scene{'s' if n != 1 else ''}, scenes.0 to scenes.{n - 1}"
                if n
                else ("this project has no scene at that index")
            )
            raise ConfigError([Issue(None, key, value, f"the index of a scene: {there} (counted from 0)")])
        out: list[Any] = []
        for i, scene in enumerate(self.raw):
            if i in self.shown:
                if str(i) in composed:  # else an override deleted it (`~scenes.3`)
                    out.append(composed[str(i)])
            else:
                out.append(dict(scene) if isinstance(scene, dict) else scene)  # the caller may edit its copy
        return out

    def mode(self, overrides: Sequence[str]) -> Any:
        """`hydra.mode` without composing, when the overrides and this file settle it: from a `hydra.mode=`
        override, else the file's `hydra.mode`, as long as its defaults list names only wanbatch's own groups
        (else another config could set it). `...` when it cannot be told here."""
        from hydra.types import RunMode

        for o in reversed(overrides):
            key, eq, value = o.lstrip("+").partition("=")
            if eq and key == "hydra.mode":
                return RunMode[value] if value in RunMode.__members__ else ...
        if self._data is None:
            return ...
        for entry in self._data.get("defaults") or []:
            if isinstance(entry, str) and entry in ("wanbatch", "_self_"):
                continue
            if isinstance(entry, dict) and all(str(k).removeprefix("override ") in GROUPS for k in entry):
                continue
            return ...
        hydra = self._data.get("hydra")
        given = hydra.get("mode") if isinstance(hydra, dict) else None
        if given is None:
            return None
        return RunMode[given] if given in RunMode.__members__ else ...


@contextlib.contextmanager
def apart(project_file: Path, overrides: Sequence[str], *, compose_once: bool = False) -> Iterator[ScenesApart]:
    """For the `with` block, Hydra reads `project_file` with its scenes apart (see the module's doc); with
    `compose_once`, Hydra's `get_mode` takes the mode from `ScenesApart.mode` instead of composing the whole
    config for it (when it cannot be told that way, Hydra composes for it as before)."""
    scenes = ScenesApart(project_file, overrides)
    try:
        from hydra._internal.core_plugins.file_config_source import FileConfigSource
        from hydra._internal.hydra import Hydra
        from hydra._internal.sources_registry import SourcesRegistry
        from hydra.core.plugins import Plugins
        from hydra.plugins.config_source import ConfigResult, ConfigSource
    except ImportError:  # another Hydra: it composes everything, as it always did
        yield scenes
        return

    class ProjectFileSource(FileConfigSource):
        def load_config(self, config_path: str) -> ConfigResult:
            full = os.path.realpath(os.path.join(self.path, self._normalize_file_name(config_path)))
            if full != str(scenes.file):
                return super().load_config(config_path)
            with open(full, encoding="utf-8") as f:
                text = f.read()
            data = scenes.read(text)
            if data is None:
                return super().load_config(config_path)
            from omegaconf import OmegaConf

            return ConfigResult(
                config=OmegaConf.create(data),
                path=f"{self.scheme()}://{self.path}",
                provider=self.provider,
                header=ConfigSource._get_header_dict(text[:512]),
            )

    def get_mode(hydra: Any, config_name: str | None, overrides: list[str]) -> Any:
        if not scenes.active:  # read the project file now, as the run will (it is the primary config)
            with contextlib.suppress(Exception):
                hydra.config_loader.repository.load_config(config_name)
        mode = scenes.mode(overrides)
        return original_get_mode(hydra, config_name, overrides) if mode is ... else mode

    Plugins.instance()  # registers Hydra's own sources first, so ours is not overwritten by them
    registry = SourcesRegistry.instance()
    previous = registry.types.get("file")
    original_get_mode = Hydra.get_mode
    registry.types["file"] = ProjectFileSource
    if compose_once:
        Hydra.get_mode = get_mode  # type: ignore[method-assign,assignment]
    try:
        yield scenes
    finally:
        if previous is not None:
            registry.types["file"] = previous
        Hydra.get_mode = original_get_mode  # type: ignore[method-assign]


__all__ = ["GROUPS", "ScenesApart", "apart", "scenes_named"]
