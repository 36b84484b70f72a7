"""A project file is data: opening a hostile one runs nothing, reads no environment variable and places no
run anywhere. Each hostile project below exits 2 before Hydra composes it, naming the file and the key,
with nothing written, copied or sent; the built-in recipes pass the same checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wanbatch.config.load import RECIPES_DIR, load_config
from wanbatch.config.project_files import ALIAS_BUDGET, check_project
from wanbatch.errors import ConfigError
from wanbatch.testing.fakeprovider import FakeProvider

import remote_fixtures as rf
from conftest import tree
from remote_fixtures import *  # noqa: F403 (the fake provider)

SCENES = """\
project: {name: film}
scenes:
  - id: card
    title: T
    seed: 1
    width: 64
    height: 48
    duration: 0.5
"""


def bomb(depth: int) -> str:
    """A billion-laughs YAML of `depth` levels: under 1 KB, 9**depth strings once its aliases expand."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, depth + 1):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def wanbatch(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **rf.KEYS, "MY_OTHER_SECRET": "other-SECRET-9d2b7e"}
    cache = f"cache.dir={cwd.parent / 'cache'}"
    return subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", *args, cache, "executor.progress=none"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def hostile(tmp_path: Path, text: str, **others: str) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "project.yaml").write_text(text)
    for name, body in others.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(body)
    return folder


def refused(tmp_path: Path, proj: Path, *args: str) -> str:
    before = tree(tmp_path)
    proc = wanbatch(tmp_path / "work", "--config-dir", str(proj), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    after = tree(tmp_path)
    assert after == before, sorted(set(after) - set(before))  # nothing copied, made or cached
    return proc.stderr


def test_hydra_callbacks_in_a_project_run_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("precious")
    proj = hostile(
        tmp_path,
        "defaults: [wanbatch, _self_]\n"
        "hydra:\n  callbacks:\n    c:\n"
        f"      _target_: shutil.copyfile\n      _args_: [{tmp_path / 'a.txt'}, {tmp_path / 'copied.txt'}]\n" + SCENES,
    )
    err = refused(tmp_path, proj, "dry_run=true")
    assert "`hydra.callbacks (in proj/project.yaml)`" in err
    assert "a project file may set only the run or sweep folder" in err
    assert not (tmp_path / "copied.txt").exists()


def test_a_target_anywhere_is_refused(tmp_path: Path) -> None:
    proj = hostile(tmp_path, "defaults: [wanbatch, _self_]\n" + SCENES + "    _target_: os.system\n")
    err = refused(tmp_path, proj)
    assert "`scenes.0._target_ (in proj/project.yaml)` = 'os.system' is not allowed; no `_target_`" in err


def test_a_hydra_group_in_the_defaults_list_is_refused(tmp_path: Path) -> None:
    proj = hostile(tmp_path, "defaults:\n  - wanbatch\n  - override hydra/job_logging: disabled\n  - _self_\n" + SCENES)
    err = refused(tmp_path, proj)
    assert "`defaults (in proj/project.yaml)`" in err and "no Hydra group" in err


def test_the_environment_is_not_read_and_the_error_says_how_to_pass_a_value(tmp_path: Path) -> None:
    proj = hostile(
        tmp_path, "defaults: [wanbatch, _self_]\n" + SCENES.replace("title: T", 'title: "x ${oc.env:GMI_API_KEY}"')
    )
    err = refused(tmp_path, proj)
    assert "`scenes.0.title (in proj/project.yaml)` = 'x ${oc.env:GMI_API_KEY}' is not allowed" in err
    assert "pass the value on the command line instead: `scenes.0.title=VALUE`" in err
    assert "gmi-TEST-KEY" not in err


@pytest.mark.parametrize(
    "title",
    [
        r"${oc.decode:'\${oc.env:GMI_API_KEY}'}",  # escaped, then decoded: OmegaConf reads the variable
        "${ oc.env : GMI_API_KEY }",
        "${oc.create:'{a: 1}'}",  # text turned into config
    ],
)
def test_no_resolver_reads_the_environment_or_evaluates_text(tmp_path: Path, title: str) -> None:
    quoted = "'" + title.replace("'", "''") + "'"  # YAML single quotes: the backslash stays
    proj = hostile(tmp_path, "defaults: [wanbatch, _self_]\n" + SCENES.replace("title: T", f"title: {quoted}"))
    err = refused(tmp_path, proj)
    assert "`scenes.0.title (in proj/project.yaml)`" in err and "pass the value on the command line" in err
    assert "gmi-TEST-KEY" not in err


@pytest.mark.parametrize(
    "backend",
    [
        "backend:\n  base_url: URL\n",  # your NOVITA_API_KEY, sent to the project's server
        "backends:\n  novita_wan21_t2v:\n    base_url: URL\n    api_key_env: MY_OTHER_SECRET\n",
    ],
)
def test_a_project_cannot_choose_where_your_key_goes(tmp_path: Path, fake: FakeProvider, backend: str) -> None:
    """The fake provider stands in for the project author's server: it must never hear from wanbatch."""
    proj = hostile(
        tmp_path,
        "defaults:\n  - wanbatch\n  - override backend: novita_wan21_t2v\n  - _self_\n"
        + backend.replace("URL", fake.url)
        + "project: {name: film}\nscenes:\n  - {id: opening, prompt: Dawn over a harbour., seed: 1}\n",
    )
    err = refused(tmp_path, proj)
    assert fake.stats()["total"] == {}
    assert "base_url (in proj/project.yaml)` = 'http://127.0.0.1" in err
    assert "where your API key is sent is chosen on the command line" in err
    if "api_key_env" in backend:
        assert "`backends.novita_wan21_t2v.api_key_env (in proj/project.yaml)` = 'MY_OTHER_SECRET'" in err
    assert rf.KEYS["NOVITA_API_KEY"] not in err and "other-SECRET" not in err


def test_a_run_folder_outside_the_working_directory_is_refused_before_hydra_makes_it(tmp_path: Path) -> None:
    proj = hostile(tmp_path, "defaults: [wanbatch, _self_]\nhydra:\n  run:\n    dir: ../../elsewhere\n" + SCENES)
    err = refused(tmp_path, proj)
    assert "`hydra.run.dir (in proj/project.yaml)` = '../../elsewhere' is not allowed; a relative folder" in err
    assert not (tmp_path.parent / "elsewhere").exists()


@pytest.mark.parametrize("depth", [5, 9])
def test_an_alias_bomb_is_refused_naming_the_file(tmp_path: Path, depth: int) -> None:
    """Depth 4 took 28 s and 360 MB in 0.1, depth 5 never finished; the subprocess's own timeout fails it."""
    proj = hostile(tmp_path, "defaults: [wanbatch, _self_]\n" + SCENES + bomb(depth))
    assert len((proj / "project.yaml").read_text()) < 1500
    err = refused(tmp_path, proj)
    assert f"`proj/project.yaml` = 'YAML aliases' is not allowed; at most {ALIAS_BUDGET} nodes" in err


def test_files_the_project_pulls_in_are_checked_too(tmp_path: Path) -> None:
    """A file of the project's folder named in its defaults list, and one a `+group=option` override adds
    (its `# @package hydra` header would put its content under `hydra:`)."""
    proj = hostile(
        tmp_path,
        "defaults: [wanbatch, more, _self_]\n" + SCENES,
        **{
            "more.yaml": "hydra:\n  job_logging:\n    handlers: {x: {(): os.system}}\n",
            "extra/evil.yaml": "# @package hydra\ncallbacks: {c: {_target_: os.system}}\n",
        },
    )
    err = refused(tmp_path, proj, "+extra=evil")
    assert "`hydra.job_logging (in proj/more.yaml)`" in err
    assert "`hydra.callbacks (in proj/extra/evil.yaml)`" in err


def test_the_python_api_checks_the_project_file_too(tmp_path: Path) -> None:
    proj = hostile(tmp_path, "defaults: [wanbatch, _self_]\nhydra:\n  callbacks: {c: {_target_: os.getcwd}}\n" + SCENES)
    with pytest.raises(ConfigError, match=r"hydra\.callbacks \(in proj/project\.yaml\)"):
        load_config(proj / "project.yaml")


def test_a_project_that_is_data_still_runs_with_its_run_folder_inside(tmp_path: Path) -> None:
    proj = hostile(
        tmp_path,
        "defaults: [wanbatch, _self_]\nhydra:\n  run:\n    dir: outputs/${project.name}/here\n"
        + SCENES
        + "    prompt: &p a harbour\n  - id: again\n    title: *p\n    seed: 2\n    width: 64\n    height: 48\n"
        "    duration: 0.5\n",
    )
    proc = wanbatch(tmp_path / "work", "--config-dir", str(proj))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "work" / "outputs" / "film" / "here" / "manifest.json").is_file()


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES_DIR.iterdir() if (p / "project.yaml").is_file()))
def test_the_built_in_recipes_are_data(recipe: str) -> None:
    folder = RECIPES_DIR / recipe
    for config in sorted(folder.glob("*.yaml")):
        assert [str(i) for i in check_project(folder, config.stem)] == []
