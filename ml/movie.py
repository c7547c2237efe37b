"""Movie files (QuickTime/ProRes, MXF, MP4, MKV, AVI...) through an ffmpeg executable.

OpenImageIO's pip wheel has no movie plugin, so movies are read and written by piping raw
pixels through ``ffmpeg``: the one on PATH, else the static binary bundled with the
``imageio-ffmpeg`` package (`find_ffmpeg`). Blender's own Python does not ship imageio-ffmpeg.

Reading (`movie_info`, `read_movie_frames`, `read_movie_frame`):
- Frame index K is the K-th frame in presentation order (0 = the first). A run of frames is
  one ffmpeg process: an accurate input seek to half a frame before K (the demuxer seeks to
  the keyframe before it, then frames earlier than the seek time are decoded and dropped), then
  `count` frames with timestamps passed through (no duplicated or dropped frames). This
  assumes a constant frame rate, as film plates have.
- The exact rate comes from the packet durations when the container's time base is fine
  enough, else from the header's rate snapped to the nearest integer or NTSC (N*1000/1001) rate.
- Frame counts: the header's duration x rate (+-1 frame) is trusted up to 3 frames before its end;
  a range reaching past that is checked by counting the packets (stream copy, no decoding).
- Colour: decoded pixels are converted to 16-bit RGB (rgb48le, keeping 10/12-bit ProRes
  precision) and returned as float32 code values 0-1, i.e. display-referred like a Rec.709
  export (the 'display' ingest preset). YCbCr -> RGB uses the stream's matrix tag, or BT.709
  for untagged HD (720 lines and up) and BT.601 for untagged SD; the range (limited/full)
  comes from the stream's tag, untagged YCbCr counts as limited (ffmpeg's rule). No
  transfer function or primaries conversion is applied. Pixel aspect is reported, not
  resampled; rotation metadata is ignored (the stored raster is returned); alpha is dropped.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import FilmRecoveryError, InputImageError

MIN_VERSION = (5, 1)  # -fps_mode
END_MARGIN = 3  # frames before the header's estimated end beyond which the packets are counted
_YUV_MATRICES = {"bt709", "bt470bg", "smpte170m", "bt2020nc", "bt2020c", "smpte240m", "fcc", "ycgco"}


def find_ffmpeg() -> str | None:
    """The ffmpeg executable: `ffmpeg` on PATH, else imageio-ffmpeg's bundled binary, else None.

    An ffmpeg older than MIN_VERSION (no -fps_mode) is passed over."""
    on_path = shutil.which("ffmpeg")
    if on_path and _recent_enough(on_path):
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # the package is installed but has no binary for this platform
        return None
    return bundled if _recent_enough(bundled) else None


@functools.lru_cache(maxsize=8)
def _recent_enough(ffmpeg: str) -> bool:
    try:
        banner = subprocess.run([ffmpeg, "-version"], stdin=subprocess.DEVNULL, capture_output=True,
                                check=False, timeout=30).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return False
    version = re.match(r"ffmpeg version n?(\d+)\.(\d+)", banner)
    # Git builds ("N-112345-g...") carry no release number and are recent.
    return banner.startswith("ffmpeg version") and (version is None or
                                                     (int(version.group(1)), int(version.group(2))) >= MIN_VERSION)


def require_ffmpeg(where: str, purpose: str = "read movie files") -> str:
    """`find_ffmpeg()`, or an error naming the file and the ways out."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is not None:
        return ffmpeg
    blender = " (Blender's own Python does not ship imageio-ffmpeg)" if "bpy" in sys.modules else ""
    minimum = ".".join(map(str, MIN_VERSION))
    raise FilmRecoveryError(
        f"cannot {purpose}: no ffmpeg {minimum} or newer on PATH and the imageio-ffmpeg package is not installed "
        f"in this Python ({sys.executable}){blender}; OpenImageIO's pip wheel has no movie support.",
        where=where,
        fix=f"Install it with `\"{sys.executable}\" -m pip install imageio-ffmpeg`, or install ffmpeg on PATH, "
            "or export the plate as an image sequence (EXR, DPX, TIFF or PNG), e.g. "
            "`ffmpeg -i plate.mov -start_number 1001 plate.%04d.tif`.")


def standard_rate(fps: float) -> Fraction:
    """A rate as an exact fraction: the nearest integer or NTSC rate within 0.006 (headers
    print two decimals: 23.98 is 24000/1001), else the closest fraction with a small denominator."""
    candidates = [Fraction(round(fps)), Fraction(round(fps * 1.001) * 1000, 1001)]
    best = min(candidates, key=lambda rate: abs(float(rate) - fps))
    if best > 0 and abs(float(best) - fps) < 0.006:
        return best
    return Fraction(fps).limit_denominator(1001)


@dataclass(frozen=True)
class MovieInfo:
    path: str
    width: int
    height: int
    rate: Fraction  # frames per second, exact
    estimated_frames: int  # duration x rate from the header, +-1 frame; 0 when the header has no duration
    pixel_aspect: float
    codec: str
    pixel_format: str
    colour_range: str  # tv (limited), pc (full) or "" (untagged)
    colour_matrix: str  # the stream's YCbCr matrix tag, or "" (untagged)

    @property
    def fps(self) -> float:
        return float(self.rate)


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)


def _last_error(stderr: bytes | str) -> str:
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no message"


def _file_key(path: str) -> tuple[str, int, int]:
    """Cache key: the file's absolute path, size and modification time (a re-export invalidates)."""
    if not os.path.isfile(path):
        raise InputImageError("movie file not found.", where=path,
                              fix="Check the plate path (the movie file itself, no frame pattern).")
    stat = os.stat(path)
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


def movie_info(path: str) -> MovieInfo:
    """Size, exact rate, estimated length, pixel aspect and colour tags of the first video stream (cached)."""
    return _movie_info(*_file_key(str(path)))


@functools.lru_cache(maxsize=64)
def _movie_info(path: str, size: int, mtime: int) -> MovieInfo:
    ffmpeg = require_ffmpeg(path)
    # One cheap process: the header on stderr, the time base and first packets (no decoding) on stdout.
    result = _run([ffmpeg, "-hide_banner", "-nostdin", "-i", path, "-map", "0:v:0", "-c", "copy",
                   "-frames:v", "3", "-f", "framecrc", "-"])
    header = result.stderr.decode(errors="replace")
    stream = re.search(r"Stream #0:\d+\S*: Video: (.*)", header)
    if result.returncode != 0 or stream is None:
        problem = "no video stream" if "matches no streams" in header else _last_error(header)
        raise InputImageError(f"cannot read the movie ({problem}).", where=path,
                              fix="Check that the file is a complete movie with a video stream, or export "
                                  "the plate as an image sequence.")
    line = stream.group(1)
    size_match = re.search(r"(?<![\w])(\d{2,5})x(\d{2,5})(?![\w])", line)
    fmt = re.search(r", ([a-z0-9_]+)(?:\(([^)]*)\))?, \d{2,5}x\d{2,5}", line)
    if size_match is None:
        raise InputImageError(f"cannot find the frame size in ffmpeg's description ({line.strip()}).", where=path)
    tokens = [t.strip() for t in (fmt.group(2) or "").split(",")] if fmt else []
    colour_range = next((t for t in tokens if t in ("tv", "pc")), "")
    colour_matrix = next((t.split("/")[0] for t in tokens if t.split("/")[0] in _YUV_MATRICES), "")
    sar = re.search(r"SAR (\d+):(\d+)", line)
    pixel_aspect = int(sar.group(1)) / int(sar.group(2)) if sar and int(sar.group(2)) and int(sar.group(1)) else 1.0

    packets = result.stdout.decode(errors="replace")
    time_base = re.search(r"#tb 0: (\d+)/(\d+)", packets)
    durations = {int(m.group(1)) for m in re.finditer(r"^0,\s*-?\d+,\s*-?\d+,\s*(\d+),", packets, re.M)}
    rate: Fraction | None = None
    if time_base and len(durations) == 1:
        tick = Fraction(int(time_base.group(1)), int(time_base.group(2)))
        duration = durations.pop()
        if duration > 0 and (tick <= Fraction(1, 10000) or duration == 1):
            rate = 1 / (tick * duration)
    if rate is None:
        fps = re.search(r"([\d.]+)(k?) (?:fps|tbr)", line)
        if fps is None:
            raise InputImageError("cannot find the frame rate.", where=path,
                                  fix="Export the plate as an image sequence.")
        rate = standard_rate(float(fps.group(1)) * (1000 if fps.group(2) else 1))
    length = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", header)
    seconds = int(length.group(1)) * 3600 + int(length.group(2)) * 60 + float(length.group(3)) if length else 0.0
    return MovieInfo(path=path, width=int(size_match.group(1)), height=int(size_match.group(2)), rate=rate,
                     estimated_frames=int(round(seconds * float(rate))), pixel_aspect=pixel_aspect,
                     codec=line.split(",")[0].split()[0], pixel_format=fmt.group(1) if fmt else "",
                     colour_range=colour_range, colour_matrix=colour_matrix)


def movie_frame_count(path: str) -> int:
    """The exact number of video frames (packets counted by a stream copy, no decoding; cached)."""
    return _movie_frame_count(*_file_key(str(path)))


@functools.lru_cache(maxsize=64)
def _movie_frame_count(path: str, size: int, mtime: int) -> int:
    ffmpeg = require_ffmpeg(path)
    result = _run([ffmpeg, "-v", "error", "-nostdin", "-i", path, "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"])
    if result.returncode != 0:
        raise InputImageError(f"cannot read the movie ({_last_error(result.stderr)}).", where=path,
                              fix="Check that the file is complete, or export the plate as an image sequence.")
    return sum(1 for line in result.stdout.splitlines() if line and not line.startswith(b"#"))


def check_movie_length(path: str, frames: int) -> None:
    """Raise unless the movie holds at least `frames` frames (cheap unless the range nears its end)."""
    info = movie_info(path)
    if frames <= info.estimated_frames - END_MARGIN:
        return
    total = movie_frame_count(path)
    if frames > total:
        raise InputImageError(f"the plate range has {frames} frames but the movie has {total}.", where=path,
                              fix=f"Set the range to {total} frames (last frame = first frame + {total - 1}); "
                                  "the plate's first frame is the movie's first frame.")


def _rgb_filter(info: MovieInfo) -> str:
    if info.colour_matrix:
        matrix = "auto"  # ffmpeg follows the stream's tag
    else:
        matrix = "bt709" if info.height >= 720 else "bt601"
    return (f"scale=in_color_matrix={matrix}:in_range=auto:out_range=full:"
            "flags=accurate_rnd+full_chroma_int+full_chroma_inp,format=rgb48le")


def read_movie_frames(path: str, start: int, count: int) -> Iterator[np.ndarray]:
    """Frames start..start+count-1 (0-based movie indices) as float32 RGB (H, W, 3) code values
    0-1, decoded by one ffmpeg process. Stopping early ends the process."""
    path = str(path)
    if start < 0 or count < 1:
        raise InputImageError(f"bad movie frame run (start {start}, count {count}).", where=path)
    info = movie_info(path)
    ffmpeg = require_ffmpeg(path)
    command = [ffmpeg, "-v", "error", "-nostdin", "-noautorotate"]
    if start > 0:  # half a frame early: the seek keeps the first frame whose time is at or after it
        command += ["-ss", f"{float((start - Fraction(1, 2)) / info.rate):.6f}"]
    command += ["-i", path, "-map", "0:v:0", "-frames:v", str(count), "-fps_mode", "passthrough",
                "-vf", _rgb_filter(info), "-f", "rawvideo", "-pix_fmt", "rgb48le", "pipe:1"]
    frame_bytes = info.width * info.height * 6
    # stderr goes to a file so a chatty decoder can never block on a full pipe while we read stdout.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        try:
            for index in range(start, start + count):
                data = process.stdout.read(frame_bytes)
                if len(data) < frame_bytes:
                    process.wait()
                    errors.seek(0)
                    message = _last_error(errors.read()) if process.returncode else "the movie ended"
                    raise InputImageError(
                        f"cannot decode movie frame {index} ({message}).", where=path,
                        fix="Check the plate's frame range against the movie's length "
                            "(the plate's first frame is movie frame 0).")
                pixels = np.frombuffer(data, dtype="<u2").reshape(info.height, info.width, 3)
                yield pixels.astype(np.float32) / np.float32(65535.0)
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
            process.wait()


def read_movie_frame(path: str, index: int) -> np.ndarray:
    """One frame by 0-based index (see `read_movie_frames`)."""
    return next(read_movie_frames(path, index, 1))
