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
SIZE_MULTIPLE = 16  # VAE stride 8 x patch 2: diffusers' check_inputs rejects anything else

# Wan's own default negative prompt (`sample_neg_prompt` in Wan2.1 and Wan2.2 shared_config.py).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

P480 = (832, 480)
P720 = (1280, 720)


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

    def pipeline_class(self, task: str) -> str:
        return "WanPipeline" if task == "t2v" else "WanImageToVideoPipeline"

    def size_allowed(self, task: str, width: int, height: int) -> str | None:
        """None if the model renders width x height for `task`; otherwise what is allowed."""
        if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
            return f"`width` and `height` divisible by {SIZE_MULTIPLE}"
        listed = ", ".join(f"{w}x{h}" for w, h in self.sizes())
        if task == "t2v" and self.exact_sizes:
            if (width, height) not in self.sizes():
                return f"a size `{self.name}` supports: {listed}"
            return None
        if width * height > self.area_limit():
            return f"at most {self.area_limit()} pixels (W x H) for `{self.name}`; its sizes: {listed}"
        return None

    def size_from_image(self, tier: str, image_w: int, image_h: int) -> tuple[int, int]:
        """The image's aspect ratio within the tier's area, in multiples of 16 (the model cards' recipe)."""
        tw, th = self.resolutions[tier]
        area = tw * th
        aspect = image_h / image_w
        height = max(SIZE_MULTIPLE, round(math.sqrt(area * aspect)) // SIZE_MULTIPLE * SIZE_MULTIPLE)
        width = max(SIZE_MULTIPLE, round(math.sqrt(area / aspect)) // SIZE_MULTIPLE * SIZE_MULTIPLE)
        return width, height
