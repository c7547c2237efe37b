"""Stage 2: align the Reference to the Source, score the alignment, check the warped borders.

How a solve works (numpy only; OpenCV is used solely by tests and benchmarks as a reference):

1. The Reference is resampled onto the Source raster with the initial matrix (the conform,
   i.e. the resolution change), so every solve works on one raster in Source pixels.
2. Both images become *structure* images: luma, locally normalised (zero mean, unit variance in a
   ~4 px Gaussian window, clipped to +-3). A faded Source and a graded Reference differ by
   roughly monotonic per-region tone changes; local normalisation removes them, so the solve
   sees edges and texture, not colour.
3. A Gaussian pyramid of both. At the coarse level a phase correlation (numpy FFT) finds the
   global translation, so offsets of tens of pixels converge.
4. Enhanced correlation coefficient maximisation (ECC, Evangelidis & Psarakis 2008,
   forward-additive Gauss-Newton, the scheme OpenCV's findTransformECC uses) refines the
   residual warp W from coarse to fine inside a central region of interest (`roi`, a fraction
   of the Source). ECC is invariant to gain/offset between the images on top of step 2. W is
   parameterised in ROI-normalised coordinates so the normal equations stay well conditioned.
5. The result M = W^-1 @ M_init maps Reference pixels to Source pixels. The confidence is the
   final correlation coefficient of the structure images in the ROI (at the pyramid level where
   the ROI is at most 640 px, so film grain at 2K/4K does not drag it down); low correlation,
   divergence, or an extreme/degenerate warp gives status 'failed' with a reason and the
   initial matrix (never a garbage matrix).

Motion models: translation (2 dof), similarity (4: scale, rotation, translation), affine (6),
perspective (8, a homography).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import warp
from .primitives import box_filter, luma

MotionModel = Literal["translation", "similarity", "affine", "perspective"]
MODELS: tuple[str, ...] = ("translation", "similarity", "affine", "perspective")

# Correlation (of structure images in the ROI) below which a solve is not trusted. Aligned
# faded/graded pairs with grain score ~0.5-0.9; unrelated pictures ~0.0-0.1.
FAILED_CORRELATION = 0.2
LOW_CORRELATION = 0.4
# alignment_score is a residual displacement in Source pixels (median over image tiles).
# Above this a pair is reported as misaligned: beyond half a pixel, training on it blurs edges.
MISALIGNED_THRESHOLD = 0.5

_MAX_POINTS = 200_000  # ECC sample points per pyramid level (strided grid above this)
_MIN_LEVEL_SIDE = 24  # the coarsest ECC level keeps at least this many ROI pixels per side
_PHASE_SIDE = 192  # phase correlation runs on the level whose longer side is about this
_CONFIDENCE_SIDE = 640  # the confidence is measured where the ROI's longer side is at most this


@dataclass
class Solve:
    """One alignment result. `matrix` maps Reference pixels to Source pixels (3x3)."""

    matrix: np.ndarray
    confidence: float
    status: Literal["ok", "low_confidence", "failed"]
    iterations: int = 0
    message: str = ""

    @property
    def usable(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict:
        return {"matrix": warp.matrix_to_list(self.matrix), "confidence": float(self.confidence),
                "status": self.status, "iterations": int(self.iterations), "message": self.message}


# ----------------------------------------------------------------------------- image preparation

def structure_image(lum: np.ndarray, radius: int = 4) -> np.ndarray:
    """Locally normalised luma: (L - local mean) / local std, clipped to +-3.

    The std has a floor of 20 % of the image's global std so flat, grainy areas are not blown up
    to full contrast noise. Removes slowly varying gain/offset (fades, grades, lifted blacks).
    """
    centred = lum - np.float32(lum.mean())
    # three box passes: a near-Gaussian (sigma sqrt(r (r + 1))) that stays fast in Blender's numpy
    mean = box_filter(centred, radius, passes=3)
    var = np.maximum(box_filter(centred * centred, radius, passes=3) - mean * mean, 0.0)
    floor = np.float32((0.2 * float(lum.std()) + 1e-6) ** 2)
    out = (centred - mean) / np.sqrt(var + floor)
    return np.clip(out, -3.0, 3.0, out=out)


def _downsample(img: np.ndarray) -> np.ndarray:
    """Blur with [1 4 6 4 1]/16 and keep even pixels: level l+1 pixel i sits at level-l pixel 2i."""
    k = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16.0
    out = img
    for axis in (0, 1):
        p = np.pad(out, [(2, 2) if a == axis else (0, 0) for a in range(out.ndim)], mode="reflect")
        n = out.shape[axis]
        out = sum(k[i] * np.take(p, np.arange(i, i + n), axis=axis) for i in range(5))
    return np.ascontiguousarray(out[::2, ::2]).astype(np.float32)


def _level_matrix(level: int) -> np.ndarray:
    """Full-resolution pixel coordinates -> level pixel coordinates."""
    return warp.scaling(0.5 ** level)


# ----------------------------------------------------------------------------- motion models

def _update_matrix(w: np.ndarray, dp: np.ndarray, model: str) -> np.ndarray:
    """Forward-additive update of the normalised warp matrix entries."""
    w = w.copy()
    if model == "translation":
        w[0, 2] += dp[0]
        w[1, 2] += dp[1]
    elif model == "similarity":
        w[0, 0] += dp[0]
        w[1, 1] += dp[0]
        w[0, 1] -= dp[1]
        w[1, 0] += dp[1]
        w[0, 2] += dp[2]
        w[1, 2] += dp[3]
    elif model == "affine":
        w[0, :] += dp[0:3]
        w[1, :] += dp[3:6]
    else:
        w[0, :] += dp[0:3]
        w[1, :] += dp[3:6]
        w[2, 0:2] += dp[6:8]
    return w


def _jacobian(gx: np.ndarray, gy: np.ndarray, xn: np.ndarray, yn: np.ndarray, w: np.ndarray,
              model: str) -> np.ndarray:
    """d I(W x) / d params, gradients already in normalised-coordinate units. (N, params)."""
    if model == "translation":
        return np.stack([gx, gy], axis=1)
    if model == "similarity":
        return np.stack([gx * xn + gy * yn, gy * xn - gx * yn, gx, gy], axis=1)
    if model == "affine":
        return np.stack([gx * xn, gx * yn, gx, gy * xn, gy * yn, gy], axis=1)
    d = w[2, 0] * xn + w[2, 1] * yn + 1.0
    xw = (w[0, 0] * xn + w[0, 1] * yn + w[0, 2]) / d
    yw = (w[1, 0] * xn + w[1, 1] * yn + w[1, 2]) / d
    gxd, gyd = gx / d, gy / d
    g = -(gxd * xw + gyd * yw)
    return np.stack([gxd * xn, gxd * yn, gxd, gyd * xn, gyd * yn, gyd, g * xn, g * yn], axis=1)


def fit_model(src_pts: np.ndarray, dst_pts: np.ndarray, model: str) -> np.ndarray:
    """Least-squares matrix of the given motion model taking src_pts (N, 2) onto dst_pts."""
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if model == "perspective":
        return warp.corners_to_homography(src, dst)
    if model == "translation":
        t = (dst - src).mean(axis=0)
        return warp.translation(t[0], t[1])
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    if model == "similarity":  # [a -b tx; b a ty]
        a = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
        p = np.linalg.lstsq(a, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
        return np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]], [0, 0, 1.0]])
    a = np.stack([x, y, one], 1)
    px = np.linalg.lstsq(a, dst[:, 0], rcond=None)[0]
    py = np.linalg.lstsq(a, dst[:, 1], rcond=None)[0]
    return np.array([px, py, [0, 0, 1.0]])


# ----------------------------------------------------------------------------- phase correlation

def _hann(h: int, w: int) -> np.ndarray:
    return (np.hanning(h)[:, None] * np.hanning(w)[None, :]).astype(np.float32)


def phase_correlation(a: np.ndarray, b: np.ndarray, either_sign: bool = False) -> tuple[float, float, float]:
    """Shift (dx, dy) such that a(x) ~ b(x - d), with parabolic sub-pixel peak, and peak height.

    `either_sign` also accepts an inverted match (a ~ -b), e.g. a negative against a positive.
    """
    h, w = a.shape
    win = _hann(h, w)
    fa = np.fft.rfft2((a - a.mean()) * win)
    fb = np.fft.rfft2((b - b.mean()) * win)
    cross = fa * np.conj(fb)
    cross /= np.abs(cross) + 1e-9
    r = np.fft.irfft2(cross, s=(h, w))
    if either_sign:
        r = np.abs(r)
    iy, ix = np.unravel_index(int(np.argmax(r)), r.shape)
    peak = float(r[iy, ix])

    def vertex(m1: float, c: float, p1: float) -> float:
        den = m1 - 2 * c + p1
        return 0.0 if den >= 0 else 0.5 * (m1 - p1) / den

    dx = ix + vertex(r[iy, ix - 1], r[iy, ix], r[iy, (ix + 1) % w])
    dy = iy + vertex(r[iy - 1, ix], r[iy, ix], r[(iy + 1) % h, ix])
    dx = dx - w if dx > w / 2 else dx
    dy = dy - h if dy > h / 2 else dy
    return float(dx), float(dy), peak


# ----------------------------------------------------------------------------- ECC core

class _SolveFailed(Exception):
    pass


@dataclass
class _Level:
    template: np.ndarray  # structure values of the Source at the sample points
    px: np.ndarray  # sample points, level pixel coordinates
    py: np.ndarray
    xn: np.ndarray  # the same points in ROI-normalised coordinates
    yn: np.ndarray
    sampler: warp.BilinearSampler  # structure image of the pre-warped Reference + its gradients
    valid: warp.BilinearSampler  # 1 where the pre-warped Reference holds real data
    to_norm: np.ndarray  # level pixel -> normalised coordinates
    scale: float  # level pixels per normalised unit
    origin: tuple[int, int]  # level pixel (x, y) of the samplers' first pixel (they hold a window)


def _correlation(level: _Level, w_norm: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Sample the Reference under W; returns (rho, valid mask, sampled value/gx/gy (N, 3))."""
    a_pix = np.linalg.inv(level.to_norm) @ w_norm @ level.to_norm
    xw, yw = warp.apply_matrix(a_pix, level.px, level.py)
    xw -= level.origin[0]
    yw -= level.origin[1]
    sampled = level.sampler(xw, yw).astype(np.float64)
    mask = level.valid(xw, yw) > 0.999
    if mask.sum() < 16:
        return -1.0, mask, sampled
    t = level.template[mask] - level.template[mask].mean()
    i = sampled[mask, 0] - sampled[mask, 0].mean()
    den = math.sqrt(float(t @ t) * float(i @ i))
    return (float(t @ i) / den if den > 0 else -1.0), mask, sampled


def _ecc_level(level: _Level, w_norm: np.ndarray, model: str, max_iter: int,
               eps_px: float) -> tuple[np.ndarray, int]:
    """Gauss-Newton ECC iterations at one pyramid level; returns the refined W and iterations."""
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    it = 0
    while it < max_iter:
        it += 1
        _, mask, sampled = _correlation(level, w_norm)
        if mask.sum() < max(16, 0.1 * mask.size):
            raise _SolveFailed("the warped Reference no longer covers the region of interest")
        tz = level.template[mask] - level.template[mask].mean()
        iw = sampled[mask, 0]
        iz = iw - iw.mean()
        gx = sampled[mask, 1] * level.scale
        gy = sampled[mask, 2] * level.scale
        jac = _jacobian(gx, gy, level.xn[mask], level.yn[mask], w_norm, model)
        hess = jac.T @ jac
        try:
            hess_inv = np.linalg.inv(hess)
        except np.linalg.LinAlgError as exc:
            raise _SolveFailed("no structure to align in the region of interest") from exc
        ip = jac.T @ iz
        tp = jac.T @ tz
        correlation = float(tz @ iz)
        ip_h = hess_inv @ ip
        lambda_n = float(iz @ iz) - float(ip @ ip_h)
        lambda_d = correlation - float(tp @ ip_h)
        if lambda_d <= 0.0:
            raise _SolveFailed("the images do not correlate (ECC would minimise the correlation)")
        err = (lambda_n / lambda_d) * tz - iz
        dp = hess_inv @ (jac.T @ err)
        new = _update_matrix(w_norm, dp, model)
        if not np.all(np.isfinite(new)):
            raise _SolveFailed("the solve diverged")
        before = np.stack(warp.apply_matrix(w_norm, corners[:, 0], corners[:, 1]), 1)
        after = np.stack(warp.apply_matrix(new, corners[:, 0], corners[:, 1]), 1)
        w_norm = new
        if np.abs(after - before).max() * level.scale < eps_px:
            break
    return w_norm, it


def _gradients(img: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(img)
    return np.stack([img, gx, gy], axis=-1).astype(np.float32)


def _roi_box(shape: Sequence[int], roi: float) -> tuple[float, float, float, float]:
    """Central ROI (x0, y0, x1, y1) in full-resolution Source pixels."""
    h, w = shape[:2]
    mw, mh = (1 - roi) * w / 2.0, (1 - roi) * h / 2.0
    return mw, mh, w - 1 - mw, h - 1 - mh


def _normaliser(box: tuple[float, float, float, float]) -> np.ndarray:
    """Pixel -> ROI-normalised coordinates (centre 0, half-extent 1 along the longer side)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = max(x1 - x0, y1 - y0) / 2
    return np.array([[1 / s, 0, -cx / s], [0, 1 / s, -cy / s], [0, 0, 1.0]])


def _check_warp(w_pix: np.ndarray, box: tuple[float, float, float, float]) -> str:
    """Why a residual warp of the ROI is implausible ('' if it is fine)."""
    if not np.all(np.isfinite(w_pix)) or abs(np.linalg.det(w_pix)) < 1e-9:
        return "the solved matrix is degenerate"
    x0, y0, x1, y1 = box
    cx = np.array([x0, x1, x1, x0])
    cy = np.array([y0, y0, y1, y1])
    d = w_pix[2, 0] * cx + w_pix[2, 1] * cy + w_pix[2, 2]
    if np.any(d <= 0):
        return "the solved perspective folds the picture"
    qx, qy = warp.apply_matrix(w_pix, cx, cy)
    # Convex and consistently oriented quadrilateral, area within a factor of 2.
    ex, ey = np.roll(qx, -1) - qx, np.roll(qy, -1) - qy
    cross = ex * np.roll(ey, -1) - ey * np.roll(ex, -1)
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return "the solved warp twists the picture"
    area = 0.5 * abs(float(np.sum(qx * np.roll(qy, -1) - np.roll(qx, -1) * qy)))
    roi_area = (x1 - x0) * (y1 - y0)
    if not 0.5 < area / roi_area < 2.0:
        return f"the solved warp scales the picture by {math.sqrt(area / roi_area):.2f}x on top of the conform"
    move = float(np.hypot(qx - cx, qy - cy).max())
    if move > 0.35 * max(x1 - x0, y1 - y0):
        return f"the solved warp moves the picture by {move:.0f} px"
    return ""


def _fit_conform(src_shape: Sequence[int], ref_shape: Sequence[int]) -> np.ndarray:
    """The default init: the Reference fitted inside the Source (uniform scale, centred)."""
    return warp.conform_matrix("fit", (ref_shape[1], ref_shape[0]), (src_shape[1], src_shape[0]))


def _failed(m_init: np.ndarray, reason: str, iterations: int = 0, confidence: float = 0.0) -> Solve:
    """A failed solve: it keeps the init matrix and says why."""
    return Solve(m_init.copy(), max(confidence, 0.0), "failed", iterations, f"alignment failed: {reason}")


@dataclass
class _Pyramid:
    """Both images on the Source raster, fine (0) to coarse, and the ROI geometry of one solve."""

    source: list[np.ndarray]  # Source luma
    reference: list[np.ndarray]  # Reference luma, pre-warped by the init matrix
    valid: list[np.ndarray]  # 1 where the pre-warped Reference holds real data
    box: tuple[float, float, float, float]  # ROI, full-resolution Source pixels
    to_norm: np.ndarray  # full-resolution pixel -> ROI-normalised coordinates
    ecc_levels: int  # ECC runs on levels ecc_levels - 1 .. 0
    phase_level: int  # the level of the phase correlation
    confidence_level: int  # the level where the confidence is read


def _level_counts(box: tuple[float, float, float, float], src_shape: Sequence[int],
                  reference_scale: float = 1.0) -> tuple[int, int, int]:
    """(ECC levels, phase-correlation level, confidence level) for a ROI on a Source raster;
    `reference_scale`: Source px per Reference px (the starting matrix's scale)."""
    roi_min = min(box[2] - box[0], box[3] - box[1])
    ecc_levels = 1
    while roi_min / 2 ** ecc_levels >= _MIN_LEVEL_SIDE and ecc_levels < 7:
        ecc_levels += 1
    phase_level = max(0, int(round(math.log2(max(src_shape) / _PHASE_SIDE))))
    # The confidence is read at the finest level whose ROI is at most _CONFIDENCE_SIDE px: at full
    # 2K/4K resolution grain decorrelates the images and would make every good solve look weak.
    # Nor finer than the Reference's own sampling: below it an SD Reference has no detail, and the
    # Source there is grain (a grainy, low-structure shot against a 720x576 Reference read 0.15-0.18
    # at full resolution, 0.28-0.29 one level down, where the same solve is right to ~1 px).
    roi_long = max(box[2] - box[0], box[3] - box[1])
    grain_level = math.ceil(math.log2(max(roi_long / _CONFIDENCE_SIDE, 1.0)))
    sampling_level = int(math.floor(math.log2(max(reference_scale, 1.0))))
    confidence_level = min(ecc_levels - 1, max(0, grain_level, sampling_level))
    return ecc_levels, phase_level, confidence_level


def _build_pyramid(source_img: np.ndarray, reference_img: np.ndarray, m_init: np.ndarray,
                   roi: float) -> _Pyramid:
    """Resample the Reference onto the Source raster and build the pyramids the solve needs."""
    src_shape = source_img.shape[:2]
    ref_on_source = warp.warp_to_source(luma(reference_img), m_init, src_shape)
    ref_valid = warp.valid_mask(m_init, reference_img.shape[:2], src_shape).astype(np.float32)
    src_lum = luma(source_img)
    box = _roi_box(src_shape, roi)
    ecc_levels, phase_level, confidence_level = _level_counts(box, src_shape, warp.scale_of(m_init))
    src_pyr, ref_pyr, valid_pyr = [src_lum], [ref_on_source], [ref_valid]
    for _ in range(1, max(ecc_levels, phase_level + 1)):
        src_pyr.append(_downsample(src_pyr[-1]))
        ref_pyr.append(_downsample(ref_pyr[-1]))
        # A coarse pixel is valid only where its whole footprint was; the threshold trims ~2 px.
        valid_pyr.append((_downsample(valid_pyr[-1]) > 0.999).astype(np.float32))
    return _Pyramid(src_pyr, ref_pyr, valid_pyr, box, _normaliser(box), ecc_levels, phase_level, confidence_level)


def _make_level(pyr: _Pyramid, lv: int) -> _Level:
    """Structure images, sample points and samplers of one ECC level."""
    lm = _level_matrix(lv)
    x0, y0, x1, y1 = (v * 0.5 ** lv for v in pyr.box)
    # Structure images only around the ROI: the warp moves the ROI a little once the coarse
    # levels have done the travelling, and samples beyond the window count as invalid.
    margin = max(32.0, 0.15 * max(x1 - x0, y1 - y0))
    hl, wl = pyr.source[lv].shape
    wx0, wy0 = max(0, int(x0 - margin)), max(0, int(y0 - margin))
    wx1, wy1 = min(wl, int(x1 + margin) + 1), min(hl, int(y1 + margin) + 1)
    window = (slice(wy0, wy1), slice(wx0, wx1))
    s_feat = structure_image(pyr.source[lv][window])
    r_valid = pyr.valid[lv][window]
    r_feat = structure_image(pyr.reference[lv][window]) * r_valid
    xs = np.arange(math.ceil(x0), math.floor(x1) + 1)
    ys = np.arange(math.ceil(y0), math.floor(y1) + 1)
    stride = max(1, int(math.ceil(math.sqrt(len(xs) * len(ys) / _MAX_POINTS))))
    gx, gy = np.meshgrid(xs[::stride], ys[::stride])
    px, py = gx.ravel().astype(np.float64), gy.ravel().astype(np.float64)
    to_norm = pyr.to_norm @ np.linalg.inv(lm)
    xn, yn = warp.apply_matrix(to_norm, px, py)
    return _Level(template=s_feat[gy.ravel() - wy0, gx.ravel() - wx0].astype(np.float64), px=px, py=py,
                  xn=xn, yn=yn, sampler=warp.BilinearSampler(_gradients(r_feat)),
                  valid=warp.BilinearSampler(r_valid), to_norm=to_norm,
                  scale=1.0 / to_norm[0, 0], origin=(wx0, wy0))


def _coarse_search(pyr: _Pyramid, coarse: _Level) -> np.ndarray:
    """The starting W: the phase-correlation shift where it correlates better than none."""
    lv = pyr.phase_level
    s_feat = structure_image(pyr.source[lv])
    r_feat = structure_image(pyr.reference[lv]) * pyr.valid[lv]
    dx, dy, _ = phase_correlation(s_feat, r_feat)
    # a(x) = b(x - d) with a = Source, b = Reference: Source x shows Reference x - d.
    shift_pix = warp.translation(-dx * 2 ** lv, -dy * 2 ** lv)
    candidate = pyr.to_norm @ shift_pix @ np.linalg.inv(pyr.to_norm)
    identity = np.eye(3)
    return candidate if _correlation(coarse, candidate)[0] > _correlation(coarse, identity)[0] else identity


def _refine(pyr: _Pyramid, coarse: _Level, w_norm: np.ndarray, model: str,
            max_iterations: int) -> tuple[np.ndarray, float, int, str]:
    """ECC from the coarsest level to the finest: (W, confidence, iterations, why it failed or '')."""
    iterations = 0
    levels: dict[int, _Level] = {}
    try:
        for lv in range(pyr.ecc_levels - 1, -1, -1):
            levels[lv] = level = coarse if lv == pyr.ecc_levels - 1 else _make_level(pyr, lv)
            # Coarse levels do the travelling; the finest level only polishes.
            w_norm, it = _ecc_level(level, w_norm, model, max_iterations, eps_px=0.01 if lv else 0.005)
            iterations += it
        rho = _correlation(levels[pyr.confidence_level], w_norm)[0]
    except _SolveFailed as exc:
        return w_norm, 0.0, iterations, str(exc)
    return w_norm, rho, iterations, ""


def _verdict(pyr: _Pyramid, w_norm: np.ndarray, m_init: np.ndarray, rho: float, iterations: int) -> Solve:
    """The Reference->Source matrix of a converged W, judged by its plausibility and correlation."""
    w_pix = np.linalg.inv(pyr.to_norm) @ w_norm @ pyr.to_norm
    problem = _check_warp(w_pix, pyr.box)
    if problem:
        return _failed(m_init, problem, iterations, rho)
    m = np.linalg.inv(w_pix) @ m_init
    m = m / m[2, 2]
    if rho < FAILED_CORRELATION:
        return _failed(m_init, f"correlation {rho:.2f} in the region of interest is below {FAILED_CORRELATION} "
                       "(different pictures, or too little structure)", iterations, rho)
    if rho < LOW_CORRELATION:
        return Solve(m, rho, "low_confidence", iterations,
                     f"correlation {rho:.2f} is low: check this frame's alignment by eye")
    return Solve(m, rho, "ok", iterations, f"correlation {rho:.2f}")


def solve_alignment(source_img: np.ndarray, reference_img: np.ndarray, model: MotionModel = "similarity",
                    roi: float = 0.6, init: np.ndarray | Sequence[float] | None = None,
                    max_iterations: int = 60, coarse_search: bool = True) -> Solve:
    """Align the Reference to the Source. Returns a Solve; a failed solve keeps the init matrix.

    `init` is the starting Reference->Source matrix (the conform); None means `fit` (uniform
    scale, centred), which is the identity when both rasters have the same size.
    `roi` is the side fraction of the central Source region the solve looks at (0 < roi <= 1).
    `coarse_search` runs a phase correlation first (offsets of tens of pixels).
    """
    if model not in MODELS:
        raise ValueError(f"unknown motion model {model!r}; use one of {', '.join(MODELS)}")
    if not 0.05 <= roi <= 1.0:
        raise ValueError(f"roi must be within 0.05..1, got {roi}")
    m_init = _fit_conform(source_img.shape, reference_img.shape) if init is None else warp.as_matrix(init)
    pyr = _build_pyramid(source_img, reference_img, m_init, roi)
    coarse = _make_level(pyr, pyr.ecc_levels - 1)
    w_norm = _coarse_search(pyr, coarse) if coarse_search else np.eye(3)
    w_norm, rho, iterations, failure = _refine(pyr, coarse, w_norm, model, max_iterations)
    if failure:
        return _failed(m_init, failure, iterations)
    return _verdict(pyr, w_norm, m_init, rho, iterations)


# ----------------------------------------------------------------------------- sequences

FrameSource = Mapping[int, np.ndarray] | Callable[[int], np.ndarray]


def _getter(frames: FrameSource) -> Callable[[int], np.ndarray]:
    return frames.__getitem__ if isinstance(frames, Mapping) else frames


def combine_solves(solves: Sequence[Solve], m_init: np.ndarray, source_shape: Sequence[int],
                   model: str, roi: float = 0.6) -> np.ndarray:
    """One matrix for a shot from several frame solves: per-point median of where each solve
    puts a grid of ROI points, refitted with the motion model (robust to one bad frame)."""
    x0, y0, x1, y1 = _roi_box(source_shape, roi)
    gx, gy = np.meshgrid(np.linspace(x0, x1, 3), np.linspace(y0, y1, 3))
    px, py = gx.ravel(), gy.ravel()
    a_init = np.linalg.inv(warp.as_matrix(m_init))
    moved = []
    for s in solves:
        # Residual source-space warp of this solve: W^-1 = M @ M_init^-1.
        w_inv = warp.as_matrix(s.matrix) @ a_init
        moved.append(np.stack(warp.apply_matrix(w_inv, px, py), 1))
    median = np.median(np.stack(moved), axis=0)
    w_inv = fit_model(np.stack([px, py], 1), median, model)
    m = w_inv @ warp.as_matrix(m_init)
    return m / m[2, 2]


def spread_frames(frames: Sequence[int], count: int) -> list[int]:
    if len(frames) <= count:
        return list(frames)
    idx = np.unique(np.round(np.linspace(0, len(frames) - 1, count)).astype(int))
    return [frames[i] for i in idx]


@dataclass(frozen=True)
class SequenceOptions:
    """How solve_sequence solves a shot (the recipe's alignment settings)."""

    model: MotionModel = "similarity"  # motion model of the shot's matrix
    mode: Literal["global", "per_frame"] = "global"  # one matrix for the shot, or per-frame weave on top
    smoothing: int = 5  # per_frame: window (frames) of the weave outlier check; <= 1 disables it
    roi: float = 0.6  # side fraction of the central Source region each solve looks at
    max_global_frames: int = 9  # frames (spread over the run) the shot's matrix is solved on


@dataclass
class _SequenceRun:
    """What the phases of one solve_sequence call share: frame access, the conform, the progress count."""

    get_src: Callable[[int], np.ndarray]
    get_ref: Callable[[int], np.ndarray]
    pairs: dict[int, int]
    roi: float
    total: int  # frame solves reported through `progress`
    progress: Callable[[int, int, int, Solve], None] | None
    m_init: np.ndarray | None  # None until the first frame gives the `fit` conform
    done: int = 0
    source_shape: Sequence[int] | None = None

    def images(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """(Source, Reference) of Source frame f."""
        return self.get_src(f), self.get_ref(self.pairs.get(f, f))

    def report(self, f: int, solve: Solve) -> None:
        """Pass one frame solve to `progress`."""
        if self.progress:
            self.progress(self.done, self.total, f, solve)

    def solve_sample(self, sample: Sequence[int], model: MotionModel) -> dict[int, Solve]:
        """Solve the sample frames each on their own, from the conform."""
        solved = {}
        for f in sample:
            src, ref = self.images(f)
            self.source_shape = src.shape[:2]
            if self.m_init is None:
                self.m_init = _fit_conform(src.shape, ref.shape)
            solved[f] = solve_alignment(src, ref, model, self.roi, self.m_init)
            self.done = min(self.done + 1, self.total)
            self.report(f, solved[f])
        return solved


def _trusted(solves: dict[int, Solve]) -> list[Solve]:
    """The confident solves, or failing those every usable one."""
    return [s for s in solves.values() if s.status == "ok"] or [s for s in solves.values() if s.usable]


def _shot_matrix(run: _SequenceRun, sample: Sequence[int],
                 model: MotionModel) -> tuple[dict[int, Solve], list[Solve], np.ndarray, str]:
    """The shot's matrix from the sample's solves: (solves, those combined, matrix, summary).

    An affine (or perspective) shot matrix is kept only where it earns its extra parameters: where
    it correlates better than a similarity on the sample and stretches the picture no further than
    a telecine does (`MAX_SHOT_STRETCH`). No trusted solve gives an empty list and the conform.
    """
    own = run.solve_sample(sample, model)
    good = _trusted(own)
    if not good:
        return own, good, run.m_init, ""
    global_m = combine_solves(good, run.m_init, run.source_shape, model, run.roi)
    summary = f"global solve from {len(good)} of {len(own)} frames"
    if model not in ("affine", "perspective"):
        return own, good, global_m, summary
    similar = run.solve_sample(sample, "similarity")
    fallback = _trusted(similar)
    if not fallback:
        return own, good, global_m, summary
    stretch = _stretch_beyond_conform(global_m, run.m_init)
    gain = _mean_confidence(good) - _mean_confidence(fallback)
    if stretch > MAX_SHOT_STRETCH:
        why = f"the {model} solve stretched the picture {stretch:.1%} beyond the conform: too little structure to trust"
    elif gain <= MIN_SHOT_MODEL_GAIN:
        why = f"the {model} solve correlates no better ({gain:+.4f}): its extra parameters would fit noise"
    else:
        return own, good, global_m, summary
    global_m = combine_solves(fallback, run.m_init, run.source_shape, "similarity", run.roi)
    return similar, fallback, global_m, f"global similarity from {len(fallback)} of {len(similar)} frames ({why})"


def _mean_confidence(solves: Sequence[Solve]) -> float:
    return float(np.mean([s.confidence for s in solves]))


def _all_failed(frames: Sequence[int], own: dict[int, Solve], m_init: np.ndarray) -> dict[int, Solve]:
    """Every frame keeps the conform when no sample frame solved."""
    reasons = "; ".join(f"{f}: {s.message}" for f, s in own.items())
    return {f: Solve(m_init.copy(), 0.0, "failed", own[f].iterations if f in own else 0,
                     f"alignment failed on every solved frame ({reasons})") for f in frames}


def _global_solves(frames: Sequence[int], own: dict[int, Solve], good: list[Solve], global_m: np.ndarray,
                   summary: str) -> dict[int, Solve]:
    """Every frame takes the shot's matrix; a sample frame keeps its own confidence and note."""
    status = "ok" if all(s.status == "ok" for s in good) else "low_confidence"
    median_conf = float(np.median([s.confidence for s in good]))
    out = {}
    for f in frames:
        s = own.get(f)
        note = summary if s is None or s.status == "ok" else f"{summary}; this frame alone: {s.message}"
        out[f] = Solve(global_m.copy(), s.confidence if s else median_conf, status,
                       s.iterations if s else 0, note)
    return out


def _per_frame_solves(run: _SequenceRun, frames: Sequence[int], global_m: np.ndarray, model: MotionModel,
                      smoothing: int) -> dict[int, Solve]:
    """Each frame's weave on top of the shot's matrix, outliers solved again (_filter_weave)."""
    frame_model: Literal["translation", "similarity"] = "translation" if model == "translation" else "similarity"
    residual: dict[int, Solve] = {}
    for f in frames:
        residual[f] = solve_frame_on_shot(*run.images(f), global_m, run.roi, frame_model)
        run.done += 1
        run.report(f, residual[f])

    def resolve(f: int, start: np.ndarray) -> Solve:
        return solve_frame_on_shot(*run.images(f), start, run.roi, frame_model, coarse_search=False)

    return _filter_weave(residual, global_m, smoothing, resolve, _roi_corners(run.source_shape, run.roi))


def solve_sequence(source_frames: FrameSource, reference_frames: FrameSource, frames: Sequence[int],
                   options: SequenceOptions = SequenceOptions(), init: np.ndarray | None = None,
                   pairs: Mapping[int, int] | None = None,
                   progress: Callable[[int, int, int, Solve], None] | None = None) -> dict[int, Solve]:
    """Solve a run of frames. Returns {source frame: Solve}.

    `source_frames` / `reference_frames`: {frame: image} or a loader `frame -> image`.
    `pairs` maps a Source frame to its Reference frame (default: the same number).
    `options` (SequenceOptions) holds the motion model, the mode, the ROI and the windows below.
    mode='global': the shot shares one matrix, solved on up to `options.max_global_frames` frames
    spread over the run and combined by a per-point median (combine_solves).
    mode='per_frame' (gate weave): the global solve, then each frame's own similarity (translation,
    rotation, scale) on top of it (`solve_frame_on_shot`: a frame with too little structure for
    a confident similarity keeps a translation). Weave is followed, not smoothed away:
    `options.smoothing` is the window (frames) of a robust check; a frame whose residual warp is an
    outlier against the window's median (a corner beyond 3 MADs and 0.75 px) or whose solve failed
    is solved again from that median and keeps the better-correlating result (a failed frame takes
    the median). smoothing <= 1 disables it.
    `progress(done, total, frame, solve)` is called after each frame solve.
    """
    frames = sorted(int(f) for f in frames)
    if not frames:
        return {}
    sample = spread_frames(frames, options.max_global_frames)
    total = len(sample) + (len(frames) if options.mode == "per_frame" else 0)
    run = _SequenceRun(_getter(source_frames), _getter(reference_frames), dict(pairs or {}), options.roi, total,
                       progress, None if init is None else warp.as_matrix(init))
    own, good, global_m, summary = _shot_matrix(run, sample, options.model)
    if not good:
        return _all_failed(frames, own, run.m_init)
    if options.mode == "global":
        return _global_solves(frames, own, good, global_m, summary)
    return _per_frame_solves(run, frames, global_m, options.model, options.smoothing)


# The shot's affine matrix may differ from the conform by this much anisotropy and shear (ratio of
# the singular values of its linear part, less one): a telecine's geometry differs per axis by a
# fraction of a percent once the pixel aspect is conformed.
MAX_SHOT_STRETCH = 0.03
# An affine shot matrix must raise the sample's mean correlation over a similarity's by more than this.
# Measured on the field corpus: +0.006 on grey_edge (0.74 % more scale on one axis: 0.58 px at the
# corners), +0.004 to +0.006 on turning and night; -0.003 on low-texture sky_wall, where the affine fit
# grain into a 0.6 % stretch (0.5 px at the corners).
MIN_SHOT_MODEL_GAIN = 0.001


def _stretch_beyond_conform(m: np.ndarray, conform: np.ndarray) -> float:
    """Anisotropy plus shear of `m` relative to the conform (0 for any similarity of it)."""
    relative = warp.as_matrix(m) @ np.linalg.inv(warp.as_matrix(conform))
    singular = np.linalg.svd(relative[:2, :2] / relative[2, 2], compute_uv=False)
    return float(singular[0] / max(singular[1], 1e-12) - 1.0)


# A frame's own similarity is kept only within these bounds of the shot's matrix: gate weave turns
# a frame by tenths of a degree and breathes by tenths of a percent, not more.
_FRAME_MAX_ANGLE_DEG = 2.0
_FRAME_MAX_SCALE = 0.03


def _residual_similarity(m: np.ndarray, shot: np.ndarray) -> tuple[float, float]:
    """(angle in degrees, scale) of a frame's matrix relative to the shot's (Source -> Source)."""
    r = warp.as_matrix(m) @ np.linalg.inv(warp.as_matrix(shot))
    r = r / r[2, 2]
    return math.degrees(math.atan2(r[1, 0] - r[0, 1], r[0, 0] + r[1, 1])), \
        math.sqrt(abs(float(np.linalg.det(r[:2, :2]))))


def solve_frame_on_shot(source_img: np.ndarray, reference_img: np.ndarray, shot: np.ndarray,
                        roi: float = 0.6, model: Literal["translation", "similarity"] = "similarity",
                        coarse_search: bool = True) -> Solve:
    """One frame's warp on top of the shot's matrix `shot` (gate weave that shifts, turns and breathes).

    With model='similarity' the frame's own similarity is solved from the shot's matrix and kept
    only when it is confident: status ok, at least as well correlated as the translation-only
    solve, and within _FRAME_MAX_ANGLE_DEG / _FRAME_MAX_SCALE of the shot. Otherwise (a frame with
    little structure, a flash) the frame keeps a translation on top of the shot's matrix, as
    before, and the message says why.
    """
    moved = solve_alignment(source_img, reference_img, "translation", roi, shot, coarse_search=coarse_search)
    if model == "translation" or not moved.usable:
        return moved
    turned = solve_alignment(source_img, reference_img, "similarity", roi, moved.matrix, coarse_search=False)
    iterations = moved.iterations + turned.iterations
    why = ""
    if turned.status != "ok":
        why = turned.message
    elif turned.confidence < moved.confidence - 1e-3:
        why = f"correlation {turned.confidence:.2f} below the translation's {moved.confidence:.2f}"
    else:
        angle, scale = _residual_similarity(turned.matrix, shot)
        if abs(angle) > _FRAME_MAX_ANGLE_DEG or abs(scale - 1.0) > _FRAME_MAX_SCALE:
            why = f"implausible for one frame ({angle:+.2f} deg, scale {scale:.4f} on the shot)"
    if why:
        return Solve(moved.matrix, moved.confidence, moved.status, iterations,
                     f"{moved.message}; translation only: the frame's own rotation/scale is not confident ({why})")
    return Solve(turned.matrix, turned.confidence, turned.status, iterations, turned.message)


def _roi_corners(source_shape: Sequence[int], roi: float) -> np.ndarray:
    x0, y0, x1, y1 = _roi_box(source_shape, roi)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _corner_moves(m: np.ndarray, global_m: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Where a frame's residual warp (on top of the shot's matrix) moves the ROI corners: (4, 2) px."""
    r = warp.as_matrix(m) @ np.linalg.inv(global_m)
    return np.stack(warp.apply_matrix(r, corners[:, 0], corners[:, 1]), 1) - corners


def _filter_weave(residual: dict[int, Solve], global_m: np.ndarray, window: int,
                  resolve: Callable[[int, np.ndarray], Solve], corners: np.ndarray) -> dict[int, Solve]:
    """Second look at per-frame solves that failed or jump away from their neighbours.

    Each frame's residual warp is described by how it moves the ROI's corners (a pure translation
    moves them all alike; rotation and scale move them apart). A frame whose corners sit far from
    its window's median is solved again starting from that median warp; the start that ends with
    the higher correlation wins (a genuine weave jump converges back to itself, a solve stuck in a
    wrong optimum does not). A frame that fails both ways takes the median.
    """
    frames = sorted(residual)
    moves = np.array([_corner_moves(residual[f].matrix, global_m, corners) for f in frames])
    usable = np.array([residual[f].usable for f in frames])
    out = dict(residual)
    if window <= 1:
        return out
    half = window // 2
    for i, f in enumerate(frames):
        s = residual[f]
        lo, hi = max(0, i - half), min(len(frames), i + half + 1)
        neigh = np.delete(moves[lo:hi], i - lo, axis=0)[np.delete(usable[lo:hi], i - lo)]
        if len(neigh) < 2:
            continue
        med = np.median(neigh, axis=0)
        mad = np.median(np.abs(neigh - med), axis=0) * 1.4826
        if s.usable and not np.any(np.abs(moves[i] - med) > np.maximum(3 * mad, 0.75)):
            continue
        proposal = fit_model(corners, corners + med, "similarity") @ global_m
        again = resolve(f, proposal)
        again_moves = _corner_moves(again.matrix, global_m, corners)
        if s.usable and np.hypot(*(again_moves - moves[i]).T).max() < 0.1:
            continue  # converged back to its own solve: a genuine weave jump
        if again.usable and (not s.usable or again.confidence > s.confidence + 1e-3):
            out[f] = Solve(again.matrix, again.confidence, again.status, s.iterations + again.iterations,
                           f"{again.message}; re-solved from the neighbours' median weave")
        elif not s.usable:
            out[f] = Solve(proposal / proposal[2, 2], s.confidence, "low_confidence", s.iterations,
                           f"weave taken from the neighbours' median: {s.message}")
    return out


# ----------------------------------------------------------------------------- scoring and checks

def alignment_score(source_img: np.ndarray, aligned_reference_img: np.ndarray,
                    mask: np.ndarray | None = None, tile: int | None = None) -> float:
    """Residual structural misalignment in Source pixels (lower is better; NaN: no structure).

    Both images become structure images (locally normalised luma: colour, fade and grade do not
    matter, even an inverted tone scale), are cut into tiles inside `mask` (the valid warp area / crop), and each tile's
    residual shift is measured by phase correlation with sub-pixel refinement. The score is the
    median shift length over the tiles that hold structure. Above MISALIGNED_THRESHOLD (px) the
    pair should be re-aligned.
    """
    s_lum = luma(source_img)
    r_lum = luma(aligned_reference_img)
    h, w = s_lum.shape
    if mask is None:
        mask = np.ones((h, w), dtype=bool)
    s_feat = structure_image(s_lum)
    r_feat = structure_image(r_lum)
    tile = tile or int(np.clip(min(h, w) // 5, 32, 128))
    shifts, energies = [], []
    for y0 in range(0, h - tile + 1, tile):
        for x0 in range(0, w - tile + 1, tile):
            sl = (slice(y0, y0 + tile), slice(x0, x0 + tile))
            if mask[sl].mean() < 0.98:
                continue
            energies.append(float(np.std(s_lum[sl])))
            dx, dy, _ = phase_correlation(s_feat[sl], r_feat[sl], either_sign=True)
            shifts.append(math.hypot(dx, dy))
    if not shifts:
        return float("nan")
    energies_arr = np.array(energies)
    keep = energies_arr >= 0.25 * np.median(energies_arr)
    return float(np.median(np.array(shifts)[keep]))


def edge_check(m: np.ndarray, ref_shape: Sequence[int], source_shape: Sequence[int], crop=None,
               border: str = "zero", ref_live: tuple[int, int, int, int] | None = None) -> list[str]:
    """Warnings when the aligned Reference does not fill the crop (empty or smeared borders).

    `crop` is a job.Crop (lower-left origin; None or disabled = the whole Source frame).
    `ref_live` = (top, bottom, left, right) black borders of the Reference itself (letterbox):
    warped bars count as empty too. `border` says what fills the gap ('zero' → empty, 'edge' →
    smeared edge pixels) so the message names what the artist will see.
    """
    from .crop import crop_to_slices, largest_rectangle_inside

    m = warp.as_matrix(m)
    rh, rw = int(ref_shape[0]), int(ref_shape[1])
    if ref_live is not None:
        top, bottom, left, right = ref_live
        m = m @ warp.translation(left, top)
        rh, rw = rh - top - bottom, rw - left - right
    valid = warp.valid_mask(m, (rh, rw), source_shape)
    rows, cols = crop_to_slices(crop, int(source_shape[0]), int(source_shape[1]))
    inside = valid[rows, cols]
    if inside.all():
        return []
    what = "smeared (edge-extended)" if border == "edge" else "empty"
    # How far each side of the crop must come in for the crop to hold only real Reference data.
    top, bottom, left, right = largest_rectangle_inside(inside)
    hc, wc = inside.shape
    sides = {"top": top, "bottom": hc - bottom, "left": left, "right": wc - right}
    warnings = [f"the aligned Reference leaves {what} pixels up to {px} px in from the {side} of the "
                "crop; shrink the crop there or fix the alignment" for side, px in sides.items() if px > 0]
    if not warnings:  # no rectangle fits at all
        warnings.append(f"the aligned Reference leaves {int((~inside).sum())} {what} pixels inside the crop")
    return warnings
