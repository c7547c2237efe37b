"""Movie plates and review movies through ffmpeg (on PATH or imageio-ffmpeg's bundled binary).

Frames carry their index as a row of black/white blocks, so a decoded frame proves which
frame it is even after lossy compression. imageio-ffmpeg is a requirement: without any
ffmpeg these tests fail, they never skip.
"""

from __future__ import annotations

import io
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from ml.errors import FilmRecoveryError, InputImageError
from ml.ingest import movie_support, plate_frames, read_plate_frame, read_plate_raw, read_plate_raw_run, source_frame
from ml.job import Job, Plate
from ml.movie import find_ffmpeg, movie_info, read_movie_frames, require_ffmpeg, standard_rate
from ml.qc import run_qc
from ml.writers import review_movie_available, write_review_movie

COUNT = 12
HEIGHT, WIDTH = 96, 144
BITS = 6
BLOCK = 16  # marker block size: big enough to survive 4:2:0 and lossy coding


def marked_frame(index: int) -> np.ndarray:
    """A photograph shifted by `index`, with `index` in binary as white/black blocks along the top."""
    photo = data.coffee()[::4, ::4][:HEIGHT, :WIDTH] / 255.0
    image = np.roll(photo, 3 * index, axis=1).astype(np.float32)
    assert image.shape == (HEIGHT, WIDTH, 3)
    for bit in range(BITS):
        image[:BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = float((index >> bit) & 1)
    # Exact 16-bit code values, so a lossless round trip compares exactly.
    return np.round(image * 65535.0) / np.float32(65535.0)


def marker(image: np.ndarray) -> int:
    blocks = [image[4:BLOCK - 4, bit * BLOCK + 4:(bit + 1) * BLOCK - 4].mean() for bit in range(BITS)]
    return sum(1 << bit for bit, value in enumerate(blocks) if value > 0.5)


FRAMES = [marked_frame(i) for i in range(COUNT)]


def ffmpeg_encode(path: Path, frames: list[np.ndarray], rate: str, codec: list[str]) -> Path:
    """Encode with ffmpeg directly (independent of the writer under test)."""
    command = [require_ffmpeg(str(path)), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb48le",
               "-s", f"{WIDTH}x{HEIGHT}", "-r", rate, "-i", "pipe:0", *codec, str(path)]
    payload = b"".join((np.round(f * 65535.0)).astype("<u2").tobytes() for f in frames)
    subprocess.run(command, input=payload, check=True)
    return path


@pytest.fixture(scope="module")
def movies(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("movies")
    return {
        # Lossless 16-bit RGB at 23.976 fps in Matroska (1 ms time base: the rate must be snapped).
        "ffv1": ffmpeg_encode(folder / "plate.mkv", FRAMES, "24000/1001", ["-c:v", "ffv1", "-pix_fmt", "gbrp16le"]),
        # Long-GOP H.264 with B-frames: seeking must land on the right frame, not the keyframe.
        "h264": ffmpeg_encode(folder / "plate.mp4", FRAMES, "24", ["-c:v", "libx264", "-crf", "12", "-g", "6",
                                                                   "-pix_fmt", "yuv420p", "-colorspace", "bt709"]),
        "prores": write_review_movie(folder / "plate.mov", FRAMES, 24.0),
    }


def test_an_ffmpeg_is_always_found():
    # imageio-ffmpeg is in requirements.txt: no ffmpeg at all is an installation error, not a skip.
    assert find_ffmpeg(), "no ffmpeg: `pip install imageio-ffmpeg` (requirements.txt)"
    assert movie_support() and review_movie_available()


def test_movie_plate_frames_and_length_check(movies):
    info = movie_info(str(movies["ffv1"]))
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    assert info.rate == Fraction(24000, 1001)
    assert movie_info(str(movies["prores"])).rate == 24
    plate = Plate(path=str(movies["ffv1"]), first_frame=1001, last_frame=1000 + COUNT)
    assert plate_frames(plate) == list(range(1001, 1001 + COUNT))
    with pytest.raises(InputImageError) as error:
        plate_frames(Plate(path=str(movies["ffv1"]), first_frame=1001, last_frame=1001 + COUNT))
    assert f"has {COUNT}" in error.value.problem and "plate.mkv" in str(error.value)


def test_lossless_frames_are_exact_by_index(movies):
    plate = Plate(path=str(movies["ffv1"]), first_frame=1001, last_frame=1000 + COUNT)
    for index in (0, 1, 5, COUNT - 2, COUNT - 1):
        np.testing.assert_array_equal(read_plate_raw(plate, 1001 + index), FRAMES[index])
    run = list(read_plate_raw_run(plate, 1003, 6))
    assert len(run) == 6
    for offset, image in enumerate(run):
        np.testing.assert_array_equal(image, FRAMES[2 + offset])


@pytest.mark.parametrize("kind, tolerance", [("prores", 0.02), ("h264", 0.02)])
def test_lossy_frames_land_on_the_right_index(movies, kind, tolerance):
    plate = Plate(path=str(movies[kind]), first_frame=1, last_frame=COUNT)
    for index in (0, 3, 7, COUNT - 1):
        image = read_plate_raw(plate, 1 + index)
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.float32
        assert marker(image) == index
        # Colour survives (BT.709 both ways, limited range): mean error, away from the marker blocks.
        assert np.abs(image[BLOCK:] - FRAMES[index][BLOCK:]).mean() < tolerance
    assert [marker(f) for f in read_movie_frames(str(movies[kind]), 4, 5)] == [4, 5, 6, 7, 8]


def test_missing_movie_and_range_past_the_end_name_the_file(tmp_path, movies):
    missing = Plate(path=str(tmp_path / "lost_plate.mov"), first_frame=1, last_frame=5)
    for call in (lambda: plate_frames(missing), lambda: read_plate_frame(missing, 2)):
        with pytest.raises(InputImageError) as error:
            call()
        assert "lost_plate.mov" in str(error.value) and "not found" in error.value.problem
    with pytest.raises(InputImageError) as error:
        next(read_movie_frames(str(movies["ffv1"]), COUNT, 1))
    assert "frame 12" in error.value.problem and "plate.mkv" in str(error.value)


def test_no_ffmpeg_says_how_to_install_one(tmp_path, movies, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # the package is not importable
    assert find_ffmpeg() is None and not movie_support() and not review_movie_available()
    copy = tmp_path / "uncached.mov"
    copy.write_bytes(movies["prores"].read_bytes())
    with pytest.raises(FilmRecoveryError) as error:
        plate_frames(Plate(path=str(copy), first_frame=1, last_frame=2))
    assert "uncached.mov" in str(error.value) and "imageio-ffmpeg" in error.value.fix
    assert "image sequence" in error.value.fix
    with pytest.raises(FilmRecoveryError, match="imageio-ffmpeg"):
        write_review_movie(tmp_path / "review.mov", FRAMES[:2], 24.0)


def test_an_old_ffmpeg_on_path_is_passed_over_and_rates_are_exact(tmp_path, monkeypatch):
    old = tmp_path / "ffmpeg"
    old.write_text("#!/bin/sh\necho 'ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c)'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    found = find_ffmpeg()
    assert found and Path(found) != old and "imageio_ffmpeg" in found  # no -fps_mode before 5.1
    assert [standard_rate(f) for f in (23.98, 29.97, 59.94, 24.0, 25.0, 12.5)] == [
        Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001), 24, 25, Fraction(25, 2)]


def test_qc_and_ingest_run_on_movie_plates(tmp_path, movies):
    job = Job(work_dir=str(tmp_path / "work"),
              source=Plate(path=str(movies["ffv1"]), first_frame=1001, last_frame=1000 + COUNT, fps=23.976),
              reference=Plate(path=str(movies["h264"]), first_frame=1001, last_frame=1000 + COUNT, fps=24.0))
    report = run_qc(job, threads=2)
    failed = [f for f in report["findings"] if f["status"] == "fail"]
    assert not failed, failed
    assert report["plates"]["source"]["size"] == [WIDTH, HEIGHT]
    assert report["plates"]["source"]["frames"] == list(range(1001, 1001 + COUNT))
    assert all(value is not None for value in report["plates"]["reference"]["luma"])
    np.testing.assert_array_equal(source_frame(job, 1006), FRAMES[5])

    broken = Job(work_dir=str(tmp_path / "work2"), source=job.source,
                 reference=Plate(path=str(movies["h264"]), first_frame=1001, last_frame=1001 + COUNT))
    findings = run_qc(broken, threads=2)["findings"]
    assert any(f["check"] == "plate" and f["status"] == "fail" and "Reference" in f["message"] for f in findings)


def test_review_movie_is_playable_rec709_and_atomic(tmp_path):
    folder = tmp_path / "review"
    red = np.full((50, 71, 3), (1.0, 0.0, 0.0), np.float32)  # odd width: padded to 72
    frames = [red] * 3 + [f[:50, :71] for f in FRAMES[:2]]
    for name in ("shot.mov", "shot.mp4"):
        path = write_review_movie(folder / name, frames, 23.976)
        capture = cv2.VideoCapture(str(path))  # an independent decoder
        decoded = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            decoded.append(image)
        assert len(decoded) == len(frames) and decoded[0].shape == (50, 72, 3)
        info = movie_info(str(path))
        assert (info.colour_matrix, info.colour_range, info.rate) == ("bt709", "tv", Fraction(24000, 1001))
        # The stored luma of pure red is BT.709's (16 + 219 * 0.2126 = 62.6), not BT.601's (81.5).
        raw = subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                              "-pix_fmt", info.pixel_format, "-"], capture_output=True, check=True).stdout
        luma = np.frombuffer(raw, "<u2" if "10" in info.pixel_format else "u1")[:50 * 72].reshape(50, 72)
        luma_8bit = luma / (4.0 if "10" in info.pixel_format else 1.0)
        assert abs(np.median(luma_8bit) - 62.6) < 1.5
        decoded_red = next(read_movie_frames(str(path), 0, 1))
        np.testing.assert_allclose(np.median(decoded_red[:, :71].reshape(-1, 3), axis=0), [1.0, 0.0, 0.0], atol=0.02)

    with pytest.raises(FilmRecoveryError, match="the first is"):
        write_review_movie(folder / "bad.mov", [FRAMES[0], FRAMES[1][:, :-8]], 24.0)
    assert sorted(p.name for p in folder.iterdir()) == ["shot.mov", "shot.mp4"]  # no .part, no bad.mov


def test_inference_reads_a_movie_source_and_writes_the_review_movie(tmp_path, movies):
    import torch

    from ml.events import Reporter
    from ml.job import Output
    from ml.neural.checkpoint import save_model
    from ml.neural.infer import InferOptions, run_inference
    from ml.neural.models import build_model, model_config

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model(model_config("unet", "tiny", "chroma")).eval()
    weights = save_model(tmp_path / "model.safetensors", model, {"branch": "chroma",
                                                                   "colour": {"ycbcr": "bt709-full"}})
    job = Job(name="shot", work_dir=str(tmp_path / "work"), model_path=str(weights),
              source=Plate(path=str(movies["h264"]), first_frame=1001, last_frame=1000 + COUNT, fps=24.0),
              output=Output(display_exr=True, aces_exr=False, review="movie"))
    result = run_inference(job, Reporter(io.StringIO()), InferOptions(frames=[1004, 1005, 1006], device="cpu"))
    movie = Path(result.outputs["movie"])
    assert movie.suffix == ".mov" and movie.exists()
    info = movie_info(str(movie))
    assert (info.width, info.height, info.codec) == (WIDTH, HEIGHT, "prores")
    # The Y channel (kept by the chroma branch) carries the Source's frame markers through.
    assert [marker(f) for f in read_movie_frames(str(movie), 0, 3)] == [3, 4, 5]
    with pytest.raises(InputImageError):
        next(read_movie_frames(str(movie), 3, 1))  # exactly three frames
