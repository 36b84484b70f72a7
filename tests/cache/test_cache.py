"""The cache: verified reads, repair of corrupt blobs, two processes at once, list / why / prune."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from wanbatch.cache.store import Cache

from conftest import PROJECT, REPO, CountingPreview, blobs


def _statuses(run_dir: Path) -> dict[str, str]:
    return {s["id"]: s["status"] for s in json.loads((run_dir / "manifest.json").read_text())["scenes"]}


def test_put_fetch_roundtrip_is_verified(tmp_path):
    cache = Cache(tmp_path / "c")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    hit = cache.put("k1", video, material={"params": {"seed": 1}}, meta={"scene_id": "s"})
    assert hit.path.read_bytes() == video.read_bytes()
    got = cache.fetch("k1")
    assert got is not None and got.path == hit.path and got.entry["material"] == {"params": {"seed": 1}}
    assert cache.fetch("other") is None


def _clip(path: Path) -> Path:
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    return path


def test_a_render_in_its_workdir_is_taken_into_the_cache_not_written_again(tmp_path):
    cache = Cache(tmp_path / "c")
    with cache.workdir() as workdir:
        video = _clip(workdir / "clip.mp4")
        data = video.read_bytes()
        hit = cache.put("k1", video, material={"params": {"seed": 1}}, meta={"scene_id": "s"}, take=True)
        assert hit.path.samefile(video)  # the same file, linked into the store: no second copy
    got = cache.fetch("k1")  # the workdir is gone, the blob stays; verified: every byte hashed again
    assert got is not None and got.path.read_bytes() == data
    # Not taken (a video wanbatch does not own): copied, and left where it was
    mine = _clip(tmp_path / "mine.mp4")
    hit = cache.put("k2", mine, material={"params": {"seed": 2}}, meta={"scene_id": "t"})
    assert mine.exists() and hit.path.stat().st_ino != mine.stat().st_ino
    assert hit.path.read_bytes() == mine.read_bytes()
    # Taken, but another path reaches the file (a backend that linked a user's file as its output): copied, as
    # an edit through that path would change the blob
    with cache.workdir() as workdir:
        users = _clip(tmp_path / "users.mp4")
        os.link(users, workdir / "clip.mp4")
        hit = cache.put("k3", workdir / "clip.mp4", material={"params": {"seed": 3}}, meta={"scene_id": "u"}, take=True)
        assert not hit.path.samefile(users) and hit.path.read_bytes() == users.read_bytes()


def test_a_taken_render_the_cache_already_holds_or_on_another_filesystem_is_stored_all_the_same(tmp_path):
    cache = Cache(tmp_path / "c")
    first = cache.put("k1", _clip(tmp_path / "a.mp4"), material={"params": {"seed": 1}}, meta={"scene_id": "s"})
    with cache.workdir() as workdir:  # the same bytes again, for another key: the stored blob is kept
        same = workdir / "clip.mp4"
        same.write_bytes(first.path.read_bytes())
        hit = cache.put("k2", same, material={"params": {"seed": 2}}, meta={"scene_id": "t"}, take=True)
    assert hit.path == first.path and cache.fetch("k1") is not None and cache.fetch("k2") is not None
    other_fs = Path("/dev/shm")
    if not other_fs.is_dir() or other_fs.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) on this machine to take a render from")
    elsewhere = _clip(Path(tempfile.mkdtemp(dir=other_fs)) / "clip.mp4")
    data = elsewhere.read_bytes()
    try:
        hit = cache.put("k3", elsewhere, material={"params": {"seed": 3}}, meta={"scene_id": "u"}, take=True)
    finally:
        shutil.rmtree(elsewhere.parent)
    got = cache.fetch("k3")
    assert got is not None and got.path.read_bytes() == data and not list(hit.path.parent.glob(".*partial"))


def test_a_run_takes_each_render_and_its_film_into_the_cache(compose_demo, run_cfg, cache_dir, monkeypatch):
    from wanbatch.film import stitch

    made: dict[str, int] = {}

    class Recording(CountingPreview):
        def render(self, job, ctx):  # type: ignore[no-untyped-def]
            result = super().render(job, ctx)
            made[job.key] = result.video.stat().st_ino
            return result

    def recording_stitch(clips, out, **kw):  # type: ignore[no-untyped-def]
        result = join(clips, out, **kw)
        made["film"] = out.stat().st_ino
        return result

    join = stitch.stitch_film
    monkeypatch.setattr(stitch, "stitch_film", recording_stitch)
    cfg = compose_demo()
    code, run_dir, _ = run_cfg(cfg, backends={"preview": Recording(cfg.backend)})
    assert code == 0
    cache = Cache(cache_dir)
    film_key = json.loads((run_dir / "manifest.json").read_text())["stitch"]["cache_key"]
    keys = {**{k: k for k in made if k != "film"}, "film": film_key}
    stored = {name: hit.path.stat().st_ino for name, key in keys.items() if (hit := cache.fetch(key)) is not None}
    assert len(made) > 2 and stored == made  # every clip and the film: the very files made, not copies
    assert (run_dir / "film.mp4").stat().st_ino == made["film"]


def test_the_index_and_the_journal_never_evict_an_entry(tmp_path):
    """diskcache evicts by default (the least recently stored entries) once its database passes a size limit,
    1 GiB as shipped: an evicted index entry is a render paid for again, an evicted journal entry a request id
    lost. Databases made with a limit this small (as a big cache passes 1 GiB) keep every entry all the same."""
    import diskcache

    for db in ("index", "journal"):  # made as an earlier wanbatch made them, their limit already passed
        diskcache.Cache(str(tmp_path / "c" / db), size_limit=4096).close()
    cache = Cache(tmp_path / "c")
    video = tmp_path / "v.mp4"
    for i in range(30):
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
        cache.put(f"k{i}", video, material={"params": {"seed": i}, "prompt": "x" * 2000}, meta={"scene_id": f"s{i}"})
        cache.journal.record(f"r{i}", request_id=f"req-{i}", state="submitted", payload_summary={"p": "y" * 2000})
    assert [k for k in (f"k{i}" for i in range(30)) if cache.fetch(k) is None] == []
    assert [i for i in range(30) if (cache.journal.get(f"r{i}") or {}).get("request_id") != f"req-{i}"] == []


def test_a_corrupt_blob_is_a_miss_and_the_next_run_repairs_it(compose_demo, run_cfg, cache_dir):
    cfg = compose_demo("stitch.enabled=false")
    code, _, _ = run_cfg(cfg)
    assert code == 0
    victim = blobs(cache_dir)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size: only hashing can tell
    victim.write_bytes(bytes(data))

    preview = CountingPreview(cfg.backend)
    code, run_dir, _ = run_cfg(cfg, backends={"preview": preview})
    assert code == 0
    assert len(preview.rendered) == 1  # exactly the corrupt one, re-rendered
    statuses = _statuses(run_dir)
    assert sorted(statuses.values()).count("rendered") == 1
    assert victim.exists() and victim.read_bytes() != bytes(data)  # repaired in place
    preview2 = CountingPreview(cfg.backend)
    code, run_dir, _ = run_cfg(cfg, backends={"preview": preview2})
    assert preview2.rendered == [] and set(_statuses(run_dir).values()) == {"cached"}


def test_a_missing_blob_is_a_miss_too(compose_demo, run_cfg, cache_dir):
    cfg = compose_demo("stitch.enabled=false")
    assert run_cfg(cfg)[0] == 0
    for b in blobs(cache_dir)[:2]:
        b.unlink()
    preview = CountingPreview(cfg.backend)
    assert run_cfg(cfg, backends={"preview": preview})[0] == 0
    assert len(preview.rendered) == 2


def test_two_processes_on_one_cache_render_each_key_once(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wanbatch.cli",
                "--config-dir",
                str(PROJECT.parent),
                "--config-name",
                "project",
                f"cache.dir={cache}",
                "stitch.enabled=false",
                "executor.progress=none",
                "report=false",
                f"hydra.run.dir={tmp_path / f'run{i}'}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
    s0, s1 = _statuses(tmp_path / "run0"), _statuses(tmp_path / "run1")
    assert s0.keys() == s1.keys()
    for sid in s0:
        # each scene was rendered by exactly one of the two processes; the other found it cached
        assert sorted([s0[sid], s1[sid]]) == ["cached", "rendered"], (sid, s0[sid], s1[sid])
    assert len(blobs(cache)) == len(s0)


def test_list_why_and_prune_from_the_command_line(compose_demo, run_cfg, cache_dir, tmp_path):
    assert run_cfg(compose_demo("stitch.enabled=false"))[0] == 0
    cli = [sys.executable, "-m", "wanbatch.cli", "cache"]
    listed = subprocess.run(
        [*cli, "list", "--dir", str(cache_dir), "--json"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert {e["scene_id"] for e in entries} == {"title", "sunrise", "day_to_night", "harbour_voice", "harbour_after"}

    why = subprocess.run(
        [
            *cli,
            "why",
            "--config-dir",
            str(PROJECT.parent),
            "--config-name",
            "project",
            f"cache.dir={cache_dir}",
            "scenes.1.seed=99",
            "scenes.2.prompt=Hills at dusk.",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert why.returncode == 0, why.stderr
    lines = dict(line.split(": ", 1) for line in why.stdout.strip().splitlines())
    assert lines["title"] == "cached"
    assert lines["sunrise"].startswith("changed: params.seed ") and lines["sunrise"].endswith(" → 99")
    assert (
        lines["day_to_night"].startswith("changed: params.prompt '") and "→ 'Hills at dusk.'" in lines["day_to_night"]
    )

    table = subprocess.run([*cli, "list", "--dir", str(cache_dir)], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    rows = table.stdout.strip().splitlines()
    assert rows[0].split()[:3] == ["KEY", "CREATED", "PROJECT"]
    total_mb = sum(e["size"] for e in entries) / 1e6
    assert rows[-1] == f"5 entries, {total_mb:.2f} MB, in {cache_dir.resolve()}"
    project = {e["project"] for e in entries}.pop()
    only = subprocess.run(
        [*cli, "list", "--dir", str(cache_dir), "--project", project], capture_output=True, text=True, timeout=60
    )
    assert only.stdout.strip().splitlines()[-1].startswith(f"5 entries of project {project},")
    other = subprocess.run(
        [*cli, "list", "--dir", str(cache_dir), "--project", "nope"], capture_output=True, text=True, timeout=60
    )
    assert other.stdout.strip().splitlines()[-1].startswith("0 entries of project nope,")

    assert len(list((cache_dir / "posters").glob("*.png"))) == 5  # the report's, one per clip (no film here)
    kept = _state(cache_dir)
    # Paid renders are not deleted on a whim: without a terminal and without --yes, nothing goes.
    unasked = subprocess.run(
        [*cli, "prune", "--dir", str(cache_dir), "--all"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert unasked.returncode == 1 and "nothing deleted" in unasked.stderr and "pass --yes" in unasked.stderr
    dry = subprocess.run(
        [*cli, "prune", "--dir", str(cache_dir), "--all", "--dry-run"], capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    listed_mb = sum(e["size"] for e in entries) / 1e6
    assert f"would prune 5 entries ({listed_mb:.2f} MB)" in dry.stdout and "nothing deleted" in dry.stdout
    assert all(e["scene_id"] in dry.stdout for e in entries)
    assert _state(cache_dir) == kept
    pruned = subprocess.run(
        [*cli, "prune", "--dir", str(cache_dir), "--all", "--yes"], capture_output=True, text=True, timeout=60
    )
    assert pruned.returncode == 0 and "pruned 5 entries and 5 blobs" in pruned.stdout
    assert blobs(cache_dir) == [] and list((cache_dir / "posters").glob("*.png")) == []
    bad = subprocess.run(
        [*cli, "prune", "--dir", str(cache_dir), "--older-than", "soon"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "`--older-than` = 'soon' is not allowed" in bad.stderr


def test_dry_run_prints_the_plan_says_why_and_touches_nothing(compose_demo, run_cfg, cache_dir):
    code, run_dir, out = run_cfg(compose_demo("dry_run=true"))
    assert code == 0
    assert not cache_dir.exists() and not run_dir.exists()
    assert "5 scenes: 0 cached, 5 to render (10.0 s of video, est. cost $0.00)" in out  # animatics are free
    assert run_cfg(compose_demo("stitch.enabled=false"))[0] == 0
    before = _state(cache_dir)
    cfg = compose_demo("dry_run=true")
    cfg.scenes[1]["seed"] = 99
    code, _, out = run_cfg(cfg)
    assert code == 0
    assert "4 cached, 1 to render (2.0 s of video, est. cost $0.00)" in out
    assert "changed: params.seed" in out and "→" in out  # old → new (the table may fold it)
    assert _state(cache_dir) == before


def test_list_and_why_never_make_a_cache(tmp_path):
    """A typo in --dir, or a project not rendered yet, is told; no cache appears where there was none."""
    cli = [sys.executable, "-m", "wanbatch.cli", "cache"]
    typo = tmp_path / "typo"
    listed = subprocess.run([*cli, "list", "--dir", str(typo)], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 2 and f"`--dir` = '{typo}' is not allowed" in listed.stderr
    pruned = subprocess.run([*cli, "prune", "--dir", str(typo), "--all"], capture_output=True, text=True, timeout=60)
    assert pruned.returncode == 2
    fresh = tmp_path / "fresh"
    why = subprocess.run(
        [*cli, "why", "recipe=demo", f"cache.dir={fresh}"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert why.returncode == 0, why.stderr
    assert "title: new: no cache at" in why.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _state(cache_dir: Path) -> tuple[dict[str, int], list[dict]]:
    """Blob files with their mtimes, plus every index entry: what a dry run must not change.
    (SQLite's -wal/-shm side files are touched by any reader, so they are left out.)"""
    files = {str(p): p.stat().st_mtime_ns for sub in ("blobs", "tmp", "locks") for p in (cache_dir / sub).rglob("*")}
    cache = Cache(cache_dir)
    entries = sorted(cache.entries(), key=lambda e: e["key"])
    cache.close()
    return files, entries
