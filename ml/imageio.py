"""Reading plates and writing frames with OpenImageIO; frame patterns; atomic writes.

Arrays are float32, shape (height, width, 3), row 0 at the top (image order). Alpha and extra
channels are dropped on read (and reported by QC). Every write goes to a temp file in the
target folder and is renamed into place, so a cancelled job never leaves half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputImageError

_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%0?(\d*)d")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes 0600 files; give the result the permissions a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (checksums in manifests, pair tables and model sidecars)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_path(pattern: str, frame: int) -> str:
    """Expand a frame pattern: `shot.####.exr` or `shot.%04d.exr`."""
    if _HASHES.search(pattern):
        return _HASHES.sub(lambda m: f"{frame:0{len(m.group(0))}d}", pattern, count=1)
    if _PRINTF.search(pattern):
        return _PRINTF.sub(lambda m: f"{frame:0{m.group(1) or 1}d}", pattern, count=1)
    return pattern


def is_sequence(pattern: str) -> bool:
    return bool(_HASHES.search(pattern) or _PRINTF.search(pattern))


@dataclass
class ImageInfo:
    path: str
    width: int
    height: int
    channels: list[str]
    pixel_aspect: float
    fps: float | None


def read_info(path: str) -> ImageInfo:
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise InputImageError(f"cannot open ({oiio.geterror() or 'unreadable'}).", where=str(path),
                              fix="Check that the frame exists and is a valid image.")
    try:
        spec = inp.spec()
        fps = spec.getattribute("FramesPerSecond")
        fps_value = None
        if fps is not None:
            try:
                fps_value = float(fps[0]) / float(fps[1]) if isinstance(fps, tuple) else float(fps)
            except (TypeError, ValueError, ZeroDivisionError):
                fps_value = None
        return ImageInfo(str(path), spec.width, spec.height, list(spec.channelnames),
                         float(spec.getattribute("PixelAspectRatio") or 1.0), fps_value)
    finally:
        inp.close()


def read_image(path: str, check_finite: bool = True) -> np.ndarray:
    """Read an image as float32 RGB (H, W, 3). Grey is expanded; alpha and extra channels are dropped."""
    import OpenImageIO as oiio

    path = str(path)
    if not os.path.exists(path):
        raise InputImageError("file not found.", where=path,
                              fix="Check the plate's frame pattern and frame range.")
    # ImageInput.read_image releases the GIL while it decodes (ImageBuf.get_pixels does not), so
    # frame readers on a thread pool really run in parallel.
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise InputImageError(f"cannot read ({oiio.geterror()}).", where=path,
                              fix="Re-export the frame; it may be truncated or corrupt.")
    try:
        spec = inp.spec()
        # Half/float files decode faster in their own type (numpy widens them); integer files are
        # read as float so OIIO scales them to 0-1.
        native = spec.format in (oiio.TypeDesc(oiio.HALF), oiio.TypeDesc(oiio.FLOAT))
        pixels = inp.read_image(0, 0, 0, min(spec.nchannels, 3), spec.format if native else oiio.FLOAT)
        problem = inp.geterror() if pixels is None else ""
    finally:
        inp.close()
    if pixels is None:
        raise InputImageError(f"cannot decode pixels ({problem or 'unreadable'}).", where=path,
                              fix="Re-export the frame; it may be truncated or corrupt.")
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif pixels.shape[2] == 2:
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    rgb = np.ascontiguousarray(pixels[:, :, :3])
    if check_finite and not np.isfinite(rgb).all():
        bad = int((~np.isfinite(rgb)).any(axis=2).sum())
        raise InputImageError(f"{bad} pixel(s) are NaN or Inf.", where=path,
                              fix="Fix the frame at the source, or run QC to find every affected frame.")
    return rgb


_COMPRESSION = {"zip": "zip", "piz": "piz", "dwaa": "dwaa:45", "none": "none"}


def write_exr(path: str | os.PathLike, image: np.ndarray, compression: str = "zip",
              attributes: dict[str, str | float | int | tuple[float, ...]] | None = None) -> Path:
    """Write a half-float RGB EXR atomically, with header attributes (strings, numbers, or
    tuples of floats such as the 8-float `chromaticities`)."""
    import OpenImageIO as oiio

    image = np.ascontiguousarray(image, dtype=np.float32)
    height, width, channels = image.shape
    spec = oiio.ImageSpec(width, height, channels, oiio.HALF)
    if channels == 3:
        spec.channelnames = ("R", "G", "B")
    spec.attribute("compression", _COMPRESSION.get(compression, compression))
    for key, value in (attributes or {}).items():
        if isinstance(value, (tuple, list)):
            spec.attribute(key, oiio.TypeDesc(f"float[{len(value)}]"), tuple(float(v) for v in value))
        else:
            spec.attribute(key, value)
    path = Path(path)
    with atomic_path(path) as tmp:
        out = oiio.ImageOutput.create(str(tmp))
        if out is None or not out.open(str(tmp), spec):
            raise InputImageError(f"cannot write ({oiio.geterror()}).", where=str(path),
                                  fix="Check free disk space and write permission on the output folder.")
        ok = out.write_image(image)
        out.close()
        if not ok:
            raise InputImageError(f"write failed ({out.geterror()}).", where=str(path))
    return path


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an 8-bit PNG (values clipped to 0–1) atomically, for previews and contact sheets."""
    import OpenImageIO as oiio

    image = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    if image.ndim == 2:
        image = image[:, :, None]
    height, width, channels = image.shape
    spec = oiio.ImageSpec(width, height, channels, oiio.UINT8)
    path = Path(path)
    with atomic_path(path) as tmp:
        out = oiio.ImageOutput.create("png")
        if out is None or not out.open(str(tmp), spec):
            raise InputImageError(f"cannot write ({oiio.geterror()}).", where=str(path))
        out.write_image((image * 255.0 + 0.5).astype(np.uint8))
        out.close()
    return path


def read_header(path: str | os.PathLike) -> dict[str, object]:
    """All header attributes of an image file (used to check provenance)."""
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise InputImageError(f"cannot open ({oiio.geterror()}).", where=str(path))
    try:
        spec = inp.spec()
        return {attr.name: attr.value for attr in spec.extra_attribs}
    finally:
        inp.close()
