"""The clean-up primitives: the OpenCV and numpy paths of the median and the Gaussian give the
same result (Blender's own Python has no OpenCV), and both match scipy's reference filters."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ml.cleanup import gaussian_blur, median_filter


def _image(shape):
    return np.random.default_rng(4).random(shape, dtype=np.float32)


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("shape", [(31, 47, 3), (31, 47, 1), (31, 47)])
def test_median_opencv_and_numpy_agree_with_scipy(size, shape):
    image = _image(shape)
    fast, plain = median_filter(image, size), median_filter(image, size, use_opencv=False)
    assert fast.shape == plain.shape == image.shape
    np.testing.assert_array_equal(fast, plain)
    axes = (size, size) + ((1,) if image.ndim == 3 else ())
    np.testing.assert_array_equal(plain, ndimage.median_filter(image, size=axes, mode="mirror"))


@pytest.mark.parametrize("sigma", [0.7, 1.5, 4.0])
@pytest.mark.parametrize("shape", [(40, 64, 3), (40, 64, 2), (40, 64)])
def test_gaussian_opencv_and_numpy_agree_with_scipy(sigma, shape):
    image = _image(shape)
    fast, plain = gaussian_blur(image, sigma), gaussian_blur(image, sigma, use_opencv=False)
    assert fast.shape == plain.shape == image.shape
    np.testing.assert_allclose(fast, plain, atol=2e-6, rtol=0)
    radius = int(np.ceil(3.0 * sigma))
    reference = ndimage.gaussian_filter(image.astype(np.float64), sigma=(sigma, sigma) + (0,) * (image.ndim - 2),
                                        mode="mirror", truncate=radius / sigma)
    np.testing.assert_allclose(plain, reference, atol=1e-5, rtol=0)


def test_a_frame_smaller_than_the_kernel_replicates_its_edges():
    image = _image((3, 5, 3))
    np.testing.assert_allclose(gaussian_blur(image, 2.0), gaussian_blur(image, 2.0, use_opencv=False), atol=2e-6)
