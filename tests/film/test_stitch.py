"""Film assembly: stream copy exactly when it is safe, composing otherwise, with the right timing and sound."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

import wanbatch.film.clips as clips_module
import wanbatch.film.mix as compose
import wanbatch.film.stitch as stitch
from wanbatch.av.encode import EncodeSettings, write_clip
from wanbatch.av.ffmpeg import ffmpeg_exe, read_frames
from wanbatch.config.load import load_config
from wanbatch.config.schema import EncodeConfig, StitchConfig
from wanbatch.core.media import Media
from wanbatch.core.project import Soundtrack
from wanbatch.core.scene import Transition
from wanbatch.errors import ConfigError
from wanbatch.film.clips import FilmClip, layout, probe_clips
from wanbatch.film.stitch import stitch_film

FAST = EncodeConfig(preset="ultrafast", crf=18, audio_bitrate="128k")
RATE = 48000


# -- helpers -----------------------------------------------------------------------------------------------


def tone_wav(path: Path, seconds: float, freq: float, amp: float, *, channels: int = 2) -> Path:
    t = np.arange(round(seconds * RATE)) / RATE
    x = (amp * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.repeat(x[:, None], channels, axis=1).tobytes())
    return path


def make_clip(
    path: Path,
    *,
    color=(200, 40, 40),
    size=(160, 96),
    fps=16,
    seconds=1.0,
    tone: float | None = None,
    audio: bool = True,
    settings: EncodeSettings = FAST,
) -> Path:
    """A solid-colour clip with a small moving square (so it is real video), a silent track by default,
    a sine `tone` (Hz, amplitude 0.5) when asked, or no audio at all."""
    w, h = size
    n = round(seconds * fps)
    frames = []
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[:] = color
        x = (i * 3) % max(1, w - 8)
        f[2:10, x : x + 8] = 255 - np.array(color, np.uint8)
        frames.append(f)
    wav = tone_wav(path.with_suffix(".wav"), seconds, tone, 0.5) if tone else None
    write_clip(frames, path, fps=fps, settings=settings, audio=wav, silent_audio=audio)
    return path


def decode_audio(path: Path) -> np.ndarray:
    """The left channel (the mix is the same on both), as float samples at RATE."""
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "2", "-ar", str(RATE), "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, np.float32).reshape(-1, 2)[:, 0]


def amplitude(x: np.ndarray, freq: float, t0: float, t1: float) -> float:
    """Amplitude of the `freq` sine in x between t0 and t1 seconds (a single-bin DFT)."""
    seg = x[int(t0 * RATE) : int(t1 * RATE)]
    t = np.arange(len(seg)) / RATE
    return float(2 * abs(np.mean(seg * np.exp(-2j * np.pi * freq * t))))


def frame_bytes(path: Path) -> list[bytes]:
    """Every decoded frame of a video, as RGB bytes."""
    return [f.tobytes() for f in read_frames(path)]


def frame_count(path: Path) -> int:
    return len(read_frames(path))


@pytest.fixture
def ffmpeg_calls(monkeypatch):
    """Every argument list stitch passes to run_ffmpeg."""
    calls: list[list[str]] = []
    real = stitch.run_ffmpeg

    def spy(args, **kw):
        calls.append(list(args))
        return real(args, **kw)

    monkeypatch.setattr(stitch, "run_ffmpeg", spy)
    return calls


def no_compose(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the compose path was taken")

    monkeypatch.setattr(compose, "compose_film", boom)


# -- the copy path -----------------------------------------------------------------------------------------


def test_copy_when_everything_matches(tmp_path, ffmpeg_calls, monkeypatch):
    clips = [
        FilmClip(make_clip(tmp_path / f"c{i}.mp4", color=(60 * i, 80, 200), seconds=1 + i / 2), f"s{i}")
        for i in range(3)
    ]
    no_compose(monkeypatch)
    monkeypatch.setattr(clips_module, "probe", lambda *a, **k: pytest.fail("mp4 clips need no ffmpeg probe"))
    result = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(enabled=True, mode="auto"), encode=FAST)

    assert result.method == "copy"
    assert "cut" in result.reason and "160x96" in result.reason
    # mp4 clips alike are joined by their sample tables: no ffmpeg process, nothing re-encoded
    assert ffmpeg_calls == []
    assert frame_bytes(result.path) == [f for c in clips for f in frame_bytes(c.path)]
    assert result.duration == pytest.approx(4.5, abs=1 / 16)
    info = probe_clips([result.path])[0]
    assert info.duration == pytest.approx(4.5, abs=1 / 16) and info.audio == ("aac", 48000, 2)
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_a_copied_film_imports_no_numpy(tmp_path):
    """The film is joined after the last clip lands: importing numpy (and the mixer) there cost ~0.15 s of
    every run whose film is a stream copy, which needs neither."""
    for i in range(2):
        make_clip(tmp_path / f"c{i}.mp4", color=(90 * i, 80, 200))
    script = (
        "import sys; from pathlib import Path\n"
        "from wanbatch.config.schema import EncodeConfig, StitchConfig\n"
        "from wanbatch.film.clips import FilmClip\n"
        "from wanbatch.film.stitch import stitch_film\n"
        "d = Path(sys.argv[1])\n"
        "clips = [FilmClip(d / f'c{i}.mp4', f's{i}') for i in range(2)]\n"
        "r = stitch_film(clips, d / 'film.mp4', settings=StitchConfig(enabled=True), encode=EncodeConfig())\n"
        "print(r.method, 'numpy' in sys.modules, 'wanbatch.film.mix' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["copy", "False", "False"]
    assert frame_count(tmp_path / "film.mp4") == 32


def test_clips_described_as_they_landed_are_not_read_again(tmp_path, monkeypatch):
    from wanbatch.film.clips import mp4_header

    clips = [FilmClip(make_clip(tmp_path / f"c{i}.mp4", seconds=1 + i / 2), f"s{i}") for i in range(3)]
    probed = {c.path: mp4_header(c.path) for c in clips[:2]}  # the third landed last: not described yet
    read: list[list[Path]] = []
    real = clips_module.probe_clips
    monkeypatch.setattr(clips_module, "probe_clips", lambda paths: (read.append(list(paths)), real(paths))[1])
    no_compose(monkeypatch)
    result = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST, probed=probed)
    assert read == [[clips[2].path]]
    assert result.method == "copy" and frame_count(result.path) == 16 + 24 + 32


def test_clips_described_two_ways_are_all_read_by_ffmpeg_alike(tmp_path, monkeypatch):
    from wanbatch.film.clips import mp4_header

    mp4 = make_clip(tmp_path / "c0.mp4")
    mkv = tmp_path / "c1.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(make_clip(tmp_path / "c1.mp4")), "-c", "copy", str(mkv)])
    clips = [FilmClip(mp4, "s0"), FilmClip(mkv, "s1")]
    no_compose(monkeypatch)
    result = stitch_film(
        clips, tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST, probed={mp4: mp4_header(mp4)}
    )
    assert result.method == "copy"  # an mp4-header description and an ffmpeg one would never match


def test_copy_also_without_audio(tmp_path, monkeypatch):
    clips = [FilmClip(make_clip(tmp_path / f"c{i}.mp4", audio=False), f"s{i}") for i in range(2)]
    no_compose(monkeypatch)
    result = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST)
    assert result.method == "copy" and "no audio" in result.reason
    assert probe_clips([result.path])[0].audio is None


def test_copy_for_other_containers_via_ffmpeg_probe(tmp_path, ffmpeg_calls, monkeypatch):
    """Clips that are not mp4 are probed by ffmpeg and joined by its concat demuxer, by stream copy."""
    clips = []
    for i in range(2):
        mp4 = make_clip(tmp_path / f"c{i}.mp4")
        mkv = tmp_path / f"c{i}.mkv"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(mp4), "-c", "copy", str(mkv)], check=True)
        clips.append(FilmClip(mkv, f"s{i}"))
    no_compose(monkeypatch)
    result = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST)
    assert result.method == "copy"
    assert frame_count(result.path) == pytest.approx(32, abs=1)  # mkv timestamps are in milliseconds
    assert len(ffmpeg_calls) == 1
    args = ffmpeg_calls[0]
    assert args[:2] == ["-f", "concat"] and args[args.index("-c") + 1] == "copy"
    assert not {"-c:v", "-c:a", "-vf", "-af", "-filter_complex", "libx264", "aac"} & set(args)


# -- when not to copy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "transition", "words"),
    [
        ({"size": (96, 96)}, None, "size: 160x96"),
        ({"fps": 24}, None, "fps: 16"),
        ({}, Transition("crossfade", 0.25), "crossfade"),
        ({}, Transition("fade", 0.5), "fade"),
        ({"audio": False}, None, "audio"),
        ({"settings": EncodeConfig(preset="medium", crf=18)}, None, "codec parameters"),
    ],
    ids=["size", "fps", "crossfade", "fade", "audio-layout", "codec-parameters"],
)
def test_compose_when_copy_is_not_safe(tmp_path, ffmpeg_calls, second, transition, words):
    a = make_clip(tmp_path / "a.mp4")
    b = make_clip(tmp_path / "b.mp4", color=(40, 40, 200), **second)
    clips = [FilmClip(a, "a"), FilmClip(b, "b", transition or Transition())]
    result = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST)
    assert result.method == "compose"
    assert words in result.reason
    assert not any("concat" in args for args in ffmpeg_calls)
    info = probe_clips([result.path])[0]
    assert (info.width, info.height, info.fps) == (160, 96, 16)  # the first clip's format


def test_compose_when_a_soundtrack_or_fades_or_titles(tmp_path):
    clips = [FilmClip(make_clip(tmp_path / f"c{i}.mp4"), f"s{i}") for i in range(2)]
    music = Soundtrack(Media("audio", "audio", path=tone_wav(tmp_path / "m.wav", 2, 220, 0.3)), volume=0.4, duck=0.15)
    r = stitch_film(clips, tmp_path / "f1.mp4", settings=StitchConfig(), encode=FAST, soundtrack=music)
    assert r.method == "compose" and "soundtrack" in r.reason
    r = stitch_film(clips, tmp_path / "f2.mp4", settings=StitchConfig(fade_in=0.25), encode=FAST)
    assert r.method == "compose" and "fade" in r.reason
    r = stitch_film(
        [clips[0], FilmClip(clips[1].path, "s1", title="Hi")], tmp_path / "f3.mp4", settings=StitchConfig(), encode=FAST
    )
    assert r.method == "compose" and "title" in r.reason


def test_mode_copy_when_impossible_is_a_config_error(tmp_path):
    clips = [
        FilmClip(make_clip(tmp_path / "a.mp4"), "a"),
        FilmClip(make_clip(tmp_path / "b.mp4", size=(320, 192)), "b"),
    ]
    with pytest.raises(ConfigError, match=r"stitch\.mode.*size: 160x96 .* vs 320x192"):
        stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(mode="copy"), encode=FAST)
    assert not (tmp_path / "film.mp4").exists()


def test_mode_copy_when_possible(tmp_path):
    clips = [FilmClip(make_clip(tmp_path / f"c{i}.mp4"), f"s{i}") for i in range(2)]
    assert stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(mode="copy"), encode=FAST).method == "copy"


def test_mode_compose_forces_compose(tmp_path):
    clips = [FilmClip(make_clip(tmp_path / f"c{i}.mp4"), f"s{i}") for i in range(2)]
    result = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(mode="compose"), encode=FAST)
    assert result.method == "compose" and "compose" in result.reason
    assert frame_count(result.path) == 32


# -- timing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transitions",
    [
        [None, Transition("crossfade", 0.5), None],
        [None, Transition("fade", 0.5), Transition("crossfade", 0.25)],
        [None, Transition("crossfade", 0.75), Transition("crossfade", 0.25)],
    ],
    ids=["one-crossfade", "fade-and-crossfade", "two-crossfades"],
)
def test_film_lasts_the_clips_minus_the_overlaps(tmp_path, transitions):
    seconds = [1.5, 1.0, 2.0]
    clips = [
        FilmClip(make_clip(tmp_path / f"c{i}.mp4", seconds=s, color=(80 * i, 90, 160)), f"s{i}", tr or Transition())
        for i, (s, tr) in enumerate(zip(seconds, transitions, strict=True))
    ]
    expected = sum(seconds) - sum(tr.duration for tr in transitions if tr and tr.type == "crossfade")
    result = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST)
    frame = 1 / 16
    assert result.duration == pytest.approx(expected, abs=1e-9)
    assert probe_clips([result.path])[0].duration == pytest.approx(expected, abs=frame)
    assert frame_count(result.path) == pytest.approx(expected * 16, abs=1)
    assert len(decode_audio(result.path)) / RATE == pytest.approx(expected, abs=frame)


def test_layout():
    lay = layout(
        [2.0, 2.0, 2.0, 2.0], [Transition(), Transition("crossfade", 0.5), Transition("fade", 1.0), Transition()]
    )
    assert lay.starts == (0.0, 1.5, 3.5, 5.5)
    assert lay.duration == 7.5


def test_transition_longer_than_its_clips_is_a_config_error(tmp_path):
    clips = [
        FilmClip(make_clip(tmp_path / "a.mp4", seconds=1.0), "a"),
        FilmClip(make_clip(tmp_path / "b.mp4", seconds=1.0), "b", Transition("crossfade", 1.5)),
    ]
    with pytest.raises(ConfigError, match=r"scene `b`.*transition\.duration"):
        stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST)


def test_bad_settings_are_config_errors(tmp_path):
    clips = [FilmClip(make_clip(tmp_path / "a.mp4"), "a")]
    with pytest.raises(ConfigError, match=r"stitch\.mode"):
        stitch_film(clips, tmp_path / "f.mp4", settings=StitchConfig(mode="fast"), encode=FAST)
    with pytest.raises(ConfigError, match=r"stitch\.colour"):  # a typo is the schema's to name, when composing
        load_config(None, ["+stitch.colour=red"])
    with pytest.raises(ConfigError, match=r"stitch\.width"):
        stitch_film(clips, tmp_path / "f.mp4", settings=StitchConfig(width=101, height=100), encode=FAST)


# -- pictures ----------------------------------------------------------------------------------------------


def test_crossfade_blends_and_fade_goes_through_black(tmp_path):
    red = make_clip(tmp_path / "r.mp4", color=(220, 0, 0), seconds=1.0)
    blue = make_clip(tmp_path / "b.mp4", color=(0, 0, 220), seconds=1.0)
    green = make_clip(tmp_path / "g.mp4", color=(0, 220, 0), seconds=1.0)
    clips = [
        FilmClip(red, "r"),
        FilmClip(blue, "b", Transition("crossfade", 0.5)),
        FilmClip(green, "g", Transition("fade", 0.5)),
    ]
    result = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(fade_in=0.25), encode=FAST)
    frames = read_frames(result.path)
    assert len(frames) == 40  # 16 + 16 + 16 - 8 (crossfade)

    def mean(i):
        return frames[i][20:, :].reshape(-1, 3).mean(axis=0)  # below the moving square

    assert mean(0).max() < 10  # the film fades in from black
    assert mean(4)[0] > 150  # red
    mid = mean(12)  # halfway through the crossfade (film 0.5..1.0 s)
    assert 70 < mid[0] < 150 and 70 < mid[2] < 150
    assert mean(20)[2] > 150  # blue
    assert mean(24).max() < 15  # the fade's black at the join (film 1.5 s)
    assert mean(36)[1] > 150  # green


def test_sizes_are_letterboxed_to_the_first_clip(tmp_path):
    wide = make_clip(tmp_path / "w.mp4", color=(0, 0, 220), size=(160, 96))
    square = make_clip(tmp_path / "s.mp4", color=(220, 220, 0), size=(64, 64))
    result = stitch_film(
        [FilmClip(wide, "w"), FilmClip(square, "s")], tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST
    )
    f = read_frames(result.path)[24]  # inside the square clip
    assert f.shape == (96, 160, 3)
    assert f[:, :20].max() < 20 and f[:, -20:].max() < 20  # black bars left and right
    assert f[60:90, 60:100].reshape(-1, 3).mean(axis=0)[:2].min() > 150  # the picture, scaled up


def test_title_caption_is_drawn_over_the_clip(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", color=(0, 0, 160), size=(320, 192), seconds=1.0)
    result = stitch_film(
        [FilmClip(clip, "a", title="HELLO WORLD")],
        tmp_path / "film.mp4",
        settings=StitchConfig(title_seconds=1.0),
        encode=FAST,
    )
    f = read_frames(result.path)[8]
    band = f[192 * 2 // 3 :]
    assert (band.min(axis=2) > 180).sum() > 30  # white text in the lower third
    assert (f[40:80].min(axis=2) > 180).sum() == 0  # nothing drawn up top


# -- sound -------------------------------------------------------------------------------------------------


def test_soundtrack_is_mixed_under_and_ducked_while_a_scene_speaks(tmp_path):
    quiet1 = make_clip(tmp_path / "q1.mp4", seconds=2.0)  # carries a silent track
    voice = make_clip(tmp_path / "v.mp4", seconds=2.0, tone=1000)  # its own audible sound
    quiet2 = make_clip(tmp_path / "q2.mp4", seconds=2.0, audio=False)  # no audio at all
    music = Soundtrack(
        Media("audio", "audio", path=tone_wav(tmp_path / "music.wav", 6.0, 220, 0.5)), volume=0.8, duck=0.1
    )
    clips = [FilmClip(quiet1, "q1"), FilmClip(voice, "v"), FilmClip(quiet2, "q2")]
    result = stitch_film(
        clips, tmp_path / "film.mp4", settings=StitchConfig(duck_ramp=0.25), encode=FAST, soundtrack=music
    )
    assert result.method == "compose"
    x = decode_audio(result.path)
    music_level = [amplitude(x, 220, a, b) for a, b in ((0.3, 1.6), (2.4, 3.6), (4.4, 5.7))]
    voice_level = [amplitude(x, 1000, a, b) for a, b in ((0.3, 1.6), (2.4, 3.6), (4.4, 5.7))]
    assert music_level[0] == pytest.approx(0.5 * 0.8, rel=0.15)  # under a silent scene: `volume`
    assert music_level[1] == pytest.approx(0.5 * 0.1, rel=0.25)  # under the scene's own sound: `duck`
    assert music_level[2] == pytest.approx(0.5 * 0.8, rel=0.15)  # back up after it
    assert voice_level[1] == pytest.approx(0.5, rel=0.15)  # the scene's sound is kept as it was
    assert voice_level[0] < 0.01 and voice_level[2] < 0.01


def test_scene_audio_crossfades_with_the_picture(tmp_path):
    a = make_clip(tmp_path / "a.mp4", seconds=2.0, tone=440)
    b = make_clip(tmp_path / "b.mp4", seconds=2.0, tone=660)
    result = stitch_film(
        [FilmClip(a, "a"), FilmClip(b, "b", Transition("crossfade", 1.0))],
        tmp_path / "film.mp4",
        settings=StitchConfig(fade_out=0.5),
        encode=FAST,
    )
    x = decode_audio(result.path)
    assert amplitude(x, 440, 0.2, 0.9) == pytest.approx(0.5, rel=0.15)
    assert amplitude(x, 440, 1.4, 1.6) == pytest.approx(0.25, rel=0.3)  # mid-crossfade: half of each
    assert amplitude(x, 660, 1.4, 1.6) == pytest.approx(0.25, rel=0.3)
    assert amplitude(x, 660, 2.1, 2.4) == pytest.approx(0.5, rel=0.15)
    assert np.abs(x[-int(0.05 * RATE) :]).max() < 0.1  # the film fades out


@pytest.mark.parametrize("loop", [True, False])
def test_a_short_soundtrack_loops_or_stops(tmp_path, loop):
    clips = [FilmClip(make_clip(tmp_path / f"c{i}.mp4", seconds=1.5, audio=False), f"s{i}") for i in range(2)]
    music = Soundtrack(Media("audio", "audio", path=tone_wav(tmp_path / "m.wav", 1.2, 330, 0.5)), volume=1.0, duck=0.15)
    result = stitch_film(
        clips, tmp_path / "film.mp4", settings=StitchConfig(loop_soundtrack=loop), encode=FAST, soundtrack=music
    )
    x = decode_audio(result.path)
    assert amplitude(x, 330, 0.2, 1.0) == pytest.approx(0.5, rel=0.15)
    late = amplitude(x, 330, 1.5, 2.3)  # the second pass of the loop, or silence
    assert late == pytest.approx(0.5, rel=0.15) if loop else late < 0.01
