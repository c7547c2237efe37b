"""Colour: the ACES 1.3 output transform through PyOpenColorIO, engine YCbCr, Blender YCC, 3D LUTs.

Pinned names (the node groups and every engine stage use exactly these):

- Config: ``OCIO_CONFIG`` = ``ocio://studio-config-v2.2.0_aces-v1.3_ocio-v2.4`` (built into
  OCIO >= 2.4; the OpenImageIO wheel bundles an older OCIO, so colour never goes through OIIO).
- Scene-referred interchange: colour space ``ACES2065-1`` (AP0, linear, D60 white).
- Display-referred training domain (the guide's "Rec.709 2.4 ODT"): display
  ``Rec.1886 Rec.709 - Display``, view ``ACES 1.0 - SDR Video`` = ACES 1.0 RRT + ODT
  ``ODT.Academy.Rec709_100nits_dim`` (BT.1886 gamma 2.4, full-range code values 0-1, D65).
  ``aces2065_to_display`` is that DisplayViewTransform forward; ``display_to_aces2065`` is the
  same transform inverted (the "inverse output transform"). ACES mid grey 0.18 maps to 0.3895.

Engine YCbCr is BT.709 full range with Cb/Cr centred on 0:
    Y = 0.2126 R + 0.7152 G + 0.0722 B,  Cb = (B - Y) / 1.8556,  Cr = (R - Y) / 1.5748.

Blender's Separate/Combine Color nodes in mode YCC, ITU BT.709 (measured in bpy 5.0.1's
compositor) use 3-decimal studio-range coefficients on 0-255 values, then divide by 255:
    Separate: Y  = ( 0.183 R' + 0.614 G' + 0.062 B' + 16) / 255      (R' = 255 R, ...)
              Cb = (-0.101 R' - 0.338 G' + 0.439 B' + 128) / 255
              Cr = ( 0.439 R' - 0.399 G' - 0.040 B' + 128) / 255
    Combine:  R = (1.164 (Y'-16)                    + 1.793 (Cr'-128)) / 255   (Y' = 255 Y, ...)
              G = (1.164 (Y'-16) - 0.213 (Cb'-128) - 0.534 (Cr'-128)) / 255
              B = (1.164 (Y'-16) + 2.115 (Cb'-128)                   ) / 255
These rounded matrices are not exact inverses of each other (Separate then Combine is off by up
to 5e-4; white gives 0.99988) and Blender's luma weights are 0.21304/0.71478/0.07218 after normalisation, not
0.2126/0.7152/0.0722. `rgb_to_blender_ycc` / `blender_ycc_to_rgb` reproduce the nodes exactly;
the engine <-> Blender conversions below go through RGB so both sides describe the same pixel.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import FilmRecoveryError
from .primitives import BT709_LUMA

OCIO_CONFIG = "ocio://studio-config-v2.2.0_aces-v1.3_ocio-v2.4"
ACES2065_1 = "ACES2065-1"
ACESCG = "ACEScg"
DISPLAY = "Rec.1886 Rec.709 - Display"
VIEW = "ACES 1.0 - SDR Video"

# Engine YCbCr (BT.709, full range, Cb/Cr centred on 0): ycc = rgb @ RGB_TO_YCBCR.T
_KR, _KB = BT709_LUMA[0], BT709_LUMA[2]
_KG = 1.0 - _KR - _KB  # so a neutral's luma is exactly its level
RGB_TO_YCBCR = np.array([
    [_KR, _KG, _KB],
    [-_KR / 1.8556, -_KG / 1.8556, (1.0 - _KB) / 1.8556],
    [(1.0 - _KR) / 1.5748, -_KG / 1.5748, -_KB / 1.5748],
], dtype=np.float64)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)

# Blender 5.0 Separate/Combine Color, mode YCC, ycc_mode ITUBT709 (see the module docstring).
BLENDER_RGB_TO_YCC = np.array([
    [0.183, 0.614, 0.062],
    [-0.101, -0.338, 0.439],
    [0.439, -0.399, -0.040],
], dtype=np.float64)
BLENDER_YCC_TO_RGB = np.array([
    [1.164, 0.0, 1.793],
    [1.164, -0.213, -0.534],
    [1.164, 2.115, 0.0],
], dtype=np.float64)
BLENDER_YCC_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64) / 255.0

_STRIP_ROWS = 64  # rows per OCIO work item: small enough to spread a frame over all cores


def _affine(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    out = np.asarray(image, dtype=np.float32) @ matrix.T.astype(np.float32)
    if offset is not None:
        out += offset.astype(np.float32)
    return out


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Engine YCbCr (BT.709 full range, Cb/Cr centred on 0) of RGB (..., 3)."""
    return _affine(rgb, RGB_TO_YCBCR)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_ycbcr`."""
    return _affine(ycc, YCBCR_TO_RGB)


def rgb_to_blender_ycc(rgb: np.ndarray) -> np.ndarray:
    """What Blender's Separate Color (YCC, ITU BT.709) outputs for RGB: studio range / 255."""
    return _affine(rgb, BLENDER_RGB_TO_YCC, BLENDER_YCC_OFFSET)


def blender_ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """What Blender's Combine Color (YCC, ITU BT.709) outputs for studio-range/255 YCC."""
    ycc = np.asarray(ycc, dtype=np.float32) - BLENDER_YCC_OFFSET.astype(np.float32)
    return _affine(ycc, BLENDER_YCC_TO_RGB)


def ycbcr_to_blender_ycc(ycc: np.ndarray) -> np.ndarray:
    """Engine YCbCr -> the YCC Blender's Separate Color node shows for the same RGB pixel."""
    return _affine(ycc, BLENDER_RGB_TO_YCC @ YCBCR_TO_RGB, BLENDER_YCC_OFFSET)


def blender_ycc_to_ycbcr(ycc: np.ndarray) -> np.ndarray:
    """Blender YCC -> engine YCbCr of the RGB that Blender's Combine Color node makes from it."""
    ycc = np.asarray(ycc, dtype=np.float32) - BLENDER_YCC_OFFSET.astype(np.float32)
    return _affine(ycc, RGB_TO_YCBCR @ BLENDER_YCC_TO_RGB)


# --- OCIO -------------------------------------------------------------------------------------

@functools.cache
def ocio_config():
    """The pinned ACES 1.3 studio config (built into PyOpenColorIO >= 2.4)."""
    try:
        import PyOpenColorIO as ocio
    except ImportError as exc:
        raise FilmRecoveryError("PyOpenColorIO is not installed.", where="python environment",
                                fix="pip install 'opencolorio>=2.4' (Blender 5.0 bundles it).") from exc
    try:
        config = ocio.Config.CreateFromFile(OCIO_CONFIG)
    except Exception as exc:  # OCIO raises its own Exception type
        raise FilmRecoveryError(f"PyOpenColorIO {ocio.__version__} cannot load {OCIO_CONFIG} ({exc}).",
                                where="OCIO config", fix="Use PyOpenColorIO 2.4 or newer.") from exc
    _check_names(config)
    return config


def _check_names(config) -> None:
    spaces = set(config.getColorSpaceNames())
    if ACES2065_1 not in spaces:
        raise FilmRecoveryError(f"colour space {ACES2065_1!r} is not in {OCIO_CONFIG}.", where="OCIO config",
                                fix="Use the pinned built-in config and PyOpenColorIO 2.4 or newer.")
    if DISPLAY not in config.getDisplays() or VIEW not in config.getViews(DISPLAY):
        raise FilmRecoveryError(f"display {DISPLAY!r} / view {VIEW!r} is not in {OCIO_CONFIG}.",
                                where="OCIO config", fix="Use the pinned built-in config.")


@functools.cache
def _output_transform_processor(inverse: bool):
    """Cached CPU processor: ACES2065-1 -> display (forward) or display -> ACES2065-1 (inverse)."""
    import PyOpenColorIO as ocio

    config = ocio_config()
    transform = ocio.DisplayViewTransform(src=ACES2065_1, display=DISPLAY, view=VIEW)
    direction = ocio.TRANSFORM_DIR_INVERSE if inverse else ocio.TRANSFORM_DIR_FORWARD
    return config.getProcessor(transform, direction).getDefaultCPUProcessor()


@functools.cache
def _colourspace_processor(src: str, dst: str):
    return ocio_config().getProcessor(src, dst).getDefaultCPUProcessor()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # OCIO's apply releases the GIL, so strips of one frame run on all cores.
    return ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="ocio")


def _apply_cpu(processor, image: np.ndarray) -> np.ndarray:
    """Apply an OCIO CPU processor to a copy of `image` (..., 3), in horizontal strips on a pool."""
    image = np.asarray(image)
    shape = image.shape
    if shape[-1] != 3:
        raise ValueError(f"expected (..., 3) RGB, got shape {shape}")
    out = np.array(image, dtype=np.float32, order="C", copy=True).reshape(-1, shape[-1])
    if out.shape[0] == 0:
        return out.reshape(shape)
    # A strip of rows of a C-contiguous array is contiguous, so OCIO writes straight into `out`.
    strip = _STRIP_ROWS * (shape[1] if len(shape) == 3 else 1024)
    strips = [out[i:i + strip] for i in range(0, out.shape[0], strip)]
    if len(strips) == 1:
        processor.applyRGB(strips[0])
    else:
        list(_pool().map(processor.applyRGB, strips))
    return out.reshape(shape)


def aces2065_to_display(rgb: np.ndarray) -> np.ndarray:
    """ACES2065-1 (scene-linear AP0) -> Rec.709 2.4 display code values 0-1 (ACES 1.0 SDR Video)."""
    return _apply_cpu(_output_transform_processor(False), rgb)


def display_to_aces2065(rgb: np.ndarray, refine: int = 1) -> np.ndarray:
    """Rec.709 2.4 display code values -> ACES2065-1 through the inverse ACES 1.0 output transform.

    OCIO's inverse of the ACES 1.0 red modifier is approximate (warm hues come back ~0.7/255
    off through the forward transform), so `refine` correction steps re-aim the inverse at the
    residual: t <- clip(t + (display - forward(aces)), 0, 1); aces <- inverse(t). One step (the
    default) brings the median error to ~1e-5 and costs two more OCIO passes; 0 is the plain
    inverse. Display colours the forward transform cannot produce (very dark, fully saturated,
    a channel at 0) stay up to ~4/255 off.
    """
    inverse = _output_transform_processor(True)
    display = np.asarray(rgb, dtype=np.float32)
    aces = _apply_cpu(inverse, display)
    target = display
    for _ in range(refine):
        target = np.clip(target + (display - aces2065_to_display(aces)), 0.0, 1.0)
        aces = _apply_cpu(inverse, target)
    return aces


def convert_colourspace(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert between two colour spaces of the pinned config by name (e.g. ACES2065-1 -> ACEScg)."""
    spaces = set(ocio_config().getColorSpaceNames())
    for name in (src, dst):
        if name not in spaces:
            raise FilmRecoveryError(f"unknown colour space {name!r}.", where="colour space",
                                    fix=f"Use a name from {OCIO_CONFIG}, e.g. {ACES2065_1!r} or {ACESCG!r}.")
    return _apply_cpu(_colourspace_processor(src, dst), rgb)


# --- 3D LUT -----------------------------------------------------------------------------------
# The inverse output transform is steep near display white (ACES values up to ~16 and beyond),
# so the baked LUT stores a log2 shaper of the ACES value, which interpolates well:
#     stored = log2(aces + LUT_SHAPER_OFFSET),  aces = 2 ** stored - LUT_SHAPER_OFFSET.
LUT_SHAPER_OFFSET = 1.0 / 64.0


def bake_display_to_aces_lut(size: int = 65) -> np.ndarray:
    """Bake display -> ACES2065-1 into a (size, size, size, 3) float32 LUT, indexed [r, g, b].

    Entry [i, j, k] holds ``log2(display_to_aces2065((i, j, k) / (size - 1), refine=2) + LUT_SHAPER_OFFSET)``
    (the log2 shaper above); `apply_display_to_aces_lut` undoes it. Values whose ACES result is
    below -LUT_SHAPER_OFFSET (far outside the display gamut) are clamped there.
    """
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    grid = np.stack([r, g, b], axis=-1)
    aces = display_to_aces2065(grid, refine=2)
    return np.log2(np.maximum(aces + LUT_SHAPER_OFFSET, 2.0 ** -24)).astype(np.float32)


def apply_lut3d(image: np.ndarray, lut: np.ndarray, method: str = "tetrahedral") -> np.ndarray:
    """Apply a (N, N, N, C) LUT indexed [r, g, b] over the input cube 0-1 (inputs clamped to it)."""
    if method not in ("tetrahedral", "trilinear"):
        raise ValueError(f"unknown LUT interpolation {method!r}; use 'tetrahedral' or 'trilinear'")
    flat = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    out = np.empty((flat.shape[0], lut.shape[-1]), dtype=np.float32)
    chunk = 1 << 18  # bounds the temporaries of a 4K frame to a few tens of MB
    for start in range(0, flat.shape[0], chunk):
        out[start:start + chunk] = _lut3d_chunk(flat[start:start + chunk], lut, method)
    return out.reshape(*np.shape(image)[:-1], lut.shape[-1])


def _lut3d_chunk(rgb: np.ndarray, lut: np.ndarray, method: str) -> np.ndarray:
    size = lut.shape[0]
    flat = np.clip(rgb, 0.0, 1.0) * np.float32(size - 1)
    base = np.minimum(flat.astype(np.int32), size - 2)
    frac = flat - base
    table = lut.reshape(-1, lut.shape[-1])
    stride = np.array([size * size, size, 1], dtype=np.int32)
    index0 = base @ stride

    def corner(dr: int, dg: int, db: int) -> np.ndarray:
        return table[index0 + (dr * stride[0] + dg * stride[1] + db * stride[2])]

    fr, fg, fb = (frac[:, i:i + 1] for i in range(3))
    if method == "trilinear":
        c00 = corner(0, 0, 0) * (1 - fr) + corner(1, 0, 0) * fr
        c10 = corner(0, 1, 0) * (1 - fr) + corner(1, 1, 0) * fr
        c01 = corner(0, 0, 1) * (1 - fr) + corner(1, 0, 1) * fr
        c11 = corner(0, 1, 1) * (1 - fr) + corner(1, 1, 1) * fr
        out = (c00 * (1 - fg) + c10 * fg) * (1 - fb) + (c01 * (1 - fg) + c11 * fg) * fb
    else:
        # Sort the fractions per pixel; walk from corner 000 to 111 along the sorted axes.
        order = np.argsort(-frac, axis=1, kind="stable")
        sorted_frac = np.take_along_axis(frac, order, axis=1)
        steps = np.zeros((flat.shape[0], 3), dtype=np.int32)
        out = corner(0, 0, 0) * (1 - sorted_frac[:, :1])
        weights = [sorted_frac[:, 0:1] - sorted_frac[:, 1:2], sorted_frac[:, 1:2] - sorted_frac[:, 2:3],
                   sorted_frac[:, 2:3]]
        rows = np.arange(flat.shape[0])
        for step in range(3):
            steps[rows, order[:, step]] = 1
            out = out + table[index0 + steps @ stride] * weights[step]
    return out


def apply_display_to_aces_lut(display_rgb: np.ndarray, lut: np.ndarray, method: str = "tetrahedral") -> np.ndarray:
    """Display -> ACES2065-1 through a LUT from `bake_display_to_aces_lut` (undoes its log2 shaper)."""
    stored = apply_lut3d(display_rgb, lut, method)
    return (np.exp2(stored) - np.float32(LUT_SHAPER_OFFSET)).astype(np.float32)
