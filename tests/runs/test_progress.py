"""The plain progress lines a piped run writes: one state per line, counts that never go back, a detail line
per running scene at most every so often, an ETA per backend, and the phases after rendering."""

from __future__ import annotations

import io
import re
import threading

from wanbatch.runs.progress import Progress

LINE = re.compile(
    r"^\[(\d+)/(\d+) done: \d+ rendered, \d+ cached, \d+ failed(, \d+ cancelled)?( eta \d+s)?\] (\S+): (\w+)"
)


def plain(jobs: list[tuple[str, str]], **kw) -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    progress = Progress(mode="plain", concurrency=kw.pop("concurrency", 4), stream=out, **kw)
    progress.start(jobs)
    return progress, out


def test_many_threads_write_whole_lines_with_counts_that_only_grow():
    jobs = [(f"s{i:02d}", "preview") for i in range(40)]
    progress, out = plain(jobs)
    go = threading.Barrier(8)

    def work(ids: list[str]) -> None:
        go.wait()
        for sid in ids:
            progress.update(sid, "running")
            progress.update(sid, "rendered" if int(sid[1:]) % 3 else "cached")
            progress.update(sid, "running")  # late news about an ended scene changes nothing

    threads = [threading.Thread(target=work, args=([j for j, _ in jobs[k::8]],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 80  # one running and one ended line per scene, none glued, none repeated
    done = [int(LINE.match(line).group(1)) for line in lines]  # every line parses on its own
    assert done == sorted(done) and done[-1] == 40
    assert progress.counts()["rendered"] + progress.counts()["cached"] == 40


def test_a_running_scene_shows_its_steps_but_not_every_one():
    progress, out = plain([("a", "diffusers")], detail_every_s=3600)
    for i in range(1, 21):
        progress.update("a", "running", f"step {i}/20")
    progress.update("a", "rendered")
    assert [line.split("] ", 1)[1] for line in out.getvalue().splitlines()] == ["a: running (step 1/20)", "a: rendered"]

    progress, out = plain([("a", "diffusers")], detail_every_s=0)
    for i in range(1, 4):
        progress.update("a", "running", f"step {i}/3")
    assert out.getvalue().count("step ") == 3


def test_the_eta_of_a_backend_comes_from_that_backend_or_its_provider():
    progress, _ = plain([("p", "preview"), ("d", "diffusers"), ("n", "novita_wan21_t2v")], concurrency=1)
    progress.update("p", "running")
    progress.update("p", "rendered")
    assert progress.eta() is None  # a preview clip says nothing about how long a diffusers one takes
    progress.update("d", "running")
    progress.update("d", "failed")
    progress.update("n", "running", "processing, eta 30s (req-1)")
    assert progress.eta() == 30.0  # the provider's hint
    assert "eta 30s" in progress.counts_line()


def test_the_phases_after_rendering_are_shown_and_cancelled_scenes_counted():
    progress, out = plain([("a", "preview"), ("b", "preview")])
    progress.update("a", "cached")
    progress.update("b", "cancelled")
    progress.phase("joining film")
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("[2/2 done: 0 rendered, 1 cached, 0 failed, 1 cancelled] b: cancelled")
    assert lines[-1] == "joining film ..."
