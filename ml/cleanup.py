"""Reference clean-up and the optional Source degrain, numpy only (no scipy in Blender).

Per the guide, clean-up differs by branch (`clean_reference`):
- chroma: light median (3x3 or 5x5), light denoise (Gaussian, sigma in pixels) and deband,
  applied to the chroma channels (engine Cb/Cr) only, so Reference luma (used for alignment)
  keeps its detail; then dust removal.
- spatial: dust removal only. Median/denoise/deband settings are ignored for the spatial branch
  (blurring the Reference would teach the model to blur).

Dust (`remove_dust`) finds isolated specks (pixels brighter or darker than every pixel on the
ring 3 pixels away, by a robust threshold; see `find_dust`) and replaces only those pixels (plus
their soft edge) with the median of the clean pixels of their 5x5 window. Every other pixel is
returned bit-identical.

`degrain` (Source, training copies only): separable Gaussian, sigma = strength on luma and
2 * strength on chroma (inference runs the same on the device: `models.degrain_ycbcr`).

The median and the Gaussian use OpenCV where it is importable (about 37x and 13x faster on a 2K
frame, docs/benchmarks.md) and numpy otherwise (Blender's own Python): the same reflected edges,
the same kernel, the same result (`ml.primitives`, tests/test_primitives.py).
"""

from __future__ import annotations

import warnings

import numpy as np

from . import primitives
from .colour import rgb_to_ycbcr, ycbcr_to_rgb
from .errors import InputImageError
from .job import Cleanup
from .primitives import box_filter, gaussian_blur, luma


def _pad(image: np.ndarray, radius: int) -> np.ndarray:
    pad = [(radius, radius), (radius, radius)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="reflect" if min(image.shape[:2]) > radius else "edge")


def median_filter(image: np.ndarray, size: int, use_opencv: bool = True) -> np.ndarray:
    """`primitives.median_filter`, refusing a size the recipe cannot hold with the field to fix."""
    if size not in (3, 5):
        raise InputImageError(f"median size {size} is not supported.", where="job.cleanup.reference_median",
                              fix="Use 0 (off), 3 or 5.")
    return primitives.median_filter(image, size, use_opencv=use_opencv)


def _ring_range(y: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the pixels on the square ring at Chebyshev distance `radius` around each pixel."""
    padded = _pad(y, radius)
    h, w = y.shape
    low = np.full_like(y, np.inf)
    high = np.full_like(y, -np.inf)
    size = 2 * radius + 1
    for dy in range(size):
        for dx in range(size):
            if max(abs(dy - radius), abs(dx - radius)) != radius:
                continue
            shifted = padded[dy:dy + h, dx:dx + w]
            np.minimum(low, shifted, out=low)
            np.maximum(high, shifted, out=high)
    return low, high


def find_dust(image: np.ndarray, min_contrast: float = 0.08, noise_factor: float = 8.0) -> np.ndarray:
    """Boolean (H, W) mask of isolated specks (see the module docstring).

    A speck pixel is brighter than every pixel on the ring 3 pixels away (or darker than every
    one) by more than max(min_contrast, noise_factor * grain noise), so specks up to 5x5 pixels
    are found while edges, lines and texture, which reach the ring, are left alone.
    """
    y = luma(image)
    padded = _pad(y, 1)
    h, w = y.shape
    detail = y - 0.25 * (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:])
    noise = 1.4826 * float(np.median(np.abs(detail)))
    threshold = max(min_contrast, noise_factor * noise)
    ring_low, ring_high = _ring_range(y, 3)
    stand_out = np.maximum(y - ring_high, ring_low - y)
    specks = stand_out > threshold
    if not specks.any():
        return specks
    # The soft edge of a speck: neighbours that stand out from the same ring, though less.
    near = box_filter(specks, 1, edge="constant", normalise=False) > 0
    return specks | (near & (stand_out > 0.35 * threshold))


def remove_dust(image: np.ndarray, min_contrast: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Replace isolated specks with the local 5x5 median; returns (cleaned image, speck mask)."""
    image = np.asarray(image, dtype=np.float32)
    mask = find_dust(image, min_contrast)
    out = image.copy()
    ys, xs = np.nonzero(mask)
    if ys.size:
        offsets = [(dy, dx) for dy in range(5) for dx in range(5)]
        padded = _pad(image, 2)
        padded_clean = _pad(~mask, 2)
        window = np.stack([padded[ys + dy, xs + dx] for dy, dx in offsets])
        clean = np.stack([padded_clean[ys + dy, xs + dx] for dy, dx in offsets])
        # The median of the window's clean pixels, so a speck does not pull its own repair.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-speck window: fall back below
            repair = np.nanmedian(np.where(clean[:, :, None], window, np.nan), axis=0)
        out[ys, xs] = np.where(np.isnan(repair), np.median(window, axis=0), repair)
    return out, mask


def deband(chroma: np.ndarray, strength: float) -> np.ndarray:
    """Smooth small steps (below strength/255) with a wide Gaussian; larger edges are kept."""
    if strength <= 0:
        return chroma
    smooth = gaussian_blur(chroma, 3.0)
    step = np.abs(chroma - smooth) < strength / 255.0
    return np.where(step, smooth, chroma)


def clean_chroma(image: np.ndarray, median: int = 0, denoise: float = 0.0, deband_strength: float = 0.0) -> np.ndarray:
    """Median, Gaussian denoise and deband on engine Cb/Cr only; luma untouched."""
    ycc = rgb_to_ycbcr(image)
    chroma = ycc[:, :, 1:]
    if median:
        chroma = median_filter(chroma, median)
    if denoise > 0:
        chroma = gaussian_blur(chroma, denoise)
    chroma = deband(chroma, deband_strength)
    ycc[:, :, 1:] = chroma
    return ycbcr_to_rgb(ycc)


def clean_reference(image: np.ndarray, cleanup: Cleanup, branch: str) -> np.ndarray:
    """The Reference clean-up for a branch (chroma: chroma filters + dust; spatial: dust only)."""
    out = np.asarray(image, dtype=np.float32)
    if branch == "chroma" and (cleanup.reference_median or cleanup.reference_denoise > 0
                               or cleanup.reference_deband > 0):
        out = clean_chroma(out, cleanup.reference_median, cleanup.reference_denoise, cleanup.reference_deband)
    if cleanup.reference_dust:
        out, _ = remove_dust(out)
    return out


def degrain(image: np.ndarray, strength: float, use_opencv: bool = True) -> np.ndarray:
    """Training-only Source degrain: Gaussian sigma = strength on luma, 2 * strength on chroma."""
    if strength <= 0:
        return np.asarray(image, dtype=np.float32)
    ycc = rgb_to_ycbcr(image)
    ycc[:, :, :1] = gaussian_blur(ycc[:, :, :1], strength, use_opencv=use_opencv)
    ycc[:, :, 1:] = gaussian_blur(ycc[:, :, 1:], 2.0 * strength, use_opencv=use_opencv)
    return ycbcr_to_rgb(ycc)
