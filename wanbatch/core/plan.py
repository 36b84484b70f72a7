"""Scenes become jobs: canonical parameters, concrete seeds, cache keys and the chain DAG.

The cache key is the sha256 of a canonical JSON document (sorted keys, no whitespace) holding the
backend, the model identity, every render parameter after defaults, the content hash of every local
media input and, for a chained scene, its parent's key. Paths, scene order, comments and the output
directory are not in it, so they cannot change it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wanbatch.av.encode import EncodeSettings
from wanbatch.config.schema import EncodeConfig
from wanbatch.core.backend import Backend, BackendKind
from wanbatch.core.job import Job
from wanbatch.core.price import Price
from wanbatch.core.project import Project
from wanbatch.core.scene import Scene, replace
from wanbatch.errors import ConfigError, Issue

KEY_VERSION = 1  # bump when the meaning of a key changes, so old entries stop matching
SEED_MAX = 2**31 - 1  # every provider takes seeds up to this


@dataclass
class Plan:
    project: Project
    jobs: list[Job]  # in scene order
    backends: dict[str, Backend] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {j.id: j for j in self.jobs}  # job() is called per finished job: keep it O(1)

    def job(self, scene_id: str) -> Job:
        return self._by_id[scene_id]

    def children(self, scene_id: str) -> list[Job]:
        return [j for j in self.jobs if j.parent == scene_id]


def canonical_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def key_of(material: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()[:32]


def resolve_seed(scene: Scene) -> int:
    """A random seed (-1) becomes a concrete one derived from the scene itself, so every rerun of
    the same config gets the same seed without any state; the manifest records it."""
    basis = canonical_json({"id": scene.id, "prompt": scene.prompt, "backend": scene.backend})
    return int(hashlib.sha256(basis.encode()).hexdigest()[:8], 16) % (SEED_MAX + 1)


def topo_order(project: Project) -> list[Scene]:
    """Parents before children; otherwise scene order. Validation has already ruled out cycles."""
    by_id = {s.id: s for s in project.scenes}
    done: set[str] = set()
    out: list[Scene] = []

    def visit(s: Scene) -> None:
        if s.id in done:
            return
        if s.chain_from:
            visit(by_id[s.chain_from])
        done.add(s.id)
        out.append(s)

    for s in project.scenes:
        visit(s)
    return out


def make_plan(project: Project, backends: Mapping[str, Backend], encode: EncodeSettings | None = None) -> Plan:
    """Build every job, or raise ConfigError with every issue found (nothing has been sent or written).

    `backends` holds a built backend for every name in `project.backend_configs` (more are ignored).
    `encode` enters the key of every job whose backend encodes frames itself (all but remote ones,
    whose bytes come from the provider as they are)."""
    encode = encode or EncodeConfig()
    issues: list[Issue] = []
    made = {name: backends[name] for name in project.backend_configs}  # the backends this project uses
    prices: dict[str, Price] = {}
    for name, backend in made.items():
        backend.check_ready(issues)
        where = "backend" if name == project.default_backend else f"backends.{name}"
        prices[name] = Price.parse(backend.config.price_per_second, f"{where}.price_per_second", issues)

    encode_identity = encode.identity()  # the same for every job
    jobs: dict[str, Job] = {}
    for scene in topo_order(project):
        price = prices[scene.backend or project.default_backend]
        backend = made[scene.backend or project.default_backend]
        was_random = scene.seed == -1
        if was_random:
            scene = replace(scene, seed=resolve_seed(scene))
        n_before = len(issues)
        params = backend.prepare(scene, issues, chained=scene.chain_from is not None)
        identity = backend.model_identity(scene)
        if len(issues) > n_before:
            continue
        parent_key = None
        if scene.chain_from:
            parent = jobs.get(scene.chain_from)
            if parent is None:  # the parent itself failed validation; its issues are already listed
                continue
            parent_key = parent.key
        inputs = scene.media()
        material: dict[str, Any] = {
            "v": KEY_VERSION,
            "backend": backend.name,
            "model": identity,
            "params": params,
            "media": {name: m.identity() for name, m in sorted(inputs.items())},
        }
        if parent_key:
            material["media"]["image"] = {"chain": parent_key}
        if backend.kind != BackendKind.REMOTE:
            material["encode"] = dict(encode_identity)
        jobs[scene.id] = Job(
            scene=scene,
            backend=backend.name,
            model=str(identity.get("model", backend.name)),
            params=params,
            inputs=inputs,
            key=key_of(material),
            material=material,
            parent=scene.chain_from,
            seed_was_random=was_random,
            seconds=backend.seconds_of_video(params),
            cost=price.of(backend.seconds_of_video(params), backend.resolution_of(params)),
        )
    if issues:
        raise ConfigError(issues)
    ordered = [jobs[s.id] for s in project.scenes]
    return Plan(project=project, jobs=ordered, backends=made)
