"""What wanbatch knows about one checkpoint before loading it: `ModelSpec`, and the constants its checks use.

The registry (`wanbatch.backends.local.models.registry`) fills it from the model cards; the tiny models
(`wanbatch.backends.local.models.tiny`) from their own configs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

TASKS = ("t2v", "i2v", "flf2v")
TASK_NAMES = {"t2v": "text-to-video", "i2v": "image-to-video", "flf2v": "first-last-frame-to-video"}
SIZE_MULTIPLE = 16  # VAE stride 8 x patch 2 (Wan2.1, Wan2.2 A14B); Wan2.2 TI2V-5B's VAE strides 16: 32

# Wan's own default negative prompt (`sample_neg_prompt` in Wan2.1 and Wan2.2 shared_config.py).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

P480 = (832, 480)
P720 = (1280, 720)
# Upstream's prompt prefixes (Wan2.1 wan/configs/wan_i2v_14B.py L11, wan/configs/__init__.py L16-18): the
# I2V config, which serves both I2V checkpoints, adds "camera shake"; FLF2V, a copy of it, adds "shot cut" too.
I2V_NEGATIVE_PROMPT = "镜头晃动，" + WAN_NEGATIVE_PROMPT
FLF2V_NEGATIVE_PROMPT = "镜头切换，" + I2V_NEGATIVE_PROMPT
TIER_AREAS = {"480P": P480[0] * P480[1], "720P": P720[0] * P720[1]}


#: Where a checkpoint comes from: the Hugging Face hub, a tiny test model built from a config, a local folder.
ModelKind = Literal["hub", "tiny", "local"]


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """What wanbatch knows about one checkpoint before loading it."""

    name: str  # friendly name, or the folder for a local checkpoint
    kind: ModelKind
    source: str  # hub id, tiny name, or absolute folder path
    tasks: frozenset[str]
    resolutions: Mapping[str, tuple[int, int]]  # tier -> landscape (width, height); portrait is its transpose
    default_resolution: str
    steps: int
    guidance_scale: float
    flow_shift: Mapping[str, float]  # by resolution tier
    heads: int  # attention heads of the transformer: the Ulysses degree must divide it
    fps: int = 16
    frames: int = 81
    max_frames: int = 81
    guidance_scale_2: float | None = None  # Wan2.2 A14B: the low-noise expert's guidance
    negative_prompt: str = WAN_NEGATIVE_PROMPT
    max_sequence_length: int = 512
    exact_sizes: bool = True  # text-to-video must use a listed size; image tasks follow the image's aspect
    max_area: int | None = None  # pixels; None = the largest tier's area
    size_multiple: int = SIZE_MULTIPLE  # width and height divide by VAE spatial stride x patch size
    image_encoder: bool = False  # a CLIP image encoder sees the first (and last) frame (Wan2.1 I2V, FLF2V)
    # xDiT's registered Wan runner for this checkpoint (xfuser runner_models/wan.py), None if it has none, and
    # whether that runner splits classifier-free guidance over two GPU groups (its I2V pipeline only)
    xdit_runner: str | None = None
    xdit_cfg_parallel: bool = False
    card: str = ""  # where the defaults come from
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hub_id(self) -> str | None:
        return self.source if self.kind == "hub" else None

    def sizes(self) -> list[tuple[int, int]]:
        """Every listed (width, height), both orientations."""
        out: list[tuple[int, int]] = []
        for w, h in self.resolutions.values():
            out += [(w, h)] if w == h else [(w, h), (h, w)]
        return out

    def area_limit(self) -> int:
        return self.max_area or max(w * h for w, h in self.resolutions.values())

    def tier_of(self, width: int, height: int) -> str:
        """The resolution tier a size belongs to (the smallest whose area holds it)."""
        for tier, (w, h) in sorted(self.resolutions.items(), key=lambda kv: kv[1][0] * kv[1][1]):
            if width * height <= w * h:
                return tier
        return max(self.resolutions, key=lambda t: self.resolutions[t][0] * self.resolutions[t][1])

    def shift_for(self, tier: str) -> float:
        return self.flow_shift.get(tier, next(iter(self.flow_shift.values())))

    def shift_for_size(self, width: int, height: int) -> float:
        """The flow shift for a render of width x height: that of the smallest tier whose area holds it. A card
        may give a shift for a tier it does not list as a `resolution` (the Wan2.1 I2V-720P checkpoint at an
        explicit 832x480 takes upstream's 480P shift, 3.0)."""
        areas = {**TIER_AREAS, **{t: w * h for t, (w, h) in self.resolutions.items()}}
        ranked = sorted(self.flow_shift, key=lambda t: areas.get(t, 0))
        for tier in ranked:
            if width * height <= areas.get(tier, 0):
                return self.flow_shift[tier]
        return self.flow_shift[ranked[-1]]

    def pipeline_class(self, task: str) -> str:
        return "WanPipeline" if task == "t2v" else "WanImageToVideoPipeline"

    def size_allowed(self, task: str, width: int, height: int) -> str | None:
        """None if the model renders width x height for `task`; otherwise what is allowed."""
        m = self.size_multiple
        if width % m or height % m:
            return f"`width` and `height` divisible by {m} for `{self.name}` (VAE stride x patch size)"
        listed = ", ".join(f"{w}x{h}" for w, h in self.sizes())
        if task == "t2v" and self.exact_sizes:
            if (width, height) not in self.sizes():
                return f"a size `{self.name}` supports: {listed}"
            return None
        if width * height > self.area_limit():
            return f"at most {self.area_limit()} pixels (W x H) for `{self.name}`; its sizes: {listed}"
        return None

    def size_from_image(self, tier: str, image_w: int, image_h: int) -> tuple[int, int]:
        """The image's aspect ratio within the tier's area, floored to the model's size multiple (the diffusers
        docs' recipe: `mod_value = vae_scale_factor_spatial * patch_size[1]`)."""
        tw, th = self.resolutions[tier]
        area = tw * th
        aspect = image_h / image_w
        m = self.size_multiple
        height = max(m, round(math.sqrt(area * aspect)) // m * m)
        width = max(m, round(math.sqrt(area / aspect)) // m * m)
        return width, height
