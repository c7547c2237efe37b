"""Neutral pre-balance of the Source (the guide's Faded Balancer step): out = in * gain + offset.

The Blender node group implements exactly this per channel, with no clamp:
    R_out = R_in * gain[0] + offset[0]   (likewise G with index 1, B with index 2)

`estimate_balance` is an automatic neutral estimate from robust statistics. For each channel
it takes three anchor points over the sampled frames: the `low` percentile (black point), the
median (grey-world midtone) and the `high` percentile (white point). The targets are the mean
of the three channels' anchors, so the balance removes a cast without changing overall level
or contrast. Each channel's gain and offset are the least-squares line through its three
(anchor, target) points. Percentiles and medians commute with a per-channel gain/offset, so a
cast made by one is undone exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputImageError
from .job import Balance

MAX_SAMPLES = 400_000  # pixels per channel used for the percentiles (a strided subsample)


def _sample_pixels(frames: Sequence[np.ndarray]) -> np.ndarray:
    total = sum(int(np.prod(f.shape[:2])) for f in frames)
    stride = max(1, int(np.ceil(total / MAX_SAMPLES)))
    parts = [np.asarray(f, dtype=np.float32).reshape(-1, 3)[::stride] for f in frames]
    pixels = np.concatenate(parts, axis=0)
    return pixels[np.isfinite(pixels).all(axis=1)]


def channel_anchors(frames: Sequence[np.ndarray], low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """(3 anchors, 3 channels): the low percentile, median and high percentile of each channel."""
    if not frames:
        raise InputImageError("no frames to estimate a balance from.", where="balance",
                              fix="Check the Source plate's frame range.")
    pixels = _sample_pixels(frames)
    if pixels.shape[0] < 16:
        raise InputImageError("too few finite pixels to estimate a balance.", where="balance",
                              fix="Run QC: the sampled frames may be empty or hold NaN/Inf.")
    return np.percentile(pixels, [low, 50.0, high], axis=0).astype(np.float64)


def estimate_balance(frames: Sequence[np.ndarray], low: float = 0.5, high: float = 99.5) -> Balance:
    """Per-channel gain/offset that maps each channel's black, median and white to common points."""
    anchors = channel_anchors(frames, low, high)
    targets = anchors.mean(axis=1)
    gains, offsets = [], []
    for channel in range(3):
        x = anchors[:, channel]
        if x[2] - x[0] < 1e-4:  # a flat channel carries no information about its gain
            gains.append(1.0)
            offsets.append(float(targets.mean() - x.mean()))
            continue
        gain, offset = np.polyfit(x, targets, 1)
        gains.append(float(gain))
        offsets.append(float(offset))
    # Rounded to float32, the precision Blender's properties hold: the add-on and the command line
    # then balance with the very same numbers, and build the very same dataset.
    return Balance(enabled=True, gain=[float(np.float32(g)) for g in gains],
                   offset=[float(np.float32(o)) for o in offsets])


def apply_balance(image: np.ndarray, balance: Balance) -> np.ndarray:
    """out = in * gain + offset per channel (float32, no clamp), exactly as the node group does."""
    image = np.asarray(image, dtype=np.float32)
    height, width, _ = image.shape
    # Per-channel constants tiled along whole rows: broadcasting a length-3 axis runs numpy's
    # inner loop 3 values at a time (measured 3x slower on a 2K frame); same values either way.
    gain = np.tile(np.asarray(balance.gain, dtype=np.float32), width)
    offset = np.tile(np.asarray(balance.offset, dtype=np.float32), width)
    out = image.reshape(height, -1) * gain
    out += offset
    return out.reshape(image.shape)


def cast_estimate(frames: Sequence[np.ndarray]) -> list[float]:
    """Per-channel cast: each channel's median minus the mean of the three medians (display units)."""
    medians = channel_anchors(frames)[1]
    return [float(m - medians.mean()) for m in medians]
