"""Ingest: plate frames in the display-referred training domain, and the Reference conform.

Every stage reads plates through these functions so Source and Reference get identical ingest:

- `read_plate_frame(plate, frame)` reads one frame and applies the plate's ingest preset:
  ``display``    Rec.709 2.4 ODT export (code values 0-1): values pass through untouched.
  ``aces2065-1`` ACES2065-1 master: `colour.aces2065_to_display` (ACES 1.3 config, display
                 ``Rec.1886 Rec.709 - Display``, view ``ACES 1.0 - SDR Video``), never a clamp.
- `source_frame(job, frame)` adds the neutral pre-balance (`balance.apply_balance`) and, for
  training only, the optional degrain; `reference_frame(job, frame)` adds the Reference
  clean-up (`cleanup.clean_reference`). Both stay on their own raster (no warp, no crop).
- A movie plate is one file whose frame 0 is plate.first_frame; ffmpeg decodes it (`ml.movie`)
  to 16-bit RGB code values, display-referred like an export (use the ``display`` preset).
  `read_plate_raw_run` decodes a run of frames in one process.

Conform (`conform_matrix`): the Reference raster is placed on the Source raster by the job's
conform mode, then the user's scale and offset. Pixel centres sit at integer coordinates and the
image covers [-0.5, width - 0.5], so the Reference centre ((Wr-1)/2, (Hr-1)/2) lands on the Source
centre ((Ws-1)/2, (Hs-1)/2). With k the display-height scale:
    fit      k = min(Hs / Hr, Ws*PARs / (Wr*PARr))   (whole Reference visible; letter/pillarbox)
    fill     k = max(Hs / Hr, Ws*PARs / (Wr*PARr))   (Source raster covered; edges cropped)
    stretch  sx = Ws / Wr, sy = Hs / Hr              (edges to edges, aspect not kept)
    none     sx = sy = 1                              (pixel for pixel, centred)
and for fit/fill sx = k * PARr / PARs, sy = k. Then, like Blender's Transform node applied to
the centred Reference: sx *= scale_x, sy *= scale_y, and the offset moves it in Source pixels,
offset_x to the right and offset_y UP (Blender's convention; image rows run down):
    xs = (Ws-1)/2 + sx * (xr - (Wr-1)/2) + offset_x
    ys = (Hs-1)/2 + sy * (yr - (Hr-1)/2) - offset_y
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import warp
from .errors import InputImageError
from .imageio import frame_path, is_sequence, read_image
from .job import Conform, Job, Plate

MOVIE_EXTENSIONS = {".mov", ".mp4", ".m4v", ".mkv", ".avi", ".mxf", ".webm", ".mpg", ".mpeg"}


def is_movie(path: str) -> bool:
    return Path(path).suffix.lower() in MOVIE_EXTENSIONS


def is_movie_plate(plate: Plate) -> bool:
    """A plate that is one movie file (not a frame pattern)."""
    return is_movie(plate.path) and not is_sequence(plate.path)


def plate_size(plate: Plate) -> tuple[int, int]:
    """(width, height) of a plate from its first frame's header (a movie's stream for movies)."""
    if is_movie_plate(plate):
        from .movie import movie_info

        info = movie_info(plate.path)
        return info.width, info.height
    from .imageio import read_info

    info = read_info(frame_path(plate.path, plate.first_frame))
    return info.width, info.height


def movie_support() -> bool:
    """True when movie plates can be read: an ffmpeg executable was found (see `movie.find_ffmpeg`)."""
    from .movie import find_ffmpeg

    return find_ffmpeg() is not None


def plate_frames(plate: Plate) -> list[int]:
    """The plate's frame numbers, first to last inclusive.

    For a movie plate, first_frame is movie frame 0; the movie must hold the whole range.
    """
    if not plate.path:
        raise InputImageError("no path set.", where="plate", fix="Set the plate's frame pattern or movie file.")
    if plate.last_frame < plate.first_frame:
        raise InputImageError(f"last frame {plate.last_frame} is before first frame {plate.first_frame}.",
                              where=plate.path, fix="Set the plate's frame range.")
    if is_movie_plate(plate):
        from .movie import check_movie_length

        check_movie_length(plate.path, plate.last_frame - plate.first_frame + 1)
    elif not is_sequence(plate.path) and plate.first_frame != plate.last_frame:
        raise InputImageError("the path has no frame number pattern (#### or %04d) but the range has "
                              f"{plate.last_frame - plate.first_frame + 1} frames.", where=plate.path,
                              fix="Use a pattern such as shot.####.exr for an image sequence.")
    return list(range(plate.first_frame, plate.last_frame + 1))


def plate_frame_path(plate: Plate, frame: int) -> str:
    """The file that holds `frame` (the movie file itself for movies)."""
    return frame_path(plate.path, frame)


def _check_in_range(plate: Plate, frame: int) -> None:
    if not plate.first_frame <= frame <= plate.last_frame:
        raise InputImageError(f"frame {frame} is outside the plate range {plate.first_frame}-{plate.last_frame}.",
                              where=plate.path, fix="Pick a frame inside the range or widen the range.")


def read_plate_raw(plate: Plate, frame: int, check_finite: bool = True, keep_half: bool = False) -> np.ndarray:
    """One frame as stored in the file (float32 RGB, alpha dropped), before the ingest preset;
    `keep_half`: half-float files stay float16.

    Movie frames are decoded integer code values, always finite (`check_finite` is for files).
    """
    _check_in_range(plate, frame)
    if is_movie_plate(plate):
        from .movie import read_movie_frame

        return read_movie_frame(plate.path, frame - plate.first_frame)
    return read_image(plate_frame_path(plate, frame), check_finite=check_finite, keep_half=keep_half)


def read_plate_raw_run(plate: Plate, frame: int, count: int, check_finite: bool = True) -> Iterator[np.ndarray]:
    """Frames frame..frame+count-1 as `read_plate_raw` gives them; a movie plate decodes the
    run in one ffmpeg process (far cheaper than one seek per frame)."""
    _check_in_range(plate, frame)
    _check_in_range(plate, frame + count - 1)
    if is_movie_plate(plate):
        from .movie import read_movie_frames

        yield from read_movie_frames(plate.path, frame - plate.first_frame, count)
        return
    for number in range(frame, frame + count):
        yield read_image(plate_frame_path(plate, number), check_finite=check_finite)


def apply_ingest(image: np.ndarray, preset: str) -> np.ndarray:
    """Bring file values into the display-referred domain for an ingest preset."""
    if preset == "display":
        return image
    if preset == "aces2065-1":
        from .colour import aces2065_to_display

        return aces2065_to_display(image)
    raise InputImageError(f"unknown ingest preset {preset!r}.", where="plate.ingest",
                          fix="Use 'display' (Rec.709 2.4 ODT export) or 'aces2065-1' (ACES master).")


def read_plate_frame(plate: Plate, frame: int, keep_half: bool = False) -> np.ndarray:
    """One frame as display-referred RGB (H, W, 3) float32, after the plate's ingest preset.
    `keep_half`: a half-float file whose preset changes nothing stays float16."""
    keep_half = keep_half and plate.ingest == "display"
    return apply_ingest(read_plate_raw(plate, frame, keep_half=keep_half), plate.ingest)


def source_frame(job: Job, frame: int, balanced: bool = True, degrained: bool = False) -> np.ndarray:
    """A Source frame in the training domain: ingest, then neutral pre-balance, then degrain.

    `balanced` applies job.balance when it is enabled; `degrained` applies
    job.cleanup.source_degrain when it is above 0 (training copies only, never the plate).
    """
    image = read_plate_frame(job.source, frame)
    if balanced and job.balance.enabled:
        from .balance import apply_balance

        image = apply_balance(image, job.balance)
    if degrained and job.cleanup.source_degrain > 0:
        from .cleanup import degrain

        image = degrain(image, job.cleanup.source_degrain)
    return image


def reference_frame(job: Job, frame: int, cleaned: bool = True) -> np.ndarray:
    """A Reference frame on its own raster (not warped): ingest, then the branch's clean-up."""
    image = read_plate_frame(job.reference, frame)
    if cleaned:
        from .cleanup import clean_reference

        image = clean_reference(image, job.cleanup, job.branch)
    return image


# --- conform ----------------------------------------------------------------------------------

def conform_matrix(conform: Conform, reference_size: tuple[int, int], source_size: tuple[int, int],
                   ref_pixel_aspect: float = 1.0, src_pixel_aspect: float = 1.0) -> np.ndarray:
    """3x3 M mapping Reference pixels to Source pixels ([xs, ys, 1] = M @ [xr, yr, 1]) for
    job.conform; sizes are (w, h). The geometry lives in `warp.conform_matrix`."""
    return warp.conform_matrix(conform.mode, reference_size, source_size, (conform.scale_x, conform.scale_y),
                               (conform.offset_x, conform.offset_y), ref_pixel_aspect=ref_pixel_aspect,
                               source_pixel_aspect=src_pixel_aspect)


def active_area(image: np.ndarray, black: float = 0.03) -> tuple[int, int, int, int]:
    """The picture area inside letterbox/pillarbox bars: (x0, y0, x1, y1) inclusive, image rows down.

    A row or column is a bar when nearly all of it is darker than `black` (display values).
    """
    from .primitives import luma

    y = luma(image)
    dark_rows = np.mean(y < black, axis=1) > 0.98
    dark_cols = np.mean(y < black, axis=0) > 0.98

    def span(dark: np.ndarray) -> tuple[int, int]:
        lit = np.flatnonzero(~dark)
        if lit.size == 0:
            return 0, dark.size - 1
        return int(lit[0]), int(lit[-1])

    x0, x1 = span(dark_cols)
    y0, y1 = span(dark_rows)
    return x0, y0, x1, y1


def estimate_conform(reference_image: np.ndarray, source_image: np.ndarray,
                     ref_pixel_aspect: float = 1.0, src_pixel_aspect: float = 1.0) -> Conform:
    """Place the Reference's picture area (bars excluded) over the Source's picture area.

    Returns a `fit` conform whose scale and offset map the Reference active area onto the
    Source active area, keeping the display aspect (the alignment stage refines this).
    """
    ref_h, ref_w = reference_image.shape[:2]
    src_h, src_w = source_image.shape[:2]
    rx0, ry0, rx1, ry1 = active_area(reference_image)
    sx0, sy0, sx1, sy1 = active_area(source_image)
    fit = warp.conform_matrix("fit", (ref_w, ref_h), (src_w, src_h), ref_pixel_aspect=ref_pixel_aspect,
                              source_pixel_aspect=src_pixel_aspect)
    base_sx, base_sy = float(fit[0, 0]), float(fit[1, 1])
    # One display scale (aspect kept) that fits the Reference picture inside the Source picture.
    k_h = (sy1 - sy0 + 1) / ((ry1 - ry0 + 1) * base_sy)
    k_w = (sx1 - sx0 + 1) / ((rx1 - rx0 + 1) * base_sx)
    k = min(k_h, k_w)
    if abs(k_h - k_w) / max(k_h, k_w) < 0.02:  # the same picture: use its mean to spread the error
        k = (k_h + k_w) / 2.0
    sx, sy = base_sx * k, base_sy * k
    ref_mid = ((rx0 + rx1) / 2.0 - (ref_w - 1) / 2.0, (ry0 + ry1) / 2.0 - (ref_h - 1) / 2.0)
    src_mid = ((sx0 + sx1) / 2.0 - (src_w - 1) / 2.0, (sy0 + sy1) / 2.0 - (src_h - 1) / 2.0)
    return Conform(mode="fit", scale_x=float(k), scale_y=float(k),
                   offset_x=float(src_mid[0] - sx * ref_mid[0]),
                   offset_y=float(-(src_mid[1] - sy * ref_mid[1])))
