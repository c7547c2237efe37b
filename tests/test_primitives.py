"""The shared image primitives (`ml.primitives`), each against an independent reference: scipy's
ndimage filters, OpenCV, skimage's luma weights, and plain loops. Where OpenCV is used, its path and
the numpy path (Blender's own Python has no OpenCV) must give the same result."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from ml import primitives as P
from ml.cleanup import median_filter as cleanup_median
from ml.errors import InputImageError


def _image(shape, seed=4):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _scipy_sigma(sigma, image):
    return (sigma, sigma) + (0,) * (image.ndim - 2)


# ----------------------------------------------------------------------------------------- luma

def test_luma_is_bt709_and_passes_single_channel_images_through():
    image = _image((6, 7, 3))
    expected = image.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    np.testing.assert_allclose(P.luma(image), expected, atol=1e-6)
    np.testing.assert_allclose(P.luma(np.concatenate([image, image[..., :1]], axis=-1)), expected, atol=1e-6)
    plane = image[..., 0]
    assert np.array_equal(P.luma(plane), plane) and np.array_equal(P.luma(plane[..., None]), plane)
    # a neutral's luma is its level: the YCbCr matrix in ml.colour uses the same weights
    from ml.colour import rgb_to_ycbcr
    np.testing.assert_allclose(P.luma(image), rgb_to_ycbcr(image)[..., 0], atol=1e-6)


# ------------------------------------------------------------------------------- separable filters

@pytest.mark.parametrize("edge,scipy_mode", [("mirror", "mirror"), ("reflect", "reflect"), ("nearest", "nearest"),
                                             ("constant", "constant")])
@pytest.mark.parametrize("shape", [(40, 64, 3), (40, 64, 2), (40, 64)])
def test_gaussian_both_paths_match_scipy_for_every_edge(edge, scipy_mode, shape):
    image = _image(shape)
    for sigma in (0.7, 1.5, 4.0):
        fast, plain = P.gaussian_blur(image, sigma, edge=edge), P.gaussian_blur(image, sigma, edge=edge, use_opencv=False)
        assert fast.shape == plain.shape == image.shape and fast.dtype == plain.dtype == np.float32
        np.testing.assert_allclose(fast, plain, atol=2e-6, rtol=0)
        radius = int(np.ceil(3.0 * sigma))
        reference = ndimage.gaussian_filter(image.astype(np.float64), sigma=_scipy_sigma(sigma, image),
                                            mode=scipy_mode, truncate=radius / sigma)
        np.testing.assert_allclose(plain, reference, atol=1e-5, rtol=0)


def test_gaussian_keeps_float64_and_a_given_radius():
    image = _image((33, 35)).astype(np.float64)
    out = P.gaussian_blur(image, 1.5, radius=5, edge="reflect")
    assert out.dtype == np.float64
    reference = ndimage.gaussian_filter(image, 1.5, mode="reflect", truncate=5 / 1.5)
    np.testing.assert_allclose(out, reference, atol=1e-12)
    np.testing.assert_allclose(P.gaussian_blur(image, 1.5, radius=5, edge="reflect", use_opencv=False), reference,
                               atol=1e-12)


def test_gaussian_of_a_frame_smaller_than_the_kernel_repeats_its_edges():
    image = _image((3, 5, 3))
    fast, plain = P.gaussian_blur(image, 2.0), P.gaussian_blur(image, 2.0, use_opencv=False)
    np.testing.assert_allclose(fast, plain, atol=2e-6)
    reference = ndimage.gaussian_filter(image.astype(np.float64), (2.0, 2.0, 0), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(plain, reference, atol=1e-5)


def test_separable_filter_matches_opencv_for_any_kernel():
    image = _image((21, 30, 3))
    kernel = np.array([0.25, 0.5, 0.25], np.float32)
    expected = cv2.sepFilter2D(image, -1, kernel, kernel, borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(P.separable_filter(image, kernel, edge="nearest", use_opencv=False), expected, atol=1e-6)


# ------------------------------------------------------------------------------------- box sums

@pytest.mark.parametrize("edge,scipy_mode", [("nearest", "nearest"), ("constant", "constant"), ("mirror", "mirror")])
def test_box_filter_matches_scipy_uniform_filter(edge, scipy_mode):
    image = _image((37, 41)).astype(np.float64)
    for radius in (1, 3, 6):
        expected = ndimage.uniform_filter(image, 2 * radius + 1, mode=scipy_mode)
        np.testing.assert_allclose(P.box_filter(image, radius, edge=edge), expected, atol=1e-12)
    colour = _image((20, 25, 3))
    expected = ndimage.uniform_filter(colour.astype(np.float64), (5, 5, 1), mode="nearest")
    np.testing.assert_allclose(P.box_filter(colour, 2), expected, atol=1e-5)


def test_box_counts_of_a_mask_are_exact_and_three_passes_approach_a_gaussian():
    mask = _image((30, 30)) > 0.8
    counts = P.box_filter(mask, 1, edge="constant", normalise=False)
    loops = np.zeros(mask.shape)
    for y in range(30):
        for x in range(30):
            loops[y, x] = mask[max(0, y - 1):y + 2, max(0, x - 1):x + 2].sum()
    assert np.array_equal(counts, loops)
    impulse = np.zeros((81, 81), np.float32)
    impulse[40, 40] = 1.0
    radius = 4
    spread = P.box_filter(impulse, radius, passes=3).astype(np.float64)
    offsets = np.arange(81) - 40
    assert abs(spread.sum() - 1.0) < 1e-5
    # each pass adds r (r + 1) / 3 to the variance: three give a Gaussian's sigma^2 = r (r + 1)
    assert spread.sum(axis=0) @ offsets ** 2 == pytest.approx(radius * (radius + 1), rel=1e-4)
    expected = ndimage.gaussian_filter(impulse.astype(np.float64), np.sqrt(radius * (radius + 1)), mode="nearest")
    assert np.abs(spread - expected).max() < 0.15 * expected.max()


def test_window_sums_equal_the_sum_of_each_window():
    image = _image((12, 15))
    sums = P.window_sums(image, 4, 5)
    assert sums.shape == (9, 11)
    for top, left in [(0, 0), (3, 7), (8, 10)]:
        assert sums[top, left] == pytest.approx(float(image[top:top + 4, left:left + 5].sum()), abs=1e-5)


# ----------------------------------------------------------------------------------------- median

@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("shape", [(31, 47, 3), (31, 47, 1), (31, 47), (31, 47, 2)])
def test_median_both_paths_equal_scipy(size, shape):
    image = _image(shape)
    fast, plain = P.median_filter(image, size), P.median_filter(image, size, use_opencv=False)
    assert fast.shape == plain.shape == image.shape
    np.testing.assert_array_equal(fast, plain)
    axes = (size, size) + ((1,) if image.ndim == 3 else ())
    np.testing.assert_array_equal(plain, ndimage.median_filter(image, size=axes, mode="mirror"))


def test_a_median_size_the_recipe_cannot_hold_names_the_field():
    with pytest.raises(ValueError):
        P.median_filter(_image((8, 8)), 7)
    with pytest.raises(InputImageError, match="reference_median"):
        cleanup_median(_image((8, 8)), 4)


# ------------------------------------------------------------------------------------ downscale

def test_block_mean_and_downscale_match_opencv_area_resampling():
    image = _image((40, 64, 3))
    np.testing.assert_allclose(P.block_mean(image, 4), cv2.resize(image, (16, 10), interpolation=cv2.INTER_AREA),
                               atol=1e-6)
    assert P.block_mean(image, (1, 4)).shape == (40, 16, 3)
    np.testing.assert_allclose(P.block_mean(image[..., 0], (1, 4)), image[..., 0].reshape(40, 16, 4).mean(-1))
    assert P.block_mean(_image((10, 11)), 3).shape == (3, 3)  # remainders dropped
    assert P.downscale(image, max_width=20).shape == (10, 16, 3)   # factor ceil(64 / 20) = 4
    assert P.downscale(image, max_side=32).shape == (20, 32, 3)
    assert P.downscale(image, max_width=64) is image


# ----------------------------------------------------------------------------------------- ticks

@pytest.mark.parametrize("low,high", [(0, 1000), (31.4, 44.2), (-3, 2), (0.001, 0.0042), (0, 7)])
def test_ticks_are_round_evenly_spaced_and_cover_the_range(low, high):
    ticks = P.nice_ticks(low, high, 5)
    assert 2 <= len(ticks) <= 11
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 5))
    assert low - 1e-9 <= ticks[0] < low + steps[0] and high - steps[0] < ticks[-1] <= high + 1e-9
    assert P.nice_ticks(2.0, 2.0) == [2.0]
    assert P.tick_text(0.5) == "0.5" and P.tick_text(20) == "20" and P.tick_text(2e5) == "2e+05"
