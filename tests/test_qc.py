"""Parity QC on tiny synthetic sequences with deliberate faults, and the qc/balance commands."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from skimage import data

from ml.cli import main
from ml.imageio import write_exr
from ml.job import Conform, Job, Plate, load_job, save_job
from ml.qc import qc_report_path, run_qc

FRAMES = list(range(1001, 1009))


def _frames(size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """A slow pan over a photograph, one frame per FRAMES entry (no two frames alike)."""
    photo = (data.coffee()[::3, ::3] / 255.0).astype(np.float32)
    h, w = size
    return [np.ascontiguousarray(photo[10:10 + h, 5 + 2 * i:5 + 2 * i + w]) for i in range(len(FRAMES))]


def _write(folder, images, frames=FRAMES, channels: int = 3) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for frame, image in zip(frames, images, strict=True):
        if channels == 4:
            image = np.concatenate([image, np.ones(image.shape[:2] + (1,), np.float32)], axis=2)
        write_exr(folder / f"plate.{frame:04d}.exr", image, compression="zip")
    return str(folder / "plate.####.exr")


def _job(tmp_path, source_images=None, reference_images=None, conform="fit", **kw) -> Job:
    source = _write(tmp_path / "src", source_images or _frames(), **kw)
    reference = _write(tmp_path / "ref", reference_images or _frames())
    return Job(work_dir=str(tmp_path / "work"),
               source=Plate(path=source, first_frame=FRAMES[0], last_frame=FRAMES[-1]),
               reference=Plate(path=reference, first_frame=FRAMES[0], last_frame=FRAMES[-1]),
               conform=Conform(mode=conform))


def _problems(report) -> dict[str, dict]:
    return {f["check"]: f for f in report["findings"] if f["status"] != "pass"}


def test_clean_plates_pass(tmp_path):
    report = run_qc(_job(tmp_path))
    assert report["status"] != "fail"
    assert set(_problems(report)) <= {"cast"}  # the photograph is warm; nothing else to report
    assert report["plates"]["source"]["size"] == [64, 48]
    assert len(report["plates"]["source"]["luma"]) == len(FRAMES)


def test_size_mismatch_fails_without_conform_and_passes_with_it(tmp_path):
    job = _job(tmp_path, reference_images=_frames((40, 60)), conform="none")
    problems = _problems(run_qc(job))
    assert problems["resolution"]["status"] == "fail"
    assert "conform" in problems["resolution"]["message"]
    job.conform.mode = "fit"
    report = run_qc(job)
    assert "resolution" not in _problems(report)


def test_missing_frame_fails_and_names_it(tmp_path):
    job = _job(tmp_path)
    (tmp_path / "src" / "plate.1004.exr").unlink()
    report = run_qc(job)
    missing = _problems(report)["missing"]
    assert report["status"] == "fail"
    assert missing["frames"] == [1004] and "plate.1004.exr" in missing["message"]


def test_nan_fails(tmp_path):
    images = _frames()
    images[2] = images[2].copy()
    images[2][5, 7, 1] = np.nan
    problems = _problems(run_qc(_job(tmp_path, source_images=images)))
    assert problems["nan_inf"]["status"] == "fail" and problems["nan_inf"]["frames"] == [1003]


def test_alpha_is_reported_and_dropped(tmp_path):
    problems = _problems(run_qc(_job(tmp_path, channels=4)))
    assert problems["channels"]["status"] == "warn"
    assert "alpha" in problems["channels"]["message"] and len(problems["channels"]["frames"]) == len(FRAMES)


def test_flash_frame_is_found_alone(tmp_path):
    images = _frames()
    images[4] = np.clip(images[4] * 1.8 + 0.1, 0, 1)
    problems = _problems(run_qc(_job(tmp_path, source_images=images)))
    assert problems["flash"]["status"] == "warn" and problems["flash"]["frames"] == [1005]
    assert "flicker" not in problems


def test_a_hard_cut_is_not_flicker(tmp_path):
    other = (data.astronaut()[::6, ::6] / 255.0).astype(np.float32) * 0.5  # a darker second shot
    images = _frames()[:4] + [np.ascontiguousarray(other[5 + i:53 + i, 5:69]) for i in range(4)]
    report = run_qc(_job(tmp_path, source_images=images, reference_images=images))
    assert "flicker" not in _problems(report) and "flash" not in _problems(report)
    cuts = [f for f in report["findings"] if f["check"] == "cuts"]
    assert cuts and cuts[0]["frames"] == [1005]
    # The same cut test pair curation and the shot plan use (one shot analysis for all three).
    from ml import curation

    assert curation.detect_cuts([curation.analyse_frame(image, 1001 + i) for i, image in enumerate(images)]) == [1005]


def test_qc_and_curation_agree_on_the_sample_reels_cut(tmp_path):
    from ml import curation
    from ml.ingest import source_frame
    from ml.sample import generate_sample

    info = generate_sample(tmp_path / "sample", seed=2, frames=16, width=192, height=108)
    job = Job(name="q", work_dir=str(tmp_path / "work"),
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame))
    report = run_qc(job)
    qc_cuts = [f["frames"] for f in report["findings"] if f["check"] == "cuts" and f["message"].startswith("Source")]
    frames = range(info.first_frame, info.last_frame + 1)
    curation_cuts = curation.detect_cuts([curation.analyse_frame(source_frame(job, f, balanced=False), f) for f in frames])
    assert qc_cuts == [curation_cuts] and curation_cuts == [info.cut_frame]


def test_flicker_duplicates_and_scene_linear_values_warn(tmp_path):
    images = _frames()
    images[2] = images[2] * 0.9  # a 10% dip: flicker, not a flash
    images[6] = images[5]  # a repeated frame
    images[0] = images[0] * 4.0  # scene-linear looking values
    problems = _problems(run_qc(_job(tmp_path, source_images=images)))
    assert 1003 in problems["flicker"]["frames"]
    assert problems["duplicates"]["frames"] == [1007]
    assert problems["range"]["frames"] == [1001] and "aces2065-1" in problems["range"]["message"]


def _run_cli(argv, capsys) -> list[dict]:
    code = main(["--json", *argv])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert code == 0, events[-1]
    return events


def test_qc_command_writes_the_report_and_emits_progress(tmp_path, capsys):
    job = _job(tmp_path)
    job_path = tmp_path / "job.json"
    save_job(job, job_path)
    events = _run_cli(["qc", str(job_path), "--threads", "2"], capsys)
    progress = [e for e in events if e["type"] == "progress"]
    assert len(progress) == 2 * len(FRAMES)
    result = events[-1]
    assert result["type"] == "result" and result["status"] in ("pass", "warn")
    saved = json.loads(qc_report_path(job).read_text())
    assert saved["findings"] == result["findings"]


def test_balance_command_estimates_and_writes_the_job(tmp_path, capsys):
    greys = [np.repeat(f.mean(axis=2, keepdims=True), 3, axis=2) for f in _frames()]  # neutral pictures
    images = [(g * [1.15, 1.0, 0.8] + [0.0, 0.02, 0.05]).astype(np.float32) for g in greys]
    job = _job(tmp_path, source_images=images)
    job_path = tmp_path / "job.json"
    save_job(job, job_path)
    events = _run_cli(["balance", str(job_path), "--frames", "4", "--write"], capsys)
    result = events[-1]
    assert result["type"] == "result" and len(result["frames"]) == 4
    assert max(map(abs, result["cast_after"])) < 0.25 * max(map(abs, result["cast_before"]))
    saved = load_job(job_path)
    assert saved.balance.enabled and saved.balance.gain == pytest.approx(result["balance"]["gain"])


def test_unreadable_frame_fails(tmp_path):
    job = _job(tmp_path)
    (tmp_path / "src" / "plate.1002.exr").write_bytes(b"not an exr")
    problems = _problems(run_qc(job))
    assert problems["unreadable"]["status"] == "fail" and problems["unreadable"]["frames"] == [1002]


def test_report_stream_is_json_lines(tmp_path):
    from ml.events import Reporter

    stream = io.StringIO()
    run_qc(_job(tmp_path), Reporter(stream=stream))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all(e["type"] == "progress" and e["stage"] == "qc" for e in lines)
