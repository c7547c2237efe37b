"""Spatial recovery made real (issue 16): the spatial sample, a spatial model that beats the
3D-LUT baseline on a small spatial shot, and the grain choice doing what the recipe says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_sample import _reference_on_source

from ml.cli import main
from ml.guide import GuidePlanner
from ml.imageio import frame_path, read_image
from ml.job import spatial_training_defaults
from ml.neural import checkpoint as ckpt
from ml.neural.infer import PipelineSettings, infer_frame
from ml.neural.predict import source_grain
from ml.primitives import luma
from ml.sample import apply_reference_grade, load_truth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_spatial  # noqa: E402  (the benchmark's own shot, training and scoring)

NEVER = 10 ** 9


def _band(y: np.ndarray) -> np.ndarray:
    """Luma detail of ~1-2 px: what a soft generation loses."""
    from skimage.filters import gaussian

    return gaussian(y, 0.5) - gaussian(y, 2.0)


def test_spatial_sample_is_soft_and_grainy_with_a_sharper_reference(tmp_path, capsys):
    width, height = 160, 90
    assert main(["--json", "sample", "--out", str(tmp_path), "--branch", "spatial", "--frames", "8",
                 "--width", str(width), "--height", str(height)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["type"] == "result" and result["branch"] == "spatial" and result["reference_size"] == [width, height]
    truth = load_truth(tmp_path)
    assert truth["branch"] == "spatial" and truth["damage"]["source_blur_sigma_px"] > 1.0
    for entry in [e for e in truth["reference_frames"] if e["source_frame"] is not None][:6:2]:
        frame = entry["source_frame"]
        clean = read_image(frame_path(result["clean"], frame))
        source = read_image(frame_path(result["source"], frame))
        reference = read_image(frame_path(result["reference"], entry["frame"]))
        on_source, mask = _reference_on_source(reference, entry["M_matrix"], (height, width),
                                               result["letterbox_rows"])
        graded = apply_reference_grade(clean, truth["reference_grade"])
        inside = mask[..., None].repeat(3, axis=2)
        # The Reference (in its own grade, warped by the truth's exact M) holds the clean detail;
        # the Source lost much of it and carries more grain.
        ref_detail = np.corrcoef(_band(luma(on_source))[mask], _band(luma(graded))[mask])[0, 1]
        src_detail = np.corrcoef(_band(luma(source))[mask], _band(luma(clean))[mask])[0, 1]
        assert ref_detail > 0.9 and src_detail < 0.85 and ref_detail > src_detail + 0.1, (ref_detail, src_detail)
        # The Reference has its own grade: not the clean colour.
        assert np.abs(on_source - clean)[inside].mean() > 0.01
        # The Source's colour is usable: its CbCr stays close to the clean frame's (a mild fade only).
        from ml.colour import rgb_to_ycbcr

        chroma_error = np.abs(rgb_to_ycbcr(source)[..., 1:] - rgb_to_ycbcr(clean)[..., 1:]).mean()
        assert chroma_error < 0.03, chroma_error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small spatial shot (256x144, every 4th pair held out) and the spatial defaults' model
    trained on it with a shortened schedule."""
    root = tmp_path_factory.mktemp("spatial")
    torch.manual_seed(0)
    shot = bench_spatial.build_shot(root, 256, 144)
    settings = {**spatial_training_defaults(), "steps": 240, "validate_every": 60}
    run = bench_spatial.train_run(shot, root, "model", settings)
    return shot, root, run


def test_spatial_model_beats_the_baseline_and_closes_half_the_gap_on_held_out_frames(trained):
    shot, _, run = trained
    points = bench_spatial.reference_points(shot)
    (source_psnr, source_ssim), (base_psnr, base_ssim) = points["Source"], points["3D-LUT baseline"]
    # Against the truth (the clean luma in the Reference's grade), luma PSNR and SSIM.
    assert run.psnr > base_psnr + 0.3 and run.psnr > source_psnr, (run.psnr, base_psnr, source_psnr)
    assert run.ssim > base_ssim + 0.02 and run.ssim > source_ssim, (run.ssim, base_ssim, source_ssim)
    # Reference-guided (the default): at least half of the luma gap from the baseline to the Reference.
    reference_psnr = points["Reference (aligned)"][0]
    assert (run.psnr - base_psnr) / (reference_psnr - base_psnr) >= 0.5, (run.psnr, base_psnr, reference_psnr)
    quarter, end = run.quarter_vs_end()
    assert end >= quarter - 0.05, run.validations  # training keeps improving over its schedule


def test_grain_choice_changes_the_output_as_documented(trained):
    shot, root, _ = trained
    model, metadata = ckpt.load_model(root / "model" / "train" / "model_final.safetensors", "cpu")
    frame = shot.job.source.first_frame
    source = read_image(frame_path(shot.job.source.path, frame))
    # As inference feeds a reference-guided model: the frame's aligned Reference and its coverage.
    aligned, cover, _ = GuidePlanner(shot.job).guide(frame)
    guide = np.concatenate([aligned, cover[..., None]], axis=2)
    clean = infer_frame(model, metadata, source, settings=PipelineSettings(grain="clean"), guide=guide)
    kept = infer_frame(model, metadata, source, settings=PipelineSettings(grain="keep_source"), guide=guide)

    def y(image):
        return torch.from_numpy(luma(image).astype(np.float32))[None, None]

    grain = source_grain(y(source))[0, 0].numpy()
    # keep_source: the restored luma plus exactly the Source's grain (its luma above a 1.5 px Gaussian).
    np.testing.assert_allclose(luma(kept) - luma(clean), grain, atol=2e-4)
    # How much of the Source's high-frequency luma each output carries (regression on the grain).
    def share(image):
        high = source_grain(y(image))[0, 0].numpy()
        return float((high * grain).sum() / (grain * grain).sum())

    # The Source itself scores 1. Clean: the model has taken much of the grain out; kept: it is all back.
    assert share(clean) < 0.85 and share(kept) > share(clean) + 0.6, (share(kept), share(clean))
    # Chroma is the Source's own either way (the spatial branch predicts luma only).
    from ml.colour import rgb_to_ycbcr

    np.testing.assert_allclose(rgb_to_ycbcr(kept)[..., 1:], rgb_to_ycbcr(source)[..., 1:], atol=2e-4)


def test_train_panel_defaults_button_and_grain_field_in_blender(addon, tmp_path):
    """The add-on (installed from its zip into the bpy module): *Use Spatial Defaults* sets the
    measured defaults, and the grain choice travels from the scene into job.json."""
    from importlib import import_module

    import bpy
    from conftest import ADDON_MODULE

    recipe = import_module(ADDON_MODULE + ".addon.recipe")
    fr = bpy.context.scene.film_recovery
    fr.work_dir = str(tmp_path)
    fr.branch = "spatial"
    fr.training.size, fr.training.augment, fr.training.gradient_loss = "tiny", False, 0.0
    assert bpy.ops.film_recovery.use_spatial_defaults() == {"FINISHED"}
    for name, value in spatial_training_defaults().items():
        assert getattr(fr.training, name) == (pytest.approx(value) if isinstance(value, float) else value), name
    assert fr.output.grain == "clean"
    fr.output.grain = "keep_source"
    assert recipe.recipe_to_job(fr).output.grain == "keep_source"


def test_tone_curve_fits_a_known_curve_and_starts_as_the_identity():
    from ml.neural.models import LumaCurve, build_model, model_config

    curve = LumaCurve()
    source = torch.rand(50_000)
    target = 0.06 + 0.9 * source ** 1.3  # lifted blacks and a gamma: what a later generation does
    assert torch.allclose(curve(source), source)  # the identity until fitted
    curve.fit(source, target)
    assert (curve(source) - target).abs().max() < 2e-3
    # The spatial model carries one (saved with its weights); an untrained one returns the Source.
    model = build_model(model_config("unet", "tiny", "spatial")).eval()
    assert model.config.tone_curve and model.tone is not None
    frame = torch.rand(1, 3, 24, 40) * torch.tensor([1.0, 0.2, 0.2]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(frame), frame, atol=1e-6)
    assert build_model(model_config("unet", "tiny", "chroma")).tone is None
