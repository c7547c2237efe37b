"""Reference→Source warps: bilinear resampling and the 3x3 matrices that describe them.

Conventions (shared with the whole engine): pixel coordinates x = column, y = row (down), pixel
centres at integer coordinates, so an image of width w covers x in [-0.5, w - 0.5]. A matrix M
maps Reference pixel coordinates to Source pixel coordinates, [xs, ys, 1]^T ~ M @ [xr, yr, 1]^T;
the aligned Reference on the Source raster samples the Reference at M^-1 @ p for every Source
pixel p. Everything here is numpy only (runs inside Blender's Python).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

Border = Literal["zero", "edge"]

# Rows per chunk when warping: keeps the temporaries (coordinates, weights, gathers) in cache-sized
# pieces and the peak memory of a 4K warp small.
_CHUNK_PIXELS = 1 << 18


def as_matrix(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """A 3x3 float64 matrix from 9 row-major numbers (job.json form) or a 3x3 array."""
    m = np.asarray(values, dtype=np.float64).reshape(3, 3)
    return m / m[2, 2] if m[2, 2] != 0.0 else m


def matrix_to_list(m: np.ndarray) -> list[float]:
    """The job.json form: 9 row-major floats, normalised so the last entry is 1."""
    return [float(v) for v in as_matrix(m).ravel()]


def scale_of(m: np.ndarray) -> float:
    """The warp's linear scale: output px per input px (the square root of its area change)."""
    return math.sqrt(abs(float(np.linalg.det(m[:2, :2] / m[2, 2]))))


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float | None = None) -> np.ndarray:
    return np.diag([sx, sx if sy is None else sy, 1.0])


def similarity(scale: float = 1.0, angle_deg: float = 0.0, tx: float = 0.0, ty: float = 0.0,
               centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Scale and rotate about `centre`, then translate by (tx, ty).

    A positive angle turns the picture counter-clockwise as seen on screen (as Blender's Transform
    node does); with y pointing down that is the matrix [[c, s], [-s, c]].
    """
    a = math.radians(angle_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    cx, cy = centre
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    return translation(tx + cx, ty + cy) @ rot @ translation(-cx, -cy)


def resize_matrix(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Map a (width, height) raster onto another so that their outer edges coincide.

    With pixel centres at integers the edges are at -0.5 and size - 0.5, hence
    x_dst = (x_src + 0.5) * dst_w / src_w - 0.5.
    """
    sx = dst_size[0] / src_size[0]
    sy = dst_size[1] / src_size[1]
    return translation(-0.5, -0.5) @ scaling(sx, sy) @ translation(0.5, 0.5)


def conform_matrix(mode: str, ref_size: tuple[int, int], source_size: tuple[int, int],
                   scale: tuple[float, float] = (1.0, 1.0), offset: tuple[float, float] = (0.0, 0.0),
                   ref_pixel_aspect: float = 1.0, source_pixel_aspect: float = 1.0) -> np.ndarray:
    """The Reference→Source placement of job.conform (before any alignment solve).

    fit: uniform scale so the whole Reference fits inside the Source, centred; fill: uniform scale
    so it covers the Source; stretch: edges coincide; none: 1:1, centred. Sizes are (width, height)
    in pixels; pixel aspects make fit/fill work on displayed shapes. Then `scale` (x, y) about the
    Source centre and `offset` (x, y) in Source pixels, y positive = UP (Blender's Transform node
    convention, as the add-on shows it).
    """
    rw, rh = ref_size
    sw, sh = source_size
    if mode == "stretch":
        base = resize_matrix(ref_size, source_size)
    else:
        # Displayed widths in Source pixels: a Reference pixel is ref_par/source_par Source pixels wide.
        aspect = ref_pixel_aspect / source_pixel_aspect
        if mode == "fit":
            k = min(sw / (rw * aspect), sh / rh)
        elif mode == "fill":
            k = max(sw / (rw * aspect), sh / rh)
        elif mode == "none":
            k = 1.0
        else:
            raise ValueError(f"unknown conform mode {mode!r}")
        kx, ky = k * aspect, k
        # Centre the Reference's edge box on the Source's edge box.
        base = (translation((sw - 1) / 2.0, (sh - 1) / 2.0) @ scaling(kx, ky)
                @ translation(-(rw - 1) / 2.0, -(rh - 1) / 2.0))
    centre = ((sw - 1) / 2.0, (sh - 1) / 2.0)
    extra = (translation(offset[0], -offset[1]) @ translation(*centre) @ scaling(scale[0], scale[1])
             @ translation(-centre[0], -centre[1]))
    return extra @ base


def apply_matrix(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map point coordinates through a 3x3 matrix (projective divide included)."""
    m = np.asarray(m, dtype=np.float64)
    xs = m[0, 0] * x + m[0, 1] * y + m[0, 2]
    ys = m[1, 0] * x + m[1, 1] * y + m[1, 2]
    if m[2, 0] == 0.0 and m[2, 1] == 0.0:
        return xs / m[2, 2], ys / m[2, 2]
    d = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    return xs / d, ys / d


def corners_to_homography(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """The homography taking src_pts (N>=4, 2) onto dst_pts, by normalised DLT (least squares)."""
    src = np.asarray(src_pts, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst_pts, dtype=np.float64).reshape(-1, 2)
    if len(src) < 4 or len(src) != len(dst):
        raise ValueError("need the same number (at least 4) of source and destination points")

    def normaliser(p: np.ndarray) -> np.ndarray:
        c = p.mean(axis=0)
        d = np.sqrt(((p - c) ** 2).sum(axis=1)).mean() or 1.0
        s = math.sqrt(2.0) / d
        return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])

    ts, td = normaliser(src), normaliser(dst)
    a = np.c_[src, np.ones(len(src))] @ ts.T
    b = np.c_[dst, np.ones(len(dst))] @ td.T
    rows = []
    for (x, y, _), (u, v, _) in zip(a, b, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    h = vt[-1].reshape(3, 3)
    m = np.linalg.inv(td) @ h @ ts
    return m / m[2, 2]


def homography_corners(m: np.ndarray, w: int, h: int) -> np.ndarray:
    """Where the Reference's outer corners land on the Source (the Corner Pin node's form).

    Returns a (4, 2) array of Source pixel coordinates (x right, y down, pixel centres at
    integers) for the Reference corners upper-left, upper-right, lower-right, lower-left, taken at
    the pixel edges (-0.5 and w - 0.5 / h - 0.5) of a w x h Reference.
    """
    cx = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
    cy = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
    x, y = apply_matrix(m, cx, cy)
    return np.stack([x, y], axis=1)


class BilinearSampler:
    """Bilinear lookups into one image, padded once so each lookup needs no per-tap bounds tests.

    border='zero': taps outside the image count as 0 (a one-pixel soft edge, as OpenCV's
    BORDER_CONSTANT); 'edge': coordinates are clamped (the edge pixels are smeared outwards).
    """

    def __init__(self, image: np.ndarray, border: Border = "zero"):
        if border not in ("zero", "edge"):
            raise ValueError(f"unknown border {border!r}")
        img = np.asarray(image, dtype=np.float32)
        self.squeeze = img.ndim == 2
        if self.squeeze:
            img = img[..., None]
        self.height, self.width, self.channels = img.shape
        self.border = border
        if border == "zero":
            # One zero pixel before and two after: every clamped coordinate's taps stay inside.
            img = np.pad(img, ((1, 2), (1, 2), (0, 0)))
        self.stride = img.shape[1]
        self.flat = np.ascontiguousarray(img).reshape(-1, self.channels)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        h, w = self.height, self.width
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        if self.border == "edge":
            x = np.clip(x, 0.0, w - 1.0)
            y = np.clip(y, 0.0, h - 1.0)
            pad = 0
        else:
            # Anything beyond one pixel outside samples only zeros; clamping there keeps it so.
            x = np.clip(x, -1.0, float(w))
            y = np.clip(y, -1.0, float(h))
            pad = 1
        # NaN coordinates (a degenerate matrix) become a zero/edge sample, never an index error.
        x = np.nan_to_num(x, nan=-1.0 if pad else 0.0)
        y = np.nan_to_num(y, nan=-1.0 if pad else 0.0)
        x0 = np.floor(x)
        y0 = np.floor(y)
        fx = (x - x0)[..., None]
        fy = (y - y0)[..., None]
        i00 = (y0.astype(np.int64) + pad) * self.stride + (x0.astype(np.int64) + pad)
        if self.border == "edge":
            # At the last row/column the +1 tap has weight 0 but must still be a valid index.
            i01 = i00 + (x0 < w - 1)
            i10 = i00 + (y0 < h - 1) * self.stride
            i11 = i10 + (x0 < w - 1)
        else:
            i01 = i00 + 1
            i10 = i00 + self.stride
            i11 = i10 + 1
        f = self.flat
        top = f[i00] + (f[i01] - f[i00]) * fx
        bottom = f[i10] + (f[i11] - f[i10]) * fx
        out = top + (bottom - top) * fy
        return out[..., 0] if self.squeeze else out


def sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, border: Border = "zero") -> np.ndarray:
    """Sample `image` (H, W) or (H, W, C) at float coordinates; float32 (...) or (..., C)."""
    return BilinearSampler(image, border)(x, y)


def _source_grid_rows(m_inv: np.ndarray, r0: int, r1: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference coordinates (float32) of Source rows r0..r1-1."""
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(r0, r1, dtype=np.float64)[:, None]
    a = m_inv
    xr = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
    yr = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
    if a[2, 0] != 0.0 or a[2, 1] != 0.0:
        d = a[2, 0] * xs + a[2, 1] * ys + a[2, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xr, yr = xr / d, yr / d
            behind = d <= 0  # beyond the horizon: no real Reference data
        xr = np.where(behind, -1e6, xr)
        yr = np.where(behind, -1e6, yr)
    else:
        xr, yr = xr / a[2, 2], yr / a[2, 2]
    return xr.astype(np.float32), yr.astype(np.float32)


def warp_to_source(reference: np.ndarray, m: np.ndarray, source_shape: Sequence[int],
                   order: Literal["bilinear"] = "bilinear", border: Border = "zero") -> np.ndarray:
    """The Reference resampled onto the Source raster: out[p] = Reference(M^-1 p), bilinear.

    `source_shape` is (height, width[, ...]); the output has the Reference's channel count and is
    float32. Rows are processed in chunks so a 2K/4K frame stays fast and memory-light.
    """
    if order != "bilinear":
        raise ValueError(f"unsupported interpolation {order!r} (only 'bilinear')")
    m = as_matrix(m)
    m_inv = np.linalg.inv(m)
    height, width = int(source_shape[0]), int(source_shape[1])
    out = np.empty((height, width) + reference.shape[2:], dtype=np.float32)
    sampler = BilinearSampler(reference, border)
    rows = max(1, _CHUNK_PIXELS // max(width, 1))
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        xr, yr = _source_grid_rows(m_inv, r0, r1, width)
        out[r0:r1] = sampler(xr, yr)
    return out


def valid_mask(m: np.ndarray, ref_shape: Sequence[int], source_shape: Sequence[int]) -> np.ndarray:
    """Source pixels whose sample falls fully inside the Reference (all four bilinear taps real).

    A sample at Reference (x, y) is real when 0 <= x <= w-1 and 0 <= y <= h-1 (a tolerance of
    1e-3 px absorbs rounding); outside that the zero border or the edge smear shows through.
    """
    m = as_matrix(m)
    m_inv = np.linalg.inv(m)
    rh, rw = int(ref_shape[0]), int(ref_shape[1])
    height, width = int(source_shape[0]), int(source_shape[1])
    mask = np.empty((height, width), dtype=bool)
    rows = max(1, _CHUNK_PIXELS // max(width, 1))
    tol = 1e-3
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        xr, yr = _source_grid_rows(m_inv, r0, r1, width)
        mask[r0:r1] = (xr >= -tol) & (xr <= rw - 1 + tol) & (yr >= -tol) & (yr <= rh - 1 + tol)
    return mask
