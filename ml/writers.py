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
  through an ``ffmpeg`` executable on PATH (ProRes 422 HQ .mov or H.264 .mp4, tagged BT.709);
  without ffmpeg it raises an error saying so (write PNGs and encode them elsewhere).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .colour import ACES2065_1, DISPLAY, OCIO_CONFIG, VIEW, display_to_aces2065
from .errors import FilmRecoveryError
from .imageio import atomic_path, write_exr, write_png

Attributes = dict[str, str | float | int | tuple[float, ...]]
COMPRESSIONS = ("zip", "piz", "dwaa")


def _check_compression(compression: str) -> None:
    if compression not in COMPRESSIONS:
        raise FilmRecoveryError(f"unknown EXR compression {compression!r}.", where="job.output.compression",
                                fix="Use zip, piz or dwaa.")


def write_archival_exr(path: str | os.PathLike, display_rgb: np.ndarray, compression: str = "zip",
                       attributes: Attributes | None = None) -> Path:
    """Display-referred RGB -> ACES2065-1 half EXR (inverse output transform), provenance attached."""
    _check_compression(compression)
    aces = display_to_aces2065(display_rgb)
    header: Attributes = {
        "colorInteropID": "lin_ap0_scene",
        # AP0 primaries and the ACES white point (SMPTE ST 2065-1), as OpenEXR's chromaticities.
        "chromaticities": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767),
        "film_recovery:colourspace": ACES2065_1,
        "film_recovery:ocio_config": OCIO_CONFIG,
        "film_recovery:from": f"{DISPLAY} / {VIEW} (inverse output transform)",
    }
    header.update(attributes or {})
    return write_exr(path, aces, compression=compression, attributes=header)


def write_display_exr(path: str | os.PathLike, display_rgb: np.ndarray, compression: str = "zip",
                      attributes: Attributes | None = None) -> Path:
    """Display-referred RGB as it is (Rec.709 2.4 code values) in a half EXR, tagged as such."""
    _check_compression(compression)
    header: Attributes = {
        "colorInteropID": "g24_rec709_display",
        "film_recovery:colourspace": f"{DISPLAY} / {VIEW}",
        "film_recovery:ocio_config": OCIO_CONFIG,
    }
    header.update(attributes or {})
    return write_exr(path, np.asarray(display_rgb, dtype=np.float32), compression=compression, attributes=header)


def write_review_png(path: str | os.PathLike, display_rgb: np.ndarray) -> Path:
    """8-bit Rec.709 (gamma 2.4) review proxy; values clipped to 0-1."""
    return write_png(path, display_rgb)


def review_movie_available() -> bool:
    return shutil.which("ffmpeg") is not None


def write_review_movie(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float,
                       codec: str = "prores") -> Path:
    """Encode display-referred frames to a Rec.709 review movie with the ffmpeg executable."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FilmRecoveryError("no movie writer: OpenImageIO's wheel cannot write movies and ffmpeg is not on PATH.",
                                where=str(path), fix="Install ffmpeg, or write review PNGs (output.review = "
                                "'png') and encode them in Blender's Sequencer or another tool.")
    encoders = {"prores": ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"],
                "h264": ["-c:v", "libx264", "-crf", "16", "-pix_fmt", "yuv420p"]}
    if codec not in encoders:
        raise FilmRecoveryError(f"unknown review codec {codec!r}.", where="review movie", fix="Use prores or h264.")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise FilmRecoveryError("no frames to encode.", where=str(path))
    height, width = first.shape[:2]
    path = Path(path)
    with atomic_path(path) as tmp:
        command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb48le",
                   "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-", *encoders[codec],
                   "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
                   "-f", "mov" if codec == "prores" else "mp4", str(tmp)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for image in itertools.chain([first], frames):
                data = (np.clip(np.nan_to_num(image[:, :, :3]), 0.0, 1.0) * 65535.0 + 0.5).astype("<u2")
                process.stdin.write(data.tobytes())
        finally:
            process.stdin.close()
            error = process.stderr.read().decode(errors="replace")
            code = process.wait()
        if code != 0:
            raise FilmRecoveryError(f"ffmpeg failed ({error.strip()[-300:]}).", where=str(path),
                                    fix="Check free disk space and that this ffmpeg has the encoder.")
    return path
