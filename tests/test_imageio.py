"""The engine's image codec: plain EXRs through OpenEXR give the pixels OpenImageIO gives, other
layouts go to OpenImageIO, headers survive for other tools, damaged files are named, and reads
and writes leave the GIL to the other threads (the inference pipeline relies on it)."""

from __future__ import annotations

import threading
import time

import numpy as np
import OpenImageIO as oiio
import pytest
from skimage import data

from ml.errors import FilmRecoveryError, InputImageError
from ml.imageio import (
    _encode_with_oiio,
    _encode_with_openexr,
    _read_plain_exr,
    _read_with_oiio,
    read_header,
    read_image,
    write_exr,
    write_png,
)

CHROMATICITIES = (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767)


def photo(height: int, width: int, name: str = "astronaut") -> np.ndarray:
    image = getattr(data, name)().astype(np.float32) / 255.0
    reps = (height // image.shape[0] + 1, width // image.shape[1] + 1, 1)
    return np.ascontiguousarray(np.tile(image, reps)[:height, :width])


def write_with_oiio(path, pixels: np.ndarray, channels: tuple[str, ...], pixel_type=oiio.HALF, origin=(0, 0)):
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], len(channels), pixel_type)
    spec.channelnames = channels
    spec.x, spec.y = origin
    spec.full_width, spec.full_height = pixels.shape[1] + origin[0], pixels.shape[0] + origin[1]
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec) and out.write_image(np.ascontiguousarray(pixels))
    out.close()


@pytest.mark.parametrize("channels, pixel_type", [(("R", "G", "B"), oiio.HALF), (("R", "G", "B", "A"), oiio.HALF),
                                                  (("R", "G", "B"), oiio.FLOAT), (("Y",), oiio.HALF)])
def test_plain_exrs_decode_through_openexr_exactly_as_openimageio(tmp_path, channels, pixel_type):
    picture = photo(37, 53)
    pixels = np.concatenate([picture, picture[..., :1] * 0.5], axis=2)[..., :len(channels)] \
        if len(channels) != 1 else picture[..., 1:2]
    path = tmp_path / "plain.exr"
    write_with_oiio(path, pixels, channels, pixel_type)
    fast = _read_plain_exr(str(path))
    assert fast is not None and fast.dtype == (np.float16 if pixel_type == oiio.HALF else np.float32)
    # OpenImageIO reads at most three channels: the alpha (dropped by read_image either way) aside.
    assert np.array_equal(fast.reshape(37, 53, -1)[..., :3], _read_with_oiio(str(path)).reshape(37, 53, -1))
    image = read_image(path)
    assert image.shape == (37, 53, 3) and image.dtype == np.float32
    assert read_image(path, keep_half=True).dtype == (np.float16 if pixel_type == oiio.HALF else np.float32)


def test_other_layouts_are_read_by_openimageio(tmp_path):
    picture = photo(20, 30)
    layered, offset = tmp_path / "layered.exr", tmp_path / "offset.exr"
    write_with_oiio(layered, picture, ("beauty.R", "beauty.G", "beauty.B"))
    write_with_oiio(offset, picture, ("R", "G", "B"), origin=(4, 2))  # data window inside a larger display window
    for path in (layered, offset):
        assert _read_plain_exr(str(path)) is None
        assert np.array_equal(read_image(path), picture.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("encode", [_encode_with_openexr, _encode_with_oiio])
def test_both_encoders_write_the_same_pixels_and_header(tmp_path, encode):
    """write_exr uses OpenEXR, or OpenImageIO in a Python without the OpenEXR package (Blender's own)."""
    picture = photo(24, 40, "coffee")
    attributes = {"chromaticities": CHROMATICITIES, "colorInteropID": "lin_ap0_scene",
                  "film_recovery:source_frame": 1001, "film_recovery:model_hash": "ab12", "film_recovery:gain": 1.25}
    for compression in ("zip", "piz", "dwaa", "none"):
        path = tmp_path / f"{compression}.exr"
        encode(path, picture.astype(np.float16), compression, attributes)
        header = read_header(path)
        assert header["compression"] == compression
        assert np.allclose(header["chromaticities"], CHROMATICITIES)
        assert header["colorInteropID"] == "lin_ap0_scene" and header["film_recovery:model_hash"] == "ab12"
        assert header["film_recovery:source_frame"] == 1001 and header["film_recovery:gain"] == 1.25
        if compression == "dwaa":
            assert header["openexr:dwaCompressionLevel"] == 45.0
            assert np.abs(read_image(path) - picture).mean() < 2e-3  # lossy, visually lossless
        else:
            assert np.array_equal(read_image(path), picture.astype(np.float16).astype(np.float32))
    for channels in (1, 4):
        pixels = np.concatenate([picture, picture[..., :1]], axis=2)[..., :channels] if channels == 4 else picture[..., :1]
        encode(tmp_path / f"c{channels}.exr", pixels.astype(np.float16), "zip", {})
        expected = picture if channels == 4 else np.repeat(picture[..., :1], 3, 2)
        assert np.array_equal(read_image(tmp_path / f"c{channels}.exr"), expected.astype(np.float16).astype(np.float32))


def test_write_exr_is_atomic_and_names_bad_requests(tmp_path):
    picture = photo(24, 40, "coffee")
    path = write_exr(tmp_path / "frame.exr", picture, "piz", {"film_recovery:source_frame": 7})
    assert read_header(path)["film_recovery:source_frame"] == 7 and read_image(path).shape == (24, 40, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["frame.exr"]
    with pytest.raises(FilmRecoveryError, match="unknown EXR compression 'b44'"):
        write_exr(tmp_path / "b44.exr", picture, "b44")
    with pytest.raises(FilmRecoveryError, match="2 channels"):
        write_exr(tmp_path / "two.exr", picture[..., :2])
    with pytest.raises(FilmRecoveryError) as failed:
        write_exr(tmp_path / "frame.exr" / "below_a_file.exr", picture)
    assert failed.value.where.endswith("below_a_file.exr") and failed.value.fix


def test_review_pngs_keep_uint8_pixels_and_text(tmp_path):
    pixels = (photo(16, 24) * 255 + 0.5).astype(np.uint8)
    path = write_png(tmp_path / "review.png", pixels, {"film_recovery:model_hash": "ab12"})
    assert np.array_equal(np.round(read_image(path) * 255).astype(np.uint8), pixels)
    assert read_header(path)["film_recovery:model_hash"] == "ab12"


def test_damaged_exrs_are_named(tmp_path):
    path = write_exr(tmp_path / "frame.1001.exr", photo(64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputImageError) as failed:
        read_image(path)
    assert failed.value.where == str(path) and "Re-export" in failed.value.fix


@pytest.mark.parametrize("step", ["write", "read"])
def test_exr_codec_leaves_the_gil_to_other_threads(tmp_path, step):
    """Encoder and decoder threads must not stop the thread that feeds the GPU."""
    picture = photo(2160, 4096, "coffee").astype(np.float16)
    path = tmp_path / "big.exr"
    if step == "read":
        write_exr(path, picture, "zip")
    work = threading.Thread(target=(lambda: write_exr(path, picture, "zip")) if step == "write"
                            else (lambda: read_image(path)))
    stamps = []
    start = time.perf_counter()
    work.start()
    while work.is_alive():
        stamps.append(time.perf_counter())
    duration = time.perf_counter() - start
    assert duration > 0.05, duration
    longest_stall = max(np.diff([start, *stamps, start + duration]))
    assert longest_stall < 0.4 * duration, (longest_stall, duration)


@pytest.mark.parametrize("keep_half", [True, False])
def test_nan_and_inf_pixels_are_counted_and_named(tmp_path, keep_half):
    picture = photo(32, 48).astype(np.float16)
    picture[3, 4, 0], picture[10, 11, 2], picture[20, 30, 1] = np.nan, np.inf, -np.inf
    path = write_exr(tmp_path / "frame.1001.exr", picture)
    with pytest.raises(InputImageError, match="3 pixel") as failed:
        read_image(path, keep_half=keep_half)
    assert failed.value.where == str(path)
    assert np.isnan(read_image(path, check_finite=False, keep_half=keep_half)[3, 4, 0])
    picture[3, 4, 0] = picture[10, 11, 2] = picture[20, 30, 1] = 65504.0  # the largest half is finite
    assert read_image(write_exr(path, picture), keep_half=keep_half).max() == 65504.0
