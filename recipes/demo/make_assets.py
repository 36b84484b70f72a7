"""Regenerate the demo's small assets (committed, so the demo needs no network and no tools).

python recipes/demo/make_assets.py
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent / "assets"
W, H = 320, 192


RGB = tuple[int, int, int]


def sky(top: RGB, bottom: RGB, sun: RGB, sun_y: float) -> Image.Image:
    t = np.linspace(0, 1, H)[:, None, None]
    grad = (np.array(top) * (1 - t) + np.array(bottom) * t).repeat(W, axis=1).astype(np.uint8)
    im = Image.fromarray(grad)
    d = ImageDraw.Draw(im)
    cx, cy, r = W * 0.62, H * sun_y, 22
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=sun)
    hills = [(0, H), (0, H * 0.72), (W * 0.3, H * 0.58), (W * 0.55, H * 0.75), (W * 0.8, H * 0.6), (W, H * 0.7), (W, H)]
    d.polygon(hills, fill=(30, 40, 35))
    return im


def tone(path: Path, seconds: float, freqs: list[float], rate: int = 22050) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sig = sum(np.sin(2 * math.pi * f * t) for f in freqs) / len(freqs)
    env = np.minimum(1, np.minimum(t / 0.05, (seconds - t) / 0.2))
    pcm = (sig * env * 0.5 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def main() -> None:
    HERE.mkdir(exist_ok=True)
    sky((40, 80, 160), (250, 170, 90), (255, 230, 120), 0.45).save(HERE / "day.png", optimize=True)
    sky((10, 12, 40), (60, 40, 90), (230, 230, 250), 0.3).save(HERE / "night.png", optimize=True)
    sky((120, 170, 220), (200, 220, 240), (255, 250, 200), 0.25).save(HERE / "harbour.png", optimize=True)
    tone(HERE / "narration.wav", 2.0, [220.0, 330.0])


if __name__ == "__main__":
    main()
