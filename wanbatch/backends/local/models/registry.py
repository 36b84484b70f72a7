"""Wan checkpoints by friendly name, with the defaults their model cards give.

A model is named three ways: a friendly name (`wan2.1-t2v-1.3b`), its Hugging Face hub id
(`Wan-AI/Wan2.1-T2V-1.3B-Diffusers`), or a local folder holding a diffusers checkpoint
(`model_index.json` at its root). The embedded tiny models (`tiny-t2v`, `tiny-i2v`, `tiny-flf2v`)
are built on first use by `wanbatch.backends.local.models.tiny`.

Defaults follow the Wan model cards and the `generate.py` of the Wan2.1 / Wan2.2 repositories:
sizes (`SUPPORTED_SIZES`), `sample_shift` (flow shift), `sample_steps`, `sample_guide_scale`,
`sample_fps`, `frame_num` and `sample_neg_prompt`.

Example::

    spec = resolve("wan2.1-i2v-14b-480p")
    spec.hub_id, spec.tasks, spec.steps        # ('Wan-AI/Wan2.1-I2V-14B-480P-Diffusers', {'i2v'}, 40)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from wanbatch.av.files import sha256_file
from wanbatch.backends.local.models.spec import (
    FLF2V_NEGATIVE_PROMPT,
    I2V_NEGATIVE_PROMPT,
    P480,
    P720,
    SIZE_MULTIPLE,
    TASKS,
    WAN_NEGATIVE_PROMPT,
    ModelSpec,
)
from wanbatch.backends.local.models.tiny import TINY_MODELS, tiny_marker


def _hub(name: str, hub_id: str, **kw: Any) -> ModelSpec:
    return ModelSpec(name=name, kind="hub", source=hub_id, **kw)


# xDiT registers Wan runners for Wan2.1 T2V-14B and I2V-14B-720P and for Wan2.2 T2V-A14B, I2V-A14B and TI2V-5B
# (xfuser runner_models/wan.py, 0.5.0 to 0.7.0); not for Wan2.1 T2V-1.3B, I2V-14B-480P or FLF2V-14B, which the
# xdit backend therefore refuses (they render with `diffusers`). CFG parallel exists in its I2V runners only.
# name -> spec. Sources: the Wan2.1 README ("T2V-1.3B: 480P";
# for 1.3B "--sample_shift 8 --sample_guide_scale 6"),
# Wan2.1 generate.py (shift 5.0; 3.0 for i2v at 480P; 16 for flf2v; 50 steps, 40 for i2v; guidance 5.0),
# Wan2.2 configs (t2v-A14B: shift 12, 40 steps, guidance 4.0 high / 3.0 low; i2v-A14B: shift 5, 40 steps,
# guidance 3.5 / 3.5; ti2v-5B: shift 5, 50 steps, guidance 5.0, 24 fps, 121 frames, 1280x704).
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _hub(
            "wan2.1-t2v-1.3b",
            "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            tasks=frozenset({"t2v"}),
            resolutions={"480P": P480},
            default_resolution="480P",
            steps=50,
            guidance_scale=6.0,
            flow_shift={"480P": 8.0},
            heads=12,
            card="Wan2.1 README: 480P; sample_shift 8-12, guide scale 6",
        ),
        _hub(
            "wan2.1-t2v-14b",
            "Wan-AI/Wan2.1-T2V-14B-Diffusers",
            tasks=frozenset({"t2v"}),
            resolutions={"480P": P480, "720P": P720},
            default_resolution="720P",
            steps=50,
            guidance_scale=5.0,
            flow_shift={"480P": 5.0, "720P": 5.0},
            heads=40,
            xdit_runner="Wan2.1-T2V",
            card="Wan2.1 generate.py t2v-14B",
        ),
        _hub(
            "wan2.1-i2v-14b-480p",
            "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
            tasks=frozenset({"i2v"}),
            resolutions={"480P": P480},
            default_resolution="480P",
            steps=40,
            guidance_scale=5.0,
            flow_shift={"480P": 3.0},
            heads=40,
            negative_prompt=I2V_NEGATIVE_PROMPT,
            image_encoder=True,
            card="Wan2.1 generate.py i2v-14B at 480P; negative prompt from wan/configs/wan_i2v_14B.py",
        ),
        _hub(
            "wan2.1-i2v-14b-720p",
            "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
            tasks=frozenset({"i2v"}),
            # 720P only, as its card says (Wan2.1 README: "I2V-14B-720P | Supports 720P", and no 480P in its
            # table), so `resolution: 480P` is refused; an explicit 832x480 still takes upstream's 480P shift
            # (generate.py: 3.0 for an i2v task at 832*480).
            resolutions={"720P": P720},
            default_resolution="720P",
            steps=40,
            guidance_scale=5.0,
            flow_shift={"480P": 3.0, "720P": 5.0},
            heads=40,
            negative_prompt=I2V_NEGATIVE_PROMPT,
            image_encoder=True,
            xdit_runner="Wan2.1-I2V",
            xdit_cfg_parallel=True,
            card="Wan2.1 generate.py i2v-14B at 720P; negative prompt from wan/configs/wan_i2v_14B.py",
        ),
        _hub(
            "wan2.1-flf2v-14b-720p",
            "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
            tasks=frozenset({"flf2v"}),
            resolutions={"720P": P720},
            default_resolution="720P",
            steps=50,
            guidance_scale=5.0,
            flow_shift={"720P": 16.0},  # 16 at every size (generate.py: "flf2v" in task), 720P only (README)
            heads=40,
            negative_prompt=FLF2V_NEGATIVE_PROMPT,
            image_encoder=True,
            card="Wan2.1 generate.py flf2v-14B; negative prompt from wan/configs/__init__.py",
        ),
        _hub(
            "wan2.2-t2v-a14b",
            "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
            tasks=frozenset({"t2v"}),
            resolutions={"480P": P480, "720P": P720},
            default_resolution="720P",
            steps=40,
            guidance_scale=4.0,
            guidance_scale_2=3.0,
            flow_shift={"480P": 12.0, "720P": 12.0},
            heads=40,
            xdit_runner="Wan2.2-T2V",
            card="Wan2.2 t2v_A14B config",
        ),
        _hub(
            "wan2.2-i2v-a14b",
            "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
            tasks=frozenset({"i2v"}),
            resolutions={"480P": P480, "720P": P720},
            default_resolution="720P",
            steps=40,
            guidance_scale=3.5,
            guidance_scale_2=3.5,
            flow_shift={"480P": 5.0, "720P": 5.0},
            heads=40,
            xdit_runner="Wan2.2-I2V",
            xdit_cfg_parallel=True,
            card="Wan2.2 i2v_A14B config",
        ),
        _hub(
            "wan2.2-ti2v-5b",
            "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            tasks=frozenset({"t2v", "i2v"}),
            resolutions={"720P": (1280, 704)},
            default_resolution="720P",
            steps=50,
            guidance_scale=5.0,
            flow_shift={"720P": 5.0},
            heads=24,
            fps=24,
            frames=121,
            max_frames=121,
            size_multiple=32,  # Wan2.2 VAE stride 16 x patch 2 (wan_ti2v_5B.py; xDiT's TI2V runner: mod_value=32)
            xdit_runner="Wan2.2-TI2V",
            card="Wan2.2 ti2v_5B config",
        ),
    )
}

ALIASES: dict[str, str] = {
    "wan2.1-t2v-1.3b-diffusers": "wan2.1-t2v-1.3b",
    "wan2.1-flf2v-14b": "wan2.1-flf2v-14b-720p",
}


def tiny_specs() -> dict[str, ModelSpec]:
    return TINY_MODELS


def known_names() -> list[str]:
    return [*MODELS, *tiny_specs()]


class UnknownModel(ValueError):
    """`resolve` could not place a model name; the message lists what is known."""


def split_revision(ref: str) -> tuple[str, str | None]:
    """`name@rev` -> (name, rev). A local folder is never split (paths may hold `@`)."""
    if "@" in ref and not Path(ref).expanduser().exists():
        name, _, rev = ref.rpartition("@")
        return name, rev or None
    return ref, None


def resolve(ref: str, *, root: Path | None = None) -> ModelSpec:
    """The spec of a friendly name, hub id or local folder (relative to `root`). Raises UnknownModel."""
    key = ref.strip().lower()
    tiny = tiny_specs()
    if key in tiny:
        return tiny[key]
    key = ALIASES.get(key, key)
    if key in MODELS:
        return MODELS[key]
    for spec in MODELS.values():
        if spec.source.lower() == key:
            return spec
    path = Path(ref).expanduser()
    if root is not None and not path.is_absolute():
        path = root / path
    if path.is_dir():
        return spec_from_folder(path)
    if "/" in ref and not path.exists() and not ref.startswith((".", "/", "~")):
        raise UnknownModel(
            f"`{ref}` is not a Wan checkpoint wanbatch knows; known hub ids: "
            f"{', '.join(s.source for s in MODELS.values())}. For another checkpoint, download it "
            f"(`hf download {ref}`) and set `model` to its folder"
        )
    raise UnknownModel(
        f"no model named `{ref}` and no such folder; known: {', '.join(known_names())}, "
        f"or a local diffusers folder (with model_index.json)"
    )


def spec_from_folder(path: Path) -> ModelSpec:
    """Infer the tasks of a local diffusers checkpoint from its model_index.json and transformer config.
    Defaults are Wan2.1's; the flow shift is the one its scheduler config declares."""
    path = path.resolve()
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise UnknownModel(f"`{path}` has no model_index.json: not a diffusers checkpoint folder")
    marker = tiny_marker(path)
    if marker and marker.get("name") in TINY_MODELS:  # a tiny model built by wanbatch: keep its defaults
        return dataclasses.replace(TINY_MODELS[marker["name"]], name=path.name, kind="local", source=str(path))
    index = json.loads(index_file.read_text())
    cls = str(index.get("_class_name", ""))
    tcfg = _read_json(path / "transformer" / "config.json") or _read_json(path / "transformer_2" / "config.json")
    scfg = _read_json(path / "scheduler" / "scheduler_config.json")
    expand = bool(index.get("expand_timesteps"))
    if cls == "WanPipeline":
        tasks = {"t2v", "i2v"} if expand else {"t2v"}
    elif cls == "WanImageToVideoPipeline":
        if tcfg.get("pos_embed_seq_len"):
            tasks = {"flf2v"}  # Wan2.1 FLF2V: image embeddings of both frames
        elif tcfg.get("image_dim") is None:
            tasks = {"i2v", "flf2v"}  # Wan2.2 I2V: no image encoder, both frames go in the latents
        else:
            tasks = {"i2v"}
    else:
        raise UnknownModel(
            f"`{path}` holds a {cls or 'unknown'} pipeline; wanbatch renders WanPipeline and "
            f"WanImageToVideoPipeline checkpoints"
        )
    shift = float(scfg.get("flow_shift") or scfg.get("shift") or 5.0)
    fps = 24 if expand else 16
    # Sizes divide by the VAE's spatial stride times the transformer's patch (Wan2.2 TI2V-5B: 16 x 2)
    vcfg = _read_json(path / "vae" / "config.json")
    patch = tcfg.get("patch_size") or (1, 2, 2)
    multiple = int(vcfg.get("scale_factor_spatial") or 8) * int(patch[1] if len(patch) > 1 else 2)
    # Wan2.1's image checkpoints carry upstream's prompt prefixes (an image encoder; FLF2V: both frames' tokens)
    negative = WAN_NEGATIVE_PROMPT
    if cls == "WanImageToVideoPipeline" and tcfg.get("image_dim") is not None:
        negative = FLF2V_NEGATIVE_PROMPT if tcfg.get("pos_embed_seq_len") else I2V_NEGATIVE_PROMPT
    return ModelSpec(
        name=path.name,
        kind="local",
        source=str(path),
        tasks=frozenset(tasks),
        resolutions={"480P": P480, "720P": P720},
        default_resolution="480P",
        steps=50,
        guidance_scale=5.0,
        flow_shift={"480P": shift, "720P": shift},
        heads=int(tcfg.get("num_attention_heads") or 0),
        fps=fps,
        frames=121 if expand else 81,
        max_frames=121 if expand else 81,
        exact_sizes=False,
        guidance_scale_2=5.0 if index.get("boundary_ratio") else None,
        negative_prompt=negative,
        size_multiple=max(SIZE_MULTIPLE, multiple),
        image_encoder=cls == "WanImageToVideoPipeline" and tcfg.get("image_dim") is not None,
        card=f"local folder ({cls}); flow shift from its scheduler config",
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


# -- identity of a local folder ------------------------------------------------------------------------
_SMALL = 32 << 20  # files up to this size are hashed whole (configs, tokenizers, tiny weights)
_SAMPLE = 1 << 20


def folder_identity(path: Path) -> str:
    """A content fingerprint of a checkpoint folder, independent of where it lies: every file's relative
    name and size, the bytes of every small file, and for big weight files their safetensors header
    (tensor names, dtypes, shapes) plus their first and last MiB. Cheap enough for plan time."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not _ignored(p.relative_to(path))):
        rel = f.relative_to(path).as_posix()
        size = f.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        if size <= _SMALL:
            h.update(sha256_file(f).encode())
        else:
            with open(f, "rb") as fh:
                head = fh.read(_SAMPLE)
                fh.seek(max(0, size - _SAMPLE))
                tail = fh.read(_SAMPLE)
            h.update(head)
            h.update(tail)
    return h.hexdigest()[:24]


def _ignored(rel: Path) -> bool:
    # caches and lock files beside a checkpoint do not change its pixels
    return any(part.startswith(".") for part in rel.parts) or rel.suffix in (".lock", ".md")


def hf_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (at call time, so tests and users can set it late)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def in_hf_cache(hub_id: str, revision: str | None) -> bool:
    """Whether the checkpoint's model_index.json is in the local Hugging Face cache (no network)."""
    return _cached_model_index(hub_id, revision) is not None


def hub_commit(hub_id: str, revision: str | None) -> str | None:
    """The commit a branch or tag of `hub_id` resolves to in the local Hugging Face cache (what a load without
    network reads: the cache keeps each commit in `snapshots/<commit>/`); None where it is not cached."""
    got = _cached_model_index(hub_id, revision)
    return Path(got).parent.name if got is not None else None


def _cached_model_index(hub_id: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    # read the cache location now, not at huggingface_hub's import, so a late HF_HUB_CACHE counts
    cache_dir = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None
    )
    got = try_to_load_from_cache(hub_id, "model_index.json", revision=revision or "main", cache_dir=cache_dir)
    return got if isinstance(got, str) else None


__all__ = [
    "MODELS",
    "TASKS",
    "WAN_NEGATIVE_PROMPT",
    "ModelSpec",
    "UnknownModel",
    "folder_identity",
    "hf_offline",
    "hub_commit",
    "in_hf_cache",
    "known_names",
    "resolve",
    "spec_from_folder",
    "split_revision",
]
