"""Cache-key invariants: what must not change a key, and what must."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from wanbatch.backends import build_backends
from wanbatch.config.load import backend_configs, load_config
from wanbatch.config.schema import WanbatchConfig
from wanbatch.core.plan import make_plan
from wanbatch.core.project import load_project

from conftest import PROJECT


def keys_of(cfg: WanbatchConfig, root: Path) -> dict[str, str]:
    project = load_project(cfg, root, backend_configs(cfg))
    return {j.id: j.key for j in make_plan(project, build_backends(project.backend_configs), encode=cfg.encode).jobs}


def copy_demo(dest: Path) -> Path:
    shutil.copytree(PROJECT.parent, dest)
    return dest / "project.yaml"


def test_moving_input_files_keeps_every_key(tmp_path):
    base = keys_of(load_config(PROJECT), PROJECT.parent)
    moved = copy_demo(tmp_path / "elsewhere")
    (moved.parent / "assets").rename(moved.parent / "media")
    text = moved.read_text().replace("assets/", "media/")
    moved.write_text(text)
    assert keys_of(load_config(moved), moved.parent) == base


def test_reordering_scenes_keeps_every_key():
    cfg = load_config(PROJECT)
    base = keys_of(cfg, PROJECT.parent)
    cfg.scenes = list(reversed(cfg.scenes))
    assert keys_of(cfg, PROJECT.parent) == base


def test_comments_and_formatting_keep_every_key(tmp_path):
    base = keys_of(load_config(PROJECT), PROJECT.parent)
    edited = copy_demo(tmp_path / "p")
    lines = edited.read_text().splitlines()
    edited.write_text(
        "\n".join(f"{line}  # note {i}" if line.strip().startswith("prompt:") else line for i, line in enumerate(lines))
        + "\n# a trailing comment\n"
    )
    assert keys_of(load_config(edited), edited.parent) == base


def test_output_dir_and_cache_dir_do_not_enter_the_key(tmp_path):
    a = load_config(PROJECT, [f"hydra.run.dir={tmp_path}/a", f"cache.dir={tmp_path}/c1"])
    b = load_config(PROJECT, [f"hydra.run.dir={tmp_path}/b", f"cache.dir={tmp_path}/c2"])
    assert keys_of(a, PROJECT.parent) == keys_of(b, PROJECT.parent)


def test_one_pixel_changes_the_scene_and_its_chain_only(tmp_path):
    project = copy_demo(tmp_path / "p")
    base = keys_of(load_config(project), project.parent)
    img_path = project.parent / "assets" / "harbour.png"
    im = Image.open(img_path).convert("RGB")
    r, g, b = im.getpixel((5, 5))
    im.putpixel((5, 5), ((r + 1) % 256, g, b))
    im.save(img_path)
    after = keys_of(load_config(project), project.parent)
    changed = {sid for sid in base if base[sid] != after[sid]}
    assert changed == {"harbour_voice", "harbour_after"}  # the chained child follows its parent


def test_seed_prompt_and_encoding_change_the_key():
    cfg = load_config(PROJECT)
    base = keys_of(cfg, PROJECT.parent)
    cfg.scenes[1]["seed"] = 8
    cfg.scenes[2]["prompt"] = "Hills at dusk."
    seeds_prompts = keys_of(cfg, PROJECT.parent)
    assert {s for s in base if base[s] != seeds_prompts[s]} == {"sunrise", "day_to_night"}
    crf = keys_of(load_config(PROJECT, ["encode.crf=20"]), PROJECT.parent)
    assert all(crf[s] != base[s] for s in base)


def test_project_defaults_and_explicit_values_give_the_same_key():
    cfg = load_config(PROJECT)
    base = keys_of(cfg, PROJECT.parent)
    defaults, cfg.project.defaults = cfg.project.defaults, {}
    for scene in cfg.scenes:
        for k, v in defaults.items():
            scene.setdefault(k, v)
    assert keys_of(cfg, PROJECT.parent) == base


def test_a_random_seed_is_resolved_once_and_recorded(compose_demo, run_cfg):
    code1, run1, _ = run_cfg(compose_demo())
    code2, run2, _ = run_cfg(compose_demo())
    assert code1 == code2 == 0
    m1 = json.loads((run1 / "manifest.json").read_text())
    m2 = json.loads((run2 / "manifest.json").read_text())
    s1 = next(s for s in m1["scenes"] if s["id"] == "harbour_voice")
    s2 = next(s for s in m2["scenes"] if s["id"] == "harbour_voice")
    assert s1["seed_was_random"] and s1["seed"] >= 0
    assert s1["seed"] == s2["seed"] and s1["cache_key"] == s2["cache_key"]
    assert s2["status"] == "cached"
