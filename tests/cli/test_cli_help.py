"""What a new user asks the console before any project exists: --help, --info, --cfg, and TAB completion, each
through the console script from an empty folder, with and without a recipe."""

from __future__ import annotations

import subprocess

import pytest

from wanbatch.core.scene import SCENE_FIELDS

from cli_fixtures import SCRIPT, listing, wanbatch


@pytest.mark.parametrize("args", [["--help"], ["--help", "recipe=demo"], ["-h"]])
def test_help_explains_recipes_projects_dry_runs_sub_commands_and_exit_codes(tmp_path, args):
    got = wanbatch(*args, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    text = got.stdout
    assert text.startswith("wanbatch ") and "powered by Hydra" not in text
    for needed in (
        "recipe=NAME",
        "demo, novita, remote_mix, storyboard",
        "--config-dir DIR",
        "dry_run=true",
        "wanbatch init",
        "wanbatch cache",
        "--version",
        "-sc install=bash",
        "scenes.<i>.<field>=value",
    ):
        assert needed in text, needed
    for code, meaning in (
        ("0", "every scene is done"),
        ("1", "some scene failed"),
        ("2", "the project is invalid"),
        ("130", "interrupted"),
    ):
        assert any(line.split()[:1] == [code] and meaning in line for line in text.splitlines()), code
    assert "backend: aiml_wan27_i2v, diffusers," in text and "base_aiml" not in text  # options, not their schemas
    assert listing(tmp_path) == []  # asked for help: wrote nothing


@pytest.mark.parametrize("recipe", [[], ["recipe=demo"]])
def test_info_and_cfg_work_with_or_without_a_recipe(tmp_path, recipe):
    info = wanbatch("--info", *recipe, cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "Defaults List" in info.stdout and "Config search path" in info.stdout
    cfg = wanbatch("--cfg", "job", *recipe, cwd=tmp_path)
    assert cfg.returncode == 0, cfg.stderr
    assert "executor:" in cfg.stdout and "concurrency: 4" in cfg.stdout
    assert ("id: sunrise" in cfg.stdout) == bool(recipe)  # the recipe's scenes, when one is named
    assert listing(tmp_path) == []


def complete(line: str, tmp_path, shell: str = "bash") -> list[str]:
    got = wanbatch("-sc", f"query={shell}", cwd=tmp_path, env={"COMP_LINE": line})
    assert got.returncode == 0, got.stderr
    return got.stdout.split()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("wanbatch recipe=", ["recipe=demo", "recipe=novita", "recipe=remote_mix", "recipe=storyboard"]),
        ("wanbatch recipe=st", ["recipe=storyboard"]),
        ("wanbatch recipe=demo backend=nov", ["backend=novita_wan21_t2v"]),
        ("wanbatch recipe=demo exec", ["executor.", "executor="]),
        ("wanbatch recipe=demo executor=", ["executor=local", "executor=ray"]),
        ("wanbatch recipe=demo executor.con", ["executor.concurrency="]),
        ("wanbatch recipe=demo scenes.1.se", ["scenes.1.seed="]),
        ("wanbatch recipe=demo scenes.", [f"scenes.{i}." for i in range(8)]),  # the demo's eight scenes
    ],
)
def test_completion_answers_the_query_the_installed_script_makes(tmp_path, line, expected):
    assert complete(line, tmp_path) == expected


def test_completion_offers_every_scene_field_and_hides_the_schemas(tmp_path):
    assert complete("wanbatch recipe=demo scenes.0.", tmp_path) == sorted(f"scenes.0.{f}=" for f in SCENE_FIELDS)
    backends = complete("wanbatch backend=", tmp_path)
    assert "backend=preview" in backends and "backend=diffusers" in backends
    assert not [c for c in backends if "base_" in c]
    assert complete("wanbatch recipe=demo backend=nov", tmp_path, shell="fish") == ["backend=novita_wan21_t2v"]
    assert listing(tmp_path) == []


@pytest.mark.parametrize(("shell", "needed"), [("zsh", "hydra_bash_completion"), ("fish", "hydra_fish_completion")])
def test_the_zsh_and_fish_scripts_install(tmp_path, shell, needed):
    got = wanbatch("-sc", f"install={shell}", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert needed in got.stdout and "wanbatch" in got.stdout
    assert listing(tmp_path) == []


def test_the_bash_script_completes_in_bash(tmp_path):
    """`eval "$(wanbatch -sc install=bash)"`, then what bash does on TAB: call the function it registered."""
    install = wanbatch("-sc", "install=bash", cwd=tmp_path)
    assert install.returncode == 0, install.stderr
    assert "complete -o nospace -o default -F hydra_bash_completion wanbatch" in install.stdout
    script = tmp_path / "completion.bash"
    script.write_text(install.stdout)
    probe = (
        f'PATH="{SCRIPT[0].rsplit("/", 1)[0]}:$PATH"; source "{script}"; '
        'COMP_LINE="wanbatch recipe=demo backend=nov"; COMP_POINT=${#COMP_LINE}; COMP_CWORD=2; '
        'hydra_bash_completion; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    got = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["backend=novita_wan21_t2v"]


def test_help_piped_into_a_reader_that_left_is_no_traceback(tmp_path):
    """`wanbatch --help | head`: a reader that left before wanbatch wrote (here `true`, which reads nothing and is
    gone long before Hydra has started) is no error of the user's: no traceback."""
    got = subprocess.run(
        ["bash", "-c", f"{' '.join(SCRIPT)} --help | true; echo ${{PIPESTATUS[0]}}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in got.stderr and "BrokenPipe" not in got.stderr, got.stderr
    assert got.stdout.strip() in ("0", "141")
