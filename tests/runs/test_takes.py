"""Takes: `takes: N` renders N variations of a scene (seeds seed, seed+1, ... or the listed `seeds`), each its
own cache entry; `pick: K` chooses the one in the film. Renders are counted at the backend, not inferred."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from wanbatch.av.ffmpeg import read_frames
from wanbatch.config.backends import PreviewConfig
from wanbatch.config.load import load_config
from wanbatch.config.schema import WanbatchConfig
from wanbatch.runs.manifest import SceneRow, TakeRecord

from chromium import CHROMIUM, NO_CHROMIUM, Browser, console_errors, evaluate, open_page, play_all, screenshot
from conftest import CountingPreview, tree


def _manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


def _row(run_dir: Path, scene_id: str) -> dict[str, Any]:
    return next(s for s in _manifest(run_dir)["scenes"] if s["id"] == scene_id)


def _preview(cfg: WanbatchConfig) -> CountingPreview:
    assert isinstance(cfg.backend, PreviewConfig)
    return CountingPreview(cfg.backend)


def test_three_takes_render_three_clips_with_consecutive_seeds(compose_demo, run_cfg):
    cfg = compose_demo("+scenes.1.takes=3")
    preview = _preview(cfg)
    code, run_dir, out = run_cfg(cfg, backends={"preview": preview})
    assert code == 0
    assert sorted(preview.rendered) == sorted(["title", "sunrise#1", "sunrise#2", "sunrise#3", *_rest()])
    assert "5 scenes (7 takes): 0 cached, 7 to render" in out

    row = _row(run_dir, "sunrise")
    assert [t["seed"] for t in row["takes"]] == [7, 8, 9]
    assert [t["picked"] for t in row["takes"]] == [True, False, False]
    assert row["take"] == 1 and row["seed"] == 7 and row["clip"] == row["takes"][0]["clip"]
    assert len({t["cache_key"] for t in row["takes"]}) == 3  # each take is its own cache entry
    clips = [run_dir / t["clip"] for t in row["takes"]]
    assert [c.name for c in clips] == ["002-sunrise-take1.mp4", "002-sunrise-take2.mp4", "002-sunrise-take3.mp4"]
    first_frames = [read_frames(c)[8] for c in clips]
    assert not (first_frames[0] == first_frames[1]).all()  # another seed, other pixels
    # the row and its takes have the shapes their types say, key for key
    assert list(row) == list(get_type_hints(SceneRow))
    assert all(list(t) == list(get_type_hints(TakeRecord)) for t in row["takes"])
    # every take counts as a render; the manifest still has one row per scene
    assert _manifest(run_dir)["counts"] == {"rendered": 7}
    assert [s["id"] for s in _manifest(run_dir)["scenes"]] == ["title", "sunrise", *_rest()]


def _rest() -> list[str]:
    return ["day_to_night", "harbour_voice", "harbour_after"]


def test_take_one_is_the_scene_as_it_was_and_adding_takes_renders_only_the_new_ones(compose_demo, run_cfg):
    code, first, _ = run_cfg(compose_demo())
    assert code == 0
    cfg = compose_demo("+scenes.1.takes=2")
    preview = _preview(cfg)
    code, second, _ = run_cfg(cfg, backends={"preview": preview})
    assert code == 0
    assert preview.rendered == ["sunrise#2"]
    assert _row(second, "sunrise")["takes"][0]["cache_key"] == _row(first, "sunrise")["cache_key"]

    cfg = compose_demo("+scenes.1.takes=3")
    preview = _preview(cfg)
    assert run_cfg(cfg, backends={"preview": preview})[0] == 0
    assert preview.rendered == ["sunrise#3"]


def test_pick_changes_the_film_without_a_render(compose_demo, run_cfg):
    code, first, _ = run_cfg(compose_demo("+scenes.0.takes=2"))
    assert code == 0
    cfg = compose_demo("+scenes.0.takes=2", "+scenes.0.pick=2")
    preview = _preview(cfg)
    code, second, _ = run_cfg(cfg, backends={"preview": preview})
    assert code == 0
    assert preview.rendered == []  # nothing rendered ...
    m1, m2 = _manifest(first), _manifest(second)
    assert m2["counts"] == {"cached": 6}
    assert m2["stitch"]["cached"] is False and m2["stitch"]["cache_key"] != m1["stitch"]["cache_key"]  # ... a new film
    row = _row(second, "title")
    assert row["take"] == 2 and row["seed"] == 2 and [t["picked"] for t in row["takes"]] == [False, True]
    # the film opens with take 2's frames, not take 1's
    film1, film2 = read_frames(first / "film.mp4"), read_frames(second / "film.mp4")
    take2 = read_frames(second / row["takes"][1]["clip"])
    assert _close(film2[5], take2[5]) and not _close(film1[5], take2[5])


def _close(a: Any, b: Any) -> bool:
    return float(abs(a.astype(int) - b.astype(int)).mean()) < 2.0


def test_the_overrides_shown_for_a_take_keep_it_and_render_nothing(compose_demo, run_cfg):
    """`keep.pick` and `keep.seed` are exact Hydra overrides: applied to the same command line, each makes that
    take the film's, and neither renders."""
    base = ["+scenes.1.takes=3"]
    code, run_dir, _ = run_cfg(compose_demo(*base))
    assert code == 0
    take3 = _row(run_dir, "sunrise")["takes"][2]
    assert take3["keep"] == {
        "pick": "+scenes.1.pick=3",
        "seed": "scenes.1.seed=9 scenes.1.takes=1",
    }
    for keep in (take3["keep"]["pick"], take3["keep"]["seed"]):
        cfg = compose_demo(*base, *keep.split())
        preview = _preview(cfg)
        code, again, _ = run_cfg(cfg, backends={"preview": preview})
        assert code == 0 and preview.rendered == []
        assert _row(again, "sunrise")["cache_key"] == take3["cache_key"]


def test_a_scene_that_sets_pick_is_kept_by_resetting_it(compose_demo, run_cfg):
    code, run_dir, _ = run_cfg(compose_demo("+scenes.1.takes=2", "+scenes.1.pick=2"))
    assert code == 0
    take1 = _row(run_dir, "sunrise")["takes"][0]
    assert take1["keep"] == {"pick": "scenes.1.pick=1", "seed": "scenes.1.seed=7 scenes.1.takes=1 scenes.1.pick=1"}


def test_listed_seeds_are_the_takes_and_a_random_seed_counts_up_from_its_resolved_value(compose_demo, run_cfg):
    cfg = compose_demo("+scenes.0.seeds=[40,3]", "~scenes.0.seed", "+scenes.3.takes=2")
    code, run_dir, _ = run_cfg(cfg)
    assert code == 0
    title = _row(run_dir, "title")
    assert [t["seed"] for t in title["takes"]] == [40, 3]
    assert title["takes"][1]["keep"]["seed"] == "scenes.0.seeds=[3]"
    voice = _row(run_dir, "harbour_voice")  # seed: -1
    first = voice["takes"][0]["seed"]
    assert voice["seed_was_random"] is True and [t["seed"] for t in voice["takes"]] == [first, first + 1]


def test_a_chained_scene_starts_from_the_picked_take_of_its_parent(compose_demo, run_cfg):
    cfg = compose_demo("+scenes.3.takes=2", "+scenes.3.pick=2")
    preview = _preview(cfg)
    code, run_dir, _ = run_cfg(cfg, backends={"preview": preview})
    assert code == 0
    picked = read_frames(run_dir / _row(run_dir, "harbour_voice")["takes"][1]["clip"])[-1]
    assert _close(preview.first_images["harbour_after"], picked)
    other = read_frames(run_dir / _row(run_dir, "harbour_voice")["takes"][0]["clip"])[-1]
    assert not _close(preview.first_images["harbour_after"], other)


def test_takes_can_come_from_the_project_defaults(compose_demo, run_cfg):
    cfg = compose_demo("+project.defaults.takes=2")
    preview = _preview(cfg)
    code, run_dir, _ = run_cfg(cfg, backends={"preview": preview})
    assert code == 0
    assert len(preview.rendered) == 10
    assert _row(run_dir, "title")["takes"][1]["keep"]["seed"] == "scenes.0.seed=2 +scenes.0.takes=1"


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["+scenes.1.takes=0"], ["scene `sunrise`", "`takes` = 0", "integer >= 1"]),
        (["+scenes.1.takes=2", "+scenes.1.pick=3"], ["scene `sunrise`", "`pick` = 3", "a take from 1 to 2"]),
        (["+scenes.1.pick=2"], ["scene `sunrise`", "`pick` = 2", "a take from 1 to 1"]),
        (["+scenes.1.seeds=[1,1]"], ["scene `sunrise`", "`seeds` = [1, 1]", "distinct integers >= 0"]),
        (["+scenes.1.seeds=[1,2]"], ["scene `sunrise`", "`seeds` = [1, 2]", "unset when `seed` is set"]),
        (
            ["+scenes.1.seeds=[1,2]", "~scenes.1.seed", "+scenes.1.takes=3"],
            ["scene `sunrise`", "`takes` = 3", "2, one take per listed seed"],
        ),
        (["+scenes.1.takes=true"], ["scene `sunrise`", "`takes` = True", "integer >= 1"]),
    ],
)
def test_bad_takes_are_named_and_cost_nothing(overrides, fragments, compose_demo, run_cfg, cache_dir, capsys):
    code, run_dir, _ = run_cfg(compose_demo(*overrides))
    err = capsys.readouterr().err
    assert code == 2, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} missing from:\n{err}"
    assert tree(cache_dir) == {} and not run_dir.exists()


def test_a_take_id_that_is_another_scenes_id_is_refused(tmp_path, run_cfg, cache_dir, capsys):
    project = tmp_path / "p.yaml"
    project.write_text(
        "defaults: [wanbatch, _self_]\n"
        "project: {defaults: {width: 160, height: 96, fps: 8, duration: 1.0}}\n"
        "scenes:\n  - {id: a, prompt: x, takes: 2}\n  - {id: 'a#2', prompt: y}\n"
    )
    cfg = load_config(project, [f"cache.dir={cache_dir}", "executor.progress=none"])
    code, _, _ = run_cfg(cfg, root=tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert "scene `a#2`: `id` = 'a#2' is not allowed; an id that is not the name of a take of scene `a`" in err


def test_the_report_shows_the_takes_side_by_side(compose_demo, run_cfg):
    code, run_dir, _ = run_cfg(compose_demo("+scenes.1.takes=3", "+scenes.1.pick=2"))
    assert code == 0
    page = (run_dir / "index.html").read_text()
    card = page[page.index('data-scene="sunrise"') :]
    card = card[: card.index("</article>")]
    figures = re.findall(r'<figure class="take( picked)?" data-take="(\d)">(.*?)</figure>', card, flags=re.S)
    assert [(bool(p), k) for p, k, _ in figures] == [(False, "1"), (True, "2"), (False, "3")]
    for (_, k, body), seed in zip(figures, (7, 8, 9), strict=True):
        assert f'src="clips/002-sunrise-take{k}.mp4"' in body and f"seed {seed}" in body
        assert f"scenes.1.seed={seed} scenes.1.takes=1 scenes.1.pick=1" in body
        # the picked take is already in the film; another is put there by its `pick`
        assert (f"put it in the film: <code>scenes.1.pick={k}</code>" in body) is (k != "2")
    assert "take 2 of 3" in card
    for k in (1, 2, 3):
        assert (run_dir / "posters" / f"002-sunrise-take{k}.png").is_file()


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_the_takes_play_side_by_side_in_chromium(compose_demo, run_cfg, tmp_path):
    code, run_dir, _ = run_cfg(compose_demo("+scenes.1.takes=3", "+scenes.1.pick=2"))
    assert code == 0
    browser = Browser(tmp_path / "profile")
    try:
        open_page(browser, run_dir / "index.html")
        takes = evaluate(
            browser,
            "Array.from(document.querySelectorAll('article[data-scene=sunrise] figure.take'))"
            ".map(f => [f.dataset.take, f.classList.contains('picked'), f.getBoundingClientRect().top])",
        )
        assert [(k, picked) for k, picked, _ in takes] == [("1", False), ("2", True), ("3", False)]
        assert len({round(top) for _, _, top in takes}) == 1  # side by side, in one row
        results = play_all(browser)
        assert len(results) == 1 + 4 + 3  # the film, four one-take scenes, three takes
        assert not [r for r in results if not r["ok"]], results
        shot = screenshot(browser, "report-takes.png", full_page=True)
        assert not console_errors(browser)
    finally:
        browser.close()
    assert shot.stat().st_size > 1000
