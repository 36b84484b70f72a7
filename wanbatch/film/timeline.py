"""The cut as an editable timeline: `film.otio` (OpenTimelineIO), or `film.edl` (CMX3600) without it.

An editor opens the run's cut, with the same clips and transitions as `film.mp4`, and takes it from
there. Clips are referenced by paths relative to the run directory, so the folder can move.

The model is the stitcher's (`stitch.layout`): a crossfade of d seconds overlaps two clips by d, so in
OTIO it is a dissolve whose offsets take d/2 from each side (each clip is trimmed by d/2 there and the
track lasts exactly as long as the film); a fade through black overlaps nothing and is a zero-length
custom transition named `fade_through_black` that carries its duration in metadata (a tool that does not
know it shows a cut at the right time). The EDL writes crossfades as dissolves (`D`) and notes fades in a
comment.

OpenTimelineIO is the optional `[report]` extra and is imported only here, when a timeline is written. Its
import and serialiser took ~45 ms of a fully cached rerun's ~0.55 s, so the text is kept in the cache's
`timelines/` (named by the film's cache key, so `cache prune` drops it with the film, and by a hash of
everything the text is made of) and a rerun with the same cut copies it.

Example::

    path = write_timeline(run_dir, manifest)   # run_dir/film.otio, or run_dir/film.edl without OTIO
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wanbatch.av.files import keep_file
from wanbatch.core.scene import TRANSITIONS, Transition
from wanbatch.film.clips import ClipInfo, layout, probe_unknown
from wanbatch.secrets import redact

__all__ = ["write_timeline"]


@dataclass(frozen=True)
class _Cut:
    scene_id: str
    clip: str  # relative to the run directory
    duration: float
    transition: Transition
    metadata: dict[str, Any]


def write_timeline(
    run_dir: Path,
    manifest: Mapping[str, Any],
    durations: Mapping[str, float] | None = None,
    probed: Mapping[Path, ClipInfo] | None = None,
    *,
    kept: Path | None = None,
) -> Path:
    """Write the film's timeline into `run_dir` and return its path.

    Uses every scene of `manifest` that has a clip, in order. A clip's duration comes from `durations`
    (scene id -> seconds) when given, else from the clip file's header: read already in `probed` (clip path
    -> what `probe_clips` said; a run reads each clip's header as it lands), else now. Transitions come
    from each scene's `transition` ({type, duration} or a type name). `kept`: the cache's `timelines/`, where
    an OTIO text made before for the same cut is found (and one made now is kept).
    """
    run_dir = Path(run_dir)
    cuts, fps = _cuts(run_dir, manifest, durations or {}, probed or {})
    name = str(manifest.get("project") or run_dir.name)
    if importlib.util.find_spec("opentimelineio") is not None:
        stitch = manifest.get("stitch")
        film_key = stitch.get("cache_key") if isinstance(stitch, Mapping) else None
        keep = _kept_path(kept, film_key, name, cuts, fps)
        text = _read(keep)
        if text is None:
            try:
                otio = importlib.import_module("opentimelineio")
            except ImportError:
                return _atomic_write(run_dir / "film.edl", _edl_text(name, cuts, fps))
            text = _otio_text(otio, name, cuts, fps)
            _keep(keep, text)
        return _atomic_write(run_dir / "film.otio", text)
    return _atomic_write(run_dir / "film.edl", _edl_text(name, cuts, fps))


# -- what the cut is ---------------------------------------------------------------------------------------


def _cuts(
    run_dir: Path, manifest: Mapping[str, Any], durations: Mapping[str, float], probed: Mapping[Path, ClipInfo]
) -> tuple[list[_Cut], float]:
    scenes = [s for s in manifest.get("scenes") or [] if isinstance(s, Mapping) and s.get("clip")]
    if not scenes:
        raise ValueError("the manifest has no scene with a clip: there is no cut to export")
    rel = [_relative(str(s["clip"])) for s in scenes]
    infos = probe_unknown([run_dir / r for r in rel], probed)
    cuts = []
    for scene, r, info in zip(scenes, rel, infos, strict=True):
        sid = str(scene.get("id"))
        # What the clip is, not how this run came by it (rendered or cached: the manifest says): the same cut
        # is the same timeline on every rerun, and the first rerun finds it kept too.
        meta = {
            k: scene.get(k)
            for k in ("prompt", "seed", "backend", "model", "cache_key", "request_id", "title")
            if scene.get(k) is not None
        }
        cuts.append(_Cut(sid, r, float(durations.get(sid, info.duration)), _transition(scene.get("transition")), meta))
    layout([c.duration for c in cuts], [c.transition for c in cuts], [c.scene_id for c in cuts])  # they fit
    return cuts, infos[0].fps


def _transition(raw: Any) -> Transition:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping) or raw.get("type") not in TRANSITIONS or raw.get("type") == "cut":
        return Transition()
    return Transition(str(raw["type"]), float(raw.get("duration") or 0.5))


def _relative(path: str) -> str:
    p = Path(path)
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"a clip path in the manifest is not inside the run directory: {path!r}")
    return p.as_posix()


def _trims(cuts: Sequence[_Cut]) -> list[tuple[float, float]]:
    """Seconds trimmed from each clip's head and tail: half of each crossfade it takes part in."""
    out = []
    for i, c in enumerate(cuts):
        head = c.transition.duration / 2 if i and c.transition.type == "crossfade" else 0.0
        nxt = cuts[i + 1].transition if i + 1 < len(cuts) else Transition()
        tail = nxt.duration / 2 if nxt.type == "crossfade" else 0.0
        out.append((head, tail))
    return out


# -- OpenTimelineIO ----------------------------------------------------------------------------------------


def _kept_path(kept: Path | None, film_key: Any, name: str, cuts: Sequence[_Cut], fps: float) -> Path | None:
    """Where the cache keeps this cut's OTIO text: the film's key, then a hash of all the text is made of (the
    cuts with their metadata, the name, the fps, the OpenTimelineIO version and this module's source)."""
    if kept is None or not isinstance(film_key, str) or not film_key.isalnum():
        return None
    from wanbatch.version import package_versions, source_digest

    made_of = [
        source_digest(__name__),
        package_versions(("opentimelineio",)).get("opentimelineio"),
        name,
        fps,
        [dataclasses.asdict(c) for c in cuts],
    ]
    digest = hashlib.sha256(json.dumps(made_of, sort_keys=True, default=str).encode()).hexdigest()
    return kept / f"{film_key}-{digest[:24]}.otio"


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _keep(path: Path | None, text: str) -> None:
    """A cache that cannot be written only costs time next run."""
    if path is not None:
        keep_file(path, lambda staged: staged.write_text(text, encoding="utf-8"))


def _otio_text(otio: Any, name: str, cuts: Sequence[_Cut], fps: float) -> str:
    def rt(seconds: float) -> Any:
        return otio.opentime.RationalTime(round(seconds * fps), fps)

    timeline = otio.schema.Timeline(name=name, metadata={"wanbatch": {"fps": fps}})
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    for i, (cut, (head, tail)) in enumerate(zip(cuts, _trims(cuts), strict=True)):
        tr = cut.transition
        if i and tr.type == "crossfade":
            track.append(
                otio.schema.Transition(
                    name=f"crossfade into {cut.scene_id}",
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=rt(tr.duration / 2),
                    out_offset=rt(tr.duration / 2),
                    metadata={"wanbatch": {"type": tr.type, "duration": tr.duration}},
                )
            )
        elif i and tr.type == "fade":
            track.append(
                otio.schema.Transition(
                    name="fade_through_black",
                    transition_type=otio.schema.TransitionTypes.Custom,
                    in_offset=rt(0),
                    out_offset=rt(0),
                    metadata={"wanbatch": {"type": tr.type, "duration": tr.duration}},
                )
            )
        ref = otio.schema.ExternalReference(
            target_url=quote(cut.clip), available_range=otio.opentime.TimeRange(rt(0), rt(cut.duration))
        )
        source = otio.opentime.TimeRange(rt(head), rt(cut.duration - head - tail))
        track.append(
            otio.schema.Clip(
                name=cut.scene_id, media_reference=ref, source_range=source, metadata={"wanbatch": cut.metadata}
            )
        )
    return str(otio.adapters.write_to_string(timeline, "otio_json"))


# -- CMX3600 EDL -------------------------------------------------------------------------------------------


def _edl_text(name: str, cuts: Sequence[_Cut], fps: float) -> str:
    """Events on a timeline starting at 00:00:00:00, timecode at the film's fps rounded to a whole
    number (non-drop-frame), reel `AX` with the clip named in comments as editors expect."""
    base = max(1, round(fps))
    frame_s = float(Fraction(fps).limit_denominator(1001))

    def tc(seconds: float) -> str:
        f = round(seconds * frame_s)
        return f"{f // (3600 * base):02d}:{f // (60 * base) % 60:02d}:{f // base % 60:02d}:{f % base:02d}"

    lay = layout([c.duration for c in cuts], [c.transition for c in cuts], [c.scene_id for c in cuts])
    lines = [f"TITLE: {_edl_safe(name)}", "FCM: NON-DROP FRAME", ""]
    for i, (cut, start) in enumerate(zip(cuts, lay.starts, strict=True)):
        nxt = cuts[i + 1].transition if i + 1 < len(cuts) else Transition()
        tail = nxt.duration if nxt.type == "crossfade" else 0.0
        src_out, rec_out = cut.duration - tail, start + cut.duration - tail
        event = f"{i + 1:03d}"
        tr = cut.transition
        clip_name = _edl_safe(Path(cut.clip).name)
        if i and tr.type == "crossfade":
            prev = cuts[i - 1]
            at = prev.duration - tr.duration  # the outgoing clip, held at the point the dissolve starts
            lines.append(f"{event}  AX       V     C        {tc(at)} {tc(at)} {tc(start)} {tc(start)}")
            frames = round(tr.duration * frame_s)
            lines.append(f"{event}  AX       V     D    {frames:03d} {tc(0)} {tc(src_out)} {tc(start)} {tc(rec_out)}")
            lines.append(f"* FROM CLIP NAME: {_edl_safe(Path(prev.clip).name)}")
            lines.append(f"* TO CLIP NAME: {clip_name}")
        else:
            lines.append(f"{event}  AX       V     C        {tc(0)} {tc(src_out)} {tc(start)} {tc(rec_out)}")
            lines.append(f"* FROM CLIP NAME: {clip_name}")
            if i and tr.type == "fade":
                lines.append(f"* EFFECT: FADE THROUGH BLACK {tr.duration:g} S (HALF ON EACH SIDE OF THE CUT)")
        lines.append(f"* SOURCE FILE: {_edl_safe(cut.clip)}")
        lines.append(f"* SCENE: {_edl_safe(cut.scene_id)}")
        lines.append("")
    return "\n".join(lines)


def _edl_safe(text: str) -> str:
    return " ".join(str(text).split())


def _atomic_write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(redact(text), encoding="utf-8")
    os.replace(tmp, path)
    return path
