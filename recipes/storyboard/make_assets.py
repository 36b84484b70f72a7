"""Regenerate the storyboard recipe's assets (committed: the recipe needs no network and no tools).

    python recipes/storyboard/make_assets.py [OUT_DIR]     # default: recipes/storyboard/assets

Everything is drawn from numbers, so the output is the same on every machine with the same numpy and
Pillow: five 832x480 PNG frames, a loopable soundtrack and a hummed phrase for the driving-audio scene.
"""

from __future__ import annotations

import math
import sys
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent / "assets"
W, H = 832, 480  # Wan's 480P frame


# -- pictures -----------------------------------------------------------------------------------------------


def gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], height: int = H) -> Image.Image:
    t = np.linspace(0, 1, height)[:, None, None]
    rows = (np.array(top) * (1 - t) + np.array(bottom) * t).astype(np.uint8)
    return Image.fromarray(np.repeat(rows, W, axis=1))


def sea(
    im: Image.Image,
    horizon: int,
    top: tuple[int, int, int],
    bottom: tuple[int, int, int],
    wave_color: tuple[int, int, int],
    waves: int = 7,
) -> None:
    im.paste(gradient(top, bottom, H - horizon), (0, horizon))
    d = ImageDraw.Draw(im)
    for k in range(waves):
        y = horizon + 12 + k * (H - horizon) // waves
        for x in range(-40, W, 90 - k * 6):
            d.arc((x + (k * 37) % 60, y, x + (k * 37) % 60 + 50 + k * 6, y + 8 + k), 200, 340, fill=wave_color, width=2)


def lighthouse(
    d: ImageDraw.ImageDraw,
    x: int,
    base: int,
    height: int,
    body: tuple[int, int, int],
    stripe: tuple[int, int, int],
    lamp: tuple[int, int, int],
) -> None:
    half_bottom, half_top = height // 9, height // 14
    d.polygon(
        [
            (x - half_bottom, base),
            (x - half_top, base - height),
            (x + half_top, base - height),
            (x + half_bottom, base),
        ],
        fill=body,
    )
    for k in (1, 3):
        y0, y1 = base - height * k // 5, base - height * (k + 1) // 5 + height // 10
        d.rectangle((x - half_bottom, y1, x + half_bottom, y0), fill=stripe)
    d.rectangle((x - half_top - 3, base - height - 26, x + half_top + 3, base - height), fill=lamp)
    roof = base - height - 26
    d.polygon([(x - half_top - 8, roof), (x, roof - 18), (x + half_top + 8, roof)], fill=body)


def beam(
    im: Image.Image, origin: tuple[int, int], to_x: int, color: tuple[int, int, int], strength: int
) -> Image.Image:
    glow = Image.new("L", im.size, 0)
    ImageDraw.Draw(glow).polygon([origin, (to_x, origin[1] - 60), (to_x, origin[1] + 40)], fill=strength)
    glow = glow.filter(ImageFilter.GaussianBlur(6))
    return Image.composite(Image.new("RGB", im.size, color), im, glow)


def harbour() -> Image.Image:
    im = gradient((110, 160, 215), (236, 214, 180))
    sea(im, 300, (70, 120, 160), (30, 60, 90), (150, 190, 215))
    d = ImageDraw.Draw(im)
    d.ellipse((560, 70, 640, 150), fill=(255, 240, 200))
    d.polygon([(0, 300), (0, 250), (120, 230), (260, 262), (330, 300)], fill=(70, 80, 70))  # headland
    lighthouse(d, 150, 250, 140, (240, 236, 226), (190, 50, 45), (255, 230, 140))
    d.rectangle((420, 330, 832, 350), fill=(95, 70, 50))  # pier
    for x in range(440, 832, 60):
        d.rectangle((x, 350, x + 8, 420), fill=(75, 55, 40))
    for x, c in ((470, (200, 60, 50)), (600, (240, 240, 230)), (720, (60, 110, 170))):  # boats
        d.polygon([(x, 380), (x + 80, 380), (x + 66, 402), (x + 12, 402)], fill=c)
        d.line((x + 40, 380, x + 40, 322), fill=(60, 50, 40), width=3)
        d.polygon([(x + 42, 326), (x + 42, 374), (x + 74, 374)], fill=(250, 248, 240))
    return im


def storm(last: bool) -> Image.Image:
    im = gradient((40, 44, 56), (88, 92, 104)) if not last else gradient((14, 16, 26), (48, 50, 66))
    sea(im, 320, (46, 58, 70) if not last else (24, 30, 42), (16, 22, 30), (120, 130, 140), waves=9)
    d = ImageDraw.Draw(im)
    for k in range(5):  # clouds
        cx, cy = 120 + k * 170, 70 + (k % 2) * 30
        shade = (70 - 30 * last + 8 * k,) * 3
        d.ellipse((cx - 120, cy - 40, cx + 120, cy + 45), fill=shade)
    lighthouse(d, 600, 330, 210, (205, 205, 200), (150, 40, 40), (255, 236, 150))
    if last:
        im = beam(im, (600, 100), 0, (255, 240, 180), 150)
        d = ImageDraw.Draw(im)
        d.line([(260, 0), (230, 90), (270, 110), (215, 240)], fill=(235, 235, 255), width=5)  # lightning
    return im


def keeper() -> Image.Image:
    im = gradient((60, 38, 26), (24, 16, 12))
    d = ImageDraw.Draw(im)
    d.rectangle((520, 80, 720, 280), fill=(28, 40, 70))  # window on the night
    d.line((620, 80, 620, 280), fill=(50, 34, 24), width=8)
    d.line((520, 180, 720, 180), fill=(50, 34, 24), width=8)
    glow = Image.new("L", im.size, 0)
    ImageDraw.Draw(glow).ellipse((120, 120, 420, 420), fill=170)
    im = Image.composite(Image.new("RGB", im.size, (255, 190, 110)), im, glow.filter(ImageFilter.GaussianBlur(40)))
    d = ImageDraw.Draw(im)
    d.rectangle((120, 360, 460, 380), fill=(70, 45, 30))  # table
    d.rectangle((250, 300, 290, 360), fill=(200, 160, 60))  # lamp
    d.ellipse((236, 262, 304, 310), fill=(255, 225, 150))
    d.ellipse((360, 190, 430, 260), fill=(20, 14, 10))  # the keeper, in silhouette
    d.polygon([(330, 480), (350, 280), (440, 280), (470, 480)], fill=(20, 14, 10))
    return im


def calm() -> Image.Image:
    im = gradient((250, 200, 190), (200, 220, 235))
    ImageDraw.Draw(im).ellipse((380, 230, 460, 310), fill=(255, 236, 200))  # the sun, rising: half of it
    im.paste(gradient((160, 190, 210), (90, 130, 160), H - 290), (0, 290))  # a flat calm sea
    lighthouse(ImageDraw.Draw(im), 180, 300, 150, (240, 236, 226), (190, 50, 45), (255, 230, 140))
    return im


# -- sound --------------------------------------------------------------------------------------------------


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def soundtrack(rate: int = 11025) -> np.ndarray:
    """8 s of a soft pad, A minor - F - C - G, two seconds a chord; it loops without a seam because it
    starts and ends between chords, at silence."""
    chords = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (130.81, 196.0, 261.63), (196.0, 246.94, 293.66)]
    seconds = 2.0
    t = np.arange(int(seconds * rate)) / rate
    env = np.minimum(1, np.minimum(t / 0.4, (seconds - t) / 0.5)) ** 1.5
    out = []
    for chord in chords:
        x = sum(np.sin(2 * math.pi * f * t) + 0.3 * np.sin(4 * math.pi * f * t) for f in chord)
        bass = 0.8 * np.sin(2 * math.pi * chord[0] / 2 * t)
        out.append((x / 4 + bass / 2) * env * 0.45)
    return np.concatenate(out)


def hum(seconds: float = 3.0, rate: int = 16000) -> np.ndarray:
    """A voice humming three syllables: a pitched buzz through two vowel-like resonances, with vibrato."""
    t = np.arange(int(seconds * rate)) / rate
    notes = [(0.0, 1.0, 196.0), (1.0, 2.0, 220.0), (2.0, 3.0, 174.61)]
    f0 = np.zeros_like(t)
    env = np.zeros_like(t)
    for a, b, f in notes:
        m = (t >= a) & (t < b)
        f0[m] = f
        local = t[m] - a
        env[m] = np.minimum(1, np.minimum(local / 0.08, (b - a - local) / 0.15))
    f0 = f0 * (1 + 0.01 * np.sin(2 * math.pi * 5.5 * t))
    phase = 2 * math.pi * np.cumsum(f0) / rate
    voice = sum((0.9**k) * np.sin(k * phase) * _formant(k * f0) for k in range(1, 16))
    return voice / np.max(np.abs(voice)) * env * 0.6


def _formant(freq: np.ndarray) -> np.ndarray:
    return sum(np.exp(-(((freq - c) / bw) ** 2)) for c, bw in ((600.0, 160.0), (1000.0, 200.0))) + 0.05


def main(out: Path = HERE) -> None:
    out.mkdir(parents=True, exist_ok=True)
    harbour().save(out / "harbour.png", optimize=True)
    storm(last=False).save(out / "storm_first.png", optimize=True)
    storm(last=True).save(out / "storm_last.png", optimize=True)
    keeper().save(out / "keeper.png", optimize=True)
    calm().save(out / "calm.png", optimize=True)
    write_wav(out / "soundtrack.wav", soundtrack(), 11025)
    write_wav(out / "hum.wav", hum(), 16000)
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size / 1024:7.1f} KB  {p.name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
