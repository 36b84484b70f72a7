"""`preview`: an animatic per scene with no model, to check a storyboard's timing before paying for it.

The first frame image (or a title card with the prompt) drifts in a slow pan/zoom, crossfades to
`last_image` when given, and the driving audio is laid under. Pure function of its inputs, so it is
deterministic and caches like any other backend.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wanbatch.av.ffmpeg import last_frame
from wanbatch.config.backends import PreviewConfig
from wanbatch.config.checks import choice, number
from wanbatch.core.backend import Backend, BackendKind, RenderContext, RenderResult
from wanbatch.core.job import Job
from wanbatch.core.scene import Scene
from wanbatch.errors import Issue, RenderError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

SIZES = {"480P": (832, 480), "720P": (1280, 720), "1080P": (1920, 1080)}
# An animatic is a sketch: past these it only fills memory and disk (a `width: 20000` scene allocated
# gigabytes per frame before anything said no).
MAX_SIDE = 3840
MAX_FPS = 120
MAX_SECONDS = 600
PREVIEW_VERSION = "1"  # bump when the drawing changes, so cached animatics are redrawn


class PreviewBackend(Backend):
    name = "preview"
    kind = BackendKind.CPU
    config_type = PreviewConfig
    config: PreviewConfig

    def check_ready(self, issues: list[Issue]) -> None:
        c = self.config
        choice(issues, "backend.default_resolution", c.default_resolution, SIZES)
        number(issues, "backend.default_duration", c.default_duration, above=0)
        number(issues, "backend.default_fps", c.default_fps, minimum=1, integer=True)
        number(issues, "backend.max_in_flight", c.max_in_flight, minimum=1, integer=True)

    @property
    def max_in_flight(self) -> int:
        return self.config.max_in_flight

    def model_identity(self, scene: Scene) -> dict[str, Any]:
        return {"model": "preview", "revision": PREVIEW_VERSION}

    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        fps = scene.fps or self.config.default_fps
        if scene.width or scene.height:
            if not (scene.width and scene.height):
                issues.append(
                    Issue(
                        scene.id,
                        "width" if not scene.width else "height",
                        None,
                        "set both `width` and `height`, or use `resolution`",
                    )
                )
                return {}
            width, height = scene.width, scene.height
        else:
            resolution = scene.resolution or self.config.default_resolution
            if resolution not in SIZES:  # a bad `default_resolution`: check_ready has said so
                return {}
            width, height = SIZES[resolution]
        for name, v in (("width", width), ("height", height)):
            if v % 2:
                issues.append(Issue(scene.id, name, v, "an even number of pixels (H.264 4:2:0 needs it)"))
            if v > MAX_SIDE:
                issues.append(Issue(scene.id, name, v, f"at most {MAX_SIDE} pixels for the `preview` backend"))
        if fps > MAX_FPS:
            issues.append(Issue(scene.id, "fps", fps, f"at most {MAX_FPS} for the `preview` backend"))
        if scene.num_frames is not None and scene.duration is not None:
            issues.append(
                Issue(scene.id, "num_frames", scene.num_frames, "either `duration` or `num_frames`, not both")
            )
        duration = scene.duration or float(self.config.default_duration)
        num_frames = scene.num_frames or max(1, round(duration * fps))
        if num_frames > MAX_SECONDS * min(fps, MAX_FPS):
            field, value = ("num_frames", scene.num_frames) if scene.num_frames else ("duration", duration)
            issues.append(
                Issue(
                    scene.id,
                    field,
                    value,
                    f"at most {MAX_SECONDS} s of video ({MAX_SECONDS * fps} frames at {fps} fps) "
                    "for the `preview` backend",
                )
            )
        for name, media in scene.media().items():
            if not media.is_local:  # found at plan time, not after the other scenes have rendered
                issues.append(
                    Issue(
                        scene.id,
                        name,
                        media.describe(),
                        "a local file: the `preview` backend draws offline and fetches nothing "
                        "(download it and give its path)",
                    )
                )
        return {
            "prompt": scene.prompt or "",
            "title": scene.title,
            "seed": scene.seed,
            "width": width,
            "height": height,
            "fps": fps,
            "num_frames": num_frames,
        }

    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        p = job.params
        w, h, n = p["width"], p["height"], p["num_frames"]
        from PIL import Image  # imported when frames are made: a cached run makes none (~8 ms of its start)

        t0 = time.perf_counter()
        first = self._first_image(job, ctx.workdir)
        last = _fit(Image.open(_local(job, "last_image")), w, h) if "last_image" in job.inputs else None
        audio = _local(job, "audio") if "audio" in job.inputs else None
        out = ctx.workdir / "clip.mp4"
        from wanbatch.av.encode import write_clip

        write_clip(_animate(first, last, w, h, n, p["seed"]), out, fps=p["fps"], settings=ctx.encode, audio=audio)
        return RenderResult(video=out, model="preview", info={"render_s": round(time.perf_counter() - t0, 3)})

    def _first_image(self, job: Job, workdir: Path) -> Image.Image:
        from PIL import Image

        p = job.params
        w, h = p["width"], p["height"]
        if "image" in job.inputs:
            return _fit(Image.open(_local(job, "image")), w, h)
        if "first_clip" in job.inputs:
            return _fit(Image.open(last_frame(_local(job, "first_clip"), workdir / "first_clip_last.png")), w, h)
        from wanbatch.film.titles import title_card

        text = p.get("title") or p["prompt"] or job.id
        sub = p["prompt"] if p.get("title") and p["prompt"] else None
        return Image.fromarray(title_card(text, w, h, subtitle=sub))


def _local(job: Job, field: str) -> Path:
    media = job.inputs[field]
    if media.path is None:  # a URL: preview draws offline, so it needs the file
        raise RenderError(f"scene `{job.id}`: preview needs a local `{field}`, not {media.url}")
    return media.path


def _fit(im: Image.Image, w: int, h: int) -> Image.Image:
    """Cover-fit an image to w x h (scale, then centre-crop), as a video frame would be framed."""
    from PIL import Image

    im = im.convert("RGB")
    scale = max(w / im.width, h / im.height)
    im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), Image.Resampling.BICUBIC)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    return im.crop((left, top, left + w, top + h))


def _animate(first: Image.Image, last: Image.Image | None, w: int, h: int, n: int, seed: int) -> Iterator[np.ndarray]:
    # A slow Ken Burns move: zoom in by 8%, drifting in a direction picked by the seed.
    dx, dy = ((1, 0), (-1, 0), (0, 1), (0, -1))[seed % 4]
    zoom_to = 1.08
    import numpy as np  # imported when frames are made: a cached run makes none
    from PIL import Image

    a = np.asarray(first, dtype=np.float32)
    b = np.asarray(last, dtype=np.float32) if last is not None else None
    for i in range(n):
        t = i / max(1, n - 1)
        frame = a if b is None else a * (1 - t) + b * t
        z = 1 + (zoom_to - 1) * t
        cw, ch = w / z, h / z
        cx = (w - cw) / 2 * (1 + dx * t)
        cy = (h - ch) / 2 * (1 + dy * t)
        im = Image.fromarray(frame.astype(np.uint8))
        box = (cx, cy, cx + cw, cy + ch)
        yield np.asarray(im.resize((w, h), Image.Resampling.BILINEAR, box=box))
