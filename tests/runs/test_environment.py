"""Every manifest says what made its clips (`environment`): wanbatch, Python, the platform, the installed
versions of the packages that shape a render, ffmpeg; the devices, dtype and model revisions of a local
backend that rendered; the project's git commit and dirty flag. The report shows it, collapsed."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import wanbatch
from wanbatch.av.ffmpeg import ffmpeg_exe
from wanbatch.backends.local.models.registry import folder_identity
from wanbatch.config.load import load_config
from wanbatch.runs.environment import changed
from wanbatch.version import SHAPING_PACKAGES, package_versions

from conftest import PROJECT
from local_fixtures import tiny_models_dir  # noqa: F401 - fixture

GIT = shutil.which("git")


def _env(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())["environment"]


def test_a_manifest_names_the_software_that_made_it(compose_demo, run_cfg):
    code, run_dir, _ = run_cfg(compose_demo())
    assert code == 0
    env = _env(run_dir)
    assert env["wanbatch"] == wanbatch.__version__
    assert env["python"].split()[0] == __import__("platform").python_version()
    ffmpeg = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout.split()[2]
    assert env["ffmpeg"] == ffmpeg
    assert env["packages"]["httpx"] == metadata.version("httpx")
    assert env["project"]["path"] == str(PROJECT.parent)
    assert env["backends"] == {}  # the preview backend has nothing to add; no local backend ran
    page = (run_dir / "index.html").read_text()
    section = page[page.index('<details class="environment">') :]
    assert "<summary>Environment</summary>" in section and "packages.httpx" in section and ffmpeg in section


def test_package_versions_are_those_of_the_installed_metadata():
    got = package_versions()
    for name in SHAPING_PACKAGES:
        try:
            expected = metadata.version(name)
        except metadata.PackageNotFoundError:
            assert name not in got
        else:
            assert got[name] == expected


@pytest.mark.skipif(GIT is None, reason="needs git")
def test_the_projects_git_commit_and_dirty_flag(tmp_path, run_cfg, cache_dir):
    project = tmp_path / "film"
    shutil.copytree(PROJECT.parent, project)
    git = [str(GIT), "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    def run() -> dict[str, Any]:
        cfg = load_config(project / "project.yaml", [f"cache.dir={cache_dir}", "executor.progress=none"])
        code, run_dir, _ = run_cfg(cfg, root=project)
        assert code == 0
        return _env(run_dir)["project"]

    assert run() == {"path": str(project), "git": {"commit": head, "dirty": False}}
    (project / "project.yaml").write_text((project / "project.yaml").read_text() + "\n# an edit\n")
    assert run()["git"] == {"commit": head, "dirty": True}


def test_a_folder_that_is_no_git_checkout_records_no_commit(tmp_path, run_cfg, cache_dir):
    project = tmp_path / "film"
    shutil.copytree(PROJECT.parent, project)
    cfg = load_config(project / "project.yaml", [f"cache.dir={cache_dir}", "executor.progress=none"])
    code, run_dir, _ = run_cfg(cfg, root=project)
    assert code == 0
    assert _env(run_dir)["project"] == {"path": str(project)}


LOCAL = """\
defaults: [wanbatch, _self_]
project: {name: local}
scenes:
  - {id: kite, backend: diffusers, model: tiny-t2v, prompt: a red kite, width: 64, height: 64, num_frames: 5, seed: 1}
"""


def test_a_local_backend_that_rendered_records_its_devices_dtype_and_model_content(
    tmp_path,
    run_cfg,
    cache_dir,
    tiny_models_dir,  # noqa: F811 - fixture
):
    (tmp_path / "project.yaml").write_text(LOCAL)
    overrides = [
        f"cache.dir={cache_dir}",
        "executor.progress=none",
        "++backends.diffusers.device=cpu",
        f"++backends.diffusers.models_dir={tiny_models_dir}",
    ]
    cfg = load_config(tmp_path / "project.yaml", overrides)
    code, run_dir, _ = run_cfg(cfg, root=tmp_path)
    assert code == 0
    import torch

    local = _env(run_dir)["backends"]["diffusers"]
    assert local["devices"] == [{"device": "cpu", "name": local["devices"][0]["name"]}]
    assert local["devices"][0]["name"]  # the CPU's model name
    assert local["dtype"] == "float32" and local["torch"] == torch.__version__ and local["cuda"] == torch.version.cuda
    assert local["models"] == {
        "tiny-t2v": {"model": "tiny-t2v@1", "content": folder_identity(tiny_models_dir / "tiny-t2v-v1")}
    }

    # A rerun served from the cache rendered nothing here: no device to speak of (and no torch to load for it).
    code, rerun, _ = run_cfg(cfg, root=tmp_path)
    assert code == 0
    assert _env(rerun)["backends"] == {}
    diff = changed(_env(run_dir), _env(rerun))
    assert diff["backends.diffusers.dtype"] == ("float32", None)
    assert not any(name.startswith(("packages.", "ffmpeg", "wanbatch", "python")) for name in diff)
