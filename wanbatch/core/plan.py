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
from wanbatch.core.job import Job, take_id
from wanbatch.core.price import Price
from wanbatch.core.project import Project
from wanbatch.core.scene import Scene, replace
from wanbatch.errors import ConfigError, Issue

KEY_VERSION = 1  # bump when the meaning of a key changes, so old entries stop matching
SEED_MAX = 2**31 - 1  # every provider takes seeds up to this


@dataclass
class Plan:
    project: Project
    jobs: list[Job]  # in scene order, a scene's takes in take order
    backends: dict[str, Backend] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {j.id: j for j in self.jobs}  # job() is called per finished job: keep it O(1)
        self.film_jobs = [j for j in self.jobs if j.picked]  # one per scene: the take in the film

    def job(self, job_id: str) -> Job:
        """A job by its id: the scene id, or `scene#k` for take k of a scene with several takes."""
        return self._by_id[job_id]

    def takes_of(self, scene_id: str) -> list[Job]:
        return [j for j in self.jobs if j.scene.id == scene_id]

    def children(self, scene_id: str) -> list[Job]:
        return [j for j in self.jobs if j.scene.chain_from == scene_id]


def canonical_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def key_of(material: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()[:32]


def resolve_seed(scene: Scene) -> int:
    """A random seed (-1) becomes a concrete one derived from the scene itself, so every rerun of
    the same config gets the same seed without any state; the manifest records it."""
    basis = canonical_json({"id": scene.id, "prompt": scene.prompt, "backend": scene.backend})
    return int(hashlib.sha256(basis.encode()).hexdigest()[:8], 16) % (SEED_MAX + 1)


def take_seeds(scene: Scene) -> list[int]:
    """The seed of each take: the listed `seeds`, else seed, seed+1, ... (past SEED_MAX it wraps to 0, so
    every take stays within what every provider takes). `scene.seed` is concrete here (not -1)."""
    if scene.seeds:
        return list(scene.seeds)
    if scene.takes == 1:
        return [scene.seed]
    return [(scene.seed + k) % (SEED_MAX + 1) for k in range(scene.takes)]


def keep_take(scene: Scene, take: int, seed: int) -> dict[str, str]:
    """The Hydra overrides that make one take of `scene` permanent: `pick` keeps every take and puts this
    one in the film (nothing renders); `seed` keeps only this take, whose cache entry it is (nothing renders
    either). A field the scene does not set itself is added (`+`)."""

    def set_(name: str, value: Any) -> str:
        shown = f"[{', '.join(map(str, value))}]" if isinstance(value, (list, tuple)) else value
        return f"{'' if name in scene.declared else '+'}scenes.{scene.index}.{name}={shown}"

    only = [set_("seeds", [seed]) if scene.seeds else set_("seed", seed)]
    if scene.takes != 1 and not (scene.seeds and "takes" not in scene.declared):
        only.append(set_("takes", 1))
    if scene.pick != 1:
        only.append(set_("pick", 1))
    return {"pick": set_("pick", take), "seed": " ".join(only)}


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

    encode_identity = encode.identity()  # the same for every job: computed once per plan, not per job
    jobs: dict[str, Job] = {}  # by job id (a scene's id, or `scene#k` for its take k)
    picked: dict[str, Job] = {}  # by scene id: the take in the film, which a chained scene starts from
    found: list[Issue] = []
    for scene in topo_order(project):
        price = prices[scene.backend or project.default_backend]
        backend = made[scene.backend or project.default_backend]
        was_random = scene.seed == -1 and not scene.seeds
        if was_random:
            scene = replace(scene, seed=resolve_seed(scene))
        parent: Job | None = None
        if scene.chain_from:
            parent = picked.get(scene.chain_from)
            if parent is None:  # the parent itself failed validation; its issues are already listed
                continue
        seeds = take_seeds(scene)
        for take, seed in enumerate(seeds, 1):
            # Each take is the scene with its own seed, planned and keyed as if it were the only take: adding a
            # take renders only the new one, and keeping one take (`keep_take`) finds it in the cache. Takes
            # differ in their seed alone, so a later take reports only the issues the first did not.
            take_scene = scene if seed == scene.seed else replace(scene, seed=seed)  # replace() costs ~10 us
            found.clear()  # one list for every job: fewer objects for the garbage collector to count
            job = _job(take_scene, backend, price, encode_identity, parent, found, take=take, takes=len(seeds))
            if found:
                issues.extend(i for i in found if take == 1 or i not in issues)
            if job is None:
                break
            job.seed_was_random = was_random
            jobs[job.id] = job
            if job.picked:
                picked[scene.id] = job
    if any(s.takes > 1 for s in project.scenes):
        _check_take_ids(project, issues)
    if issues:
        raise ConfigError(issues)
    ordered = list(jobs.values())  # in the order they were planned: parents before their chained scenes
    if any(s.chain_from for s in project.scenes):
        ordered.sort(key=lambda j: (j.scene.index, j.take))  # back to scene order
    return Plan(project=project, jobs=ordered, backends=made)


def _job(
    scene: Scene,
    backend: Backend,
    price: Price,
    encode_identity: Mapping[str, Any],
    parent: Job | None,
    issues: list[Issue],
    *,
    take: int = 1,
    takes: int = 1,
) -> Job | None:
    """One job (take `take` of `takes`): the backend's canonical parameters for `scene` and the key they hash
    to; None (with issues) where the backend cannot honour the scene."""
    n_before = len(issues)
    params = backend.prepare(scene, issues, chained=scene.chain_from is not None)
    identity = backend.model_identity(scene)
    if len(issues) > n_before:
        return None
    inputs = scene.media()
    seconds = backend.seconds_of_video(params)
    material: dict[str, Any] = {
        "v": KEY_VERSION,
        "backend": backend.name,
        "model": identity,
        "params": params,
        "media": {name: m.identity() for name, m in sorted(inputs.items())},
    }
    if parent is not None:
        material["media"]["image"] = {"chain": parent.key}
    if backend.kind != BackendKind.REMOTE:
        material["encode"] = dict(encode_identity)  # a copy: each job's material is its own
    return Job(
        scene=scene,
        backend=backend.name,
        model=str(identity.get("model", backend.name)),
        params=params,
        inputs=inputs,
        key=key_of(material),
        material=material,
        parent=parent.id if parent is not None else None,
        seconds=seconds,
        cost=price.of(seconds, backend.resolution_of(params)),
        take=take,
        takes=takes,
        picked=take == scene.pick,
    )


def _check_take_ids(project: Project, issues: list[Issue]) -> None:
    """A take's id (`scene#2`) must not be another scene's id: job ids name clips, progress and manifest rows."""
    ids = {s.id for s in project.scenes}
    for scene in project.scenes:
        for k in range(1, scene.takes + 1) if scene.takes > 1 else ():
            if (tid := take_id(scene.id, k, scene.takes)) in ids:
                issues.append(Issue(tid, "id", tid, f"an id that is not the name of a take of scene `{scene.id}`"))
