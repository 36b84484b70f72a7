"""How alike two videos are, frame by frame: the PSNR of their decoded pixels (what `wanbatch reproduce`
reports for a clip that is not bit-identical to the recorded one)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Similarity:
    """`psnr` in dB over every frame (inf: the same pixels); None where the videos cannot be compared frame
    for frame, `note` saying why (another size, another number of frames)."""

    psnr: float | None
    frames: int
    note: str = ""


def video_psnr(a: Path, b: Path) -> Similarity:
    """Decode both videos (RGB, 8 bit) in step, one frame at a time, and take the PSNR of all their pixels."""
    import imageio_ffmpeg
    import numpy as np

    ga = imageio_ffmpeg.read_frames(str(a), pix_fmt="rgb24")
    gb = imageio_ffmpeg.read_frames(str(b), pix_fmt="rgb24")
    try:
        size_a, size_b = next(ga)["size"], next(gb)["size"]
        if tuple(size_a) != tuple(size_b):
            return Similarity(None, 0, f"the frames are {size_b[0]}x{size_b[1]}, not {size_a[0]}x{size_a[1]}")
        squared, values, frames = 0.0, 0, 0
        for fa, fb in zip(ga, gb, strict=False):
            da = np.frombuffer(fa, np.uint8).astype(np.int32)
            db = np.frombuffer(fb, np.uint8).astype(np.int32)
            squared += float(((da - db) ** 2).sum())
            values += da.size
            frames += 1
        extra_a, extra_b = sum(1 for _ in ga), sum(1 for _ in gb)
        if extra_a or extra_b:
            return Similarity(None, frames, f"{frames + extra_b} frames, not {frames + extra_a}")
    finally:
        ga.close()
        gb.close()
    if values == 0:
        return Similarity(None, 0, "no frames to compare")
    mse = squared / values
    return Similarity(math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse), frames)
