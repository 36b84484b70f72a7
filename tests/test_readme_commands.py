"""Every `wanbatch ...` command in README.md, run as written through the console script, in README order, in a
folder of its own: a new user's first session. A command whose project renders on a paid API or on a Ray
cluster (`executor.address=...`) runs as a dry run (`dry_run=true` added: validated and planned, nothing sent);
the one that names the fake provider (`$U`) renders against the bundled `wanbatch.testing.fakeprovider`. Shown
errors (`$ wanbatch ...` followed by its output) must print that output.

The README's own substitutions, made here: `recipe=myfilm` (the Ray and sweep sections) is a project of yours
under ./recipes, written by `wanbatch init`; an absolute `cache.dir` is this test's cache. Commands that need a
launcher plugin that is not installed, and its cluster, are only checked to say what to install."""

from __future__ import annotations

import importlib.util
import re
import shlex

import pytest

from wanbatch.testing.fakeprovider import FakeProvider

from cli_fixtures import wanbatch
from conftest import CHECKOUT

REMOTE = re.compile(r"recipe=(novita|remote_mix)\b|backend=(novita|gmi|aiml)_")
LAUNCHERS = {"submitit_slurm": "hydra_plugins.hydra_submitit_launcher", "ray": "hydra_plugins.hydra_ray_launcher"}


def readme_commands() -> list[tuple[list[str], str | None]]:
    """(words, expected stderr or None) for each `wanbatch` line of README.md's code blocks, continuations joined."""
    out: list[tuple[list[str], str | None]] = []
    in_block = False
    lines = (CHECKOUT / "README.md").read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if line.startswith("```"):
            in_block = not in_block
            continue
        while in_block and line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        shown = line.startswith("$ wanbatch ")
        if in_block and (line.startswith("wanbatch ") or shown):
            words = shlex.split(line.removeprefix("$ "), comments=True)
            expected = lines[i].strip() if shown else None
            out.append((words, expected))
    return out


def needs_a_cluster(words: list[str]) -> str | None:
    line = " ".join(words)
    for launcher, module in LAUNCHERS.items():
        if f"hydra/launcher={launcher}" in line and importlib.util.find_spec(module.split(".")[0]) is None:
            return f"the {launcher} launcher plugin (pip install) and its cluster"
    return None


def test_the_readme_has_the_commands_this_test_runs():
    lines = [" ".join(w) for w, _ in readme_commands()]
    assert "wanbatch --version" in lines and "wanbatch recipe=demo" in lines
    assert any("recipe=remote_mix" in line and "$U" in line for line in lines)
    assert any(line.startswith("wanbatch recipe=novita") for line in lines)


def test_every_readme_command_runs(tmp_path):
    cache = tmp_path / "cache"
    home = tmp_path / "home"
    home.mkdir()
    keys = {"GMI_API_KEY": "x", "AIML_API_KEY": "x", "NOVITA_API_KEY": "x"}
    assert wanbatch("init", "recipes/myfilm", cwd=home).returncode == 0
    with FakeProvider(latency_s=0.1) as fake:
        env = {**keys, "U": fake.url, "WANBATCH_CACHE_DIR": str(cache)}
        for words, expected in readme_commands():
            if needs_a_cluster(words) or any(w.startswith("resubmit_ambiguous=") for w in words):
                continue  # resubmit_ambiguous names the scenes a `cache ambiguous` listed: only after one
            args = [w.replace("$U", fake.url) for w in words[1:]]
            args = [f"cache.dir={cache}" if a.startswith("cache.dir=/") else a for a in args]
            line = " ".join(words)
            renders_elsewhere = (REMOTE.search(line) and "$U" not in line) or "executor.address=" in line
            if renders_elsewhere and "dry_run=true" not in args:
                args.append("dry_run=true")
            got = wanbatch(*args, cwd=home, env=env, timeout=600)
            if expected is not None:
                assert got.returncode == 2 and got.stderr.strip() == expected, (line, got.stderr)
                continue
            assert got.returncode == 0, (line, got.stdout[-2000:], got.stderr[-2000:])
            assert "Traceback" not in got.stderr, line
            for noise in ("HTTP Request", "Writing model shards", "%|"):  # library chatter stays in the log
                assert noise not in got.stderr, (line, noise)
        assert sum(fake.stats()["submissions"].values()) >= 5  # the $U line rendered against the fake


@pytest.mark.parametrize("words", [w for w, _ in readme_commands() if needs_a_cluster(w)], ids=" ".join)
def test_the_cluster_commands_name_what_they_need(words):
    """Not run here (no cluster, no plugin); the README says what to install right above them."""
    text = (CHECKOUT / "README.md").read_text()
    launcher = next(k for k in LAUNCHERS if f"hydra/launcher={k}" in " ".join(words))
    assert f"pip install hydra-{launcher.split('_')[0]}-launcher" in text
