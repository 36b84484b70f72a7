"""The console on a real terminal (a pseudo-terminal from util-linux `script`): the live table instead of plain
lines, then the phases and the last lines."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from cli_fixtures import SCRIPT

PROJECT = (
    "defaults: [wanbatch, _self_]\nproject: {name: film}\n"
    "scenes:\n  - {id: quay, prompt: A quay.}\n  - {id: pier, prompt: A pier.}\n"
)


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux `script` for a pseudo-terminal")
def test_a_terminal_gets_the_live_table(tmp_path):
    (tmp_path / "film").mkdir()
    (tmp_path / "film" / "project.yaml").write_text(PROJECT)
    command = shlex.join([*SCRIPT, "--config-dir", "film"])
    env = {**os.environ, "WANBATCH_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "100", "TERM": "xterm"}
    env.pop("HYDRA_FULL_ERROR", None)
    got = subprocess.run(
        ["script", "-q", "-e", "-c", command, str(tmp_path / "tty.txt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert got.returncode == 0, got.stdout[-3000:]
    screen = (tmp_path / "tty.txt").read_text(errors="replace")
    assert "scene" in screen and "backend" in screen and "state" in screen  # the live table's header
    assert "2/2 done: 2 rendered, 0 cached, 0 failed" in screen
    assert "] quay: " not in screen  # no plain-mode lines on a terminal
    assert "joining film ..." in screen and "writing report ..." in screen
    assert "done: 2 rendered, 0 cached, 0 failed, 0 cancelled" in screen
