"""Output writers: archival ACES2065-1 EXR, display-referred EXR, review PNG and review movie.

- Archival (`write_archival_exr`): display-referred RGB -> ACES2065-1 through the inverse ACES 1.0
  output transform (`colour.display_to_aces2065`, one refinement step), half-float EXR
  (ZIP/PIZ/DWAA), tagged ``colorInteropID = lin_ap0_scene`` and
  ``film_recovery:colourspace = ACES2065-1``. Viewing the file
  through the same output transform gives back the display values (within half-float precision)
  for every colour the transform can produce, which includes everything a Rec.709 2.4 ODT
  export holds. Display colours outside its reach (very dark, fully saturated colours with a
  channel at 0) come back up to ~4/255 off.
- Display (`write_display_exr`): the display-referred values as they are, half EXR, tagged
  ``colorInteropID = g24_rec709_display`` and with the display/view names (they are not scene-linear; do not grade them as ACES).
- Review (`write_review_png`): 8-bit Rec.709 (gamma 2.4) code values, clipped to 0-1.
- Review movie (`write_review_movie`): OpenImageIO's pip wheel has no movie writer, so movies go
  through ffmpeg (on PATH, else imageio-ffmpeg's bundled binary; `movie.find_ffmpeg`): ProRes
  422 HQ .mov or H.264 .mp4, BT.709 matrix and tags; without ffmpeg it raises an error saying
  how to install one (or write PNGs and encode them elsewhere).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .colour import ACES2065_1, DISPLAY, OCIO_CONFIG, VIEW, display_to_aces2065
from .errors import FilmRecoveryError
from .imageio import Attributes, atomic_path, frame_path, read_image, write_exr, write_png

COMPRESSIONS = ("zip", "piz", "dwaa")


def _check_compression(compression: str) -> None:
    if compression not in COMPRESSIONS:
        raise FilmRecoveryError(f"unknown EXR compression {compression!r}.", where="job.output.compression",
                                fix="Use zip, piz or dwaa.")


# How archival and display frames are tagged (inference writes the same headers).
ARCHIVAL_HEADER: Attributes = {
    "colorInteropID": "lin_ap0_scene",
    # AP0 primaries and the ACES white point (SMPTE ST 2065-1), as OpenEXR's chromaticities.
    "chromaticities": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767),
    "film_recovery:colourspace": ACES2065_1,
    "film_recovery:ocio_config": OCIO_CONFIG,
    "film_recovery:from": f"{DISPLAY} / {VIEW} (inverse output transform)",
}
DISPLAY_HEADER: Attributes = {
    "colorInteropID": "g24_rec709_display",
    "film_recovery:colourspace": f"{DISPLAY} / {VIEW}",
    "film_recovery:ocio_config": OCIO_CONFIG,
}


def write_archival_exr(path: str | os.PathLike, display_rgb: np.ndarray, compression: str = "piz",
                       attributes: Attributes | None = None) -> Path:
    """Display-referred RGB -> ACES2065-1 half EXR (inverse output transform), provenance attached."""
    _check_compression(compression)
    return write_exr(path, display_to_aces2065(display_rgb), compression=compression,
                     attributes={**ARCHIVAL_HEADER, **(attributes or {})})


def write_display_exr(path: str | os.PathLike, display_rgb: np.ndarray, compression: str = "piz",
                      attributes: Attributes | None = None) -> Path:
    """Display-referred RGB as it is (Rec.709 2.4 code values) in a half EXR, tagged as such."""
    _check_compression(compression)
    return write_exr(path, display_rgb, compression=compression, attributes={**DISPLAY_HEADER, **(attributes or {})})


def write_review_png(path: str | os.PathLike, display_rgb: np.ndarray) -> Path:
    """8-bit Rec.709 (gamma 2.4) review proxy; values clipped to 0-1."""
    return write_png(path, display_rgb)


def review_movie_available() -> bool:
    """True when review movies can be written (an ffmpeg executable was found, see `movie.find_ffmpeg`)."""
    from .movie import find_ffmpeg

    return find_ffmpeg() is not None


# codec -> (encoder options, pixel format); both are 4:2:x YCbCr tagged BT.709 limited range.
_REVIEW_CODECS = {"prores": (["-c:v", "prores_ks", "-profile:v", "3", "-vendor", "apl0"], "yuv422p10le"),
                  "h264": (["-c:v", "libx264", "-crf", "16", "-preset", "medium", "-tune", "film"], "yuv420p")}
_CONTAINERS = {".mov": ("mov", "prores"), ".mp4": ("mp4", "h264"), ".m4v": ("mp4", "h264")}


def write_review_movie(path: str | os.PathLike, frames: Iterable[np.ndarray] | str | os.PathLike, fps: float,
                       codec: str | None = None, frame_numbers: Iterable[int] | None = None) -> Path:
    """Encode display-referred frames (Rec.709 2.4 code values 0-1) to a Rec.709 review movie, atomically.

    `frames` is an iterable of (H, W, 3) arrays, or a frame pattern (review PNGs or display
    EXRs, #### or %04d) read for `frame_numbers`. The container follows the suffix: .mov holds
    ProRes 422 HQ (10-bit 4:2:2), .mp4/.m4v hold H.264 (yuv420p, CRF 16); `codec` may pick h264
    in a .mov. RGB -> YCbCr uses the BT.709 matrix into limited range, and the stream is tagged
    BT.709 primaries, transfer and matrix. An odd width or height gets one black row/column
    (4:2:x needs even sizes). ffmpeg comes from `movie.find_ffmpeg`.
    """
    from .movie import require_ffmpeg, standard_rate

    path = Path(path)
    container, default_codec = _CONTAINERS.get(path.suffix.lower(), (None, None))
    if container is None:
        raise FilmRecoveryError(f"unknown review movie type {path.suffix!r}.", where=str(path),
                                fix="Use .mov (ProRes 422 HQ) or .mp4 (H.264).")
    codec = codec or default_codec
    if codec not in _REVIEW_CODECS or (codec == "prores" and container != "mov"):
        raise FilmRecoveryError(f"cannot write {codec!r} into {path.suffix}.", where=str(path),
                                fix="Use ProRes in .mov, or H.264 in .mov or .mp4.")
    if isinstance(frames, (str, os.PathLike)):
        if frame_numbers is None:
            raise FilmRecoveryError("a frame pattern needs its frame numbers.", where=str(frames))
        pattern = str(frames)
        frames = (read_image(frame_path(pattern, number)) for number in frame_numbers)
    ffmpeg = require_ffmpeg(str(path), "write a review movie")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise FilmRecoveryError("no frames to encode.", where=str(path))
    height, width = first.shape[:2]
    encoder, pixel_format = _REVIEW_CODECS[codec]
    rate = standard_rate(fps)
    # scale does the BT.709 matrix and range; setparams labels the frames (newer ffmpeg takes the
    # stream tags from the frames, older from the -color_* options: both are given).
    video_filter = ("pad=ceil(iw/2)*2:ceil(ih/2)*2,"
                    "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int,"
                    f"format={pixel_format},"
                    "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709")
    with atomic_path(path) as tmp:
        command = [ffmpeg, "-y", "-v", "error", "-nostdin", "-f", "rawvideo", "-pix_fmt", "rgb48le",
                   "-s", f"{width}x{height}", "-r", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0",
                   "-vf", video_filter, *encoder, "-color_primaries", "bt709", "-color_trc", "bt709",
                   "-colorspace", "bt709", "-color_range", "tv", "-f", container, str(tmp)]
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
            try:
                for number, image in enumerate(itertools.chain([first], frames)):
                    if image.shape[:2] != (height, width):
                        raise FilmRecoveryError(f"frame {number} of the movie is {image.shape[1]}x{image.shape[0]}, "
                                                f"the first is {width}x{height}.", where=str(path),
                                                fix="Give every frame the same size.")
                    data = (np.clip(np.nan_to_num(image[:, :, :3]), 0.0, 1.0) * 65535.0 + 0.5).astype("<u2")
                    process.stdin.write(data.tobytes())
            except BrokenPipeError:
                pass  # ffmpeg stopped early; its exit code and message are reported below
            except BaseException:
                process.kill()
                raise
            finally:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
                code = process.wait()
            if code != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace").strip()[-300:]
                raise FilmRecoveryError(f"ffmpeg failed ({message}).", where=str(path),
                                        fix="Check free disk space and that this ffmpeg has the encoder.")
    return path
