"""`scenes_file`: scenes from a JSONL, CSV or YAML file, appended after `scenes:`, checked and keyed exactly as
if they were written in the project file; a bad row is reported with its file and line and costs nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wanbatch.config.load import load_config
from wanbatch.core.plan import Plan
from wanbatch.errors import ConfigError
from wanbatch.runs.run import _plan

WANBATCH = shutil.which("wanbatch") or ""
DEFAULTS = {"width": 320, "height": 192, "fps": 16, "duration": 2.0}
SHOTS = [
    {"id": "dock", "prompt": "A dock at dawn, gulls.", "seed": 3, "transition": {"type": "crossfade", "duration": 0.5}},
    {"id": "quay", "prompt": "The quay, the camera walks.", "seed": 4, "duration": 1.5},
    {"id": "night", "prompt": "Night falls", "seed": -1, "watermark": False},
]


def _project(root: Path, inline: list[dict], scenes_file: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    doc: dict = {"defaults": ["wanbatch", "_self_"], "project": {"name": "f", "defaults": DEFAULTS}, "scenes": inline}
    if scenes_file:
        doc["scenes_file"] = scenes_file
    (root / "project.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "project.yaml"


def _write(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".yaml":
        path.write_text(yaml.safe_dump(rows, sort_keys=False))
    else:  # csv: a header of every field, JSON in the transition cell
        names = sorted({k for r in rows for k in r})
        lines = [",".join(names)]
        for r in rows:
            cells = []
            for n in names:
                v = r.get(n)
                v = json.dumps(v) if isinstance(v, dict) else ("true" if v is True else "false" if v is False else v)
                cells.append("" if v is None else '"' + str(v).replace('"', '""') + '"')
            lines.append(",".join(cells))
        path.write_text("\n".join(lines) + "\n")


def _plan_of(project: Path, tmp: Path, *overrides: str) -> Plan:
    cfg = load_config(project, [f"cache.dir={tmp / 'cache'}", *overrides])
    return _plan(cfg, project.parent, None)[0]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".yaml"])
def test_a_scene_moved_from_the_project_to_a_file_keeps_its_key(tmp_path, suffix):
    written_inline = _plan_of(_project(tmp_path / "inline", SHOTS), tmp_path)
    root = tmp_path / "file"
    project = _project(root, SHOTS[:1], scenes_file=f"shots{suffix}")
    _write(root / f"shots{suffix}", SHOTS[1:])
    from_file = _plan_of(project, tmp_path)

    assert [j.id for j in from_file.jobs] == ["dock", "quay", "night"]  # appended after `scenes:`, in file order
    assert [j.key for j in from_file.jobs] == [j.key for j in written_inline.jobs]
    assert [j.scene.seed for j in from_file.jobs] == [j.scene.seed for j in written_inline.jobs]
    quay = from_file.job("quay").scene
    assert (quay.width, quay.fps, quay.duration) == (320, 16, 1.5)  # project defaults, and its own duration


def test_scenes_may_live_in_the_file_alone_and_overrides_still_address_inline_scenes(tmp_path):
    root = tmp_path / "p"
    _write(root.parent / "shots.jsonl", SHOTS)  # a path relative to the project file
    project = _project(root, [], scenes_file="../shots.jsonl")
    assert [j.id for j in _plan_of(project, tmp_path).jobs] == ["dock", "quay", "night"]

    project = _project(root, SHOTS[:1], scenes_file="../shots.jsonl")
    (root.parent / "shots.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SHOTS[1:]))
    plan = _plan_of(project, tmp_path, "scenes.0.seed=5")
    assert [(j.id, j.scene.seed) for j in plan.jobs] == [("dock", 5), ("quay", 4), ("night", plan.jobs[2].scene.seed)]
    assert plan.jobs[2].seed_was_random


def test_a_bad_row_names_the_file_and_line_and_every_problem_is_reported(tmp_path):
    root = tmp_path / "p"
    project = _project(root, SHOTS[:1], scenes_file="shots.csv")
    (root / "shots.csv").write_text(
        'id,prompt,seed,resolution\nb,"a prompt\nover two lines",2,720P\nc,ok,many,720P\nd,ok,3,4K\n"[1]",x,1\n'
    )
    with pytest.raises(ConfigError) as err:
        _plan_of(project, tmp_path)
    said = [str(i) for i in err.value.issues]
    assert said == [
        "scene `c` (shots.csv line 4): `seed` = 'many' is not allowed; an integer >= 0, or -1 for a random seed "
        "resolved once at plan time",
        "scene `d` (shots.csv line 5): `resolution` = '4K' is not allowed; one of 480P, 720P, 1080P",
        "scene `#4` (shots.csv line 6): `id` = '[1]' is not allowed; a scene id is letters (any script), digits, "
        "`_`, `-` and `.`, not starting with `.`, at most 64 characters (it holds '[', ']')",
    ]

    (root / "shots.csv").unlink()
    project = _project(root, SHOTS[:1], scenes_file="shots.jsonl")
    (root / "shots.jsonl").write_text('{"id": "b", "prompt": "x"}\n\n["not", "a", "scene"]\n{"id": "c", "seedz": 1}\n')
    with pytest.raises(ConfigError) as err:
        _plan_of(project, tmp_path)
    said = [str(i) for i in err.value.issues]
    assert (
        said[0]
        == "scene `#2` (shots.jsonl line 3): `scene` = ['not', 'a', 'scene'] is not allowed; a mapping of scene fields"
    )
    assert said[1].startswith(
        "scene `c` (shots.jsonl line 4): `seedz` = 1 is not allowed; unknown field (did you mean seed or seeds?)"
    )


@pytest.mark.parametrize(
    ("name", "text", "allowed"),
    [
        ("shots.txt", "", "its suffix says which format"),
        ("missing.jsonl", None, "that exists and is readable"),
        ("shots.yaml", "id: a\n", "a YAML list of scenes"),
        ("shots.jsonl", '{"id": "a"\n', "one JSON object per line; line 1"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_issue_on_scenes_file(tmp_path, name, text, allowed):
    root = tmp_path / "p"
    project = _project(root, SHOTS[:1], scenes_file=name)
    if text is not None:
        (root / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        _plan_of(project, tmp_path)
    (issue,) = err.value.issues
    assert issue.field == "scenes_file" and issue.value == name and allowed in issue.allowed


def test_the_console_script_exits_2_on_a_bad_row_and_touches_nothing(tmp_path):
    root = tmp_path / "p"
    _project(root, SHOTS[:1], scenes_file="shots.jsonl")
    (root / "shots.jsonl").write_text('{"id": "b", "prompt": "x", "fps": 0}\n')
    cmd = [WANBATCH] if WANBATCH else [sys.executable, "-m", "wanbatch"]
    args = ["--config-dir", str(root), f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    got = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert got.returncode == 2, got.stdout + got.stderr
    assert "scene `b` (shots.jsonl line 1): `fps` = 0 is not allowed; a positive integer" in got.stderr
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "run" / "manifest.json").exists()
