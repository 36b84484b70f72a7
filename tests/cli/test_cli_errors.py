"""A broken project file or a mistyped override, met through the console script: exit 2, one line that names
the file (line and column), the key or the scene and what would be right; never a traceback."""

from __future__ import annotations

import pytest

from cli_fixtures import wanbatch

GOOD = "defaults: [wanbatch, _self_]\nproject: {name: film}\nscenes:\n  - {id: quay, prompt: A quay at dawn.}\n"


def one_error_line(got) -> str:
    assert got.returncode == 2, (got.stdout, got.stderr)
    assert "Traceback" not in got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD + "  - {id: pier, prompt: A pier\n",
            "error: film/project.yaml:6:1: expected ',' or '}', but got '<stream end>'",
        ),
        (
            GOOD.replace("defaults: [wanbatch, _self_]\n", ""),
            "error: film/project.yaml: no `defaults: [wanbatch, _self_]` line; add it at the top",
        ),
        (GOOD + "  - {id: quay, prompt: Again.}\n", "`scenes.1.id` = 'quay' is not allowed; a unique id"),
        (  # a group chosen where its options go: say where the choice is made
            GOOD + "backend: novita_wan21_t2v\n",
            "`backend` = 'novita_wan21_t2v' is not allowed; `backend:` in the project file holds the backend's "
            "options (a mapping); choose the backend in the file's defaults list (`- override backend: "
            "novita_wan21_t2v`, before `_self_`) or on the command line (`backend=novita_wan21_t2v`)",
        ),
        (
            GOOD + "executor: rey\n",
            "`executor` = 'rey' is not allowed; one of local, ray (did you mean ray?)",
        ),
    ],
)
def test_a_broken_project_file_is_one_line(tmp_path, text, expected):
    (tmp_path / "film").mkdir()
    (tmp_path / "film" / "project.yaml").write_text(text)
    line = one_error_line(wanbatch("--config-dir", "film", "dry_run=true", cwd=tmp_path))
    assert expected in line


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("scenes.5.seed=1", "`scenes.5.seed` = 1 is not allowed; the index of a scene: this project has 1 scene"),
        ("scenes.0.promt=x", "`promt` = 'x' is not allowed; unknown field (did you mean prompt"),
        ("backend=previw", "`backend` = 'previw' is not allowed; one of "),
        ("executor.concurency=2", "(did you mean concurrency?)"),
    ],
)
def test_a_mistyped_override_is_one_line_with_did_you_mean(tmp_path, override, expected):
    (tmp_path / "film").mkdir()
    (tmp_path / "film" / "project.yaml").write_text(GOOD)
    line = one_error_line(wanbatch("--config-dir", "film", override, "dry_run=true", cwd=tmp_path))
    assert expected in line and "+scenes" not in line
    if override.startswith("backend="):
        assert line.endswith("(did you mean preview?)")


def test_the_choice_the_error_suggests_works(tmp_path):
    (tmp_path / "film").mkdir()
    chosen = "defaults: [wanbatch, {override backend: novita_wan21_t2v}, _self_]"
    (tmp_path / "film" / "project.yaml").write_text(GOOD.replace("defaults: [wanbatch, _self_]", chosen))
    got = wanbatch("--config-dir", "film", "dry_run=true", cwd=tmp_path, env={"NOVITA_API_KEY": "k"})
    assert got.returncode == 0, got.stderr
    assert "novita_wan21_t2v" in got.stdout


def test_a_folder_without_project_yaml_is_named(tmp_path):
    (tmp_path / "film").mkdir()
    (tmp_path / "film" / "draft.yaml").write_text(GOOD)
    line = one_error_line(wanbatch("--config-dir", "film", cwd=tmp_path))
    assert "`--config-dir` = 'film' is not allowed" in line and "draft: pick one with --config-name NAME" in line


def test_resolution_is_case_insensitive(tmp_path):
    (tmp_path / "film").mkdir()
    (tmp_path / "film" / "project.yaml").write_text(GOOD)
    got = wanbatch("--config-dir", "film", "scenes.0.resolution=480p", "dry_run=true", cwd=tmp_path)
    assert got.returncode == 0, got.stderr


def test_hydra_full_error_still_gives_the_traceback(tmp_path):
    (tmp_path / "film").mkdir()
    (tmp_path / "film" / "project.yaml").write_text(GOOD)
    got = wanbatch("--config-dir", "film", "executor.concurency=2", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert got.returncode != 0 and "Traceback" in got.stderr
