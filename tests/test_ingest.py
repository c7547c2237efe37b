"""Ingest API, conform, neutral pre-balance and Reference clean-up."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skimage import data

from ml import colour as C
from ml.balance import apply_balance, estimate_balance
from ml.cleanup import clean_reference, degrain, remove_dust
from ml.errors import InputImageError
from ml.imageio import write_exr
from ml.ingest import (
    conform_matrix,
    estimate_conform,
    plate_frames,
    read_plate_frame,
    reference_frame,
    source_frame,
)
from ml.job import Balance, Cleanup, Conform, Job, Plate
from ml.primitives import luma  # noqa: E402


def _photo(name: str = "coffee", step: int = 4) -> np.ndarray:
    image = getattr(data, name)()[::step, ::step] / 255.0
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image, dtype=np.float32)


def _sequence(folder, frames, image) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        write_exr(folder / f"plate.{frame:04d}.exr", image)
    return str(folder / "plate.####.exr")


def test_display_plate_passes_through_and_aces_plate_goes_through_the_output_transform(tmp_path):
    display = _photo()
    display_path = _sequence(tmp_path / "display", [1001, 1002], display)
    plate = Plate(path=display_path, first_frame=1001, last_frame=1002)
    assert plate_frames(plate) == [1001, 1002]
    np.testing.assert_allclose(read_plate_frame(plate, 1002), display, atol=5e-4)  # half float

    aces = C.display_to_aces2065(display)
    aces_path = _sequence(tmp_path / "aces", [1001], aces)
    aces_plate = Plate(path=aces_path, first_frame=1001, last_frame=1001, ingest="aces2065-1")
    ingested = read_plate_frame(aces_plate, 1001)
    assert aces.max() > 1.0 and ingested.max() <= 1.0 + 1e-5  # mapped, not clamped
    assert np.percentile(np.abs(ingested - display), 99) < 2.0 / 255.0


def test_missing_frame_and_range_errors_name_the_file_and_fix(tmp_path):
    path = _sequence(tmp_path / "seq", [1001], _photo())
    plate = Plate(path=path, first_frame=1001, last_frame=1002)
    with pytest.raises(InputImageError) as missing:
        read_plate_frame(plate, 1002)
    assert "plate.1002.exr" in str(missing.value) and "Fix:" in str(missing.value)
    with pytest.raises(InputImageError, match="outside the plate range"):
        read_plate_frame(plate, 1005)


def test_source_and_reference_frames_apply_job_settings(tmp_path):
    image = _photo()
    job = Job(work_dir=str(tmp_path / "work"), branch="chroma",
              source=Plate(path=_sequence(tmp_path / "src", [1], image)),
              reference=Plate(path=_sequence(tmp_path / "ref", [1], image)),
              balance=Balance(enabled=True, gain=[1.1, 1.0, 0.9], offset=[0.01, 0.0, -0.01]),
              cleanup=Cleanup(reference_median=3, source_degrain=1.0))
    raw = read_plate_frame(job.source, 1)
    np.testing.assert_allclose(source_frame(job, 1, balanced=False), raw)
    np.testing.assert_allclose(source_frame(job, 1), raw * [1.1, 1.0, 0.9] + [0.01, 0.0, -0.01], atol=1e-6)
    assert np.abs(source_frame(job, 1, degrained=True) - source_frame(job, 1)).max() > 0.01
    cleaned = reference_frame(job, 1)
    np.testing.assert_allclose(luma(cleaned), luma(raw), atol=1e-5)  # chroma-only median
    assert np.abs(cleaned - raw).max() > 0.01
    job.branch = "spatial"  # spatial: no median even though it is set
    np.testing.assert_array_equal(reference_frame(job, 1), raw)


# --- conform --------------------------------------------------------------------------------

def _map(m: np.ndarray, x: float, y: float) -> tuple[float, float]:
    p = m @ [x, y, 1.0]
    return p[0] / p[2], p[1] / p[2]


def test_conform_matrix_modes():
    same = conform_matrix(Conform(mode="fit"), (640, 480), (640, 480))
    np.testing.assert_allclose(same, np.eye(3), atol=1e-12)
    # 4:3 Reference on a 16:9 Source: fit pillarboxes (heights match), fill crops (widths match).
    fit = conform_matrix(Conform(mode="fit"), (640, 480), (1920, 1080))
    np.testing.assert_allclose(_map(fit, -0.5, -0.5)[1], -0.5)
    np.testing.assert_allclose(_map(fit, 639.5, 479.5)[1], 1079.5)
    np.testing.assert_allclose(_map(fit, 319.5, 239.5), (959.5, 539.5))
    np.testing.assert_allclose(_map(fit, 639.5, 0)[0] - _map(fit, -0.5, 0)[0], 1440.0)
    fill = conform_matrix(Conform(mode="fill"), (640, 480), (1920, 1080))
    np.testing.assert_allclose(_map(fill, 639.5, 0)[0] - _map(fill, -0.5, 0)[0], 1920.0)
    stretch = conform_matrix(Conform(mode="stretch"), (640, 480), (1920, 1080))
    np.testing.assert_allclose(_map(stretch, 639.5, 479.5), (1919.5, 1079.5))
    # An anamorphic Reference (PAR 2) of 960x818 is 2.35:1 on screen: fit letterboxes it.
    scope = conform_matrix(Conform(mode="fit"), (960, 818), (1920, 1080), ref_pixel_aspect=2.0)
    width = _map(scope, 959.5, 0)[0] - _map(scope, -0.5, 0)[0]
    height = _map(scope, 0, 817.5)[1] - _map(scope, 0, -0.5)[1]
    np.testing.assert_allclose(width, 1920.0)
    np.testing.assert_allclose(width / height, 960 * 2 / 818)
    # The user's offset: +x right, +y up (Blender's convention).
    moved = conform_matrix(Conform(mode="none", offset_x=10, offset_y=5), (100, 100), (100, 100))
    np.testing.assert_allclose(_map(moved, 50, 50), (60, 45))


def test_estimate_conform_places_a_letterboxed_reference():
    source = _photo("astronaut", 2)  # 256 x 256 picture
    # Reference: the same picture at 0.75 scale, letterboxed inside a 320 x 240 frame.
    small = source[::4, ::4].repeat(3, axis=0).repeat(3, axis=1)  # 192 x 192
    reference = np.zeros((240, 320, 3), np.float32)
    reference[24:216, 64:256] = small
    conform = estimate_conform(reference, source)
    m = conform_matrix(conform, (320, 240), (256, 256))
    # The picture's corners land on the Source's corners (within a pixel).
    np.testing.assert_allclose(_map(m, 63.5, 23.5), (-0.5, -0.5), atol=1.0)
    np.testing.assert_allclose(_map(m, 255.5, 215.5), (255.5, 255.5), atol=1.0)



def test_conform_command_estimates_and_writes_the_conform(tmp_path):
    """`python -m ml conform job.json --write`: what the add-on's Detect Conform runs as an engine job."""
    import json

    from ml.cli import main
    from ml.job import load_job, save_job

    source = _photo("astronaut", 2)
    small = source[::4, ::4].repeat(3, axis=0).repeat(3, axis=1)
    reference = np.zeros((240, 320, 3), np.float32)
    reference[24:216, 64:256] = small
    write_exr(tmp_path / "src" / "s.1001.exr", source)
    write_exr(tmp_path / "ref" / "r.1001.exr", reference)
    job = Job(name="c", work_dir=str(tmp_path / "work"),
              source=Plate(path=str(tmp_path / "src" / "s.####.exr"), first_frame=1001, last_frame=1001),
              reference=Plate(path=str(tmp_path / "ref" / "r.####.exr"), first_frame=1001, last_frame=1001))
    save_job(job, tmp_path / "job.json")
    assert main(["--json", "conform", str(tmp_path / "job.json"), "--write"]) == 0
    written = load_job(tmp_path / "job.json").conform
    estimate = dataclasses.asdict(estimate_conform(reference, source))
    assert dataclasses.asdict(written) == {k: pytest.approx(v, rel=1e-7) if isinstance(v, float) else v
                                           for k, v in estimate.items()}  # as the add-on stores numbers (32-bit)
    assert json.loads((tmp_path / "job.json").read_text())["conform"]["mode"] == written.mode


# --- balance --------------------------------------------------------------------------------

def test_balance_recovers_a_known_gain_and_offset():
    grey = _photo("camera", 2) * 0.8 + 0.1  # neutral: R = G = B
    gain, offset = np.array([0.7, 1.0, 1.25]), np.array([0.05, 0.0, -0.04])
    cast = (grey * gain + offset).astype(np.float32)
    balance = estimate_balance([cast[:128], cast[128:]])
    assert balance.enabled
    balanced = apply_balance(cast, balance)
    assert np.abs(balanced - balanced.mean(axis=2, keepdims=True)).max() < 2e-3  # neutral again
    gains = np.array(balance.gain)
    np.testing.assert_allclose(gains / gains[1], 1.0 / gain, rtol=1e-3)
    np.testing.assert_allclose(balanced[..., 1], cast[..., 1] * gains[1] + balance.offset[1], atol=1e-6)


def test_apply_balance_is_gain_then_offset():
    image = np.full((2, 2, 3), 0.5, np.float32)
    out = apply_balance(image, Balance(enabled=True, gain=[2.0, 1.0, 0.5], offset=[-0.5, 0.1, 0.0]))
    np.testing.assert_allclose(out[0, 0], [0.5, 0.6, 0.25])


# --- clean-up -------------------------------------------------------------------------------

def test_dust_removal_removes_specks_without_touching_other_pixels():
    clean = _photo("chelsea", 2)
    rng = np.random.default_rng(0)
    dirty = clean.copy()
    specks = np.zeros(clean.shape[:2], bool)
    height, width = specks.shape
    placed = 0
    while placed < 25:
        y, x = rng.integers(6, height - 8), rng.integers(6, width - 8)
        size = int(rng.integers(1, 4))
        around = luma(clean[y - 3:y + size + 3, x - 3:x + size + 3])
        value = 1.0 if around.max() < 0.6 else 0.0 if around.min() > 0.4 else None
        if value is None or specks[y - 6:y + size + 6, x - 6:x + size + 6].any():
            continue
        dirty[y:y + size, x:x + size] = value
        specks[y:y + size, x:x + size] = True
        placed += 1
    repaired, mask = remove_dust(dirty)
    assert mask[specks].mean() > 0.95
    assert np.abs(repaired - clean)[specks].mean() < 0.05  # was ~0.5
    changed = np.any(repaired != dirty, axis=2)
    assert changed[~specks].mean() < 0.002  # everything else is bit-identical (a few natural specks)
    assert remove_dust(clean)[1].mean() < 0.002


def test_spatial_cleanup_is_dust_only_and_degrain_reduces_noise():
    image = _photo("chelsea", 2)
    settings = Cleanup(reference_median=5, reference_denoise=1.5, reference_deband=2.0)
    np.testing.assert_array_equal(clean_reference(image, settings, "spatial"), image)
    chroma = clean_reference(image, settings, "chroma")
    np.testing.assert_allclose(luma(chroma), luma(image), atol=1e-5)
    noisy = image + np.random.default_rng(1).normal(0, 0.05, image.shape).astype(np.float32)
    assert np.abs(degrain(noisy, 1.0) - image).mean() < 0.7 * np.abs(noisy - image).mean()
