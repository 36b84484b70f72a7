"""A scene id is a name, never a path: a hostile id is refused at plan time (exit 2, nothing written),
a long unicode id renders with safe file names, and no file is ever named by the raw id."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wanbatch.av.encode import write_clip
from wanbatch.config.load import load_config
from wanbatch.config.schema import EncodeConfig
from wanbatch.core.names import ID_RULE, file_stem, id_problem, sanitise
from wanbatch.execute.common import with_chain_input

from conftest import tree, write_project

CJK_64 = "镜头" * 32  # 64 characters, 192 bytes of UTF-8


def compose(project: Path, cache_dir: Path) -> dict[str, Any]:
    return load_config(project, [f"cache.dir={cache_dir}", "executor.progress=none"])


BAD_IDS = [
    ("../../../ESC", "'/'"),
    ("act1/shot1", "'/'"),
    ("a\x00b", "'\\x00'"),
    ("镜" * 100, "100 characters"),
    ("x" * 65, "65 characters"),
    (".hidden", "starts with `.`"),
    ("two words", "' '"),
    ("line\nbreak", "'\\n'"),
    ("esc\x1b[31mred", "'\\x1b'"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_IDS, ids=[repr(b)[:20] for b, _ in BAD_IDS])
def test_a_hostile_id_is_refused_at_plan_time_and_costs_nothing(
    bad: str, why: str, tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(
        tmp_path / "proj",
        [{"id": bad, "title": "T", "seed": 1}, {"id": "child", "chain_from": bad, "prompt": "p", "seed": 2}],
    )
    cache_dir = tmp_path / "cache"
    code, run_dir, _ = run_cfg(compose(project, cache_dir), root=project.parent)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"scene `#0`: `id` = {bad!r} is not allowed; {ID_RULE} (" in err
    assert why in err
    assert "\x1b" not in err and "\x00" not in err  # a hostile id reaches the terminal only as its repr
    assert tree(cache_dir) == {} and not run_dir.exists()
    assert not list(tmp_path.parent.rglob("ESC-last.png"))


def test_the_chain_of_a_path_like_id_writes_nothing_outside_the_cache(
    tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe itself: on 0.1 the child's first frame was written three folders above the job's workdir."""
    project = write_project(
        tmp_path / "a" / "b" / "proj",
        [
            {"id": "../../../ESC", "title": "T", "seed": 1},
            {"id": "child", "chain_from": "../../../ESC", "prompt": "p", "seed": 2},
        ],
    )
    before = tree(tmp_path)
    code, _, _ = run_cfg(compose(project, tmp_path / "a" / "b" / "cache"), root=project.parent)
    assert code == 2
    assert tree(tmp_path) == before


def test_a_64_character_unicode_id_renders_and_chains_with_safe_file_names(
    tmp_path: Path, run_cfg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(
        tmp_path / "proj",
        [
            {"id": CJK_64, "title": "镜头", "seed": 1},
            {"id": "shot-1.2_a", "chain_from": CJK_64, "prompt": "p", "seed": 2},
            {"id": "Ünïcödé", "title": "U", "seed": 3},
        ],
    )
    code, run_dir, _ = run_cfg(compose(project, tmp_path / "cache"), root=project.parent)
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in (run_dir / "clips").iterdir())
    assert len(names) == 3
    # named by scene number and sanitised id (core.names.file_stem), as their posters are
    assert names[1] == "002-shot-1.2_a.mp4" and names[2] == "003-Ünïcödé.mp4"
    assert names[0].startswith("001-镜") and len(names[0].encode()) <= 64 + len("001-.mp4")
    for p in run_dir.rglob("*"):
        assert len(p.name.encode()) <= 100, p.name
    assert (run_dir / "film.mp4").is_file()


def test_the_chain_frame_is_named_by_the_sanitised_id_and_key_never_the_raw_id(tmp_path: Path) -> None:
    """Even a job that never went through validation (an API caller, a Ray worker) writes inside its workdir."""
    from wanbatch.backends import build_backends
    from wanbatch.config.load import backend_configs
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project

    from conftest import PROJECT

    cfg = load_config(PROJECT, [f"cache.dir={tmp_path / 'cache'}"])
    project = load_project(cfg, PROJECT.parent, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs, None))
    child = next(j for j in plan.jobs if j.parent)
    hostile = dataclasses.replace(child, scene=dataclasses.replace(child.scene, chain_from="../../../ESC"))
    hostile.parent = "../../../ESC"
    workdir = tmp_path / "w1" / "w2" / "w3" / "work"
    workdir.mkdir(parents=True)
    clip = write_clip(
        [np.full((16, 16, 3), 9, np.uint8)] * 4, tmp_path / "p.mp4", fps=8, settings=EncodeConfig(preset="ultrafast")
    )
    got = with_chain_input(hostile, clip, workdir)
    frame = got.inputs["image"].path
    assert frame is not None and frame.parent == workdir.resolve()
    parent_key = child.material["media"]["image"]["chain"]
    assert frame.name == f"_.._.._ESC-{parent_key[:8]}-last.png"
    assert [p.name for p in tmp_path.rglob("*ESC*")] == [frame.name]


def test_id_rule_and_file_names() -> None:
    for good in ("opening", "shot-1.2_a", "Ünïcödé", CJK_64, "a..b", "-x", "_"):
        assert id_problem(good) is None, good
    for bad, _ in BAD_IDS:
        assert id_problem(bad) is not None, bad
    assert id_problem("") is not None
    key = "3fa9c1d2e4b5a6f7" * 4
    assert file_stem("harbour", key) == "harbour-3fa9c1d2"
    assert file_stem("../../x", key) == "_.._x-3fa9c1d2"
    assert file_stem("a\x00b", None) == "a_b"
    assert sanitise("..") == "scene"
    for raw in ("镜" * 300, "é" * 300, "../" * 200):
        stem = file_stem(raw, key)
        assert os.sep not in stem and not stem.startswith(".") and len(stem.encode()) <= 64 + 9
        stem.encode().decode()  # cut at a character boundary
