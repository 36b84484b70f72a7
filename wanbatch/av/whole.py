"""Whether a media file is whole, proved at plan time (before a provider is sent it): an image decodes to
its last pixel, under a pixel cap checked before decoding; a WAV's data chunk lies inside the file; an mp4's
boxes end at its end; any other audio or video decodes without an error. Each check raises ValueError with
the reason. Example::

    width, height = image_whole(Path("boards/quay.png"))   # ValueError("cut short ...") for a truncated PNG
"""

from __future__ import annotations

import struct
import subprocess
import warnings
import zlib
from pathlib import Path

from wanbatch.av.ffmpeg import Probe, ffmpeg_exe, parse_probe, probe
from wanbatch.av.mp4 import mp4_whole

# 8K UHD is 33 megapixels; a first frame beyond this is a mistake or an attack (a 12000x12000 PNG decodes
# into 1.2 GB, a 30000x30000 one is a decompression bomb). Checked on the header, before any decoding.
MAX_IMAGE_PIXELS = 40_000_000


def image_whole(path: Path) -> tuple[int, int]:
    """(width, height) of an image that decodes whole and holds at most MAX_IMAGE_PIXELS pixels."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns (and, past twice its own limit, raises) on opening a huge image; ours is stricter.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)  # reads the header only
        except Image.DecompressionBombError:
            raise ValueError(
                f"more than {MAX_IMAGE_PIXELS // 1_000_000} megapixels; wanbatch decodes no more"
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"not a readable image ({exc.__class__.__name__})") from None
    with im:
        width, height = im.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ValueError(_too_many(width, height))
        if im.format == "JPEG":  # decoded at 1/8 scale: every byte of its data is still read and checked
            im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
        try:
            im.load()  # every pixel: a cut-off or corrupt file fails here, not in a render
        except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as exc:
            raise ValueError(f"not whole: it is cut short or corrupt ({exc})") from None
    return width, height


def _too_many(width: int, height: int) -> str:
    return (
        f"an image of {width}x{height} = {width * height / 1e6:.1f} megapixels; wanbatch decodes at most "
        f"{MAX_IMAGE_PIXELS // 1_000_000}"
    )


def media_whole(path: Path, *, decode: bool = True) -> Probe:
    """The probe of an audio or video file that is whole: a WAV's or an mp4's structure first (cheap, and
    ffmpeg reads a cut-off WAV without complaint), then one ffmpeg run that probes it and, with `decode`
    (audio: milliseconds), decodes it all, failing on the first decoding error."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        _wav_whole(path)
    elif head[4:8] == b"ftyp" and not mp4_whole(path):
        raise ValueError("not whole: its mp4 boxes run past the end of the file (cut short)")
    if not decode:
        return probe(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-err_detect", "explode", "-xerror", "-i", str(path)]
    proc = subprocess.run([*cmd, "-map", "0", "-f", "null", "-"], capture_output=True, text=True, timeout=300)
    summary = proc.stderr.split("\nOutput #", 1)[0]  # the input's streams, not the null output's
    probed = parse_probe(summary)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise ValueError(f"not whole: ffmpeg cannot decode it to the end ({last})")
    return probed


def _wav_whole(path: Path) -> None:
    """A WAV's chunks, walked: the `data` chunk must lie inside the file (a cut-off WAV still opens)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(12)
        at = 12
        while at + 8 <= size:
            kind, length = struct.unpack("<4sI", f.read(8))
            if kind == b"data":
                # 0 and 0xFFFFFFFF mean "unknown" (a WAV written while streaming): ffmpeg reads to the end
                if length not in (0, 0xFFFFFFFF) and at + 8 + length > size:
                    raise ValueError(f"not whole: its audio data is cut short ({size - at - 8} of {length} bytes)")
                return
            at += 8 + length + (length & 1)
            f.seek(at)
    raise ValueError("not a whole WAV: it has no audio data")


__all__ = ["MAX_IMAGE_PIXELS", "image_whole", "media_whole"]
