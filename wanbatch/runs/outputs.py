"""The run directory as it fills: clips linked in as jobs finish, the manifest rewritten each time,
then the film, index.html and the timeline export."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wanbatch.av.encode import EncodeSettings
from wanbatch.av.files import link_or_copy
from wanbatch.cache.live import Registration
from wanbatch.cache.store import Cache
from wanbatch.config.schema import StitchConfig
from wanbatch.core.job import Job
from wanbatch.core.names import file_stem
from wanbatch.core.outcome import Outcome
from wanbatch.core.plan import Plan, key_of
from wanbatch.core.project import Soundtrack
from wanbatch.runs import manifest
from wanbatch.runs.manifest import Manifest, RunNotes, SceneRecord
from wanbatch.runs.page import number
from wanbatch.runs.posters import EarlyPosters, poster_name

MANIFEST_EVERY_S = 0.5
MANIFEST_SHARE = 0.05  # at most this share of the main thread's time goes to rewriting the manifest mid-run
FILM_VERSION = 1  # bump when stitching changes its output for the same inputs


class RunOutputs:
    def __init__(
        self,
        run_dir: Path,
        plan: Plan,
        started: float,
        estimates: dict[str, float | None] | None = None,
        *,
        cache: Cache | None = None,
        posters: EarlyPosters | None = None,
        probe: bool = False,
        environment: Callable[[bool], dict[str, Any] | None] | None = None,
    ):
        """`cache`: told where each clip was linked; `posters`: cut each clip's poster for the report as the clip
        lands (see wanbatch.runs.posters); `probe`: read each clip's header for the film as it lands."""
        self.run_dir = run_dir
        self.plan = plan
        self.started = started
        self.estimates = estimates or {}  # USD each job was estimated to cost this run (None = unknown)
        self.cache = cache  # told where each clip was linked, so a repaired blob repairs the link too
        self.posters = posters
        self.probe = probe  # describe clips for the film as they land
        self.probed: dict[Path, Any] = {}  # clip path -> wanbatch.film.clips.ClipInfo
        self.tables: dict[Path, Any] = {}  # mp4 clip path -> wanbatch.av.mp4join.ClipTables (None: not joinable)
        # a film with a transition other than a cut is composed: its clips' tables would only take memory
        self._keep_tables = probe and all(j.scene.transition.type == "cut" for j in plan.film_jobs[1:])
        # a scene's place in the manifest and report: its row is its picked take's, in film order
        self._index = {j.scene.id: i for i, j in enumerate(plan.film_jobs)}
        # the manifest's `environment`: what this process is (ready some time into the run; `wait` for it), and
        # what the backends that rendered say of themselves (set once the jobs are over)
        self._environment = environment
        self.backends_environment: dict[str, Any] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.clips: dict[str, str] = {}
        self.records: dict[str, SceneRecord] = {}
        self._next_write = 0.0  # when the manifest may be rewritten next (time.monotonic())
        (run_dir / "clips").mkdir(parents=True, exist_ok=True)

    def add(self, outcome: Outcome) -> None:
        """Record one finished job: link its clip into clips/ and rewrite the manifest. Rewrites are at
        most twice a second, and rarer for a manifest slow to write (the clip itself is already safe in the
        cache; the run ends with a full write), so thousands of quick jobs do not spend their time
        re-serialising the manifest."""
        clip = outcome.clip
        if outcome.ok and clip is not None:
            job = self.plan.job(outcome.scene)
            rel = f"clips/{clip_name(job)}"
            try:
                link_or_copy(clip, self.run_dir / rel)
            except FileNotFoundError:
                # The blob went between the lookup and here (deleted from outside the cache's locks): this scene
                # is not done, but the run goes on, and the next run renders it.
                outcome = _vanished(outcome)
            else:
                self.clips[outcome.scene] = rel
                if self.cache is not None:
                    self.cache.record_link(job.key, clip.stem, self.run_dir / rel)
        self.outcomes[outcome.scene] = outcome
        linked = self.clips.get(outcome.scene) if outcome.ok else None
        if self.probe and linked is not None:
            # the film's copy-path checks read each clip's header as it lands, not all after the last one, and
            # an mp4's sample tables for the join too
            from wanbatch.av.mp4join import read_tables
            from wanbatch.film.clips import mp4_header

            path = self.run_dir / linked
            info = mp4_header(path)
            if info is not None:
                self.probed[path] = info
                if self._keep_tables:
                    self.tables[path] = read_tables(path)
        record = manifest.scene_record(
            self.plan, outcome.scene, outcome, self.clips.get(outcome.scene), self.estimates.get(outcome.scene)
        )
        self.records[outcome.scene] = record
        if self.posters is not None and linked is not None:
            self._poster(self.plan.job(outcome.scene), record, self.run_dir / linked)
        now = time.monotonic()
        if now >= self._next_write or len(self.outcomes) == len(self.plan.jobs):
            manifest.write(self.run_dir, self.manifest(), compact=True)
            # A manifest of 10,000 scenes takes a while to build and write: rewrites are spaced so that they
            # take at most MANIFEST_SHARE of this thread, which also hands out the next jobs.
            took = time.monotonic() - now
            self._next_write = now + max(MANIFEST_EVERY_S, took / MANIFEST_SHARE)

    def warm(self) -> None:
        """While the jobs render and this process has nothing to do: import what the film, the timeline and the
        report will need after the last clip (OpenTimelineIO alone is 15-60 ms), so that the time from the last
        clip to the report is spent on them, not on their imports. Never raises."""
        film, report = self.probe, self.posters is not None
        timeline = film and report  # written by `report`, for a film
        names = (["wanbatch.film.stitch"] if film else []) + (["wanbatch.runs.report"] if report else [])
        with contextlib.suppress(Exception):
            for name in names + (["wanbatch.film.timeline"] if timeline else []):
                importlib.import_module(name)
            if timeline and importlib.util.find_spec("opentimelineio") is not None:
                otio: Any = importlib.import_module("opentimelineio")
                importlib.import_module("opentimelineio.adapters")
                # its plugin manifest and JSON adapter are loaded on the first write otherwise (~10 ms)
                otio.plugins.ActiveManifest()
                otio.adapters.from_name("otio_json").module()

    def _poster(self, job: Job, record: SceneRecord, video: Path) -> None:
        """Queue the report's posters of a clip that just landed, named as the report names them: the scene's
        (its picked take's clip) and, for a scene with several takes, the take's."""
        index = self._index.get(job.scene.id)
        if self.posters is None or index is None:
            return
        duration = record.get("duration")
        seconds = float(duration) if isinstance(duration, (int, float)) else None
        names = [poster_name(index, record, job.take)] if job.takes > 1 else []
        if job.picked:
            names.append(poster_name(index, record))
        for name in names:
            self.posters.add(name, video, seconds, record.get("cache_key"))

    def manifest(self, film: str | None = None, extra: RunNotes | None = None) -> Manifest:
        """The manifest as it stands; with `extra` (the run's closing notes) it is the final one, which waits
        for the environment record (the rewrites during the run carry it once it is ready)."""
        env = self._environment(extra is not None) if self._environment is not None else None
        if env is not None:
            notes: RunNotes = {"environment": {**env, "backends": self.backends_environment}}
            notes.update(extra or {})
            extra = notes
        return manifest.build(
            self.plan,
            self.outcomes,
            self.clips,
            started=self.started,
            film=film,
            extra=extra,
            records=self.records,
            estimates=self.estimates,
        )

    def stitch(
        self,
        settings: StitchConfig,
        encode: EncodeSettings,
        soundtrack: Soundtrack | None,
        cache: Cache,
        registration: Registration | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """film.mp4 from the picked take of every scene. The film is cached too, keyed by its clips' keys and
        everything else that shapes it, so a fully cached rerun does not even re-join (a compose costs real
        seconds), and another `pick` is another film made from clips already there. A scene without a clip (it
        failed) gets a slate in its place, or is left out (`stitch.on_failure`); the notes then say the film is
        partial and which scenes it lacks."""
        from wanbatch.film.clips import FilmClip

        film = self.run_dir / "film.mp4"
        missing = [j.id for j in self.plan.film_jobs if j.id not in self.clips]
        stand_in = "" if not missing else settings.on_failure  # slate | skip
        key = key_of(
            {
                "film": FILM_VERSION,
                "clips": [
                    [j.key if j.id in self.clips else f"{stand_in}:{j.key}", *_cut(j)] for j in self.plan.film_jobs
                ],
                "stitch": {
                    k: v
                    for k, v in sorted(dataclasses.asdict(settings).items())
                    if k not in ("enabled", "on_failure")  # a partial film's stand-ins are in its clips
                },
                "encode": encode.identity(),
                "soundtrack": None
                if soundtrack is None
                else {"sha256": soundtrack.media.sha256, "volume": soundtrack.volume, "duck": soundtrack.duck},
            }
        )
        if registration is not None:
            registration.add([key])  # the film is this run's too: prune keeps it (and its poster)
        with cache.lock(key):
            hit = cache.fetch(key)
            if hit is not None:
                link_or_copy(hit.path, film)
                cache.record_link(key, hit.path.stem, film)
                found = {**hit.entry["film"], "cached": True, "cache_key": key}
                self._film_poster(film, found)
                return film.name, found
            from wanbatch.film.stitch import stitch_film  # (not for a film already made)

            clips = [
                FilmClip(path=self._clip_or_slate(j.id, encode), scene_id=j.scene.id, transition=j.scene.transition)
                for j in self.plan.film_jobs
                if j.id in self.clips or stand_in == "slate"
            ]
            result = stitch_film(
                clips,
                film,
                settings=settings,
                encode=encode,
                soundtrack=soundtrack,
                probed=self.probed,
                tables=self.tables,
            )
            notes: dict[str, Any] = {
                "method": result.method,
                "reason": result.reason,
                "duration": round(result.duration, 3),
                "seconds": round(result.seconds, 3),
            }
            if missing:
                notes["partial"] = {"on_failure": stand_in, "scenes": missing}
            if not cache.readonly:  # a read-only cache serves hits; a film made here is only this run's
                stored = cache.put(
                    key, film, material={"film": key}, meta={"backend": "stitch", "film": notes}, take=True
                )
                _same_file(stored.path, film)
                cache.record_link(key, stored.path.stem, film)
        notes = {**notes, "cached": False, "cache_key": key}
        self._film_poster(film, notes)
        return film.name, notes

    def _film_poster(self, film: Path, notes: Mapping[str, Any]) -> None:
        """Queue the film's poster, as write_report would ask for it, so that it is cut while the manifest and the
        timeline are written, not after them."""
        if self.posters is not None:
            self.posters.add("film", film, number(notes.get("duration")), notes.get("cache_key"))

    def _clip_or_slate(self, scene_id: str, encode: EncodeSettings) -> Path:
        """The scene's clip, or a slate as long as the scene, the size and fps of the first clip there is."""
        if scene_id in self.clips:
            return self.run_dir / self.clips[scene_id]
        from wanbatch.film.clips import probe_clips
        from wanbatch.film.slate import write_slate

        like = probe_clips([self.run_dir / next(iter(self.clips.values()))])[0] if self.clips else None
        job = self.plan.job(scene_id)
        path = self.run_dir / "clips" / f"{job.scene.index + 1:03d}-{file_stem(job.id, None)}.slate.mp4"
        return write_slate(
            path,
            job.id,
            job.seconds or 2.0,
            width=like.width if like else 832,
            height=like.height if like else 480,
            fps=like.fps if like else 16.0,
            encode=encode,
        )

    def report(self, data: Manifest) -> None:
        """The timeline export, then index.html (which links it); a failure here never fails the run."""
        if data.get("film"):
            try:
                from wanbatch.film.timeline import write_timeline

                kept = Path(data["cache_dir"]) / "timelines" if data.get("cache_dir") else None
                data["timeline"] = write_timeline(self.run_dir, data, probed=self.probed, kept=kept).name
            except Exception as exc:
                data["timeline_error"] = f"{type(exc).__name__}: {exc}"
        try:
            from wanbatch.runs.report import write_report

            posters = Path(data["cache_dir"]) / "posters" if data.get("cache_dir") else None
            data["report"] = write_report(self.run_dir, data, poster_cache=posters, early=self.posters).name
        except Exception as exc:
            data["report_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            self.close()

    def close(self) -> None:
        """Stop the poster workers (a run that writes no report leaves no thread behind)."""
        if self.posters is not None:
            self.posters.close()


def _same_file(stored: Path, made: Path) -> None:
    """The film just made becomes a link of the one stored, as a rerun's film is (and as a clip is): one copy of
    its bytes on disk, and the same file to the poster cache, so a rerun finds the poster cut here. Swapped in
    atomically; where the cache is on another filesystem the film stays as made (copying it back is no saving)."""
    with contextlib.suppress(OSError):
        if stored.samefile(made):  # stored as it was made (a hard link): nothing to swap
            return
    staged = made.with_name(f".{made.name}.{os.getpid()}.link")
    try:
        os.link(stored, staged)
        os.replace(staged, made)
    except OSError:
        with contextlib.suppress(OSError):
            staged.unlink()


def clip_name(job: Job) -> str:
    """A clip's file name in a run folder: scene number and id, and the take where there are several."""
    take = f"-take{job.take}" if job.takes > 1 else ""
    return f"{job.scene.index + 1:03d}-{file_stem(job.scene.id, None)}{take}.mp4"


def link_latest(run_dir: Path, project: str) -> Path | None:
    """`outputs/<project>/latest` -> the run folder just kept, beside its time-stamped siblings (the default
    `hydra.run.dir`; a folder of the user's choosing gets no link). Swapped in atomically: a reader never finds
    it missing. A filesystem without symlinks gets none, and the run does not fail for it."""
    if run_dir.parent.name != project or not run_dir.is_dir():
        return None
    link = run_dir.parent / "latest"
    staged = run_dir.parent / f".latest.{os.getpid()}"
    try:
        staged.unlink(missing_ok=True)
        staged.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(staged, link)
    except OSError:
        staged.unlink(missing_ok=True)
        return None
    return link


def _cut(job: Any) -> list[Any]:
    return [job.scene.transition.type, job.scene.transition.duration]


def _vanished(outcome: Outcome) -> Outcome:
    return dataclasses.replace(
        outcome,
        status="failed",
        clip=None,
        error="its clip vanished from the cache before it was linked into the run (deleted from outside "
        "wanbatch?); the next run renders it again",
    )
