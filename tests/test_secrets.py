"""No key in any byte a run leaves behind: runs whose environment holds every provider key and whose command
line passes a credential, through the console script (real Hydra, real logging, the fake provider on
127.0.0.1), are scanned file by file, with their console output; a key in a scene is refused, not sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from PIL import Image

from wanbatch.secrets import looks_like_credential, redact, register_overrides
from wanbatch.testing.fakeprovider import FakeProvider

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

CREDENTIAL = "s3-SECRET-ACCESS-7d1e9a40c2"  # passed as a credential-named override
POLL = "{initial_s:0.1,interval_s:0.1,backoff:1.5,max_interval_s:0.3,min_interval_s:0.05,jitter:0.1}"
PROJECT = """\
defaults:
  - wanbatch
  - override backend: novita_wan21_t2v
  - _self_
project:
  name: secrets
backends:
  gmi_wan27_i2v:
    uploader: {target: "file://UPLOADS", public_url: "http://127.0.0.1:8000/up"}
scenes:
  - id: opening
    prompt: Dawn over a quiet harbour.
    seed: 1
  - id: card
    backend: preview
    title: The harbour
    seed: 2
    width: 64
    height: 48
    duration: 0.5
  - id: uploaded
    backend: gmi_wan27_i2v
    prompt: The harbour at night.
    image: first.png
    resolution: 720P
    duration: 2
    seed: 3
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    Image.new("RGB", (480, 400), (90, 120, 200)).save(folder / "first.png")
    (folder / "project.yaml").write_text(PROJECT.replace("UPLOADS", str(tmp_path / "uploads")))
    return folder


def wanbatch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **rf.KEYS, "COLUMNS": "200"}
    env.pop("WANBATCH_CACHE_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def remote_overrides(url: str, cache: Path) -> list[str]:
    return [
        f"backend.base_url={url}",
        f"backend.poll={POLL}",
        f"++backends.gmi_wan27_i2v.base_url={url}",
        f"++backends.gmi_wan27_i2v.poll={POLL}",
        f"cache.dir={cache}",
        "executor.progress=plain",
    ]


def run_project(
    fake: FakeProvider, project: Path, cwd: Path, *extra: str, cache: str = "cache"
) -> subprocess.CompletedProcess[str]:
    """The project against the fake provider, run from `cwd` with its cache at `cwd/<cache>`."""
    return wanbatch(cwd, "--config-dir", str(project), *remote_overrides(fake.url, cwd / cache), *extra)


def leaks(*texts: str, root: Path) -> list[str]:
    """Where any key (or the credential) shows: in the console texts, or in any file under `root`."""
    needles = [*rf.KEYS.values(), CREDENTIAL]
    found = [f"console: {n}" for t in texts for n in needles if n in t]
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return found


def test_a_run_with_every_key_in_its_environment_and_a_credential_override_writes_neither(
    fake: FakeProvider, project: Path, tmp_path: Path
) -> None:
    fake.configure(latency_s=0.2)
    fake.fault("429", retry_after=0.05)  # retries log their reasons
    fake.fault("500", phase="poll")
    proc = run_project(
        fake,
        project,
        tmp_path,
        f"++backends.gmi_wan27_i2v.uploader.storage_options.secret={CREDENTIAL}",
        "hydra.job_logging.root.level=DEBUG",  # every line httpx and wanbatch log goes to the run's log file
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = next((tmp_path / "outputs" / "secrets").iterdir())
    for name in ("manifest.json", "index.html", "film.mp4", ".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert (run_dir / name).is_file(), name
    assert any(run_dir.glob("*.log")) and (tmp_path / "uploads").is_dir()
    # Masked where it was written, not merely absent:
    assert "storage_options.secret=***" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "secret: '***'" in (run_dir / ".hydra" / "config.yaml").read_text()
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):  # still YAML a rerun can read
        OmegaConf.load(run_dir / ".hydra" / name)
    assert leaks(proc.stdout, proc.stderr, root=tmp_path) == []


def test_a_key_in_a_prompt_is_refused_before_anything_is_sent_or_written(
    fake: FakeProvider, project: Path, tmp_path: Path
) -> None:
    proc = run_project(
        fake,
        project,
        tmp_path,
        "scenes.0.prompt=Dawn ${oc.env:NOVITA_API_KEY}",
    )
    assert proc.returncode == 2, proc.stderr
    assert "scene `opening`: `prompt` = 'Dawn ***' is not allowed; text without an API key" in proc.stderr
    assert fake.stats()["total"].get("submit_attempts", 0) == 0
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "cache").exists()
    assert leaks(proc.stdout, proc.stderr, root=tmp_path) == []


def test_a_key_in_a_project_file_prompt_is_refused(fake: FakeProvider, project: Path, tmp_path: Path) -> None:
    text = (project / "project.yaml").read_text()
    (project / "project.yaml").write_text(text.replace("Dawn over a quiet harbour.", "x ${oc.env:GMI_API_KEY}"))
    proc = run_project(fake, project, tmp_path)
    assert proc.returncode == 2
    # Refused as it is written (the project file reads no environment), so the key is never even read.
    assert "`scenes.0.prompt (in proj/project.yaml)` = 'x ${oc.env:GMI_API_KEY}' is not allowed" in proc.stderr
    assert fake.stats()["total"].get("submit_attempts", 0) == 0
    assert leaks(proc.stdout, proc.stderr, root=tmp_path) == []


def test_a_credential_override_is_masked_in_the_error_and_leaves_no_run_folder(
    fake: FakeProvider, project: Path, tmp_path: Path
) -> None:
    proc = run_project(
        fake,
        project,
        tmp_path,
        f"+backend.token={CREDENTIAL}",
    )
    assert proc.returncode == 2
    assert "`backend.token` = '***' is not allowed" in proc.stderr
    assert not (tmp_path / "outputs").exists()
    assert leaks(proc.stdout, proc.stderr, root=tmp_path) == []


def test_a_dry_run_leaves_no_run_folder(fake: FakeProvider, project: Path, tmp_path: Path) -> None:
    proc = run_project(fake, project, tmp_path, "dry_run=true", cache="c")
    assert proc.returncode == 0, proc.stderr
    assert "3 scenes: 0 cached, 3 to render" in proc.stdout
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "c").exists()


def test_what_counts_as_a_credential() -> None:
    for name in ("token", "api_key", "secret", "password", "aws_secret_access_key", "KEY", "credentials"):
        assert looks_like_credential(name), name
    for name in ("api_key_env", "seed", "prompt", "dir", "keep_actors"):
        assert not looks_like_credential(name), name
    register_overrides(["+backend.token=tok-unit-4411", "x.uploader={target: a, secret: sec-unit-8822}", "seed=12345"])
    assert redact("tok-unit-4411 sec-unit-8822 12345") == "*** *** 12345"


def test_the_python_api_knows_a_credential_in_its_config(
    tmp_path: Path, run_cfg: Any, compose_demo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through `load_config` and `run_project`, no console script: an uploader's `storage_options.secret` is a
    secret, so a prompt holding it is refused and the error shows it masked."""
    secret = "pw-in-config-5521"
    where = f"target: 'file://{tmp_path}/up', public_url: 'http://127.0.0.1:8000'"
    uploader = f"{{{where}, storage_options: {{secret: {secret}}}}}"
    cfg = compose_demo(f"++backends.gmi_wan27_i2v.uploader={uploader}", f"scenes.0.prompt=see {secret}")
    code, run_dir, out = run_cfg(cfg)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "scene `title`: `prompt` = 'see ***' is not allowed" in err
    assert secret not in err + out and not run_dir.exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
