"""Regenerate remote_mix's small assets (committed, so the recipe needs no tools to run).

python recipes/remote_mix/make_assets.py
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent / "assets"
W, H = 640, 360  # 16:9, and inside wan2.7-i2v's 360-2000 px a side


def frame(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A sky gradient over a darker sea band: few colours, so the PNG stays tiny."""
    t = np.linspace(0, 1, H)[:, None, None]
    img = (np.array(top) * (1 - t) + np.array(bottom) * t).repeat(W, axis=1)
    img[int(H * 0.7) :] *= 0.55
    return Image.fromarray(img.astype(np.uint8)).quantize(32).convert("RGB")


def narration(path: Path, seconds: float = 4.0, rate: int = 8000) -> None:
    """4 s of a swelling tone: driving audio inside wan2.7's 3-30 s."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * math.pi * 220 * t) * np.sin(math.pi * t / seconds) * 6000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    frame((120, 180, 230), (240, 200, 150)).save(HERE / "harbour.png", optimize=True)
    frame((30, 30, 80), (200, 90, 60)).save(HERE / "dusk.png", optimize=True)
    narration(HERE / "narration.wav")
