"""What a new user types first, run through the console script from an empty folder: --version, init, a
recipe of their own beside the built-in ones, and --config-dir without --config-name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import wanbatch

WANBATCH = shutil.which("wanbatch") or ""


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [WANBATCH, *args] if WANBATCH else [sys.executable, "-m", "wanbatch", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_version_needs_no_project(tmp_path):
    got = cli("--version", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(f"wanbatch {wanbatch.__version__} (Python 3.")
    assert list(tmp_path.iterdir()) == []  # wrote nothing


def test_init_writes_a_project_that_renders_as_it_is(tmp_path):
    got = cli("init", "myfilm", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in (tmp_path / "myfilm").iterdir()) == ["README.md", "project.yaml"]
    assert "wanbatch --config-dir myfilm" in (tmp_path / "myfilm" / "README.md").read_text()

    got = cli("--config-dir", "myfilm", f"cache.dir={tmp_path / 'cache'}", "hydra.run.dir=out", cwd=tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(s["id"], s["status"]) for s in manifest["scenes"]] == [("opening", "rendered"), ("night", "rendered")]
    assert manifest["film"] == "film.mp4" and (tmp_path / "out" / "film.mp4").stat().st_size > 1000


def test_init_never_overwrites_a_project(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "project.yaml").write_text("# mine\n")
    got = cli("init", "mine", cwd=tmp_path)
    assert got.returncode == 2
    assert "already holds project.yaml" in got.stderr and "--force" in got.stderr
    assert (tmp_path / "mine" / "project.yaml").read_text() == "# mine\n"


def test_a_recipe_in_the_working_directory_is_found_beside_the_built_in_ones(tmp_path):
    assert cli("init", "recipes/mine", cwd=tmp_path).returncode == 0
    got = cli("recipe=mine", "dry_run=true", f"cache.dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert "2 scenes: 0 cached, 2 to render" in got.stdout

    got = cli("recipe=nope", cwd=tmp_path)
    assert got.returncode == 2
    for name in ("demo", "mine", "remote_mix", "storyboard"):
        assert name in got.stderr


@pytest.mark.parametrize("form", [["--config-dir", "proj"], ["--config-dir=proj"], ["-cd", "proj"]])
def test_config_dir_alone_means_its_project_yaml(tmp_path, form):
    assert cli("init", "proj", cwd=tmp_path).returncode == 0
    got = cli(*form, "dry_run=true", f"cache.dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert "plan for proj" in got.stdout
