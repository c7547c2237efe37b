"""Full-frame inference with a trained model: RGB in, recovered RGB out.

The model works in engine YCbCr and changes only its branch's channels; the others are copied
from the Source's YCbCr bit for bit before converting back to RGB. Any frame size works (the
model pads to its multiple). With `tile`, the frame is processed in overlapping tiles blended
with linear feathering, for frames too large for the device's memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FilmRecoveryError
from ..guide import FINE_WINDOW
from .models import RecoveryModel, frame_coords, gaussian_blur, rgb_to_ycbcr, ycbcr_to_rgb

YCBCR_CONVENTION = "bt709-full"
_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
           "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FilmRecoveryError("CUDA was requested but this torch sees no CUDA GPU.", where="training.device",
                                fix="Set the device to 'auto' or 'cpu', or install a CUDA build of torch.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FilmRecoveryError("MPS was requested but is not available.", where="training.device",
                                fix="Set the device to 'auto' or 'cpu'.")
    return torch.device(name)


def amp_dtype_for(device: torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype | None:
    """Autocast dtype: bf16 on CUDA by default, full fp32 elsewhere; None means no autocast."""
    if isinstance(dtype, str):
        dtype = _DTYPES[dtype]
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return None if dtype == torch.float32 else dtype


def check_metadata(metadata: dict[str, Any]) -> None:
    convention = (metadata.get("colour") or {}).get("ycbcr", YCBCR_CONVENTION)
    if convention != YCBCR_CONVENTION:
        raise FilmRecoveryError(f"the model was trained in YCbCr {convention!r}; this engine uses "
                                f"{YCBCR_CONVENTION!r}.", where="model metadata colour.ycbcr",
                                fix="Retrain the model with this version of Film Recovery.")


@torch.inference_mode()
def predict_batch_tensor(model: RecoveryModel, rgb: torch.Tensor, dtype: torch.dtype | str | None = None
                         ) -> torch.Tensor:
    """(N, 3, H, W) RGB on the model's device -> recovered RGB, float32, same shape (GPU pipeline)."""
    source = rgb_to_ycbcr(rgb.float())
    return ycbcr_to_rgb(model(source, amp_dtype=amp_dtype_for(rgb.device, dtype)))


def _feather(length: int, overlap: int, at_start: bool, at_end: bool, device: torch.device) -> torch.Tensor:
    """1-D blend weights: linear ramps over the overlap, except at the frame's own edges."""
    ramp = torch.ones(length, device=device)
    if overlap > 0:
        pos = torch.arange(length, device=device, dtype=torch.float32) + 0.5
        if not at_start:
            ramp = torch.minimum(ramp, pos / overlap)
        if not at_end:
            ramp = torch.minimum(ramp, (length - pos) / overlap)
    return ramp


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


@torch.inference_mode()
def predict_ycbcr(model: RecoveryModel, source: torch.Tensor, amp_dtype: torch.dtype | None = None,
                  tile: int | None = None, overlap: int = 32, coords: torch.Tensor | None = None,
                  guide: torch.Tensor | None = None, corrected: bool = True) -> torch.Tensor:
    """(1, 3, H, W) Source YCbCr -> recovered YCbCr, whole frame or in feathered tiles.

    `coords` place the image in its frame (models.frame_coords); default: it is a whole frame.
    `guide` (N, 4, H, W): the aligned Reference and its coverage for a guided model (`ml.guide`),
    which takes the Reference's own channels where it covers (`RecoveryModel.correct`) over the whole
    frame once the tiles are predicted; `corrected=False`: the prediction before that correction
    (the inference pipeline corrects it with each frame's detail limit)."""
    height, width = source.shape[-2:]
    if coords is None and model.config.position:
        coords = frame_coords(height, width, device=source.device)
    if not tile or (height <= tile and width <= tile):
        prediction = model(source, amp_dtype=amp_dtype, coords=coords, guide=guide, corrected=False)
    else:
        prediction = _predict_tiles(model, source, amp_dtype, tile, overlap, coords, guide)
    return model.correct(prediction, guide) if corrected else prediction


def _predict_tiles(model: RecoveryModel, source: torch.Tensor, amp_dtype: torch.dtype | None, tile: int,
                   overlap: int, coords: torch.Tensor | None, guide: torch.Tensor | None) -> torch.Tensor:
    """`predict_ycbcr`'s uncorrected prediction in feathered tiles."""
    height, width = source.shape[-2:]
    overlap = min(overlap, tile // 2)
    channels = list(model.config.predicted_channels)
    total = torch.zeros((source.shape[0], len(channels), height, width), device=source.device)
    weight = torch.zeros((1, 1, height, width), device=source.device)
    for y in _tile_starts(height, tile, overlap):
        th = min(tile, height - y)
        wy = _feather(th, overlap, y == 0, y + th >= height, source.device)
        for x in _tile_starts(width, tile, overlap):
            tw = min(tile, width - x)
            wx = _feather(tw, overlap, x == 0, x + tw >= width, source.device)
            w = (wy[:, None] * wx[None, :])[None, None]
            tile_coords = None if coords is None else coords[..., y:y + th, x:x + tw]
            tile_guide = None if guide is None else guide[..., y:y + th, x:x + tw]
            piece = model(source[..., y:y + th, x:x + tw], amp_dtype=amp_dtype, coords=tile_coords,
                          guide=tile_guide, corrected=False)[:, channels]
            total[..., y:y + th, x:x + tw] += piece * w
            weight[..., y:y + th, x:x + tw] += w
    out = source.clone()  # untouched channels stay the Source's own values
    out[:, channels] = total / weight
    return out


GRAIN_SIGMA = 1.5  # px: the Source's luma above this Gaussian is taken for its grain
GRAIN_CHOICES = ("clean", "keep_source")


def source_grain(luma: torch.Tensor, sigma: float = GRAIN_SIGMA) -> torch.Tensor:
    """(N, 1, H, W) luma -> its grain: the luma minus a Gaussian blur of `sigma` px (reflected edges).

    Film grain sits at 1-2 px; on a soft Source nothing else lives that high, so the high-pass is
    the grain (on a sharp Source it also holds the finest edges, which the restored luma has too)."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=luma.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(luma.dtype)
    mode = "reflect" if min(luma.shape[-2:]) > radius else "replicate"
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(luma, (radius, radius, 0, 0), mode=mode),
                                         kernel.view(1, 1, 1, -1))
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(blurred, (0, 0, radius, radius), mode=mode),
                                         kernel.view(1, 1, -1, 1))
    return luma - blurred


# Colour grain (`reduce_colour_grain`). The fit's window and flatness floor: 3x3 px and a luma
# variance of 1e-3 (a std of 0.03 in display units, above film grain's). The noise level is the 25th
# percentile of the residual's local power (5x5 px) times 1.2: on pure noise that percentile is about
# 0.6 of the noise variance and the mean residual power about 0.75 of it (simulated), so the product
# is the power a grain-only window has, provided a quarter of the frame is that flat.
COLOUR_GRAIN_RADIUS = 1
COLOUR_GRAIN_FLAT_VARIANCE = 1e-3
COLOUR_GRAIN_POWER_RADIUS = 2
COLOUR_GRAIN_NOISE_QUANTILE = 0.25
COLOUR_GRAIN_NOISE_SCALE = 1.2
# Where a frame's finer colour is grain and its Reference's is coding error (`guide.GuideFrame.
# colour_smoothing`), that share of it becomes the colour the luma explains over 7x7 px: on a grainy shot
# of flat shapes against a blocky SD Reference, CIEDE2000 3.29 (the Reference's blocks taken) and 3.34
# (the grain reduced) -> 2.69, 2.29, 2.12 at 3x3, 5x5, 7x7 (held-out frames against truth).
COLOUR_SMOOTHING_RADIUS = 3
# Where the colour the luma does not explain (over 7x7 px) in the prediction matches the Reference's
# poorly at the finest scale the Reference resolves, the finer part is grain too, and that frame's
# colour follows the luma (`unexplained_colour_match`, `grain_smoothing`). Per frame, on the 21 small field
# and outside chroma shots (frames whose finer colour the guide keeps): 0.76-0.97 where smoothing loses
# 0.1-1.6 CIEDE2000 (colour that varies apart from the luma); 0.21-0.68 on tinted grainy shots against an
# SD Reference, where it gains 0.2-0.9 (an intertitle 2.54 -> 1.63).
UNEXPLAINED_MATCH_LOW = 0.5
UNEXPLAINED_MATCH_HIGH = 0.7
# The corrected prediction carries the Reference's own colour below the detail limit, coding errors
# included, so it matches the Reference partly by construction. The network's prediction before the
# correction, from the Source alone, does not: where even its unexplained colour hardly matches the
# Reference's, the frame's finer colour is grain. Per frame on the same shots: 0.02-0.08 on grainy text
# and tinted shots against SD or blocky References, where smoothing gains 0.14-0.2 CIEDE2000 (a page
# against a blocky Reference 2.04 -> 1.83); 0.37 and above on every shot where it loses.
SOURCE_ONLY_MATCH_LOW = 0.1
SOURCE_ONLY_MATCH_HIGH = 0.3
COLOUR_GRAIN_METHOD = "luma-fit-wiener-4"  # in infer's recipe hash: change it when the reduction's pixels change


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2 radius + 1)^2 box, over the pixels inside the frame at its edges."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def luma_explained_colour(ycbcr: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, 3, H, W) YCbCr -> (N, 2, H, W): the CbCr a local linear fit on the luma gives, per
    (2 radius + 1)^2 window (averaged over the windows each pixel is in): colour that follows the
    picture's edges, without the colour detail the luma does not explain (grain among it)."""
    luma, chroma = ycbcr[:, :1].float(), ycbcr[:, 1:].float()
    mean_y, mean_c = _box_mean(luma, radius), _box_mean(chroma, radius)
    covariance = _box_mean(luma * chroma, radius) - mean_y * mean_c
    variance = (_box_mean(luma * luma, radius) - mean_y * mean_y).clamp_min(0.0)
    slope = covariance / (variance + COLOUR_GRAIN_FLAT_VARIANCE)
    return _box_mean(slope, radius) * luma + _box_mean(mean_c - slope * mean_y, radius)


def reduce_colour_grain(ycbcr: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) recovered YCbCr -> the same with the Source's colour grain reduced in CbCr.

    A chroma recovery carries the Source's fine colour through the grade, and with it the Source's
    colour grain, amplified where the grade undoes a fade; the target (the Reference's colour) has
    none. Per 3x3 window, the colour the luma explains (a linear fit of each chroma channel on the
    luma: picture edges) is kept; what is left is shrunk towards zero by a local Wiener gain,
    1 - noise / its local power, with the noise level measured on the frame itself (its flattest
    quarter). Colour detail the luma does not explain survives where it stands above the grain."""
    chroma = ycbcr[:, 1:].float()
    explained = luma_explained_colour(ycbcr, COLOUR_GRAIN_RADIUS)
    residual = chroma - explained
    power = _box_mean(residual * residual, COLOUR_GRAIN_POWER_RADIUS)
    sample = power[..., ::2, ::2].flatten(2)  # every 4th pixel is plenty for a percentile
    rank = max(1, int(COLOUR_GRAIN_NOISE_QUANTILE * sample.shape[-1]))
    noise = COLOUR_GRAIN_NOISE_SCALE * sample.kthvalue(rank, dim=-1).values  # (N, 2)
    keep = (1.0 - noise[..., None, None] / power.clamp_min(1e-12)).clamp(0.0, 1.0)
    return torch.cat([ycbcr[:, :1], (explained + keep * residual).to(ycbcr.dtype)], dim=1)


def unexplained_colour_match(predictions: tuple[torch.Tensor, ...], guide: torch.Tensor, sigma: torch.Tensor
                             ) -> torch.Tensor:
    """Each of `predictions` ((N, 3, H, W) YCbCr), (N, 4, H, W) guide (aligned Reference YCbCr +
    coverage), (N,) detail sigma -> (P, N): per prediction and frame, the correlation of the colour the
    luma does not explain (`luma_explained_colour` over 7x7 px) in the prediction and in the Reference,
    both low-passed at the detail sigma (the finest the Reference's colour resolves), over the pixels
    it covers whole in the frame's centre window (`guide.FINE_WINDOW`: 2K frame, 2 cores, 0.5 s; the
    whole frame 4.4 s). Picture colour that varies apart from the luma matches there; grain does not.
    1 (no evidence of grain) for a frame without coverage or detail limit."""
    h, w = guide.shape[-2:]
    y, x = max(0, (h - FINE_WINDOW) // 2), max(0, (w - FINE_WINDOW) // 2)

    def window(t: torch.Tensor) -> torch.Tensor:
        return t[..., y:y + FINE_WINDOW, x:x + FINE_WINDOW].float()

    guide = window(guide)
    predictions = tuple(window(p) for p in predictions)
    matches = torch.ones((len(predictions), guide.shape[0]), device=guide.device)
    for i in range(guide.shape[0]):
        s = float(sigma[i])  # `sigma` lives on the host: no device sync
        if s <= 0:
            continue
        inside = (gaussian_blur(guide[i:i + 1, 3:4], s + COLOUR_SMOOTHING_RADIUS, "reflect") > 0.99).float()
        count = inside.sum() * 2  # both chroma channels
        b = _unexplained_colour(guide[i:i + 1, :3], s, inside)
        for k, prediction in enumerate(predictions):
            a = _unexplained_colour(prediction[i:i + 1], s, inside)
            correlation = (a * b).sum() / ((a * a).sum() * (b * b).sum()).sqrt().clamp_min(1e-12)
            matches[k, i] = torch.where(count >= 128, correlation, torch.ones_like(correlation))
    return matches


def _unexplained_colour(ycbcr: torch.Tensor, sigma: float, inside: torch.Tensor) -> torch.Tensor:
    """The colour the luma does not explain over 7x7 px, low-passed at `sigma`, centred and zeroed
    outside `inside` ((1, 1, H, W) 0/1)."""
    colour = gaussian_blur(ycbcr[:, 1:] - luma_explained_colour(ycbcr, COLOUR_SMOOTHING_RADIUS), sigma, "reflect")
    return (colour - (colour * inside).sum() / (inside.sum() * 2).clamp_min(1.0)) * inside


def _ramp_down(value: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return ((high - value) / (high - low)).clamp(0.0, 1.0)


def grain_smoothing(corrected_match: torch.Tensor, source_only_match: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) `unexplained_colour_match` of the corrected prediction and, optionally, of the prediction
    before the correction -> the share of each frame's reduced colour replaced by the colour the luma
    explains: 1 at or below UNEXPLAINED_MATCH_LOW (SOURCE_ONLY_MATCH_LOW), 0 at or above
    UNEXPLAINED_MATCH_HIGH (SOURCE_ONLY_MATCH_HIGH), the more of the two."""
    share = _ramp_down(corrected_match, UNEXPLAINED_MATCH_LOW, UNEXPLAINED_MATCH_HIGH)
    if source_only_match is None:
        return share
    return torch.maximum(share, _ramp_down(source_only_match, SOURCE_ONLY_MATCH_LOW, SOURCE_ONLY_MATCH_HIGH))


def reference_share(guide: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) guide and (N, 2) detail (sigma, fine weight) -> (N, 1, H, W): how much of each
    pixel's finer colour `models.reference_correction` took from the Reference: coverage x fine
    weight, or the coverage whole for a frame without a detail limit (sigma 0)."""
    weight = torch.where(detail[:, 0] > 0, detail[:, 1], torch.ones_like(detail[:, 1]))
    return guide[:, 3:4] * weight.to(guide.device).view(-1, 1, 1, 1)


def apply_grain_choice(recovered: torch.Tensor, source: torch.Tensor, grain: str,
                       predicted_channels: tuple[int, ...], reference_share: torch.Tensor | None = None,
                       smoothing: torch.Tensor | None = None) -> torch.Tensor:
    """The recipe's grain choice (job.output.grain) on a recovered YCbCr batch. Spatial branch:
    `keep_source` adds the Source's grain (`source_grain` of `source`'s luma) over a predicted luma,
    `clean` leaves it as predicted. Chroma branch (its luma is the Source's own, grain included):
    `clean` reduces the colour grain the prediction carries from the Source (`reduce_colour_grain`),
    `keep_source` leaves it. `reference_share` (N, 1, H, W): how much of each pixel's finer colour the
    guide took from the Reference (coverage x fine weight); that share carries no Source grain and is
    left as it is. `smoothing` (N,): each frame's share of the reduced colour replaced by the colour
    the luma explains (`luma_explained_colour`, `guide.GuideFrame.colour_smoothing`), for `clean`."""
    if grain not in GRAIN_CHOICES:
        raise FilmRecoveryError(f"unknown grain choice {grain!r}.", where="job.output.grain",
                                fix="Use clean or keep_source.")
    if 0 not in predicted_channels:
        if grain == "keep_source":
            return recovered
        reduced = reduce_colour_grain(recovered)
        if smoothing is not None and bool((smoothing > 0).any()):
            share = smoothing.to(reduced.device, reduced.dtype).view(-1, 1, 1, 1)
            smoothed = luma_explained_colour(recovered, COLOUR_SMOOTHING_RADIUS).to(reduced.dtype)
            reduced = torch.cat([reduced[:, :1], reduced[:, 1:] + share * (smoothed - reduced[:, 1:])], dim=1)
        if reference_share is None:
            return reduced
        return recovered - (1.0 - reference_share) * (recovered - reduced)  # exact where the share is 1
    if grain == "clean":
        return recovered
    out = recovered.clone()
    out[:, :1] = recovered[:, :1] + source_grain(source[:, :1].float())
    return out


def predict_frame(model: RecoveryModel, metadata: dict[str, Any], rgb: np.ndarray, device: torch.device | str,
                  dtype: torch.dtype | str | None = None, tile: int | None = None, overlap: int = 32,
                  grain: str = "clean") -> np.ndarray:
    """Recover one (H, W, 3) float32 RGB frame; returns float32 RGB of the same size."""
    check_metadata(metadata)
    device = torch.device(device)
    source = rgb_to_ycbcr(torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))
                          .permute(2, 0, 1).unsqueeze(0).to(device))
    out = predict_ycbcr(model, source, amp_dtype_for(device, dtype), tile, overlap)
    out = apply_grain_choice(out, source, grain, model.config.predicted_channels)
    return ycbcr_to_rgb(out)[0].permute(1, 2, 0).float().cpu().numpy()
