"""Image metrics, pure functions of pictures (the evaluation that applies them is `ml.evaluation`).

Metrics (numpy only; the tests check each against scikit-image / colour-science):

- PSNR on the channels the branch predicts, in engine YCbCr (`ml.colour.rgb_to_ycbcr`):
  chroma -> Cb and Cr together, spatial -> Y. Peak 1.0 (Y spans 0..1, Cb/Cr -0.5..0.5).
- CIEDE2000 (mean and 95th percentile): display-referred Rec.709 -> linear light by the 2.4
  gamma (BT.1886 with black at 0) -> CIE XYZ (Rec.709 primaries, D65) -> CIELAB (D65 white,
  CIE 1931 2 degree) -> Sharma, Wu & Dalal's CIEDE2000 with kL = kC = kH = 1.
- SSIM on luma: Wang et al. 2004 with a Gaussian window (sigma 1.5, 11 taps), population
  covariance, K1 0.01, K2 0.03, data range 1, reflected borders, the 5-pixel border left out of
  the mean; the same as skimage.metrics.structural_similarity(a, b, data_range=1.0,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False).
- Temporal stability: the mean frame-to-frame change of (Cb, Cr) (Euclidean) over static
  pixels, those whose locally averaged Source luma changes by less than a threshold between
  consecutive frames. Lower is steadier; the Source's own value is the floor to compare with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .colour import rgb_to_ycbcr
from .errors import InputImageError
from .primitives import box_filter, gaussian_blur, luma

DELTA_E_BIN = 0.01  # width of the histogram bins that pool CIEDE2000 for the 95th percentile
DELTA_E_MAX = 100.0

# --------------------------------------------------------------------------- PSNR


def psnr(prediction: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all values given (inf for identical images)."""
    mse = float(np.mean((np.asarray(prediction, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(data_range ** 2 / mse))


def branch_channels(rgb: np.ndarray, branch: str) -> np.ndarray:
    """The YCbCr channels a branch predicts: (..., 2) Cb, Cr for chroma; (..., 1) Y for spatial."""
    ycc = rgb_to_ycbcr(rgb)
    return ycc[..., 1:] if branch == "chroma" else ycc[..., :1]


def branch_psnr(prediction: np.ndarray, reference: np.ndarray, branch: str) -> float:
    return psnr(branch_channels(prediction, branch), branch_channels(reference, branch))


# --------------------------------------------------------------------------- CIELAB, CIEDE2000

_REC709_PRIMARIES = np.array([[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]])
_D65 = np.array([0.3127, 0.3290])


def _xy_to_xyz(xy: np.ndarray) -> np.ndarray:
    return np.array([xy[0] / xy[1], 1.0, (1.0 - xy[0] - xy[1]) / xy[1]])


def _rgb_to_xyz_matrix(primaries: np.ndarray, white: np.ndarray) -> np.ndarray:
    """The normalised primary matrix: linear RGB -> XYZ with RGB (1, 1, 1) -> the white (Y = 1)."""
    columns = np.stack([_xy_to_xyz(p) for p in primaries], axis=1)
    scale = np.linalg.solve(columns, _xy_to_xyz(white))
    return columns * scale[None, :]


REC709_TO_XYZ = _rgb_to_xyz_matrix(_REC709_PRIMARIES, _D65)
D65_XYZ = _xy_to_xyz(_D65)


def display_to_linear(rgb: np.ndarray) -> np.ndarray:
    """BT.1886 EOTF with black at 0: L = V^2.4 (negative code values clamp to black)."""
    return np.maximum(np.asarray(rgb, dtype=np.float64), 0.0) ** 2.4


def xyz_to_lab(xyz: np.ndarray, white: np.ndarray = D65_XYZ) -> np.ndarray:
    t = np.asarray(xyz, dtype=np.float64) / white
    epsilon, kappa = 216.0 / 24389.0, 24389.0 / 27.0
    f = np.where(t > epsilon, np.cbrt(t), (kappa * t + 16.0) / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def display_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Display-referred Rec.709 (2.4 gamma) -> CIELAB D65, float64 (..., 3)."""
    return xyz_to_lab(display_to_linear(rgb) @ REC709_TO_XYZ.T)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference per pixel (Sharma, Wu & Dalal 2005), kL = kC = kH = 1."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0
    g = 0.5 * (1.0 - np.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    chroma_product = c1p * c2p
    zero = chroma_product == 0.0

    delta_l = l2 - l1
    delta_c = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(zero, 0.0, dh)
    delta_h = 2.0 * np.sqrt(chroma_product) * np.sin(np.radians(dh) / 2.0)

    l_mean = (l1 + l2) / 2.0
    c_mean_p = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_mean = np.where(np.abs(h1p - h2p) <= 180.0, h_sum / 2.0,
                      np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0))
    h_mean = np.where(zero, h_sum, h_mean)
    t = (1.0 - 0.17 * np.cos(np.radians(h_mean - 30.0)) + 0.24 * np.cos(np.radians(2.0 * h_mean))
         + 0.32 * np.cos(np.radians(3.0 * h_mean + 6.0)) - 0.20 * np.cos(np.radians(4.0 * h_mean - 63.0)))
    delta_theta = 30.0 * np.exp(-(((h_mean - 275.0) / 25.0) ** 2))
    r_c = 2.0 * np.sqrt(c_mean_p ** 7 / (c_mean_p ** 7 + 25.0 ** 7))
    s_l = 1.0 + 0.015 * (l_mean - 50.0) ** 2 / np.sqrt(20.0 + (l_mean - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_mean_p
    s_h = 1.0 + 0.015 * c_mean_p * t
    r_t = -np.sin(np.radians(2.0 * delta_theta)) * r_c
    return np.sqrt((delta_l / s_l) ** 2 + (delta_c / s_c) ** 2 + (delta_h / s_h) ** 2
                   + r_t * (delta_c / s_c) * (delta_h / s_h))


def delta_e_map(prediction: np.ndarray, reference: np.ndarray, rows_per_chunk: int = 256) -> np.ndarray:
    """CIEDE2000 per pixel between two display-referred Rec.709 images (H, W), a band of rows
    at a time so a 4K frame's float64 temporaries stay small."""
    out = np.empty(prediction.shape[:2], dtype=np.float32)
    for top in range(0, prediction.shape[0], rows_per_chunk):
        rows = slice(top, top + rows_per_chunk)
        out[rows] = ciede2000(display_to_lab(prediction[rows]), display_to_lab(reference[rows]))
    return out


# --------------------------------------------------------------------------- SSIM

SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # 5: the 11-tap window of Wang et al.


def ssim(image1: np.ndarray, image2: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity of two 2D images (settings in the module docstring)."""
    x, y = np.asarray(image1, np.float64), np.asarray(image2, np.float64)
    if min(x.shape) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1} pixels a side")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    def window_mean(image: np.ndarray) -> np.ndarray:  # scipy's 'reflect' edges, as skimage's SSIM
        return gaussian_blur(image, SSIM_SIGMA, radius=SSIM_RADIUS, edge="reflect")

    mu_x, mu_y = window_mean(x), window_mean(y)
    var_x = window_mean(x * x) - mu_x * mu_x
    var_y = window_mean(y * y) - mu_y * mu_y
    cov = window_mean(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    r = SSIM_RADIUS
    return float(s[r:-r, r:-r].mean())


def luma_ssim(prediction: np.ndarray, reference: np.ndarray) -> float:
    return ssim(luma(prediction), luma(reference))


# --------------------------------------------------------------------------- one comparison

@dataclass
class ImageScores:
    psnr: float
    delta_e_mean: float
    delta_e_p95: float
    ssim: float
    delta_e_histogram: np.ndarray = field(repr=False)  # for pooling the percentile over images

    def as_dict(self) -> dict[str, float]:
        return {"psnr": self.psnr, "delta_e_mean": self.delta_e_mean, "delta_e_p95": self.delta_e_p95,
                "ssim": self.ssim}


def _histogram(values: np.ndarray) -> np.ndarray:
    bins = int(DELTA_E_MAX / DELTA_E_BIN)
    index = np.minimum((values.ravel() / DELTA_E_BIN).astype(np.int64), bins - 1)
    return np.bincount(index, minlength=bins)


def percentile_from_histogram(histogram: np.ndarray, q: float) -> float:
    cumulative = np.cumsum(histogram)
    position = int(np.searchsorted(cumulative, q / 100.0 * cumulative[-1]))
    return (position + 0.5) * DELTA_E_BIN


def score_image(prediction: np.ndarray, reference: np.ndarray, branch: str) -> ImageScores:
    """PSNR (branch channels), CIEDE2000 mean / 95th percentile and luma SSIM of one image."""
    if prediction.shape != reference.shape:
        raise InputImageError(f"sizes differ: {prediction.shape[:2]} vs {reference.shape[:2]}.",
                              where="evaluation", fix="Compare images of the same crop.")
    delta_e = delta_e_map(prediction, reference)
    return ImageScores(branch_psnr(prediction, reference, branch), float(delta_e.mean()),
                       float(np.percentile(delta_e, 95)), luma_ssim(prediction, reference), _histogram(delta_e))


def branch_error_map(prediction: np.ndarray, reference: np.ndarray, branch: str) -> np.ndarray:
    """Per-pixel error in the branch's channels: |(Cb, Cr)| for chroma, |Y| for spatial."""
    return np.linalg.norm(branch_channels(prediction, branch) - branch_channels(reference, branch), axis=-1)


# --------------------------------------------------------------------------- temporal stability

def static_mask(source_before: np.ndarray, source_after: np.ndarray, threshold: float = 0.01,
                radius: int = 2) -> np.ndarray:
    """Pixels whose Source luma, averaged over a small box (to see past grain), changes by less
    than `threshold` between two consecutive frames."""
    after, before = (box_filter(luma(image).astype(np.float64), radius) for image in (source_after, source_before))
    change = after - before
    return np.abs(change) < threshold


def chroma_change(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> float:
    """Mean |(Cb, Cr) after - (Cb, Cr) before| over the masked pixels (NaN if none)."""
    if not mask.any():
        return float("nan")
    delta = rgb_to_ycbcr(after)[..., 1:] - rgb_to_ycbcr(before)[..., 1:]
    return float(np.linalg.norm(delta, axis=-1)[mask].mean())


def temporal_stability(frames: Iterable[int], readers: dict[str, Callable[[int], np.ndarray]],
                       threshold: float = 0.01, progress: Callable[[int, int], None] | None = None) -> dict:
    """Mean frame-to-frame chroma change in static areas over consecutive frames, for each
    sequence in `readers` (name -> read(frame) -> RGB). `readers["source"]` defines the static
    areas and is scored too. Frames are read once each."""
    frames = sorted(frames)
    if "source" not in readers:
        raise ValueError("temporal_stability needs a 'source' reader")
    sums = dict.fromkeys(readers, 0.0)
    counted = 0
    static_fraction = 0.0
    previous: dict[str, np.ndarray] | None = None
    previous_frame = None
    for index, frame in enumerate(frames):
        current = {name: read(frame) for name, read in readers.items()}
        if previous is not None and frame == previous_frame + 1:
            mask = static_mask(previous["source"], current["source"], threshold)
            if mask.any():
                for name in readers:
                    sums[name] += chroma_change(previous[name], current[name], mask)
                counted += 1
                static_fraction += float(mask.mean())
        previous, previous_frame = current, frame
        if progress:
            progress(index + 1, len(frames))
    result: dict = {"frame_pairs": counted, "threshold": threshold,
                    "static_fraction": static_fraction / counted if counted else 0.0,
                    "first_frame": frames[0] if frames else None, "last_frame": frames[-1] if frames else None}
    result["chroma_change"] = {name: (sums[name] / counted if counted else float("nan")) for name in readers}
    return result
