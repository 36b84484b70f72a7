"""The DAG frontier both executors keep their books in: chains, failed parents, grouping, requeue, cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from wanbatch.core.job import Job
from wanbatch.core.outcome import Outcome
from wanbatch.core.scene import Scene
from wanbatch.execute.frontier import Frontier


def _job(sid: str, index: int, *, backend: str = "preview", model: str = "m", parent: str | None = None) -> Job:
    return Job(
        scene=Scene(id=sid, index=index),
        backend=backend,
        model=model,
        params={},
        inputs={},
        key=f"key-{sid}",
        material={},
        parent=parent,
    )


class _Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[str, str, str]] = []

    def update(self, scene: str, state: str, message: str = "") -> None:
        self.updates.append((scene, state, message))


def _done(job: Job, clip: Path | None = None) -> Outcome:
    return Outcome(job.id, "rendered", job.key, clip=clip or Path(f"/cache/{job.id}.mp4"), model=job.model)


def _failed(job: Job) -> Outcome:
    return Outcome(job.id, "failed", job.key, model=job.model, error="it broke")


def _ids(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


def test_a_chained_job_waits_for_its_parents_clip_and_gets_it():
    a, b, c = _job("a", 0), _job("b", 1, parent="a"), _job("c", 2, parent="b")
    frontier = Frontier([a, b, c])
    assert _ids(frontier.ready()) == ["a"]
    assert frontier.parent_clip(a) is None
    frontier.start(a)
    assert frontier.ready() == [] and not frontier.done  # a is out, b still waits for its clip
    frontier.finish(_done(a, Path("/cache/a-clip.mp4")))
    assert _ids(frontier.ready()) == ["b"]
    assert frontier.parent_clip(b) == Path("/cache/a-clip.mp4")
    frontier.start(b)
    frontier.finish(_done(b))
    frontier.start(c)
    frontier.finish(_done(c))
    assert frontier.done
    assert list(frontier.outcomes) == ["a", "b", "c"]


def test_a_failed_parent_fails_its_whole_chain_with_the_reason():
    a, b, c, d = _job("a", 0), _job("b", 1, parent="a"), _job("c", 2, parent="b"), _job("d", 3)
    seen: list[Outcome] = []
    progress = _Recorder()
    frontier = Frontier([a, b, c, d], progress=progress, on_done=seen.append)
    assert frontier.blocked() == [] and frontier.fail_blocked() == []
    frontier.start(a)
    frontier.finish(_failed(a))
    assert _ids(frontier.blocked()) == ["b"]  # c's parent has not ended: only b is blocked yet
    assert frontier.ready() == [d]  # a child of a failed parent is never ready
    failed = frontier.fail_blocked()
    # the grandchild fails in the same call, naming its own parent
    assert [(o.scene, o.status, o.error) for o in failed] == [
        ("b", "failed", "parent scene `a` did not finish"),
        ("c", "failed", "parent scene `b` did not finish"),
    ]
    assert [o.scene for o in seen] == ["a", "b", "c"]  # every finished job is handed on, once
    assert ("c", "failed", "parent scene `b` did not finish") in progress.updates
    assert frontier.outcomes["c"].key == "key-c" and frontier.outcomes["c"].model == "m"
    assert frontier.ready() == [d] and not frontier.done


def test_a_cancelled_parent_blocks_its_child_too():
    a, b = _job("a", 0), _job("b", 1, parent="a")
    frontier = Frontier([a, b])
    frontier.finish(Outcome("a", "cancelled", a.key, error="cancelled"))  # finished while still waiting
    assert frontier.ready() == []
    assert [o.error for o in frontier.fail_blocked()] == ["parent scene `a` did not finish"]
    assert frontier.done


def test_ready_jobs_come_grouped_by_backend_and_model_then_scene_order():
    jobs = [
        _job("s0", 0, backend="gmi", model="wan21"),
        _job("s1", 1, backend="diffusers", model="14b"),
        _job("s2", 2, backend="gmi", model="wan21"),
        _job("s3", 3, backend="diffusers", model="1.3b"),
        _job("s4", 4, backend="diffusers", model="14b"),
        _job("s5", 5, backend="diffusers", model="1.3b"),
    ]
    frontier = Frontier(reversed(jobs))  # the order given does not matter, the scene index does
    assert _ids(frontier.ready()) == ["s3", "s5", "s1", "s4", "s0", "s2"]


def test_a_requeued_job_waits_again_and_a_retry_goes_first():
    a, b, c = _job("a", 0, model="x"), _job("b", 1, model="y"), _job("c", 2, model="z")
    frontier = Frontier([a, b, c])
    for job in frontier.ready():
        frontier.start(job)
    assert frontier.ready() == [] and set(frontier.running) == {"a", "b", "c"}
    frontier.requeue("b")  # its future was cancelled before it ran: it waits in its usual place
    frontier.requeue("c", first=True)  # its worker died: it is retried before anything else
    assert _ids(frontier.ready()) == ["c", "b"]
    frontier.start(c)
    frontier.finish(_done(c))
    frontier.requeue("a")
    assert _ids(frontier.ready()) == ["a", "b"]  # a retried job that finished has no precedence left
    with pytest.raises(KeyError):
        frontier.requeue("b")  # only a job that is out can be put back


def test_a_waiting_job_can_finish_without_starting():
    a, b = _job("a", 0), _job("b", 1)
    frontier = Frontier([a, b])
    frontier.finish(Outcome("a", "cached", a.key, clip=Path("/cache/a.mp4")))  # a cache hit, found before a worker
    assert "a" not in frontier.pending and frontier.outcomes["a"].ok
    assert frontier.ready() == [b]


def test_cancel_rest_ends_every_job_not_started_and_leaves_those_out():
    a, b, c = _job("a", 0), _job("b", 1, parent="a"), _job("c", 2)
    seen: list[Outcome] = []
    frontier = Frontier([a, b, c], on_done=seen.append)
    frontier.start(a)
    cancelled = frontier.cancel_rest()
    assert [(o.scene, o.status, o.error) for o in cancelled] == [
        ("b", "cancelled", "interrupted before it started"),
        ("c", "cancelled", "interrupted before it started"),
    ]
    assert [o.scene for o in seen] == ["b", "c"]
    assert list(frontier.running) == ["a"] and not frontier.done  # a is the executor's to stop
    frontier.finish(Outcome("a", "cancelled", a.key, error="did not stop in time"))
    assert frontier.done and frontier.outcomes["a"].error == "did not stop in time"


def test_finish_reports_each_outcome_with_its_message():
    a, b = _job("a", 0), _job("b", 1)
    progress = _Recorder()
    frontier = Frontier([a, b], progress=progress)
    frontier.start(a)
    frontier.finish(_done(a))
    frontier.start(b)
    frontier.finish(_failed(b))
    assert progress.updates == [("a", "rendered", ""), ("b", "failed", "it broke")]
