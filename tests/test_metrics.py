"""Metrics against independent references (scikit-image, colour-science, Sharma's CIEDE2000
test data) and the temporal stability measure."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage import data, transform
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ml import evaluation as ev
from ml import metrics as mt
from ml.colour import rgb_to_ycbcr

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns that matplotlib is absent
    import colour


def photo(name: str, shape=(96, 128)) -> np.ndarray:
    return transform.resize(getattr(data, name)(), shape, anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    clean = photo("astronaut")
    rng = np.random.default_rng(0)
    damaged = np.clip(clean * np.array([1.06, 0.95, 0.88]) + 0.02 + rng.normal(0, 0.02, clean.shape), 0, 1)
    return damaged.astype(np.float32), clean


def test_psnr_on_branch_channels_matches_scikit_image(pair):
    damaged, clean = pair
    ycc_d, ycc_c = rgb_to_ycbcr(damaged), rgb_to_ycbcr(clean)
    expected_chroma = peak_signal_noise_ratio(ycc_c[..., 1:].astype(np.float64), ycc_d[..., 1:].astype(np.float64),
                                              data_range=1.0)
    expected_luma = peak_signal_noise_ratio(ycc_c[..., 0].astype(np.float64), ycc_d[..., 0].astype(np.float64),
                                            data_range=1.0)
    assert mt.branch_psnr(damaged, clean, "chroma") == pytest.approx(expected_chroma, abs=1e-6)
    assert mt.branch_psnr(damaged, clean, "spatial") == pytest.approx(expected_luma, abs=1e-6)
    assert expected_chroma != pytest.approx(expected_luma, abs=0.1)  # the branches really differ
    assert mt.psnr(clean, clean) == float("inf")


def test_ssim_matches_scikit_image_with_the_documented_settings(pair):
    damaged, clean = pair
    ours = mt.luma_ssim(damaged, clean)
    theirs = structural_similarity(mt.luma(damaged).astype(np.float64), mt.luma(clean).astype(np.float64),
                                   data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert mt.luma_ssim(clean, clean) == pytest.approx(1.0)
    assert ours < 0.99


def test_lab_matches_colour_science(pair):
    damaged, _ = pair
    linear = damaged.astype(np.float64) ** 2.4
    xyz = colour.RGB_to_XYZ(linear, colour.RGB_COLOURSPACES["ITU-R BT.709"], apply_cctf_decoding=False)
    np.testing.assert_allclose(mt.display_to_lab(damaged), colour.XYZ_to_Lab(xyz), atol=1e-8)
    np.testing.assert_allclose(mt.display_to_lab(np.ones(3, np.float32)), [100.0, 0.0, 0.0], atol=1e-6)


def test_ciede2000_matches_colour_science_on_images(pair):
    damaged, clean = pair
    lab1, lab2 = mt.display_to_lab(damaged), mt.display_to_lab(clean)
    expected = colour.delta_E(lab1, lab2, method="CIE 2000")
    np.testing.assert_allclose(mt.ciede2000(lab1, lab2), expected, atol=1e-9)
    assert expected.mean() > 1.0


@pytest.mark.parametrize(("lab1", "lab2", "expected"), [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),   # Sharma, Wu & Dalal 2005, pair 1
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),               # pair 7
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),            # pair 17
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),               # pair 13 (hue wrap)
])
def test_ciede2000_matches_sharmas_published_pairs(lab1, lab2, expected):
    assert float(mt.ciede2000(np.array(lab1), np.array(lab2))) == pytest.approx(expected, abs=1e-4)


def test_score_image_reports_all_metrics(pair):
    damaged, clean = pair
    scores = mt.score_image(damaged, clean, "chroma")
    assert scores.delta_e_p95 > scores.delta_e_mean > 0
    perfect = mt.score_image(clean, clean, "chroma")
    assert perfect.delta_e_mean < 1e-6 and perfect.ssim == pytest.approx(1.0), (perfect.delta_e_mean, perfect.ssim)


def test_pooled_percentile_from_histograms_matches_numpy(pair):
    damaged, clean = pair
    halves = [(damaged[:48], clean[:48]), (damaged[48:] * 0.9, clean[48:])]
    comparisons = [ev.compare(f"h{i}", i, d, d, None, c, "chroma", 64) for i, (d, c) in enumerate(halves)]
    pooled = np.concatenate([mt.delta_e_map(d, c).ravel() for d, c in halves])
    table = ev.summarise(comparisons)
    assert table["source"]["delta_e_p95"] == pytest.approx(np.percentile(pooled, 95), abs=mt.DELTA_E_BIN)
    assert "model" not in table


def test_verdict_requires_the_model_to_win_on_both_measures():
    base = {"psnr": 30.0, "delta_e_mean": 3.0, "ssim": 0.9}
    assert ev.verdict({"baseline": base, "model": {"psnr": 32.0, "delta_e_mean": 2.0, "ssim": 0.9}}, "chroma")[0]
    beat, text = ev.verdict({"baseline": base, "model": {"psnr": 32.0, "delta_e_mean": 3.5, "ssim": 0.9}}, "chroma")
    assert not beat and "NOT" in text
    assert not ev.verdict({"baseline": base, "model": {"psnr": 31.0, "delta_e_mean": 2.0, "ssim": 0.8}}, "spatial")[0]
    assert not ev.verdict({"baseline": base}, "chroma")[0]


def make_sequence(frames: int, flicker: float, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A static photo with grain, plus a bright square moving across it. Returns (source
    frames, a processed version whose colour flickers by `flicker` per frame)."""
    rng = np.random.default_rng(seed)
    base = photo("chelsea", (80, 120))
    sources, processed = [], []
    for i in range(frames):
        frame = base + rng.normal(0, 0.01, base.shape).astype(np.float32)
        frame[20:40, 10 + 8 * i:30 + 8 * i] = [0.9, 0.2, 0.2]  # motion: must not count as static
        sources.append(frame)
        gain = 1.0 + flicker * (-1) ** i
        processed.append(frame * np.array([gain, 1.0, 1.0 / gain], np.float32))
    return sources, processed


def test_static_mask_excludes_moving_areas_but_sees_past_grain():
    sources, _ = make_sequence(2, 0.0)
    mask = mt.static_mask(sources[0], sources[1])
    assert mask[60:, :].mean() > 0.95           # static, grainy background
    assert mask[22:38, 11:17].mean() < 0.1     # where the square was and is no longer


def test_a_flickering_sequence_scores_worse_than_a_stable_one():
    sources, stable = make_sequence(6, 0.0)
    _, flickering = make_sequence(6, 0.05)
    frames = list(range(1001, 1007))

    def reader(images):
        return lambda frame: images[frame - 1001]

    result = mt.temporal_stability(frames, {"source": reader(sources), "baseline": reader(stable),
                                            "model": reader(flickering)})
    change = result["chroma_change"]
    assert result["frame_pairs"] == 5 and 0.5 < result["static_fraction"] < 1.0
    assert change["model"] > 2 * change["baseline"]
    assert change["baseline"] == pytest.approx(change["source"], rel=1e-6)


def test_temporal_stability_counts_only_consecutive_frames():
    sources, _ = make_sequence(4, 0.0)
    frames = {1001: sources[0], 1002: sources[1], 1005: sources[2], 1006: sources[3]}
    result = mt.temporal_stability(frames, {"source": frames.__getitem__})
    assert result["frame_pairs"] == 2
    assert ev.longest_run([1001, 1002, 1005, 1006, 1007, 1009], 10) == [1005, 1006, 1007]


def test_branch_truth_keeps_what_the_branch_does_not_predict(pair):
    source, clean = pair
    chroma = rgb_to_ycbcr(ev.branch_truth(source, clean, "chroma"))
    np.testing.assert_allclose(chroma[..., 0], rgb_to_ycbcr(source)[..., 0], atol=1e-5)
    np.testing.assert_allclose(chroma[..., 1:], rgb_to_ycbcr(clean)[..., 1:], atol=1e-5)
    spatial = rgb_to_ycbcr(ev.branch_truth(source, clean, "spatial"))
    np.testing.assert_allclose(spatial[..., 0], rgb_to_ycbcr(clean)[..., 0], atol=1e-5)
