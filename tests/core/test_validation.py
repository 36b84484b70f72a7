"""A catalogue of bad inputs: each names the scene, field, value and what is allowed, exits 2,
and leaves the cache untouched (nothing rendered, nothing sent, nothing written)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wanbatch.config.schema import WanbatchConfig

from conftest import REPO, tree


def _scene(cfg: WanbatchConfig, sid: str) -> dict[str, Any]:
    return next(s for s in cfg.scenes if s["id"] == sid)


def _set(sid: str, **fields: Any):
    def edit(cfg: WanbatchConfig, tmp: Path) -> None:
        _scene(cfg, sid).update(fields)

    return edit


def _not_an_image(cfg: WanbatchConfig, tmp: Path) -> None:
    bad = tmp / "notes.png"
    bad.write_text("this is not a picture")
    _scene(cfg, "sunrise")["image"] = str(bad)


def _cycle(cfg: WanbatchConfig, tmp: Path) -> None:
    _scene(cfg, "sunrise")["chain_from"] = "day_to_night"
    _scene(cfg, "sunrise").pop("image")
    _scene(cfg, "day_to_night")["chain_from"] = "sunrise"
    _scene(cfg, "day_to_night").pop("image")


def _dup(cfg: WanbatchConfig, tmp: Path) -> None:
    cfg.scenes.append(copy.deepcopy(_scene(cfg, "title")))


def _project(**fields: Any):
    """Set `a__b__c` in the composed config: an attribute of a group, or a key of a mapping in it."""

    def edit(cfg: WanbatchConfig, tmp: Path) -> None:
        for dotted, value in fields.items():
            node: Any = cfg
            *parents, last = dotted.split("__")
            for p in parents:
                node = node[p] if isinstance(node, dict) else getattr(node, p)
            if isinstance(node, dict):
                node[last] = value
            else:
                setattr(node, last, value)

    return edit


# (name, edit, fragments the message must contain)
CASES = [
    ("unknown field", _set("title", promt="typo"), ["scene `title`", "`promt`", "'typo'", "did you mean prompt"]),
    ("resolution", _set("title", resolution="4K"), ["scene `title`", "`resolution`", "'4K'", "480P, 720P, 1080P"]),
    ("negative duration", _set("sunrise", duration=-1), ["scene `sunrise`", "`duration`", "-1", "positive number"]),
    ("seed as text", _set("sunrise", seed="abc"), ["scene `sunrise`", "`seed`", "'abc'", "integer >= 0, or -1"]),
    ("seed below -1", _set("sunrise", seed=-5), ["scene `sunrise`", "`seed`", "-5", "integer >= 0, or -1"]),
    ("seed as bool", _set("sunrise", seed=True), ["scene `sunrise`", "`seed`", "True", "integer"]),
    (
        "missing image",
        _set("sunrise", image="assets/nope.png"),
        ["scene `sunrise`", "`image`", "'assets/nope.png'", "no such file"],
    ),
    ("image not an image", _not_an_image, ["scene `sunrise`", "`image`", "notes.png", "not a readable image"]),
    (
        "audio not audio",
        _set("harbour_voice", audio="assets/day.png"),
        ["scene `harbour_voice`", "`audio`", "'assets/day.png'", "no audio stream"],
    ),
    (
        "chain to unknown",
        _set("harbour_after", chain_from="ghost"),
        ["scene `harbour_after`", "`chain_from`", "'ghost'", "the id of a scene in this project"],
    ),
    (
        "chain to itself",
        _set("harbour_after", chain_from="harbour_after"),
        ["scene `harbour_after`", "`chain_from`", "not itself"],
    ),
    ("chain cycle", _cycle, ["`chain_from`", "cycle", "sunrise -> day_to_night -> sunrise"]),
    (
        "chain plus image",
        _set("harbour_after", image="assets/day.png"),
        ["scene `harbour_after`", "`image`", "`chain_from` provides the first frame"],
    ),
    ("duplicate id", _dup, ["scene `title`", "`scenes.5.id`", "a unique id: it duplicates the id of scenes.0"]),
    ("unknown backend", _set("title", backend="sora"), ["scene `title`", "`backend`", "'sora'", "one of", "preview"]),
    (
        "bad transition",
        _set("sunrise", transition="wipe"),
        ["scene `sunrise`", "`transition.type`", "'wipe'", "cut, crossfade, fade"],
    ),
    (
        "zero-length crossfade",
        _set("sunrise", transition={"type": "crossfade", "duration": 0}),
        ["scene `sunrise`", "`transition.duration`", "0", "> 0"],
    ),
    ("fps zero", _set("title", fps=0), ["scene `title`", "`fps`", "0", "positive integer"]),
    ("odd width", _set("title", width=321), ["scene `title`", "`width`", "321", "even number"]),
    ("loras not a list", _set("title", loras="style.safetensors"), ["scene `title`", "`loras`", "list of {path"]),
    (
        "prompt_extend as text",
        _set("title", prompt_extend="yes"),
        ["scene `title`", "`prompt_extend`", "'yes'", "true or false"],
    ),
    (
        "both duration and frames",
        _set("title", num_frames=20, duration=3),
        ["scene `title`", "`num_frames`", "20", "either `duration` or `num_frames`"],
    ),
    (
        "project default unknown",
        _project(project__defaults__colour="red"),
        ["project", "`project.defaults.colour`", "'red'", "unknown field"],
    ),
    (
        "soundtrack volume",
        _project(project__soundtrack={"path": "assets/narration.wav", "volume": 2}),
        ["`project.soundtrack.volume`", "2", "from 0 to 1"],
    ),
    ("no scenes", _project(scenes=[]), ["`scenes`", "[]", "non-empty list"]),
    ("concurrency zero", _project(executor__concurrency=0), ["`executor.concurrency`", "0", "integer >= 1"]),
    ("unknown executor", _project(executor__name="celery"), ["`executor.name`", "'celery'", "local, ray"]),
    (
        "backend renamed, not chosen",
        _project(backend__name="novita_wan21_t2v"),
        ["`backend.name`", "'novita_wan21_t2v'", "`backend=novita_wan21_t2v`"],
    ),
    ("executor renamed, not chosen", _project(executor__name="ray"), ["`executor.name`", "'ray'", "`executor=ray`"]),
    ("executor progress", _project(executor__progress="fancy"), ["`executor.progress`", "'fancy'", "auto, rich"]),
    ("stitch mode", _project(stitch__mode="fast"), ["`stitch.mode`", "'fast'", "auto, copy, compose"]),
    (
        "preview resolution",
        _project(backend__default_resolution="4K"),
        ["`backend.default_resolution`", "'4K'", "480P"],
    ),
]


@pytest.mark.parametrize(("name", "edit", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named_exits_2_and_costs_nothing(
    name, edit, fragments, compose_demo, run_cfg, cache_dir, tmp_path, capsys
):
    cfg = compose_demo()
    edit(cfg, tmp_path)
    before = tree(cache_dir)
    code, run_dir, _ = run_cfg(cfg)
    err = capsys.readouterr().err
    assert code == 2, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} missing from:\n{err}"
    assert tree(cache_dir) == before == {}
    assert not run_dir.exists()


def test_every_problem_is_reported_at_once(compose_demo, run_cfg, cache_dir, capsys):
    cfg = compose_demo()
    _scene(cfg, "title")["resolution"] = "4K"
    _scene(cfg, "sunrise")["image"] = "assets/nope.png"
    _scene(cfg, "harbour_after")["chain_from"] = "ghost"
    code, _, _ = run_cfg(cfg)
    err = capsys.readouterr().err
    assert code == 2
    assert "(3 problems)" in err
    assert "`resolution`" in err and "`image`" in err and "`chain_from`" in err
    assert not cache_dir.exists()


def test_cli_exits_2_on_an_invalid_override(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wanbatch.cli",
            "recipe=demo",
            f"cache.dir={cache}",
            "+scenes.0.resolution=4K",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "scene `title`: `resolution` = '4K' is not allowed" in proc.stderr
    assert not cache.exists()


def test_cli_rejects_an_unknown_recipe(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", "recipe=nope"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "`recipe` = 'nope' is not allowed; one of:" in proc.stderr and "demo" in proc.stderr


def test_cli_exits_2_when_hydra_cannot_compose(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wanbatch.cli",
            "recipe=demo",
            "backend=nope",
            f"cache.dir={cache}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "backend" in proc.stderr
    assert not cache.exists()
