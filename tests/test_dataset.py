"""Stage 3: ground truth keeps the Source's unchanged channels; the dataset validates and records provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml import colour
from ml.dataset import HALF_TOLERANCE, build_target, export_dataset
from ml.errors import FilmRecoveryError
from ml.imageio import read_image
from ml.job import Crop, Job, Pair, Plate
from ml.sample import generate_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    info = generate_sample(out, seed=3, frames=8, width=320, height=180)
    truth = json.loads((out / "truth" / "truth.json").read_text())
    return info, truth


def _job(sample, tmp_path, branch: str) -> Job:
    info, truth = sample
    warps = {r["frame"]: r["M"] for r in truth["reference_frames"]}
    pairs = [Pair(source_frame=p["source_frame"], reference_frame=p["reference_frame"], shot=p["shot"])
             for p in truth["pairs"] if p["reference_frame"] is not None]
    job = Job(name="t", work_dir=str(tmp_path), branch=branch,
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              pairs=pairs[:4])
    job.pairs[1].accepted, job.pairs[1].reason = False, "splice flash"
    job.alignment.solves = {str(p.source_frame): warps[p.reference_frame] for p in job.pairs}
    job.crop = Crop(enabled=True, x=16, y=28, width=288, height=124)  # inside the letterbox, with margin
    job.training.holdout_every = 3
    return job


def test_targets_keep_the_source_channels_exactly():
    rng = np.random.default_rng(0)
    src = rng.uniform(0.2, 0.8, (16, 16, 3)).astype(np.float32)
    ref = np.clip(src * 0.9 + rng.normal(0, 0.05, src.shape), 0, 1).astype(np.float32)  # stays in gamut
    chroma = colour.rgb_to_ycbcr(build_target(src, ref, "chroma"))
    spatial = colour.rgb_to_ycbcr(build_target(src, ref, "spatial"))
    src_ycc, ref_ycc = colour.rgb_to_ycbcr(src), colour.rgb_to_ycbcr(ref)
    np.testing.assert_allclose(chroma[..., 0], src_ycc[..., 0], atol=1e-5)
    np.testing.assert_allclose(chroma[..., 1:], ref_ycc[..., 1:], atol=1e-5)
    np.testing.assert_allclose(spatial[..., 1:], src_ycc[..., 1:], atol=1e-5)
    np.testing.assert_allclose(spatial[..., 0], ref_ycc[..., 0], atol=1e-5)


def test_target_is_safety_clamped():
    src = np.full((2, 2, 3), [0.9, 0.1, 0.1], np.float32)
    ref = np.full((2, 2, 3), [0.1, 0.1, 0.95], np.float32)
    target = build_target(src, ref, "chroma")
    assert target.min() >= 0.0 and target.max() <= 1.0


@pytest.mark.parametrize("branch", ["chroma", "spatial"])
def test_export_writes_pairs_manifest_and_keeps_unchanged_channels(sample, tmp_path, branch):
    job = _job(sample, tmp_path, branch)
    manifest = export_dataset(job, out_dir=tmp_path / "ds")
    assert manifest["branch"] == branch and len(manifest["pairs"]) == 3
    assert manifest["rejected"] == [{"source_frame": job.pairs[1].source_frame,
                                     "reference_frame": job.pairs[1].reference_frame, "reason": "splice flash"}]
    assert [p["holdout"] for p in manifest["pairs"]] == [False, False, True]
    for record in manifest["pairs"]:
        inp = read_image(tmp_path / "ds" / record["input"])
        tgt = read_image(tmp_path / "ds" / record["target"])
        assert inp.shape == tgt.shape == (124, 288, 3)
        assert record["matrix_source"] == "auto" and len(record["checksums"]["input"]) == 64
        assert record["unchanged_channel_max_error"] < HALF_TOLERANCE
        keep = slice(0, 1) if branch == "chroma" else slice(1, 3)
        diff = np.abs(colour.rgb_to_ycbcr(inp)[..., keep] - colour.rgb_to_ycbcr(tgt)[..., keep])
        # Only pixels the 0..1 safety clamp touched may move (recorded per pair).
        assert np.median(diff) < 1e-3 and record["clamped_fraction"] < 0.2
        change = slice(1, 3) if branch == "chroma" else slice(0, 1)
        moved = np.abs(colour.rgb_to_ycbcr(inp)[..., change] - colour.rgb_to_ycbcr(tgt)[..., change]).mean()
        assert moved > 0.005, "the target should carry the Reference's channels"
    assert not list((tmp_path / "ds").rglob("*.part*"))


def test_crop_over_the_letterbox_is_refused(sample, tmp_path):
    job = _job(sample, tmp_path, "chroma")
    job.crop = Crop(enabled=False)
    with pytest.raises(FilmRecoveryError, match="border"):
        export_dataset(job, out_dir=tmp_path / "ds")


def test_second_branch_into_the_same_dataset_is_refused(sample, tmp_path):
    export_dataset(_job(sample, tmp_path, "chroma"), out_dir=tmp_path / "ds")
    with pytest.raises(FilmRecoveryError, match="one target build per branch"):
        export_dataset(_job(sample, tmp_path, "spatial"), out_dir=tmp_path / "ds")


def test_no_accepted_pairs_is_a_clear_error(sample, tmp_path):
    job = _job(sample, tmp_path, "chroma")
    for pair in job.pairs:
        pair.accepted = False
    with pytest.raises(FilmRecoveryError, match="no accepted pairs"):
        export_dataset(job, out_dir=tmp_path / "ds")
