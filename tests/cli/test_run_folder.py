"""A project cannot put its run folder anywhere: `project.name` is a name, not a path, and a run folder
outside the working directory is the command line's choice (`hydra.run.dir=PATH`), never a project file's.
An invalid project leaves no run folder behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from conftest import tree

SCENES = [{"id": "card", "title": "T", "seed": 1, "width": 64, "height": 48, "duration": 0.5}]


def project(folder: Path, **top: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"defaults": ["wanbatch", "_self_"], "project": {"name": "film"}, "scenes": SCENES, **top}
    (folder / "project.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def wanbatch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", *args, f"cache.dir={cwd.parent / 'cache'}", "executor.progress=none"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ},
        timeout=300,
    )


def victim(folder: Path) -> dict[str, int]:
    """Another project's run folder, with its report and manifest."""
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<p>another project's report</p>")
    (folder / "manifest.json").write_text(json.dumps({"scenes": []}))
    return tree(folder)


def test_a_project_name_that_climbs_out_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    work = tmp_path / "a" / "b" / "work"
    proj = project(tmp_path / "proj", project={"name": "../../escaped"})
    before = tree(tmp_path)
    proc = wanbatch(work, "--config-dir", str(proj))
    assert proc.returncode == 2, proc.stderr
    assert "project: `project.name` = '../../escaped' is not allowed; a project name is letters" in proc.stderr
    assert tree(tmp_path) == before  # no folder made, in the working directory or above it
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["work"] and not list(work.iterdir())


def test_a_project_file_cannot_send_its_run_into_another_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"
    kept = victim(tmp_path / "other_project_run")
    proj = project(tmp_path / "proj", hydra={"run": {"dir": str(tmp_path / "other_project_run")}})
    proc = wanbatch(work, "--config-dir", str(proj))
    assert proc.returncode == 2, proc.stderr
    assert "`hydra.run.dir (in proj/project.yaml)`" in proc.stderr
    assert "a run folder elsewhere is set on the command line (`hydra.run.dir=PATH`)" in proc.stderr
    assert tree(tmp_path / "other_project_run") == kept
    assert not (work / "outputs").exists()


def test_a_project_may_name_a_run_folder_inside_the_working_directory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    proj = project(tmp_path / "proj", hydra={"run": {"dir": "outputs/mine"}})
    proc = wanbatch(work, "--config-dir", str(proj))
    assert proc.returncode == 0, proc.stderr
    assert (work / "outputs" / "mine" / "manifest.json").is_file()


def test_the_command_line_still_puts_a_run_anywhere(tmp_path: Path) -> None:
    work = tmp_path / "work"
    proj = project(tmp_path / "proj")
    proc = wanbatch(work, "--config-dir", str(proj), f"hydra.run.dir={tmp_path / 'elsewhere'}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "elsewhere" / "manifest.json").is_file()
    assert (tmp_path / "elsewhere" / ".hydra" / "overrides.yaml").is_file()


def test_an_invalid_project_leaves_no_run_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"
    proj = project(tmp_path / "proj")
    proc = wanbatch(work, "--config-dir", str(proj), "scenes.0.seed=-7")
    assert proc.returncode == 2
    assert "scene `card`: `seed` = -7 is not allowed" in proc.stderr
    assert list(work.iterdir()) == []
