"""Tiny Wan checkpoints: built without downloads, deterministically, loaded back with from_pretrained."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import torch

from wanbatch.backends.local.models.tiny import MARKER, TINY_MODELS, build_tiny, ensure_tiny, tiny_folder

from local_fixtures import tiny_models_dir

__all__ = ["tiny_models_dir"]


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_building_twice_gives_the_same_bytes_and_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    build_tiny("tiny-i2v", tmp_path / "a")
    assert torch.equal(torch.rand(3), before)  # the caller's RNG stream is untouched
    build_tiny("tiny-i2v", tmp_path / "b")
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    weights = [k for k in a if k.endswith(".safetensors")]
    assert len(weights) == 4  # text encoder, transformer, vae, image encoder
    assert a == b


@pytest.mark.parametrize(
    ("name", "cls", "image_encoder"),
    [
        ("tiny-t2v", "WanPipeline", False),
        ("tiny-i2v", "WanImageToVideoPipeline", True),
        ("tiny-flf2v", "WanImageToVideoPipeline", True),
    ],
)
def test_tiny_models_load_through_from_pretrained_offline(
    tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, cls: str, image_encoder: bool
) -> None:
    import diffusers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_folder(name, tiny_models_dir)
    pipe = getattr(diffusers, cls).from_pretrained(folder, local_files_only=True)
    assert type(pipe).__name__ == cls
    assert pipe.transformer.config.num_layers == 2
    assert (getattr(pipe, "image_encoder", None) is not None) == image_encoder
    if name == "tiny-flf2v":
        assert pipe.transformer.config.pos_embed_seq_len  # both frames' image tokens


def test_ensure_builds_once_even_when_asked_concurrently(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_tiny("tiny-t2v", tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folder = tiny_folder("tiny-t2v", tmp_path)
    assert results == [folder] * 3 and (folder / MARKER).is_file()
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny("tiny-t2v", tmp_path) == folder
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [folder.name]  # no staging left behind


def test_unknown_tiny_model() -> None:
    with pytest.raises(KeyError, match="tiny-t2v"):
        ensure_tiny("tiny-s2v")
    assert set(TINY_MODELS) == {"tiny-t2v", "tiny-i2v", "tiny-flf2v"}


def test_concurrent_builds_give_the_same_weights_as_sequential_ones(tmp_path):
    """The executor renders scenes in threads; builds then overlap. Weights must not depend on timing
    (a shared global RNG and meta-device init once made them do)."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from wanbatch.backends.local.models.tiny import ensure_tiny

    names = ["tiny-t2v", "tiny-i2v", "tiny-flf2v"]
    with ThreadPoolExecutor(3) as pool:
        together = dict(zip(names, pool.map(lambda n: ensure_tiny(n, tmp_path / "together"), names), strict=True))
    alone = {n: ensure_tiny(n, tmp_path / "alone") for n in names}

    def digest(folder):
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.safetensors"))
        }

    for n in names:
        assert digest(together[n]) == digest(alone[n]), n


RACE = """
import sys, threading
from pathlib import Path
from PIL import Image
from wanbatch.backends.local.models.construction import diffusers_attr
from wanbatch.backends.local.models.tiny import ensure_tiny
from wanbatch.backends.local.pipelines import load_images

folder = Path(sys.argv[1])
Image.new("RGB", (16, 16)).save(folder / "first.png")
start, errors = threading.Barrier(4), []

def first_use(what):
    start.wait()
    try:
        what()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")

jobs = [lambda: ensure_tiny("tiny-flf2v", folder), lambda: diffusers_attr("WanPipeline"),
        lambda: diffusers_attr("WanImageToVideoPipeline"), lambda: load_images({"image": folder / "first.png"})]
threads = [threading.Thread(target=first_use, args=(job,)) for job in jobs]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


def test_first_uses_of_diffusers_in_threads_do_not_break_each_other(tmp_path: Path) -> None:
    """Scenes start together: one builds a tiny model while others resolve pipeline classes and read
    images. diffusers and transformers import lazily on first use; unserialised, such first uses in a
    fresh process failed every time ("cannot import name 'AutoTokenizer' from 'transformers'")."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", RACE, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
