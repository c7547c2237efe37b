"""Shared crop: black-border detection on grainy/dark frames, the shared rectangle, lower-left
conversions and animated (keyed) crops."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from skimage.transform import resize

from ml import crop, warp
from ml.job import Crop, CropKey

H, W = 192, 256


def _picture(dark: bool = False) -> np.ndarray:
    img = resize(skimage.data.astronaut().astype(np.float32) / 255.0, (H, W), anti_aliasing=True)
    img = img.astype(np.float32)
    if dark:  # a night scene: the picture itself sits near black
        img = img * 0.12
    return img


def _grain(img: np.ndarray, seed: int, amount: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, amount, img.shape).astype(np.float32), 0, 1)


def _bars(img: np.ndarray, top: int, bottom: int, left: int, right: int, level: float = 0.0) -> np.ndarray:
    out = img.copy()
    out[:top] = level
    out[H - bottom:] = level
    out[:, :left] = level
    out[:, W - right:] = level
    return out


@pytest.mark.parametrize("bars", [(24, 24, 0, 0), (0, 0, 32, 32), (21, 13, 7, 18)])
def test_detects_letterbox_and_pillarbox_through_grain(bars):
    frames = [_grain(_bars(_picture(), *bars), seed) for seed in range(3)]
    found = crop.detect_borders(frames)
    assert found == bars


def test_lifted_black_bars_of_a_faded_scan():
    frame = _grain(_bars(_picture() * 0.6 + 0.15, 16, 16, 0, 0, level=0.12), 1)
    assert crop.detect_borders(frame)[:2] == (16, 16)


def test_dark_scene_is_not_a_bar_when_other_frames_show_picture():
    bars = (16, 16, 0, 0)
    dark = _grain(_bars(_picture(dark=True), *bars), 5, 0.01)
    dark[16:60] = 0.01  # a black sky right under the top bar in this frame
    bright = _grain(_bars(_picture(), *bars), 6)
    assert crop.detect_borders([dark])[0] > 20  # one frame alone is fooled
    assert crop.detect_borders([dark, bright])[0] == 16


def test_no_borders_on_a_full_frame():
    assert crop.detect_borders(_grain(_picture(), 2)) == (0, 0, 0, 0)


def test_shared_crop_stays_inside_live_picture_and_valid_warp():
    source = _grain(_bars(_picture(), 20, 20, 0, 0), 0)
    reference = _bars(_picture(), 0, 0, 10, 10)  # the Reference is pillarboxed instead
    m = warp.similarity(1.0, 1.5, 4.0, -3.0, (W / 2, H / 2))
    aligned = warp.warp_to_source(reference, m, (H, W))
    ref_borders = crop.detect_borders(reference)
    assert ref_borders == (0, 0, 10, 10)
    live = crop.live_mask(m, reference.shape, (H, W), ref_borders)
    result = crop.shared_crop([source], [aligned], [live], margin=3)
    rows, cols = crop.crop_to_slices(result, H, W)
    assert result.enabled and result.width > 180 and result.height > 120
    assert rows.start >= 20 + 3 and rows.stop <= H - 20 - 3
    # Inside the valid warp and clear of the Reference's (rotated) pillarbox bars.
    assert warp.valid_mask(m, reference.shape, (H, W))[rows, cols].all()
    assert crop.live_mask(m, reference.shape, (H, W), (0, 0, 10, 10))[rows, cols].all()


def test_crop_slices_use_blender_lower_left_origin():
    c = Crop(enabled=True, x=10, y=5, width=100, height=50)
    rows, cols = crop.crop_to_slices(c, 192)
    assert (rows.start, rows.stop) == (192 - 55, 192 - 5)  # y counts up from the bottom row
    assert (cols.start, cols.stop) == (10, 110)
    back = crop.crop_from_box(rows.start, rows.stop, cols.start, cols.stop, 192)
    assert (back.x, back.y, back.width, back.height) == (10, 5, 100, 50)
    # Disabled: the whole frame.
    rows, cols = crop.crop_to_slices(Crop(), 192, 256)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 192, 0, 256)


def test_animated_crop_holds_keys():
    c = Crop(enabled=True, x=0, y=0, width=256, height=192,
             keys=[CropKey(frame=1010, x=0, y=40, width=256, height=152),  # subtitle from 1010
                   CropKey(frame=1001, x=0, y=0, width=256, height=192)])
    assert crop.crop_at_frame(c, 995).y == 0  # before the first key: the first key
    assert crop.crop_at_frame(c, 1005).y == 0
    assert crop.crop_at_frame(c, 1010).y == 40
    assert crop.crop_at_frame(c, 1200).height == 152  # held after the last key
    static = Crop(enabled=True, x=3, y=4, width=5, height=6)
    assert crop.crop_at_frame(static, 1).x == 3
