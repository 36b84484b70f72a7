"""Tiny random-weight Wan checkpoints, built here without any download, for CPU demos and tests.

They follow the tiny configs of diffusers' own Wan tests (2 layers, 2 heads, a 3-channel VAE), are
written with `save_pretrained` and loaded back through the same `from_pretrained` path as a real
checkpoint. Building is deterministic (fixed seeds, no downloads), so every machine builds the same
weights; a checkpoint's cache identity is `<name>@<TINY_VERSION>`, so bump TINY_VERSION whenever a
recipe below changes.

    tiny-t2v     WanPipeline                              text-to-video
    tiny-i2v     WanImageToVideoPipeline + CLIP encoder   image-to-video (Wan2.1 I2V layout)
    tiny-flf2v   WanImageToVideoPipeline + CLIP encoder   first-last-frame-to-video (Wan2.1 FLF2V layout)

Example::

    folder = ensure_tiny("tiny-t2v")                       # built once, then reused
    pipe = WanPipeline.from_pretrained(folder)             # what the diffusers backend does too
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from wanbatch.backends.local.models.construction import CONSTRUCTION_LOCK
from wanbatch.backends.local.models.quiet import quiet_libraries
from wanbatch.backends.local.models.spec import ModelSpec
from wanbatch.config.load import default_cache_dir

TINY_VERSION = "1"
MARKER = "wanbatch-tiny.json"
_CLIP_IMAGE = 32  # the tiny CLIP's input size; with patch 1 it yields 32*32+1 tokens per image

_COMMON: dict[str, Any] = dict(
    kind="tiny",
    resolutions={"480P": (80, 48), "720P": (128, 80)},  # same aspect as 832x480 / 1280x720, tiny
    default_resolution="480P",
    steps=2,
    guidance_scale=5.0,
    flow_shift={"480P": 3.0, "720P": 3.0},
    heads=2,
    fps=16,
    frames=9,
    max_frames=81,
    negative_prompt="",
    max_sequence_length=64,
    exact_sizes=False,
    max_area=256 * 256,
)

TINY_MODELS: dict[str, ModelSpec] = {
    "tiny-t2v": ModelSpec(
        name="tiny-t2v",
        source="tiny-t2v",
        tasks=frozenset({"t2v"}),
        card="tiny random weights (diffusers' test config)",
        **_COMMON,
    ),
    "tiny-i2v": ModelSpec(
        name="tiny-i2v",
        source="tiny-i2v",
        tasks=frozenset({"i2v"}),
        image_encoder=True,
        xdit_cfg_parallel=True,  # laid out as Wan2.1 I2V, whose xDiT runner splits CFG
        card="tiny random weights (diffusers' test config)",
        **_COMMON,
    ),
    "tiny-flf2v": ModelSpec(
        name="tiny-flf2v",
        source="tiny-flf2v",
        tasks=frozenset({"flf2v"}),
        image_encoder=True,
        card="tiny random weights (diffusers' test config)",
        **_COMMON,
    ),
}


def default_models_dir() -> Path:
    """$WANBATCH_MODELS_DIR, else <cache dir>/models (the `cache` group's default dir)."""
    if os.environ.get("WANBATCH_MODELS_DIR"):
        return Path(os.environ["WANBATCH_MODELS_DIR"]).expanduser()
    return default_cache_dir() / "models"


def tiny_folder(name: str, models_dir: Path | None = None) -> Path:
    return (models_dir or default_models_dir()) / f"{name}-v{TINY_VERSION}"


def ensure_tiny(name: str, models_dir: Path | None = None) -> Path:
    """The folder of tiny model `name`, building it on first use. Safe across threads and processes:
    one builder holds a file lock; the folder appears whole (atomic rename) or not at all."""
    if name not in TINY_MODELS:
        raise KeyError(f"no tiny model `{name}`; known: {', '.join(TINY_MODELS)}")
    folder = tiny_folder(name, models_dir)
    if (folder / MARKER).is_file():
        return folder
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / MARKER).is_file():
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            build_tiny(name, staging)
            if folder.exists():  # a half-written folder from an older, killed build
                shutil.rmtree(folder)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def build_tiny(name: str, path: Path) -> Path:
    """Build tiny model `name` with fixed seeds and `save_pretrained` it into `path`."""
    import torch

    # One build or load at a time per process (see construction.py), and the caller's RNG left as it was.
    with CONSTRUCTION_LOCK, torch.random.fork_rng(devices=[]):
        quiet_libraries()  # no "Writing model shards" bar on the console
        pipe = _make_pipeline(name)
        pipe.save_pretrained(str(path), safe_serialization=True)
    (path / MARKER).write_text(json.dumps({"name": name, "version": TINY_VERSION}, sort_keys=True) + "\n")
    return path


def _make_pipeline(name: str) -> Any:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    # A byte-level tokenizer needs no vocabulary file, so nothing is downloaded.
    tokenizer = ByT5Tokenizer()
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    # The scheduler real Wan checkpoints ship: UniPC on flow sigmas.
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    image = name != "tiny-t2v"
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36 if image else 16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4 if image else None,
        # FLF2V embeds both frames' CLIP tokens with a learned position embedding
        pos_embed_seq_len=2 * (_CLIP_IMAGE * _CLIP_IMAGE + 1) if name == "tiny-flf2v" else None,
    )
    parts = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer)
    if not image:
        return WanPipeline(**parts)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=_CLIP_IMAGE,
            intermediate_size=16,
            patch_size=1,
        )
    )
    image_processor = CLIPImageProcessor(crop_size=_CLIP_IMAGE, size=_CLIP_IMAGE)
    return WanImageToVideoPipeline(**parts, image_encoder=image_encoder, image_processor=image_processor)


def tiny_marker(path: Path) -> dict[str, Any] | None:
    """The marker of a folder built here ({"name", "version"}), or None."""
    try:
        return dict(json.loads((path / MARKER).read_text()))
    except (OSError, ValueError):
        return None


__all__ = ["TINY_MODELS", "TINY_VERSION", "build_tiny", "default_models_dir", "ensure_tiny", "tiny_folder"]
