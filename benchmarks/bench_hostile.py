"""Hostile input costs a user little: what they wait for when a project or its media is hostile.

    python benchmarks/bench_hostile.py [--quick]

1. An alias bomb (a project.yaml under 1.5 KB whose aliases expand to 9**9 strings) refused through the
   console script: the wall of `wanbatch --config-dir BOMB` (exit 2), beside the same command on a small
   project with a bad seed (composed by Hydra, refused by validation). Target: <= 2 s. (0.1: 28 s and
   360 MB at depth 4; depth 5 never finished.)
2. A title card (with the same text as its subtitle) and a caption of 800 CJK characters without a space,
   and of 100,000: in process, median of 5. Target: <= 1 s. (0.1: 50 s for 800.)
3. What proving media whole adds to the first plan of a file (memoised after, per process): a 1280x720
   PNG decoded, and a 5 s WAV walked and decoded by ffmpeg, beside the header read and the probe 0.1 did.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO_ROOT, figure, median, parse_args, print_result, result

TARGET_REFUSE_S = 2.0
TARGET_TITLE_S = 1.0
SCENE = "project: {name: bench}\nscenes:\n  - {id: card, title: T, seed: 1, width: 64, height: 48, duration: 0.5}\n"


def _bomb(depth: int) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, depth + 1)]
    return "defaults: [wanbatch, _self_]\n" + SCENE + "\n".join(lines) + "\n"


def _cli_wall(folder: Path, cwd: Path, *args: str) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", "--config-dir", str(folder), f"cache.dir={cwd / 'cache'}", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )
    return time.perf_counter() - t0, proc.returncode, proc.stderr


def refusals(rounds: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bomb, invalid = root / "bomb", root / "invalid"
        bomb.mkdir()
        invalid.mkdir()
        (bomb / "project.yaml").write_text(_bomb(9))
        (invalid / "project.yaml").write_text("defaults: [wanbatch, _self_]\n" + SCENE.replace("seed: 1", "seed: -7"))
        walls: dict[str, list[float]] = {"bomb": [], "invalid": []}
        codes = set()
        for _ in range(rounds):  # interleaved, so the machine's load colours both alike
            for name, folder in (("bomb", bomb), ("invalid", invalid)):
                wall, code, _ = _cli_wall(folder, root)
                walls[name].append(wall)
                codes.add((name, code))
        size = len((bomb / "project.yaml").read_bytes())
    b, i = median(walls["bomb"]), median(walls["invalid"])
    ok = codes == {("bomb", 2), ("invalid", 2)}
    figures = [
        figure(
            f"alias bomb ({size} B, 9**9 strings) refused, console script wall", f"{b:.2f} s", "<= 2 s", b <= 2.0 and ok
        ),
        figure("a small invalid project refused, console script wall", f"{i:.2f} s"),
    ]
    return figures, {"walls": walls, "codes": sorted(codes)}


def titles(rounds: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    from wanbatch.film.titles import title_caption, title_card

    title_card("warm", 832, 480)  # the font, loaded once
    figures, raw = [], {}
    for n in (800, 100_000):
        text = ("灯塔看守人" * (n // 5 + 1))[:n]
        card = median([_timed(lambda t=text: title_card(t, 832, 480, subtitle=t)) for _ in range(rounds)])
        caption = median([_timed(lambda t=text: title_caption(t, 832, 480)) for _ in range(rounds)])
        raw[n] = {"card": card, "caption": caption}
        figures.append(
            figure(
                f"title card + subtitle / caption, {n:,} CJK characters without a space",
                f"{card:.3f} / {caption:.3f} s",
                "<= 1 s",
                max(card, caption) <= TARGET_TITLE_S,
            )
        )
    return figures, raw


def media(rounds: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    import numpy as np
    from PIL import Image

    from wanbatch.av.ffmpeg import probe
    from wanbatch.av.whole import image_whole, media_whole

    with tempfile.TemporaryDirectory() as tmp:
        png, wav = Path(tmp) / "frame.png", Path(tmp) / "voice.wav"
        rng = np.random.default_rng(7)
        gradient = np.linspace(0, 255, 1280, dtype=np.uint8)[None, :, None].repeat(720, 0).repeat(3, 2)
        Image.fromarray(gradient // 2 + rng.integers(0, 64, gradient.shape, dtype=np.uint8)).save(png)
        _wav(wav, 5.0)
        png_new = median([_timed(lambda: image_whole(png)) for _ in range(rounds)])
        png_old = median([_timed(lambda: Image.open(png).size) for _ in range(rounds)])
        wav_new = median([_timed(lambda: media_whole(wav)) for _ in range(rounds)])
        wav_old = median([_timed(lambda: probe(wav)) for _ in range(rounds)])
    figures = [
        figure("1280x720 PNG: decoded whole / header only (0.1)", f"{png_new * 1e3:.1f} / {png_old * 1e3:.1f} ms"),
        figure("5 s WAV: walked + decoded by ffmpeg / probed (0.1)", f"{wav_new * 1e3:.1f} / {wav_old * 1e3:.1f} ms"),
    ]
    return figures, {"png": [png_new, png_old], "wav": [wav_new, wav_old]}


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _wav(path: Path, seconds: float, rate: int = 16000) -> None:
    import wave

    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__ or "")
    rounds = 3 if args.quick else 5
    os.chdir(REPO_ROOT)
    figures, raw = [], {}
    for name, part in (("refusals", refusals), ("titles", titles), ("media", media)):
        got, raw[name] = part(rounds)
        figures += got
    notes = [
        "Console-script walls include interpreter start and imports; the bomb is refused before Hydra composes, "
        "the invalid project after (so the bomb's wall can be the smaller).",
        "Title figures are in-process, the font already loaded; line breaking stops once a text cannot fit the "
        "lines asked for, so 100,000 characters cost what 800 do.",
        f"Media: median of {rounds}; each file decoded afresh (the memo is per process and keyed on the file).",
    ]
    return result(
        "hostile",
        "8. Hostile input: an alias bomb, long titles, media proved whole",
        figures,
        notes=notes,
        raw=raw,
        quick=args.quick,
    )


if __name__ == "__main__":
    print_result(main())
