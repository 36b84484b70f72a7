"""The demo end to end through the console script, then again with zero renders (counted)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from wanbatch.av.ffmpeg import probe

from conftest import REPO, counting_backends

DEMO = REPO / "recipes" / "demo" / "project.yaml"


def test_demo_renders_a_film_then_reruns_entirely_from_the_cache(tmp_path, compose_demo, run_cfg, cache_dir):
    run_dir = tmp_path / "first"
    proc = subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", "recipe=demo", f"cache.dir={cache_dir}", f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    # Piped (plain mode) from a fresh cache: one state per line, counts that never go back, no library output.
    states = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert states and all(re.fullmatch(r"\[\d+/\d+ done: [^\]]*\] [\w-]+: \w+( \(.*\))?", line) for line in states)
    done = [int(line[1:].split("/", 1)[0]) for line in states]
    assert done == sorted(done)
    assert not [line for line in states if line.endswith(": running") and ": cached" in line]
    for noise in ("Writing model shards", "%|", "HTTP Request", "torchvision", "Traceback"):
        assert noise not in proc.stderr + proc.stdout, noise
    assert proc.stdout.count("rounded to the nearest 4k+1") == 3  # the tiny scenes, about to render
    assert "joining film ..." in proc.stderr and "writing report ..." in proc.stderr
    assert "0 failed, 0 cancelled" in proc.stdout
    log = (run_dir / "wanbatch.log").read_text()  # what the console did not show is in the run's log
    assert "tiny_t2v: running (step 1/2)" in log and "title: rendered" in log
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {s["status"] for s in manifest["scenes"]} == {"rendered"}
    assert len(manifest["scenes"]) >= 4
    assert manifest["film"] == "film.mp4"
    film = probe(run_dir / "film.mp4")
    assert film.has_video and film.duration and film.duration > 4
    assert (run_dir / "index.html").is_file()

    cfg = compose_demo(project=DEMO)
    backends = counting_backends(cfg)
    code, rerun_dir, out = run_cfg(cfg, root=DEMO.parent, backends=backends)
    assert code == 0
    assert "rounded to the nearest" not in out  # told when the scenes rendered, not for every cache hit
    assert sum(len(b.calls) for b in backends.values()) == 0  # not one render: counted at the backends
    rerun = json.loads((rerun_dir / "manifest.json").read_text())
    assert {s["status"] for s in rerun["scenes"]} == {"cached"}
    assert [s["cache_key"] for s in rerun["scenes"]] == [s["cache_key"] for s in manifest["scenes"]]
    assert (rerun_dir / "film.mp4").is_file()
    assert manifest["stitch"]["cached"] is False and rerun["stitch"]["cached"] is True  # not even re-joined
    assert (rerun_dir / "film.mp4").read_bytes() == (run_dir / "film.mp4").read_bytes()
    kinds = {s["backend"] for s in manifest["scenes"]}
    assert kinds == {"preview", "diffusers"}  # animatics and real (tiny) Wan pipelines side by side
    assert f"{len(rerun['scenes'])} scenes: {len(rerun['scenes'])} cached, 0 to render" in out
