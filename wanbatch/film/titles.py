"""Title cards and title captions, drawn with Pillow.

The font is Pillow's own (``ImageFont.load_default(size=...)``: the Aileron Regular face that Pillow
>= 10.1 embeds), so no system font is needed and a card looks the same on every machine with the same
Pillow. Pillow built without FreeType falls back to its small bitmap font (readable, not pretty).

Example::

    frame = title_card("The Lighthouse Keeper", 832, 480, subtitle="a storyboard in six shots")
    frame.shape  # (480, 832, 3), uint8
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["title_caption", "title_card"]

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

_BG_TOP = np.array([22, 30, 46], np.float32)
_BG_BOTTOM = np.array([6, 8, 13], np.float32)
_TEXT = (245, 245, 240)
_SUBTEXT = (176, 186, 200)
_ACCENT = (214, 170, 92)


def title_card(text: str, width: int, height: int, *, subtitle: str | None = None) -> np.ndarray:
    """A full frame: `text` large and centred on a dark gradient, `subtitle` smaller below it.

    Long text is wrapped on words and shrunk until it fits; returns RGB uint8 of shape (height, width, 3).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"`width` and `height` must be positive but are {width} and {height}")
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    bg = _BG_TOP * (1 - ramp) + _BG_BOTTOM * ramp
    im = Image.fromarray(np.broadcast_to(bg, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(im)

    max_w = int(width * 0.86)
    title_font, title_lines = _fit(draw, text.strip() or " ", max_w, int(height * 0.42), start=max(12, height // 9))
    sub_font: Font | None = None
    sub_lines: list[str] = []
    if subtitle and subtitle.strip():
        sub_font, sub_lines = _fit(
            draw, subtitle.strip(), max_w, int(height * 0.22), start=max(10, height // 24), max_lines=3
        )

    title_h = _block_height(draw, title_lines, title_font)
    gap = max(6, height // 24)
    sub_h = _block_height(draw, sub_lines, sub_font) if sub_font else 0
    total = title_h + (2 * gap + sub_h if sub_lines else 0)
    y = (height - total) // 2
    y = _draw_lines(draw, title_lines, title_font, width, y, _TEXT)
    if sub_lines and sub_font is not None:
        rule_w = max(8, width // 10)
        ry = y + gap
        draw.rectangle([(width - rule_w) // 2, ry - 1, (width + rule_w) // 2, ry + max(1, height // 240)], fill=_ACCENT)
        _draw_lines(draw, sub_lines, sub_font, width, ry + gap, _SUBTEXT)
    return np.asarray(im, dtype=np.uint8).copy()


def title_caption(text: str, width: int, height: int) -> tuple[np.ndarray, int]:
    """A lower-third caption to lay over a video frame of `width` x `height`.

    Returns (rgba, top): an RGBA uint8 band as wide as the frame and the row where it goes. The band is
    a translucent dark strip with the text centred in it; the stitcher blends it over the clip.
    """
    band_h = max(16, height // 6)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    font, lines = _fit(
        probe, text.strip() or " ", int(width * 0.9), int(band_h * 0.8), start=max(10, band_h // 2), max_lines=2
    )
    band = Image.new("RGBA", (width, band_h), (0, 0, 0, 150))
    draw = ImageDraw.Draw(band)
    block = _block_height(draw, lines, font)
    _draw_lines(draw, lines, font, width, (band_h - block) // 2, (*_TEXT, 255))
    top = height - band_h - max(0, height // 14)
    return np.asarray(band, dtype=np.uint8).copy(), top


# -- layout -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType: the fixed-size bitmap font
        return ImageFont.load_default()


def _fit(
    draw: ImageDraw.ImageDraw, text: str, max_w: int, max_h: int, *, start: int, max_lines: int = 4
) -> tuple[Font, list[str]]:
    """The largest font size (from `start` down) at which `text` wraps into <= max_lines lines that fit."""
    size = start
    while True:
        font = _font(size)
        lines = _wrap(draw, text, font, max_w)
        fits = len(lines) <= max_lines and _block_height(draw, lines, font) <= max_h
        if fits or size <= 8:
            if len(lines) > max_lines:
                lines = lines[:max_lines]
                lines[-1] = _ellipsize(draw, lines[-1], font, max_w)
            return font, lines
        size = max(8, int(size * 0.88))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, max_w: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if draw.textlength(candidate, font=font) <= max_w:
                line = candidate
                continue
            if line:
                lines.append(line)
            # a word wider than the line is broken where it overflows
            while draw.textlength(word, font=font) > max_w and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and draw.textlength(word[:cut], font=font) > max_w:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _ellipsize(draw: ImageDraw.ImageDraw, line: str, font: Font, max_w: int) -> str:
    while line and draw.textlength(line + "…", font=font) > max_w:
        line = line[:-1]
    return line.rstrip() + "…"


def _line_height(draw: ImageDraw.ImageDraw, font: Font) -> int:
    _, top, _, bottom = draw.textbbox((0, 0), "Ägy", font=font)
    return int((bottom - top) * 1.25) + 1


def _block_height(draw: ImageDraw.ImageDraw, lines: list[str], font: Font | None) -> int:
    return 0 if font is None or not lines else _line_height(draw, font) * len(lines)


def _draw_lines(
    draw: ImageDraw.ImageDraw, lines: list[str], font: Font, width: int, y: int, fill: tuple[int, ...]
) -> int:
    lh = _line_height(draw, font)
    for line in lines:
        w = draw.textlength(line, font=font)
        draw.text(((width - w) / 2, y), line, font=font, fill=fill)
        y += lh
    return y
