"""Title cards and captions: the right shape, deterministic, text actually drawn and kept inside the frame."""

from __future__ import annotations

import numpy as np
import pytest

from wanbatch.film.titles import title_caption, title_card


def _text_mask(frame: np.ndarray) -> np.ndarray:
    # the text is near-white on a dark background
    return frame.min(axis=2) > 150


def test_card_shape_dtype_and_determinism():
    a = title_card("The Lighthouse Keeper", 832, 480)
    b = title_card("The Lighthouse Keeper", 832, 480)
    assert a.shape == (480, 832, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_card_draws_centred_text():
    frame = title_card("HELLO", 320, 180)
    mask = _text_mask(frame)
    assert mask.sum() > 100, "no text pixels"
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 160) < 20 and abs(ys.mean() - 90) < 20
    assert not mask[:, :5].any() and not mask[:, -5:].any()  # nothing touches the edges


def test_different_text_different_card():
    assert not np.array_equal(title_card("one", 320, 180), title_card("two", 320, 180))


def test_subtitle_adds_a_second_block():
    plain = title_card("Title", 640, 360)
    with_sub = title_card("Title", 640, 360, subtitle="a subtitle under it")
    assert not np.array_equal(plain, with_sub)
    # the subtitle is drawn below the title: more light pixels in the lower part of the frame
    assert (with_sub[200:].min(axis=2) > 120).sum() > (plain[200:].min(axis=2) > 120).sum() + 50


@pytest.mark.parametrize(("w", "h"), [(64, 36), (160, 90), (1920, 1080), (480, 832)])
def test_long_text_wraps_inside_any_frame(w, h):
    text = "a very long title " * 12 + "Supercalifragilisticexpialidocious" * 3
    frame = title_card(text, w, h, subtitle="and a long subtitle " * 10)
    assert frame.shape == (h, w, 3)
    mask = _text_mask(frame)
    assert mask.any()
    margin = max(1, w // 50)
    assert not mask[:, :margin].any() and not mask[:, -margin:].any()


def test_empty_text_is_a_plain_card():
    frame = title_card("", 160, 90)
    assert frame.shape == (90, 160, 3)


def test_bad_size_is_rejected():
    with pytest.raises(ValueError, match="width"):
        title_card("x", 0, 10)


def test_caption_band():
    rgba, top = title_caption("Dawn over the harbour", 832, 480)
    assert rgba.dtype == np.uint8 and rgba.shape[1] == 832 and rgba.shape[2] == 4
    assert top >= 0 and top + rgba.shape[0] <= 480
    assert top > 480 // 2  # a lower third
    assert (rgba[..., 3] > 0).all()  # the translucent strip
    assert (rgba[..., :3].min(axis=2) > 200).sum() > 50  # the text


class _OverBudget(Exception):
    pass


def _work(monkeypatch: pytest.MonkeyPatch, draw_it, budget: int) -> int:
    """Characters measured (summed over every `textlength` call) while `draw_it()` runs: the cost of line
    breaking, counted rather than timed, so the test holds on a loaded machine. Past `budget` it stops the
    drawing (a quadratic wrap would otherwise run for minutes before failing)."""
    from PIL import ImageDraw

    measured = [0]
    real = ImageDraw.ImageDraw.textlength

    def counting(self, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        measured[0] += len(text)
        if measured[0] > budget:
            raise _OverBudget(f"more than {budget} characters measured")
        return real(self, text, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(ImageDraw.ImageDraw, "textlength", counting)
        draw_it()
    return measured[0]


@pytest.mark.parametrize(
    "unit", ["镜头", "supercalifragilistic", "a few words "], ids=["CJK without spaces", "one long word", "words"]
)
def test_line_breaking_grows_at_most_linearly_with_the_text(monkeypatch: pytest.MonkeyPatch, unit: str) -> None:
    """A linear bound on the work (characters measured) for a card with a subtitle and for a caption: a
    fixed cost (the fonts tried, the few lines kept) plus a small cost per character."""
    for n in (100, 400, 1600, 6400):
        text = (unit * n)[:n]
        budget = 20_000 + 30 * n
        card = _work(monkeypatch, lambda t=text: title_card(t, 832, 480, subtitle=t), budget)
        caption = _work(monkeypatch, lambda t=text: title_caption(t, 832, 480), budget)
        assert card <= budget and caption <= budget


def test_an_800_character_cjk_title_fits_the_card_with_an_ellipsis() -> None:
    from PIL import Image, ImageDraw

    from wanbatch.film import titles

    text = "灯塔看守人" * 160
    frame = title_card(text, 832, 480)
    mask = _text_mask(frame)
    assert mask.any() and not mask[:, :8].any() and not mask[:, -8:].any()
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    font, lines = titles._fit(draw, text, 715, 201, start=53)
    assert len(lines) == 4 and lines[-1].endswith("…")
    assert all(draw.textlength(line, font=font) <= 715 for line in lines)
    kept = "".join(lines)[:-1]
    assert kept == text[: len(kept)]  # broken between characters, nothing lost before the ellipsis
