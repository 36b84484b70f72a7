"""The stand-in for a scene that failed (`stitch.on_failure: slate`): a title card naming the scene, as long as
the scene would have been, so a partial film keeps its timing and can be watched while the shot is redone."""

from __future__ import annotations

from pathlib import Path

from wanbatch.av.encode import EncodeSettings, write_clip
from wanbatch.film.titles import title_card


def write_slate(
    path: Path, scene_id: str, seconds: float, *, width: int, height: int, fps: float, encode: EncodeSettings
) -> Path:
    frame = title_card(f"scene {scene_id} failed", width, height, subtitle=f"{seconds:.1f} s, to be rendered again")
    count = max(1, round(seconds * fps))
    return write_clip((frame for _ in range(count)), path, fps=fps, settings=encode)


__all__ = ["write_slate"]
