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


# ----------------------------------------------------------------------------- bars are near black

def _flat_edge(img: np.ndarray, side: str, width: int, level: float) -> np.ndarray:
    out = img.copy()
    if side == "right":
        out[:, W - width:] = level
    else:
        out[:, :width] = level
    return out


def test_a_flat_mid_grey_edge_is_picture():
    # A misty, low-contrast frame whose right edge is a flat, out-of-focus mid-grey background:
    # flat and at the picture's darkest tones, but far from black (the field case: mean 0.35).
    misty = _picture() * 0.4 + 0.3
    frames = [_grain(_flat_edge(misty, "right", 12, 0.35), seed, 0.01) for seed in range(3)]
    assert crop.detect_borders(frames[0]) == (0, 0, 0, 0)
    assert crop.detect_borders(frames) == (0, 0, 0, 0)


def test_a_near_black_letterbox_with_grain_is_a_border():
    # Lifted digital black with heavy grain, over a bright, a normal and a low-key frame.
    pictures = [_picture(), _picture() * 0.5 + 0.2, _picture() * 0.35]
    frames = [_grain(_bars(p, 18, 18, 0, 0, level=0.04), seed, 0.03) for seed, p in enumerate(pictures)]
    assert crop.detect_borders(frames) == (18, 18, 0, 0)
    assert crop.detect_borders(frames[2]) == (18, 18, 0, 0)  # alone too


def test_a_dark_edge_in_one_frame_of_a_low_key_shot_is_not_a_bar():
    low_key = _picture() * 0.35
    dark = _grain(_flat_edge(low_key, "left", 14, 0.005), 1, 0.01)  # the edge falls into shadow here
    assert crop.detect_borders(dark)[2] >= 14  # one frame alone cannot tell
    # In the other frames the edge shows picture: no bar.
    others = [_grain(low_key, seed, 0.01) for seed in (2, 3)]
    assert crop.detect_borders([dark, *others])[2] == 0
    # In the other frames the edge is flat and dark too, but lighter: a bar is the same black in
    # every frame, so flat dark edges whose level moves from frame to frame are picture.
    dim = [_grain(_flat_edge(low_key, "left", 14, 0.05), seed, 0.01) for seed in (4, 5)]
    assert all(crop.detect_borders(frame)[2] >= 14 for frame in dim)  # each alone looks like a bar
    assert crop.detect_borders([dark, *dim])[2] == 0


def test_the_dataset_keeps_a_pair_whose_edge_is_flat_mid_grey():
    # The field case: `dataset` refused "black border inside the crop on the Source (... right 4 px)"
    # where the frame's right edge was a flat, out-of-focus background of mid-grey.
    from ml.dataset import PairImages, bar_problems, validate_pair

    source = _grain(_flat_edge(_picture() * 0.4 + 0.3, "right", 4, 0.35), 7, 0.005)
    reference = _grain(_picture(), 8, 0.005)
    images = PairImages(input=source, target=source, clamped=np.zeros((H, W), bool), aligned_reference=reference,
                        valid=np.ones((H, W), bool), coverage=np.ones((H, W), np.float32), matrix=np.eye(3),
                        matrix_source="auto",
                        crop_box=(0, 0, W, H), source_size=(W, H), source_borders=crop.detect_borders(source),
                        reference_borders=crop.detect_borders(reference), reference_shape=(H, W))
    assert validate_pair("pair_001024", images) == [] and bar_problems([1024], [images]) == []
    # A real bar in the same place is still refused.
    barred = _grain(_bars(_picture() * 0.4 + 0.3, 0, 0, 0, 4, level=0.02), 7, 0.005)
    images.source_borders = crop.detect_borders(barred)
    problems = bar_problems([1024], [images])
    assert len(problems) == 1 and "black border inside the crop on the Source" in problems[0].problem
    assert "right 4 px" in problems[0].problem and problems[0].where == "pair 1024"


def test_a_dark_edge_in_some_frames_only_is_picture_but_reference_bars_in_every_frame_are_not():
    # The field case `night`: one pair's Reference had a dark left edge (a night sky), the others not.
    from ml.dataset import PairImages, bar_problems

    def pair(reference):
        return PairImages(input=reference, target=reference, clamped=np.zeros((H, W), bool),
                          aligned_reference=reference, valid=np.ones((H, W), bool),
                          coverage=np.ones((H, W), np.float32), matrix=np.eye(3),
                          matrix_source="auto", crop_box=(0, 0, W, H), source_size=(W, H),
                          source_borders=(0, 0, 0, 0), reference_borders=crop.detect_borders(reference),
                          reference_shape=(H, W))

    night = _picture() * 0.3
    dark_edge = _grain(_flat_edge(night, "left", 6, 0.01), 1, 0.004)
    assert crop.detect_borders(dark_edge)[2] >= 6  # alone, it looks like a bar
    others = [_grain(night, seed, 0.004) for seed in (2, 3)]
    assert bar_problems([1, 2, 3], [pair(dark_edge), *(pair(o) for o in others)]) == []
    # A pillarbox the same in every frame is a bar: the crop over it is refused.
    boxed = [pair(_grain(_bars(night, 0, 0, 6, 0, level=0.01), seed, 0.004)) for seed in (4, 5, 6)]
    problems = bar_problems([1, 2, 3], boxed)
    assert problems and "the Reference's black bars cover" in problems[0].problem
