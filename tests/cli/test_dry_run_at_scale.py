"""A project of any size through the console script: Hydra composes it once with its scenes kept apart
(overrides, sweeps, `hydra.mode` and interpolations still reach them), and a dry run beyond 50 scenes prints a
summary per backend and cache state, with the whole plan written on request (`plan_out=`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from wanbatch.config.load import load_config
from wanbatch.runs.run import _plan

WANBATCH = shutil.which("wanbatch") or ""
DEFAULTS = {"width": 320, "height": 192, "fps": 16, "duration": 1.0}
TINY = {"backend": "diffusers", "model": "tiny-t2v", "width": 160, "height": 96}

# Counts Hydra's compositions of the whole config (get_mode's and the run's), then runs the console script.
COUNTING = """
import atexit, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
calls = []
original = ConfigLoaderImpl.load_configuration
def counted(self, *a, **k):
    calls.append(1)
    return original(self, *a, **k)
ConfigLoaderImpl.load_configuration = counted
atexit.register(lambda: print(f"compositions: {len(calls)}", file=sys.stderr))
from wanbatch.cli import main
main(sys.argv[1:])
"""


def _project(root: Path, n: int, *, hydra: dict | None = None) -> Path:
    scenes = [{"id": f"s{i}", "prompt": f"shot {i}", "seed": i, **(TINY if i % 3 == 0 else {})} for i in range(n)]
    scenes[1]["prompt"] = "${project.name} at dawn"  # an interpolation OmegaConf must still resolve
    doc: dict = {"defaults": ["wanbatch", "_self_"], "project": {"name": "big", "defaults": DEFAULTS}}
    if hydra:
        doc["hydra"] = hydra
    doc["scenes"] = scenes
    root.mkdir(parents=True, exist_ok=True)
    (root / "project.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "project.yaml"


def cli(root: Path, *args: str, counted: bool = False) -> subprocess.CompletedProcess[str]:
    if counted:
        cmd = [sys.executable, "-c", COUNTING]
    else:
        cmd = [WANBATCH] if WANBATCH else [sys.executable, "-m", "wanbatch"]
    flags = [a for a in args if a.startswith("-")]  # Hydra wants its flags before the overrides
    cmd += [*flags, "--config-dir", str(root), f"cache.dir={root / 'cache'}", *(a for a in args if a not in flags)]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)


def test_a_big_dry_run_composes_once_and_prints_a_summary_with_the_whole_plan_in_a_file(tmp_path):
    project = _project(tmp_path / "p", 120)
    plan_file = tmp_path / "plan.jsonl"
    got = cli(project.parent, "dry_run=true", "scenes.4.seed=777", f"+plan_out={plan_file}", counted=True)
    assert got.returncode == 0, got.stderr
    assert "compositions: 1" in got.stderr  # not once for get_mode and again for the run

    # The summary: one row per backend x cache state, the first rows of each group, never 120 table rows.
    out = got.stdout
    assert "plan for big: 120 scenes by backend and cache state" in out
    assert "diffusers, new: first 3 of 40" in out and "preview, new: first 3 of 80" in out
    assert "... and 77 more" in out and "... and 37 more" in out
    assert "s100" not in out
    assert "120 scenes: 0 cached, 120 to render (" in out and f"; the plan is in {plan_file}" in out
    assert "est. cost $0.00 + unknown (diffusers without a price)" in out  # preview is free, diffusers unpriced
    assert "note: 30 more notes like these" in out  # tiny-t2v frames rounded to 4k+1: 10 shown, the rest counted

    # The whole plan, a JSON line per scene, as the typed config plans it (same keys, the override applied).
    rows = [json.loads(line) for line in plan_file.read_text().splitlines()]
    assert [r["scene"] for r in rows] == [f"s{i}" for i in range(120)]
    cfg = load_config(project, [f"cache.dir={project.parent / 'cache'}", "scenes.4.seed=777"])
    assert cfg.scenes[1]["prompt"] == "big at dawn"
    plan = _plan(cfg, project.parent, None)[0]
    assert [r["key"] for r in rows] == [j.key for j in plan.jobs]
    assert rows[4]["seed"] == 777 and rows[5]["seed"] == 5
    assert {r["backend"] for r in rows[::3]} == {"diffusers"} and all(r["cache"] == "new" for r in rows)
    assert {(r["backend"], r["cost"]) for r in rows} == {("diffusers", None), ("preview", 0.0)}


def test_a_small_dry_run_keeps_the_table_and_suggests_no_file(tmp_path):
    project = _project(tmp_path / "p", 6)
    got = cli(project.parent, "dry_run=true", "scenes.2.seed=42")
    assert got.returncode == 0, got.stderr
    assert "plan for big" in got.stdout and "by backend and cache state" not in got.stdout
    assert "│ s2 " in got.stdout and "│ 42 " in got.stdout  # the override reached the inline scene
    assert "plan_out" not in got.stdout


def test_a_sweep_over_an_inline_scene_reaches_every_member(tmp_path):
    project = _project(tmp_path / "p", 4)
    got = cli(project.parent, "-m", "dry_run=true", "scenes.2.seed=31,32")
    assert got.returncode == 0, got.stderr
    assert "│ 31 " in got.stdout and "│ 32 " in got.stdout


def test_hydra_mode_in_the_project_file_is_refused_before_composing(tmp_path):
    # A project file is data (issue 16): it may set only the run or sweep folder of Hydra, never its mode.
    project = _project(tmp_path / "p", 4, hydra={"mode": "MULTIRUN"})
    got = cli(project.parent, "dry_run=true", "scenes.0.seed=11,12")
    assert got.returncode == 2, got.stdout + got.stderr
    assert "`hydra.mode" in got.stderr and "belong on the command line" in got.stderr


def test_an_override_on_a_scene_past_the_end_is_an_error_naming_it(tmp_path):
    project = _project(tmp_path / "p", 4)
    got = cli(project.parent, "dry_run=true", "+scenes.9.seed=1")
    assert got.returncode == 2, got.stdout + got.stderr
    assert "`scenes.9.seed`" in got.stderr and "the index of a scene: this project has 4 scenes" in got.stderr


def test_a_run_records_the_whole_scene_list_in_hydras_config(tmp_path):
    project = _project(tmp_path / "p", 5)
    doc = yaml.safe_load(project.read_text())  # a cheap render: every scene on the preview backend
    doc["scenes"] = [{k: v for k, v in s.items() if k not in TINY} for s in doc["scenes"]]
    project.write_text(yaml.safe_dump(doc, sort_keys=False))
    got = cli(project.parent, "scenes.2.seed=9", "hydra.run.dir=out", "report=false", "stitch.enabled=false")
    assert got.returncode == 0, got.stdout + got.stderr
    recorded = yaml.safe_load((project.parent / "out" / ".hydra" / "config.yaml").read_text())
    assert [s["id"] for s in recorded["scenes"]] == ["s0", "s1", "s2", "s3", "s4"]
    assert recorded["scenes"][2]["seed"] == 9 and recorded["scenes"][1]["prompt"] == "big at dawn"
    assert recorded["project"]["name"] == "big"
