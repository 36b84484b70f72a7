"""The console script exits quickly once its work is done (no interpreter teardown), and that changes nothing
a user sees: the exit code, what was printed, and every atexit handler (logs, Ray) still run; with a thread
still working it exits the usual way, waiting for it."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import wanbatch.cli as cli

from conftest import CHECKOUT


def _console(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """`python -m wanbatch.cli ARGS` with an atexit handler of a library's (it writes a file); whether it ran."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    marker = tmp_path / "atexit-ran"
    marker.unlink(missing_ok=True)
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import atexit, pathlib
            atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text("ran"))
            """
        )
    )
    env_path = f"{hook}:{CHECKOUT}"
    proc = subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": env_path},
        cwd=tmp_path,
    )
    return proc, marker.exists()


def test_a_successful_command_exits_0_and_runs_the_atexit_handlers(tmp_path):
    proc, ran = _console(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("wanbatch ") and ran


def test_an_invalid_project_still_exits_2_with_its_message_and_the_handlers_run(tmp_path):
    proc, ran = _console(tmp_path, "recipe=no_such_recipe")
    assert proc.returncode == 2 and "no_such_recipe" in proc.stderr and ran


def test_output_piped_to_a_file_is_all_there(tmp_path):
    out = tmp_path / "help.txt"
    with open(out, "w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "wanbatch.cli", "--help"],
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
        )
    assert proc.returncode == 0
    assert "wanbatch" in out.read_text() and out.read_text().endswith("\n")


@pytest.fixture
def quick_exit(monkeypatch):
    """console() in-process: os._exit and the atexit run recorded, not done (they would end pytest)."""
    calls: list[object] = []

    class Exited(Exception):
        pass

    def fake_exit(status):
        calls.append(("_exit", status))
        raise Exited

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    return calls, Exited


@pytest.mark.parametrize(("raised", "status"), [(None, 0), (0, 0), (3, 3), ("error: a message", 1)])
def test_the_exit_status_is_what_sys_exit_said(monkeypatch, capsys, quick_exit, raised, status):
    calls, exited = quick_exit

    def main():
        if raised is not None:
            sys.exit(raised)

    monkeypatch.setattr(cli, "main", main)
    with pytest.raises(exited):
        cli.console()
    assert calls == ["atexit", ("_exit", status)]
    if isinstance(raised, str):
        assert capsys.readouterr().err == "error: a message\n"


def test_a_thread_still_working_gets_the_usual_exit(monkeypatch, quick_exit):
    calls, _ = quick_exit
    release = threading.Event()
    worker = threading.Thread(target=release.wait, args=(60,), name="still-working")

    def main():
        worker.start()
        sys.exit(4)

    monkeypatch.setattr(cli, "main", main)
    try:
        with pytest.raises(SystemExit) as exc:
            cli.console()
    finally:
        release.set()
        worker.join(60)
    assert exc.value.code == 4 and calls == []  # Python's own exit, which joins the thread
