"""A cache that survives its users: prune during runs, a damaged or deleted index, a read-only cache, dry runs
that check what they call cached, repaired blobs repairing earlier runs' clips, leftovers of killed runs,
`wanbatch cache doctor`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wanbatch.cache.store import Cache
from wanbatch.runs.outputs import RunOutputs

from conftest import PROJECT, REPO, CountingPreview, blobs, tree

CLI = [sys.executable, "-m", "wanbatch.cli"]
SCENES = ("title", "sunrise", "day_to_night", "harbour_voice", "harbour_after")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


def _statuses(run_dir: Path) -> dict[str, str]:
    return {s["id"]: s["status"] for s in _manifest(run_dir)["scenes"]}


def _cache_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "cache", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _keys(cache_dir: Path) -> set[str]:
    cache = Cache(cache_dir, readonly=True)
    try:
        return {e["key"] for e in cache.entries()}
    finally:
        cache.close()


class GatedPreview(CountingPreview):
    """The real preview backend; each render of a scene in `gated` waits (at most `limit` s) for `gate`."""

    def __init__(self, config: Any, gated: set[str], limit: float = 120):
        super().__init__(config)
        self.gated, self.limit = gated, limit
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def render(self, job: Any, ctx: Any) -> Any:
        if job.id in self.gated:
            self.waiting.set()
            assert self.gate.wait(self.limit), "the gate was never opened"
        return super().render(job, ctx)


# -- prune while runs go on --------------------------------------------------------------------------------
def test_a_prune_loop_during_a_run_takes_nothing_the_run_uses(compose_demo, run_cfg, cache_dir):
    """`wanbatch cache prune --all` over and over while a run renders: the run finishes with every scene
    done and its film, and every clip it cached or used is still in the cache for the next run."""
    cfg = compose_demo()
    assert run_cfg(compose_demo("stitch.enabled=false"))[0] == 0  # all five cached
    cfg.scenes[1]["seed"] = 99  # sunrise must render; the four others are hits
    preview = GatedPreview(cfg.backend, gated={"sunrise"})
    passes: list[subprocess.CompletedProcess[str]] = []
    stop = threading.Event()

    def prune_loop() -> None:
        while not stop.is_set():
            passes.append(_cache_cli("prune", "--dir", str(cache_dir), "--all", "--yes"))
            if len(passes) >= 2 and preview.waiting.is_set():
                preview.gate.set()  # two whole passes ran while sunrise was rendering: the run may end
                return

    pruner = threading.Thread(target=prune_loop, daemon=True)
    pruner.start()
    try:
        code, run_dir, out = run_cfg(cfg, backends={"preview": preview})
    finally:
        stop.set()
        pruner.join(120)
    assert preview.gate.is_set() and all(p.returncode == 0 for p in passes), [p.stderr for p in passes]
    assert code == 0, out
    assert set(_statuses(run_dir).values()) <= {"rendered", "cached"} and (run_dir / "film.mp4").is_file()
    assert any("kept" in p.stdout and "in use by live runs" in p.stdout for p in passes)
    # Nothing the run used went: the next run is all hits.
    again = CountingPreview(cfg.backend)
    code, run_dir, _ = run_cfg(cfg, backends={"preview": again})
    assert code == 0 and again.rendered == [] and set(_statuses(run_dir).values()) == {"cached"}
    # ... and with no run alive, prune takes everything.
    assert _cache_cli("prune", "--dir", str(cache_dir), "--all", "--yes").returncode == 0
    assert blobs(cache_dir) == [] and _keys(cache_dir) == set()


def test_prune_skips_an_entry_whose_lock_is_held_and_a_live_run_s_partial_blob(tmp_path):
    cache = Cache(tmp_path / "c")
    video = tmp_path / "v.mp4"
    for key in ("held", "free"):
        video.write_bytes(key.encode() * 1000)
        cache.put(key, video, material={"k": key}, meta={"scene_id": key})
    run = cache.register(["some-other-key"])  # a live run, started now
    young = cache.dir / "blobs" / "ab" / ".ab12.999.1.partial"  # a store of that run, in progress
    young.parent.mkdir(exist_ok=True)
    young.write_bytes(b"x")
    old = young.with_name(".ab34.998.1.partial")  # of a run that died an hour before it started
    old.write_bytes(b"y")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    with cache.lock("held"):  # e.g. a run storing it right now
        stats = _prune_from_another_thread(cache)
    assert stats["entries"] == 1 and stats["in_use"] == 1
    assert cache.fetch("held") is not None and cache.fetch("free") is None
    assert young.exists() and not old.exists()
    run.close()
    cache.close()


def _prune_from_another_thread(cache: Cache) -> dict[str, int]:
    """A lock is per open file: held here, another opener (as another process would) cannot take it."""
    got: dict[str, int] = {}
    other = Cache(cache.dir)
    t = threading.Thread(target=lambda: got.update(other.prune(everything=True)))
    t.start()
    t.join(60)
    other.close()
    return got


def test_a_clip_that_vanishes_before_it_is_linked_fails_its_scene_not_the_run(compose_demo, tmp_path):
    from wanbatch.core.outcome import Outcome

    plan = _plan_of(compose_demo())
    outputs = RunOutputs(tmp_path / "run", plan, time.time())
    gone = tmp_path / "gone.mp4"  # a blob deleted from outside between the lookup and the link
    outputs.add(Outcome("sunrise", "cached", plan.job("sunrise").key, clip=gone))  # no exception: the run goes on
    record = outputs.manifest()["scenes"][1]
    assert record["status"] == "failed" and "vanished from the cache" in record["error"]
    assert record["clip"] is None


def _plan_of(cfg: dict[str, Any]) -> Any:
    from wanbatch.backends import build_backends
    from wanbatch.config.load import backend_configs
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project

    project = load_project(cfg, PROJECT.parent, backend_configs(cfg))
    return make_plan(project, build_backends(project.backend_configs))


# -- the index ---------------------------------------------------------------------------------------------
def test_every_blob_has_a_sidecar_that_holds_its_entry(compose_demo, run_cfg, cache_dir):
    from wanbatch.cache import sidecar

    assert run_cfg(compose_demo("stitch.enabled=false"))[0] == 0
    cache = Cache(cache_dir, readonly=True)
    for entry in cache.entries():
        blob = cache_dir / "blobs" / entry["blob"][:2] / f"{entry['blob']}.mp4"
        (car,) = sidecar.of_blob(blob)
        doc = json.loads(car.read_text())
        assert {k: doc[k] for k in ("key", "backend", "created", "size", "scene_id")} == {
            k: entry[k] for k in ("key", "backend", "created", "size", "scene_id")
        }
        assert doc["size"] == blob.stat().st_size and len(doc["material_sha256"]) == 64
        assert sidecar.read(car) == entry
    cache.close()


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_damaged_or_deleted_index_is_rebuilt_and_nothing_on_disk_renders_again(
    compose_demo, run_cfg, cache_dir, damage
):
    cfg = compose_demo()
    assert run_cfg(cfg)[0] == 0
    db = cache_dir / "index" / "cache.db"
    if damage == "truncated":
        with open(db, "r+b") as f:
            f.truncate(4096)
        for side in ("cache.db-wal", "cache.db-shm"):
            (cache_dir / "index" / side).unlink(missing_ok=True)
    else:
        shutil.rmtree(cache_dir / "index")
    # Reading works at once (from the sidecars, writing nothing) ...
    listed = _cache_cli("list", "--dir", str(cache_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    assert {e["scene_id"] for e in json.loads(listed.stdout)} >= set(SCENES)
    assert "read 6 entries from the blobs' sidecars" in listed.stderr
    # ... and the next run rebuilds the index, renders nothing and re-joins no film.
    preview = CountingPreview(cfg.backend)
    code, run_dir, out = run_cfg(cfg, backends={"preview": preview})
    assert code == 0 and preview.rendered == []
    assert set(_statuses(run_dir).values()) == {"cached"}
    assert _manifest(run_dir)["stitch"]["cached"] is True
    assert "rebuilt it from the blobs' sidecars (6 entries)" in out
    if damage == "truncated":
        (aside,) = cache_dir.glob("index.broken-*")
        assert (aside / "cache.db").stat().st_size == 4096  # kept for a look, not deleted
    # `cache why` and `cache prune` work on the rebuilt index.
    assert _cache_cli("prune", "--dir", str(cache_dir), "--older-than", "1d", "--yes").returncode == 0
    assert len(_keys(cache_dir)) == 6


def test_cache_doctor_checks_every_blob_and_rebuilds(compose_demo, run_cfg, cache_dir):
    assert run_cfg(compose_demo("stitch.enabled=false"))[0] == 0
    victim = blobs(cache_dir)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    old_tmp = cache_dir / "tmp" / "job-killed"
    old_tmp.mkdir()
    os.utime(old_tmp, (time.time() - 60, time.time() - 60))
    shutil.rmtree(cache_dir / "index")
    done = _cache_cli("doctor", "--dir", str(cache_dir), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["entries"] == 5 and len(report["dropped"]) == 1
    assert any("the cache index was missing: rebuilt it" in n for n in report["notes"])
    assert any("1 scratch folder(s)" in n for n in report["notes"]) and not old_tmp.exists()
    assert not victim.exists() and len(_keys(cache_dir)) == 4
    again = _cache_cli("doctor", "--dir", str(cache_dir))
    assert again.returncode == 0 and "0 dropped" in again.stdout and "is healthy" in again.stdout


# -- read-only caches and dry runs -------------------------------------------------------------------------
def _as_reader(cmd: list[str]) -> list[str]:
    """Run `cmd` as a user who may not write the cache: nobody, where we are root (root writes anything)."""
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return cmd


@pytest.fixture
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every user can enter (pytest's own temp folders are private to their owner)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="wanbatch-shared-"))
    folder.chmod(0o777)
    yield folder
    subprocess.run(["chmod", "-R", "u+w", str(folder)], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_read_only_cache_serves_dry_runs_and_hits(shared):
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop to a user who may not write the cache")
    cache_dir = shared / "cache"
    base = ["--config-dir", str(PROJECT.parent), "--config-name", "project", f"cache.dir={cache_dir}"]
    run = subprocess.run(
        [*CLI, *base, f"hydra.run.dir={shared / 'first'}"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    subprocess.run(["chmod", "-R", "a-w", str(cache_dir)], check=True)
    before = tree(cache_dir)
    env = {**os.environ, "HOME": str(shared)}

    def reader(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = _as_reader([*CLI, *base, *extra])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)

    dry = reader("dry_run=true", f"hydra.run.dir={shared / 'dry'}")
    assert dry.returncode == 0, dry.stderr
    assert "5 scenes: 5 cached, 0 to render" in dry.stdout
    hits = reader(f"hydra.run.dir={shared / 'hits'}")
    assert hits.returncode == 0, hits.stderr
    assert set(_statuses(shared / "hits").values()) == {"cached"} and (shared / "hits" / "film.mp4").is_file()
    miss = reader("scenes.1.seed=99", f"hydra.run.dir={shared / 'miss'}")
    assert miss.returncode == 2
    assert "`cache.dir` = " in miss.stderr and "read-only here and 1 of 5 scenes are not in it (sunrise)" in miss.stderr
    assert not (shared / "miss" / "clips").exists()
    assert tree(cache_dir) == before  # not a byte written


def test_a_dry_run_checks_the_bytes_of_what_it_calls_cached(compose_demo, run_cfg, cache_dir, monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # the table's rows on one line each
    assert run_cfg(compose_demo("stitch.enabled=false"))[0] == 0
    victim = blobs(cache_dir)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size: only hashing can tell
    victim.write_bytes(bytes(data))
    before = _files(cache_dir)
    code, _, out = run_cfg(compose_demo("dry_run=true"))
    assert code == 0
    assert "4 cached, 1 to render" in out and "blob missing or corrupt: will re-render" in out
    assert _files(cache_dir) == before and victim.read_bytes() == bytes(data)  # seen, left for the run to repair


def _files(cache_dir: Path) -> dict[str, int]:
    """Every file but SQLite's own (a checkpoint by any closing reader rewrites those), with its mtime."""
    return {
        str(p): p.stat().st_mtime_ns
        for p in cache_dir.rglob("*")
        if p.is_file() and p.parent.name not in ("index", "journal")
    }


# -- repair and leftovers ----------------------------------------------------------------------------------
def test_a_repaired_blob_repairs_the_clips_of_earlier_runs(compose_demo, run_cfg, cache_dir):
    cfg = compose_demo("stitch.enabled=false")
    code, first, _ = run_cfg(cfg)
    assert code == 0
    clip = first / next(s["clip"] for s in _manifest(first)["scenes"] if s["id"] == "sunrise")
    good = _sha256(clip)
    with open(clip, "r+b") as f:  # edited in place, e.g. by a player or an editor: the blob goes bad too
        f.seek(clip.stat().st_size // 2)
        f.write(b"\xde\xad\xbe\xef")
    assert _sha256(clip) != good
    preview = CountingPreview(cfg.backend)
    code, second, _ = run_cfg(cfg, backends={"preview": preview})
    assert code == 0 and preview.rendered == ["sunrise"]
    assert _sha256(clip) == good  # the first run's clip is whole again
    assert _sha256(second / next(s["clip"] for s in _manifest(second)["scenes"] if s["id"] == "sunrise")) == good


def test_leftovers_of_killed_runs_are_swept_at_start_and_a_live_run_s_are_kept(compose_demo, run_cfg, cache_dir):
    cfg = compose_demo("stitch.enabled=false")
    assert run_cfg(cfg)[0] == 0
    long_ago = time.time() - 3600
    dead_tmp = cache_dir / "tmp" / "job-dead"
    (dead_tmp / "inputs").mkdir(parents=True)
    (dead_tmp / "clip.mp4").write_bytes(b"x" * 1000)
    dead_partial = blobs(cache_dir)[0].with_name(".deadbeef.1.1.partial")
    dead_partial.write_bytes(b"y" * 1000)
    for p in (dead_tmp, dead_partial):
        os.utime(p, (long_ago, long_ago))
    live = Cache(cache_dir).register(["a-key"])  # another run, alive, that started after those died ...
    live_tmp = cache_dir / "tmp" / "job-live"  # ... and is working here now
    live_tmp.mkdir()
    code, _, out = run_cfg(cfg)
    assert code == 0
    assert "removed what runs that ended left in the cache: 1 scratch folder(s), 1 partial blob(s)" in out
    assert not dead_tmp.exists() and not dead_partial.exists() and live_tmp.exists()
    live.close()


def test_a_store_that_fails_for_lack_of_space_leaves_no_partial_blob(tmp_path, monkeypatch):
    cache = Cache(tmp_path / "c")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"v" * 10_000)
    import shutil as shutil_module

    def full(src: Any, dst: Any, **kw: Any) -> Any:
        Path(dst).write_bytes(b"v" * 100)  # some bytes made it, then the disk was full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil_module, "copyfile", full)
    with pytest.raises(OSError, match="No space left"):
        cache.put("k", video, material={}, meta={})
    assert list((cache.dir / "blobs").rglob("*.partial")) == [] and list((cache.dir / "blobs").rglob("*.json")) == []
    assert cache.fetch("k") is None
    cache.close()


def test_a_database_another_process_is_creating_reads_as_empty(tmp_path):
    """diskcache makes its file, then its table: a run that looks in between (two sweep members starting on one
    cache, a dry run beside a run) found `no such table` and crashed. It finds nothing there, which is so."""
    import sqlite3

    from wanbatch.cache import index

    cache_dir = tmp_path / "cache"
    Cache(cache_dir)  # a cache, its index made
    for folder in (cache_dir / "journal", cache_dir / "index"):
        folder.mkdir(exist_ok=True)
        (folder / index.DB_FILE).unlink(missing_ok=True)
        sqlite3.connect(folder / index.DB_FILE).close()  # the file, no table yet
    ro = Cache(cache_dir, readonly=True)
    assert ro.journal_entry("0" * 32) is None
    assert ro.peek("0" * 32) is None and list(ro.entries()) == []
    journal = index.ReadOnlyIndex(cache_dir / "journal")
    assert journal.get("k", "none") == "none" and list(journal.iterkeys()) == []
