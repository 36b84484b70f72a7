"""What a Ray run reserves, fitted to what the cluster has before anything starts.

A render actor holds its reservation for the whole run; a preview task needs its CPUs free to start. If the
actors hold every CPU, preview tasks wait forever (the demo on a 2-core machine with 2 logical GPUs did:
two actors x 1 CPU, and every preview task asked for 1). So, unless told otherwise, the reservations are
shared out so that every actor and one preview task fit at once::

    task CPUs  = min(1, CPUs / (actors + 1))
    actor CPUs = min(1, (CPUs - task CPUs) / actors)

(2 CPUs, 2 actors: 0.67 each; 16 CPUs: 1 each.) Ray's CPU reservations are scheduling tokens, not limits: an
actor still computes with the threads it is given (`actor_threads`). Remote-API tasks reserve nothing. Values
set in the config are kept as they are, and a set that can never run exits 2 with the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wanbatch.config.schema import RayExecutorConfig
from wanbatch.errors import Issue

EPS = 1e-6


@dataclass(frozen=True)
class Reservations:
    actors: int  # render actors (0 when the plan has no local-model job)
    actor_gpus: float  # each: 1 on a cluster with GPUs, else 0
    actor_cpus: float
    task_cpus: float  # each preview (cpu) task
    cluster_cpus: float
    cluster_gpus: float
    cpu_tasks: bool = True  # whether the plan has preview tasks at all

    @property
    def shared_out(self) -> bool:
        """Whether something that matters here got less than a whole CPU (worth a note)."""
        return (bool(self.actors) and self.actor_cpus < 1.0) or (self.cpu_tasks and self.task_cpus < 1.0)

    def describe(self) -> str:
        parts = []
        if self.actors:
            gpu = "1 GPU + " if self.actor_gpus else ""
            parts.append(f"{self.actors} render actor(s) x ({gpu}{self.actor_cpus:.3g} CPU)")
        if self.cpu_tasks:
            parts.append(f"{self.task_cpus:.3g} CPU per preview task")
        parts.append("none per remote-API task")
        return "; ".join(parts) + f" (cluster: {self.cluster_cpus:g} CPU, {self.cluster_gpus:g} GPU)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "actors": self.actors,
            "actor_gpus": self.actor_gpus,
            "actor_cpus": round(self.actor_cpus, 4),
            "task_cpus": round(self.task_cpus, 4),
            "cluster_cpus": self.cluster_cpus,
            "cluster_gpus": self.cluster_gpus,
        }


def fit(
    cfg: RayExecutorConfig, cluster: Mapping[str, float], *, local_jobs: bool, cpu_jobs: bool
) -> tuple[Reservations | None, list[Issue]]:
    """The reservations for a run of this plan on this cluster, or the issues that make it impossible.

    `cfg` is the executor config (`num_actors`, `actor_num_cpus`, `task_num_cpus`: null means fit them);
    `cluster` is `ray.cluster_resources()`; `local_jobs`/`cpu_jobs`: whether the plan has jobs for render
    actors / preview tasks."""
    cpus = float(cluster.get("CPU", 0.0))
    gpus = float(cluster.get("GPU", 0.0))
    whole_gpus = int(gpus + EPS)
    actors = (int(cfg.num_actors or 0) or max(1, whole_gpus)) if local_jobs else 0
    actor_gpus = 1.0 if whole_gpus >= 1 else 0.0
    issues: list[Issue] = []
    if actors and actor_gpus and actors > whole_gpus:
        issues.append(
            Issue(
                None,
                "executor.num_actors",
                cfg.num_actors,
                f"each render actor takes a whole GPU and the cluster has {gpus:g}: at most {whole_gpus}",
            )
        )
    set_task, set_actor = cfg.task_num_cpus, cfg.actor_num_cpus
    task_cpus = float(set_task) if set_task is not None else min(1.0, cpus / (actors + 1))
    if set_actor is not None:
        actor_cpus = float(set_actor)
    elif actors:
        actor_cpus = max(0.0, min(1.0, (cpus - (task_cpus if cpu_jobs else 0.0)) / actors))
    else:
        actor_cpus = 0.0
    need = actors * actor_cpus + (task_cpus if cpu_jobs else 0.0)
    if cpu_jobs and task_cpus <= EPS and set_task is None:
        issues.append(Issue(None, "executor.num_cpus", cluster.get("CPU"), "a cluster with CPUs for preview tasks"))
    elif need > cpus + EPS:
        said = []
        if actors:
            said.append(f"{actors} render actor(s) x {actor_cpus:g} CPU")
        if cpu_jobs:
            said.append(f"{task_cpus:g} CPU for a preview task")
        field = "executor.actor_num_cpus" if set_actor is not None and actors else "executor.task_num_cpus"
        value = set_actor if field == "executor.actor_num_cpus" else set_task
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # as the user wrote it: the schema's float makes `1` a 1.0
        issues.append(
            Issue(
                None,
                field,
                value,
                f"{' + '.join(said)} = {need:g} CPUs, and the cluster has {cpus:g}: the preview tasks would wait "
                "forever behind the actors. Leave actor_num_cpus and task_num_cpus null (they are then fitted), "
                "lower them, or give the cluster more CPUs (executor.num_cpus for a local Ray)",
            )
        )
    if issues:
        return None, issues
    return Reservations(actors, actor_gpus, actor_cpus, task_cpus, cpus, gpus, cpu_jobs), []
