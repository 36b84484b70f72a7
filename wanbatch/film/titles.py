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
        lines = _wrap(draw, text, font, max_w, limit=max_lines)
        fits = len(lines) <= max_lines and _block_height(draw, lines, font) <= max_h
        if fits or size <= 8:
            if len(lines) > max_lines:
                lines = lines[:max_lines]
                lines[-1] = _ellipsize(draw, lines[-1], font, max_w)
            return font, lines
        size = max(8, int(size * 0.88))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, max_w: int, *, limit: int) -> list[str]:
    """Lines at most `max_w` wide: broken at spaces, and inside a word (or a run of CJK, which has no spaces)
    where it overflows. Stops at `limit` + 1 lines, since a caller only asks whether the text fits in
    `limit`. Widths are sums of per-character advances (each measured once), so breaking costs one pass
    over the characters of the first lines; each line is then measured exactly once, and kerning that made
    one wider than its sum narrows the budget for another pass. (An 800-character title without a space
    took 50 s when every break re-measured the rest of the word one character at a time.)"""
    advances = _Advances(draw, font)
    budget = float(max_w)
    lines: list[str] = []
    for _ in range(3):
        lines = _break(text, advances, budget, limit)
        over = max((draw.textlength(line, font=font) for line in lines), default=0.0) - max_w
        if over <= 0:
            break
        budget -= over + 1
    return lines


class _Advances:
    """The width of a text in one font as the sum of its characters' advances (kerning aside)."""

    def __init__(self, draw: ImageDraw.ImageDraw, font: Font):
        self._draw, self._font = draw, font
        self._known: dict[str, float] = {}

    def of(self, char: str) -> float:
        width = self._known.get(char)
        if width is None:
            width = self._known[char] = float(self._draw.textlength(char, font=self._font))
        return width

    def __call__(self, text: str) -> float:
        return sum(self.of(c) for c in text)


def _break(text: str, width: _Advances, max_w: float, limit: int) -> list[str]:
    lines: list[str] = []
    space = width(" ")
    for paragraph in text.splitlines() or [""]:
        line, line_w = "", 0.0
        for word in paragraph.split():
            fits = _capacity(word, width, max_w) == len(word)  # reads no further than the line's width
            word_w = width(word) if fits else max_w + 1
            if line and line_w + space + word_w <= max_w:
                line, line_w = f"{line} {word}", line_w + space + word_w
                continue
            if line:
                lines.append(line)
                if len(lines) > limit:
                    return lines
            # a word wider than the line is broken where it overflows
            while len(word) > 1 and (cut := _capacity(word, width, max_w)) < len(word):
                lines.append(word[: max(1, cut)])
                if len(lines) > limit:
                    return lines
                word = word[max(1, cut) :]
            line, line_w = word, width(word)
        lines.append(line)
        if len(lines) > limit:
            return lines
    return lines


def _capacity(word: str, width: _Advances, max_w: float) -> int:
    """How many leading characters of `word` fit in `max_w` (reads no further than the first that does not)."""
    used = 0.0
    for i, c in enumerate(word):
        used += width.of(c)
        if used > max_w:
            return i
    return len(word)


def _fitting_prefix(draw: ImageDraw.ImageDraw, text: str, font: Font, max_w: int) -> int:
    """The most leading characters of `text` that fit in `max_w`: doubling, then bisecting, so each probe
    measures at most twice the answer."""
    hi = 1
    while hi < len(text) and draw.textlength(text[:hi], font=font) <= max_w:
        hi *= 2
    lo, hi = hi // 2, min(hi, len(text))  # text[:lo] fits (or lo is 0); text[:hi] may not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid], font=font) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _ellipsize(draw: ImageDraw.ImageDraw, line: str, font: Font, max_w: int) -> str:
    """`line` cut to fit with an ellipsis after it."""
    keep = _fitting_prefix(draw, line + "…", font, max_w)
    if keep > len(line):
        return line.rstrip() + "…"
    while keep > 0 and draw.textlength(line[:keep] + "…", font=font) > max_w:
        keep -= 1  # the ellipsis is wider than the character it replaces: a step or two
    return line[:keep].rstrip() + "…"


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
