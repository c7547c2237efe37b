"""The engine's small image primitives, one implementation each: luma, separable filters (exact
Gaussian, box), summed-window sums, median, block-mean downscale, and axis ticks.

numpy only, so Blender's own Python can run them; where OpenCV is importable the median and the
separable filters use it (about 35x and 10x faster on a 2K frame), and tests/test_primitives.py
checks that both paths give the same result and that each matches scipy's reference filter.

Edge modes use scipy.ndimage's names:
    "mirror"    d c b | a b c d | c b a   (OpenCV BORDER_REFLECT_101)
    "reflect"   c b a | a b c d | d c b   (OpenCV BORDER_REFLECT; np.pad "symmetric")
    "nearest"   a a a | a b c d | d d d   (OpenCV BORDER_REPLICATE; np.pad "edge")
    "constant"  0 0 0 | a b c d | 0 0 0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BT709_LUMA = (0.2126, 0.7152, 0.0722)  # Kr, Kg, Kb: the engine's one luma (and YCbCr) weighting

_NUMPY_PAD = {"mirror": "reflect", "reflect": "symmetric", "nearest": "edge", "constant": "constant"}


def _opencv():
    try:
        import cv2
    except ImportError:  # Blender's own Python: the numpy paths
        return None
    return cv2


def _opencv_border(cv2, edge: str) -> int:
    return {"mirror": cv2.BORDER_REFLECT_101, "reflect": cv2.BORDER_REFLECT, "nearest": cv2.BORDER_REPLICATE,
            "constant": cv2.BORDER_CONSTANT}[edge]


def _float(image: np.ndarray) -> np.ndarray:
    """float64 stays float64 (metrics want it); everything else computes in float32."""
    image = np.asarray(image)
    return image if image.dtype in (np.float32, np.float64) else image.astype(np.float32)


# ----------------------------------------------------------------------------------------- luma

def luma(image: np.ndarray) -> np.ndarray:
    """BT.709 luma of an (..., 3 or more) RGB image -> (...); a single-channel image, (H, W) or
    (H, W, 1), is returned as (H, W). float32."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    if image.shape[-1] == 1:
        return image[..., 0]
    kr, kg, kb = (np.float32(k) for k in BT709_LUMA)
    return image[..., 0] * kr + image[..., 1] * kg + image[..., 2] * kb


# ------------------------------------------------------------------------------- separable filters

def gaussian_kernel(sigma: float, radius: int | None = None) -> np.ndarray:
    """Normalised 1D Gaussian taps, radius ceil(3 sigma) unless given (float64)."""
    radius = max(1, math.ceil(3.0 * sigma)) if radius is None else int(radius)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1, dtype=np.float64) / sigma) ** 2)
    return taps / taps.sum()


def separable_filter(image: np.ndarray, kernel: Sequence[float] | np.ndarray, *, edge: str = "mirror",
                     use_opencv: bool = True) -> np.ndarray:
    """The same odd-length 1D kernel down the rows then along the columns of an (H, W[, C]) image."""
    image = _float(image)
    kernel = np.asarray(kernel, dtype=image.dtype)
    radius = len(kernel) // 2
    height, width = image.shape[:2]
    if edge == "mirror" and min(height, width) <= radius:
        edge = "nearest"  # a mirror needs more pixels than the kernel's radius; a tiny frame repeats its edge
    cv2 = _opencv() if use_opencv else None
    if cv2 is not None and (image.ndim == 2 or image.shape[2] <= 4):
        out = cv2.sepFilter2D(np.ascontiguousarray(image), -1, kernel, kernel, borderType=_opencv_border(cv2, edge))
        return out.reshape(image.shape)
    mode = _NUMPY_PAD[edge]
    padded = np.pad(image, ((radius, radius), (0, 0)) + ((0, 0),) * (image.ndim - 2), mode=mode)
    rows = np.zeros_like(image)
    for i, weight in enumerate(kernel):
        rows += weight * padded[i:i + height]
    padded = np.pad(rows, ((0, 0), (radius, radius)) + ((0, 0),) * (image.ndim - 2), mode=mode)
    out = np.zeros_like(image)
    for i, weight in enumerate(kernel):
        out += weight * padded[:, i:i + width]
    return out


def gaussian_blur(image: np.ndarray, sigma: float, *, radius: int | None = None, edge: str = "mirror",
                  use_opencv: bool = True) -> np.ndarray:
    """Exact separable Gaussian of an (H, W[, C]) image; sigma in pixels (0 returns a copy)."""
    if sigma <= 0:
        return _float(image).copy()
    return separable_filter(image, gaussian_kernel(sigma, radius), edge=edge, use_opencv=use_opencv)


# ------------------------------------------------------------------------------ box sums (O(1) per pixel)

def running_sum(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sums of every `size` consecutive samples along `axis` ("valid": the axis shrinks by size - 1),
    from one cumulative sum."""
    pad = [(0, 0)] * values.ndim
    pad[axis] = (1, 0)
    total = np.cumsum(np.pad(values, pad), axis=axis)
    upper = [slice(None)] * values.ndim
    lower = [slice(None)] * values.ndim
    upper[axis] = slice(size, None)
    lower[axis] = slice(0, total.shape[axis] - size)
    return total[tuple(upper)] - total[tuple(lower)]


def window_sums(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sum of every height x width window lying inside the image (top-left indexed)."""
    return running_sum(running_sum(image, height, 0), width, 1)


def box_filter(image: np.ndarray, radius: int, *, edge: str = "nearest", normalise: bool = True,
               passes: int = 1) -> np.ndarray:
    """Mean (or, normalise=False, sum) over the (2r+1)^2 box around each pixel of an (H, W[, C]) image.

    Three passes approximate a Gaussian of sigma sqrt(r (r + 1)) at a fraction of its cost for
    large radii in numpy: alignment's structure images use that. float32 data should be near zero
    mean so the running sums stay exact enough.
    """
    image = np.asarray(image)
    out = _float(image) if image.dtype.kind == "f" else image.astype(np.float64)  # counts of a mask stay exact
    size = 2 * radius + 1
    for _ in range(passes):
        for axis in (0, 1):
            pad = [(0, 0)] * out.ndim
            pad[axis] = (radius, radius)
            out = running_sum(np.pad(out, pad, mode=_NUMPY_PAD[edge]), size, axis)
            if normalise:
                out *= out.dtype.type(1.0 / size)
    return out


# ----------------------------------------------------------------------------------------- median

def median_filter(image: np.ndarray, size: int, *, use_opencv: bool = True) -> np.ndarray:
    """Square median (size 3 or 5) of each channel of an (H, W[, C]) image, edges mirrored."""
    if size not in (3, 5):
        raise ValueError(f"median size {size}: only 3 and 5 are supported")
    image = np.asarray(image, dtype=np.float32)
    radius = size // 2
    padded = np.pad(image, ((radius, radius), (radius, radius)) + ((0, 0),) * (image.ndim - 2), mode="reflect")
    cv2 = _opencv() if use_opencv else None
    if cv2 is not None and (image.ndim == 2 or image.shape[2] in (1, 3, 4)):
        filtered = cv2.medianBlur(np.ascontiguousarray(padded), size)
        return np.ascontiguousarray(filtered[radius:radius + image.shape[0], radius:radius + image.shape[1]]
                                    .reshape(image.shape))
    height, width = image.shape[:2]
    per_row = width * size * size * (image.shape[2] if image.ndim == 3 else 1)
    rows = max(1, (1 << 24) // per_row)  # strips bound the window stack to ~64 MB
    out = np.empty_like(image)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        window = np.stack([padded[top + dy:bottom + dy, dx:dx + width]
                           for dy in range(size) for dx in range(size)], axis=0)
        out[top:bottom] = np.median(window, axis=0)
    return out


# ------------------------------------------------------------------------------------ downscale

def block_mean(image: np.ndarray, factor: int | tuple[int, int]) -> np.ndarray:
    """Average factor x factor blocks of an (H, W[, C]) image (a (rows, columns) pair for unequal
    blocks); the right and bottom remainders are dropped."""
    fy, fx = (factor, factor) if isinstance(factor, int) else factor
    h, w = image.shape[0] // fy * fy, image.shape[1] // fx * fx
    return np.asarray(image)[:h, :w].reshape(h // fy, fy, w // fx, fx, *image.shape[2:]).mean(axis=(1, 3))


def downscale(image: np.ndarray, *, max_width: int | None = None, max_side: int | None = None) -> np.ndarray:
    """Block-mean an image down by the smallest integer factor that makes it at most `max_width`
    wide (or its longer side at most `max_side`); an image already small enough is returned as is."""
    length = image.shape[1] if max_side is None else max(image.shape[:2])
    factor = math.ceil(length / (max_width if max_side is None else max_side))
    if factor <= 1 or image.shape[0] < factor or image.shape[1] < factor:
        return image
    return block_mean(image, factor)


# ----------------------------------------------------------------------------------------- ticks

def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round axis values (1, 2 or 5 x 10^n apart) covering [low, high] with about `count` steps."""
    if not high > low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def tick_text(value: float) -> str:
    """A tick value as short text: 0.5, 20, 1e+05."""
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}"
