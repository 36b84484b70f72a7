"""The run directory as it fills: clips linked in as jobs finish, the manifest rewritten each time,
then the film, index.html and the timeline export."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from . import manifest
from .encode import EncodeSettings
from .executors.common import Outcome
from .plan import Plan
from .project import Soundtrack


class RunOutputs:
    def __init__(self, run_dir: Path, plan: Plan, started: float):
        self.run_dir = run_dir
        self.plan = plan
        self.started = started
        self.outcomes: dict[str, Outcome] = {}
        self.clips: dict[str, str] = {}
        (run_dir / "clips").mkdir(parents=True, exist_ok=True)

    def add(self, outcome: Outcome) -> None:
        """Record one finished job: link its clip into clips/ and rewrite the manifest."""
        self.outcomes[outcome.scene] = outcome
        if outcome.ok and outcome.clip is not None:
            job = self.plan.job(outcome.scene)
            rel = f"clips/{job.scene.index + 1:03d}-{_safe(job.id)}.mp4"
            _link(outcome.clip, self.run_dir / rel)
            self.clips[outcome.scene] = rel
        manifest.write(self.run_dir, self.manifest())

    def manifest(self, film: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return manifest.build(self.plan, self.outcomes, self.clips, started=self.started, film=film, extra=extra)

    def stitch(self, settings: dict[str, Any], encode: EncodeSettings,
               soundtrack: Soundtrack | None) -> tuple[str, dict[str, Any]]:
        from .stitch import FilmClip, stitch_film

        clips = [FilmClip(path=self.run_dir / self.clips[j.id], scene_id=j.id, transition=j.scene.transition)
                 for j in self.plan.jobs]
        result = stitch_film(clips, self.run_dir / "film.mp4", settings=settings, encode=encode,
                             soundtrack=soundtrack)
        return "film.mp4", {"method": result.method, "reason": result.reason,
                            "duration": round(result.duration, 3), "seconds": round(result.seconds, 3)}

    def report(self, data: dict[str, Any]) -> None:
        """The timeline export, then index.html (which links it); a failure here never fails the run."""
        if data.get("film"):
            try:
                from .timeline import write_timeline

                data["timeline"] = write_timeline(self.run_dir, data).name
            except Exception as exc:
                data["timeline_error"] = f"{type(exc).__name__}: {exc}"
        try:
            from .report import write_report

            data["report"] = write_report(self.run_dir, data).name
        except Exception as exc:
            data["report_error"] = f"{type(exc).__name__}: {exc}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _link(src: Path, dest: Path) -> None:
    """Hard-link a cached blob into the run dir (instant, no extra space); copy across filesystems.
    Editing a run's clip in place would change the blob too, but every cache read verifies the hash,
    so such an entry is a miss and re-rendered, never served corrupt."""
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
