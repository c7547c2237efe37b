"""The shared crop: black-border detection and the largest rectangle both plates fill.

Crops are job.Crop objects in Blender's Crop-node convention: x, y, width, height in Source
pixels from the LOWER-LEFT corner. Arrays are row 0 at the top, so `crop_to_slices` does the
flip. Borders are (top, bottom, left, right) pixel counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .job import Crop, CropKey
from .primitives import block_mean, luma

Borders = tuple[int, int, int, int]


# A bar is unexposed film or digital black: near the darkest level of the frames and well below
# mid-grey in absolute (display-referred) terms. Faded prints lift their blacks to ~0.15; a flat,
# out-of-focus background at mid-grey (~0.35) is picture, however flat it is.
BAR_MAX_LEVEL = 0.25
# How far above the darkest level a bar may sit (a telecine's lifted black over crushed picture blacks).
BAR_NEAR_DARKEST = 0.05


def _bar_depth(row_mean: np.ndarray, row_std: np.ndarray, level_tol: float, std_tol: float,
               max_level: float) -> tuple[int, float]:
    """How many lines from the start of the profile belong to a flat dark bar, and the bar's level."""
    edge = float(np.median(row_mean[:2]))
    if edge > max_level or row_std[0] > std_tol:
        return 0, edge
    bar = (np.abs(row_mean - edge) <= level_tol) & (row_std <= std_tol)
    n = int(np.argmin(bar)) if not bar.all() else len(bar)
    return n, edge


def _line_profiles(lum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and spread; each row is first averaged in runs of 4 pixels along itself so
    film grain in a black bar does not look like picture (the rows themselves stay exact)."""
    runs = block_mean(lum, (1, 4))
    return runs.mean(axis=1), runs.std(axis=1)


def _darkest_level(lum: np.ndarray) -> float:
    """The frame's black level with grain averaged out: a low percentile of 4x4 block means."""
    if min(lum.shape) < 4:
        return float(lum.min())
    return float(np.percentile(block_mean(lum, 4), 0.5))


@dataclass
class _FrameBars:
    depths: tuple[int, int, int, int]  # candidate bar depth per side (top, bottom, left, right)
    levels: tuple[float, float, float, float]  # each side's edge level
    darkest: float
    level_tol: float


def _frame_bars(img: np.ndarray, mask: np.ndarray | None) -> _FrameBars:
    lum = luma(img)
    if mask is not None:
        lum = np.where(mask, lum, 0.0)  # pixels without real data read as black bars
    # Thresholds scale with the picture's own contrast (faded scans have lifted, low-contrast blacks).
    lo, hi = np.percentile(lum[::4, ::4], [5, 95])
    spread = float(hi - lo) + 1e-6
    level_tol = max(0.02, 0.06 * spread)
    std_tol = max(0.015, 0.05 * spread)
    max_level = min(float(lo) + 0.25 * spread, BAR_MAX_LEVEL)
    rows_mean, rows_std = _line_profiles(lum)
    cols_mean, cols_std = _line_profiles(lum.T)
    sides = (_bar_depth(rows_mean, rows_std, level_tol, std_tol, max_level),
             _bar_depth(rows_mean[::-1], rows_std[::-1], level_tol, std_tol, max_level),
             _bar_depth(cols_mean, cols_std, level_tol, std_tol, max_level),
             _bar_depth(cols_mean[::-1], cols_std[::-1], level_tol, std_tol, max_level))
    return _FrameBars(tuple(d for d, _ in sides), tuple(level for _, level in sides),  # type: ignore[arg-type]
                      _darkest_level(lum), level_tol)


def detect_borders(frames: np.ndarray | Sequence[np.ndarray],
                   masks: Sequence[np.ndarray] | None = None) -> Borders:
    """Black borders (letterbox / pillarbox) as (top, bottom, left, right) pixels.

    A bar is a run of lines from the frame edge that are flat (low variance along the line after
    averaging out grain), at the edge's level, and NEAR BLACK: at most BAR_MAX_LEVEL, and within
    the frames' tolerance of the darkest level seen in any of them (lifted blacks of a faded scan
    count; a flat mid-grey or dim-wall edge is picture). Pass several frames: a bar must be found
    on that side in every frame at the same level, and each side's border is the smallest found,
    so a dark scene in one frame is not mistaken for a bar.
    `masks` (optional, per frame) mark pixels holding real picture; others count as bar.
    Lines of a soft (anti-aliased) bar edge count as picture: keep a crop margin.
    """
    if isinstance(frames, np.ndarray) and frames.ndim in (2, 3) and (frames.ndim == 2 or frames.shape[2] <= 4):
        frames = [frames]
    found = [_frame_bars(f, None if masks is None else masks[i]) for i, f in enumerate(frames)]
    darkest = min(f.darkest for f in found)
    borders = []
    for side in range(4):
        levels = [f.levels[side] for f in found]
        near_black = all(f.levels[side] <= darkest + max(BAR_NEAR_DARKEST, f.level_tol) for f in found)
        consistent = max(levels) - min(levels) <= min(f.level_tol for f in found)
        depth = min(f.depths[side] for f in found)
        borders.append(depth if depth > 0 and near_black and consistent else 0)
    return tuple(borders)  # type: ignore[return-value]


def largest_rectangle_inside(mask: np.ndarray) -> tuple[int, int, int, int]:
    """A large axis-aligned rectangle (top, bottom_excl, left, right_excl) inside a mask.

    Greedy: start from the mask's bounding box and repeatedly drop the side line with the
    largest share of outside pixels. Exact for the convex areas warps and bars make.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return 0, 0, 0, 0
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    while top < bottom and left < right:
        sides = [1 - mask[top, left:right].mean(), 1 - mask[bottom - 1, left:right].mean(),
                 1 - mask[top:bottom, left].mean(), 1 - mask[top:bottom, right - 1].mean()]
        worst = int(np.argmax(sides))
        if sides[worst] == 0:
            break
        if worst == 0:
            top += 1
        elif worst == 1:
            bottom -= 1
        elif worst == 2:
            left += 1
        else:
            right -= 1
    return int(top), int(bottom), int(left), int(right)


def crop_from_box(top: int, bottom_excl: int, left: int, right_excl: int, height: int) -> Crop:
    """A job.Crop (lower-left origin) from array rows [top, bottom_excl) and columns [left, right_excl)."""
    return Crop(enabled=True, x=int(left), y=int(height - bottom_excl), width=int(right_excl - left),
                height=int(bottom_excl - top))


def live_mask(m: np.ndarray, ref_shape: Sequence[int], source_shape: Sequence[int],
              ref_borders: Borders = (0, 0, 0, 0)) -> np.ndarray:
    """Source pixels showing real Reference picture: inside the warp and inside the Reference's
    own bars (detected on its unwarped raster, where they are axis-aligned)."""
    from .warp import translation, valid_mask

    top, bottom, left, right = ref_borders
    inner = (int(ref_shape[0]) - top - bottom, int(ref_shape[1]) - left - right)
    return valid_mask(np.asarray(m) @ translation(left, top), inner, source_shape)


def shared_crop(source_frames: Sequence[np.ndarray], aligned_reference_frames: Sequence[np.ndarray],
                masks: Sequence[np.ndarray] | None = None, margin: int = 4) -> Crop:
    """The crop both branches share: inside the Source's live picture, the aligned Reference's
    live picture and the valid warp area of every frame, shrunk by `margin` pixels each side.

    `masks` are the per-frame areas of real Reference picture on the Source raster: pass
    live_mask(M, ...) so bars that the warp rotated are excluded too (border detection on the
    aligned frames only finds axis-aligned bars).
    """
    h, w = source_frames[0].shape[:2]
    inside = np.ones((h, w), dtype=bool)
    if masks is not None:
        for m in masks:
            inside &= m
    for borders in (detect_borders(source_frames), detect_borders(aligned_reference_frames, masks)):
        top, bottom, left, right = borders
        live = np.zeros((h, w), dtype=bool)
        live[top:h - bottom, left:w - right] = True
        inside &= live
    top, bottom, left, right = largest_rectangle_inside(inside)
    top, bottom, left, right = top + margin, bottom - margin, left + margin, right - margin
    if bottom <= top or right <= left:
        return Crop(enabled=True, x=0, y=0, width=0, height=0)
    return crop_from_box(top, bottom, left, right, h)


def crop_at_frame(crop: Crop, frame: int) -> Crop:
    """The crop in effect at `frame` (animated crops for burned-in subtitles or logos).

    Keys hold (stepped, like constant keyframe interpolation): a frame uses the last key at or
    before it; frames before the first key use the first key. Without keys the crop is static.
    """
    if not crop.keys:
        return Crop(enabled=crop.enabled, x=crop.x, y=crop.y, width=crop.width, height=crop.height)
    keys = sorted(crop.keys, key=lambda k: k.frame)
    current: CropKey = keys[0]
    for k in keys:
        if k.frame <= frame:
            current = k
    return Crop(enabled=crop.enabled, x=current.x, y=current.y, width=current.width, height=current.height)


def crop_to_slices(crop: Crop | None, height: int, width: int | None = None) -> tuple[slice, slice]:
    """(row_slice, col_slice) of a lower-left-origin crop in a top-down array of `height` rows.

    A missing or disabled crop (or one of zero size) is the whole frame. The slices are clamped
    to the frame when `width` is given.
    """
    if crop is None or not crop.enabled or crop.width <= 0 or crop.height <= 0:
        return slice(0, height), slice(0, width)
    top = height - (crop.y + crop.height)
    bottom = height - crop.y
    left, right = crop.x, crop.x + crop.width
    top, bottom = max(0, top), min(height, bottom)
    left = max(0, left)
    if width is not None:
        right = min(width, right)
    return slice(top, bottom), slice(left, right)
