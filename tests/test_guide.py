"""Reference-guided mode: the aligned Reference and its coverage (ml.guide), the guided model's
channel bookkeeping, the guides in the dataset, and a guide for every frame at inference."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from skimage import data, transform  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import field_corpus  # noqa: E402

from ml import baseline, colour, guide, report, warp  # noqa: E402
from ml.dataset import export_dataset  # noqa: E402
from ml.dataset_io import load_dataset  # noqa: E402
from ml.errors import FilmRecoveryError  # noqa: E402
from ml.imageio import read_image, write_exr  # noqa: E402
from ml.ingest import source_frame  # noqa: E402
from ml.job import Crop, Job, Pair, Plate  # noqa: E402
from ml.neural.models import build_model, guide_tensor, model_config, rgb_to_ycbcr  # noqa: E402
from ml.primitives import gaussian_blur  # noqa: E402
from ml.sample import generate_sample  # noqa: E402


def _photo(name: str, width: int = 240, height: int = 160) -> np.ndarray:
    image = getattr(data, name)().astype(np.float32) / 255.0
    return transform.resize(image, (height, width), anti_aliasing=True).astype(np.float32)


def _faded(rgb: np.ndarray) -> np.ndarray:
    ycc = colour.rgb_to_ycbcr(rgb)
    ycc[..., 1:] = ycc[..., 1:] * 0.4 + np.array([0.03, -0.02], np.float32)
    return np.clip(colour.ycbcr_to_rgb(ycc), 0, 1).astype(np.float32)


def _burn_text(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """White strokes with dark outlines, like a burned-in subtitle."""
    x0, y0, x1, y1 = box
    out = image.copy()
    out[y0:y1, x0:x1] = 0.03
    for x in range(x0 + 2, x1 - 2, 5):
        out[y0 + 2:y1 - 2, x:x + 2] = 0.92
    return out


def test_coverage_keeps_the_agreeing_picture_and_drops_burned_in_text():
    clean = _photo("astronaut")
    source = _faded(clean)
    m = warp.translation(1.5, -0.75)  # Reference px -> Source px
    # The Reference: the clean picture (another grade: a gamma) on its own raster, with a subtitle.
    reference = warp.warp_to_source(clean ** 1.2, np.linalg.inv(m), clean.shape)
    reference = _burn_text(reference, (70, 120, 170, 136))
    aligned, cover, note = guide.reference_guide(source, reference, m)
    assert aligned.shape == source.shape and cover.shape == source.shape[:2]
    subtitle = warp.warp_to_source(np.ones((*reference.shape[:2], 3), np.float32) *
                                   (np.arange(reference.shape[0])[:, None, None] >= 120) *
                                   (np.arange(reference.shape[0])[:, None, None] < 136) *
                                   ((np.arange(reference.shape[1]) >= 70) & (np.arange(reference.shape[1]) < 170))[None, :, None],
                                   m, source.shape)[..., 0] > 0.5
    assert cover[subtitle].mean() < 0.15, "burned-in text must not guide the model"
    interior = np.zeros_like(subtitle)
    interior[8:-8, 8:-8] = True
    rest = interior & ~guide._grow(subtitle, 10)
    assert cover[rest].mean() > 0.97, "a Reference in another grade still agrees with the Source"
    assert "left out" in note
    # Outside the Reference raster there is nothing to take.
    assert cover[:, :2].max() == 0.0  # the Reference starts 1.5 px in


def test_a_reference_of_other_content_gives_no_guide():
    source = _faded(_photo("astronaut"))
    other = _photo("coffee")
    _, cover, note = guide.reference_guide(source, other, np.eye(3))
    assert cover.max() == 0.0 and "other content" in note


@pytest.mark.parametrize("kind", ["unet", "bilateral"])
@pytest.mark.parametrize("branch", ["chroma", "spatial"])
def test_a_guided_model_takes_the_reference_where_it_covers(kind, branch):
    """The guided model's predicted channels are the guide's where the coverage is 1, whatever the
    network predicts, and its Source-only prediction where it is 0; kept channels are the Source's."""
    torch.manual_seed(0)
    model = build_model(model_config(kind, "tiny", branch, guided=True)).eval()
    with torch.no_grad():  # a trained network's residual is not zero
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    source = rgb_to_ycbcr(torch.rand(1, 3, 32, 48))
    reference = torch.rand(1, 3, 32, 48)
    cover = torch.zeros(1, 1, 32, 48)
    cover[..., :, :24] = 1.0
    g = guide_tensor(reference, cover)
    with torch.no_grad():
        out = model(source, guide=g)
        alone = model(source)
    predicted = list(model.config.predicted_channels)
    kept = [c for c in range(3) if c not in predicted]
    torch.testing.assert_close(out[:, predicted, :, :24], g[:, predicted, :, :24])
    with torch.no_grad():  # no coverage anywhere: the model's Source-only prediction
        uncovered = model(source, guide=guide_tensor(reference, torch.zeros_like(cover)))
    torch.testing.assert_close(uncovered, alone)
    assert (alone[:, predicted] - source[:, predicted]).abs().max() > 1e-3  # the network does predict
    torch.testing.assert_close(out[:, kept], source[:, kept])
    assert model.config.input_channels == 7 + (2 if model.config.position else 0)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    info = generate_sample(out, seed=5, frames=8, width=320, height=180)
    truth = json.loads((out / "truth" / "truth.json").read_text())
    return info, truth


def _job(sample, tmp_path) -> Job:
    info, truth = sample
    warps = {r["frame"]: r["M"] for r in truth["reference_frames"]}
    pairs = [Pair(source_frame=p["source_frame"], reference_frame=p["reference_frame"], shot=p["shot"])
             for p in truth["pairs"] if p["reference_frame"] is not None][::2]
    job = Job(name="t", work_dir=str(tmp_path), branch="chroma",
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              pairs=pairs)
    job.alignment.mode = "per_frame"
    job.alignment.solves = {str(p.source_frame): warps[p.reference_frame] for p in job.pairs}
    job.crop = Crop(enabled=True, x=16, y=28, width=288, height=124)
    return job


def test_the_dataset_stores_each_pairs_guide_with_checksums(sample, tmp_path):
    job = _job(sample, tmp_path)
    manifest = export_dataset(job, out_dir=tmp_path / "ds")
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.has_guides
    for record, pair in zip(manifest["pairs"], dataset.pairs, strict=True):
        assert pair.guide.shape == pair.input.shape and pair.coverage.shape == pair.input.shape[:2]
        assert len(record["checksums"]["guide"]) == 64 and 0.8 < record["guide_coverage"] <= 1.0
        # The guide is the Reference's picture: its chroma is the target's (chroma branch).
        target_cbcr = colour.rgb_to_ycbcr(pair.target)[..., 1:]
        guide_cbcr = colour.rgb_to_ycbcr(pair.guide)[..., 1:]
        covered = pair.coverage > 0.5
        assert np.abs(target_cbcr - guide_cbcr)[covered].mean() < 2e-3
    write_exr(tmp_path / "ds" / manifest["pairs"][0]["guide"], np.zeros((124, 288, 3), np.float32))
    with pytest.raises(FilmRecoveryError, match="checksum"):
        load_dataset(tmp_path / "ds")


def test_every_frame_gets_a_partner_warp_and_coverage(sample, tmp_path):
    info, truth = sample
    job = _job(sample, tmp_path)
    true_warps = {r["frame"]: warp.as_matrix(r["M"]) for r in truth["reference_frames"]}
    planner = guide.GuidePlanner(job)
    solved = {p.source_frame for p in job.pairs}
    for frame in range(info.first_frame, info.last_frame + 1):
        aligned, cover, record = planner.guide(frame)
        partner = next((p["reference_frame"] for p in truth["pairs"] if p["source_frame"] == frame), None)
        if partner is None:  # the sample's splice frame has no Reference picture
            continue
        assert record.reference_frame == partner, frame
        assert record.matrix_from == ("auto" if frame in solved else "solved-now"), record
        corners = warp.homography_corners(warp.as_matrix(record.matrix), *info.reference_size)
        expected = warp.homography_corners(true_warps[partner], *info.reference_size)
        assert np.abs(corners - expected).max() < 0.5, (frame, corners - expected)
        assert aligned is not None and cover.mean() > 0.4
    # A Source frame past the Reference's end has no guide, and says so.
    job.reference.last_frame = info.last_frame - 2
    aligned, cover, record = guide.GuidePlanner(job).guide(info.last_frame)
    assert aligned is None and cover is None and record.coverage == 0.0
    assert "no Reference frame" in record.note
    # Nothing to measure its grain on: its colour follows the luma as much as the shot's finer colour
    # is found to be grain on the pairs' frames (here as output.fine_colour fixes it).
    for choice, expected in (("reference", 1.0), ("model", 0.0)):
        job.output.fine_colour = choice
        assert guide.GuidePlanner(job).guide(info.last_frame)[2].colour_smoothing == expected


def test_a_softer_reference_corrects_the_colour_and_keeps_the_predictions_detail():
    """With a detail scale, the covered prediction takes the Reference's low frequencies (its colour)
    and keeps its own fine detail; with none, it takes the Reference whole."""
    from ml.neural.models import reference_correction

    _, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    detail = 0.05 * (1.0 - 2.0 * (xx % 2))[None, None]  # 1 px stripes
    predicted = 0.1 + detail
    reference = torch.full_like(predicted, 0.3)  # the right colour, no detail
    cover = torch.ones_like(predicted)
    whole = reference_correction(predicted, reference, cover)
    torch.testing.assert_close(whole, reference)
    kept = reference_correction(predicted, reference, cover, torch.tensor([2.0]))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert abs(float(kept[inner].mean()) - 0.3) < 2e-3  # the Reference's colour
    torch.testing.assert_close(kept[inner] - kept[inner].mean(), detail[inner] - detail[inner].mean(),
                               atol=5e-3, rtol=0)  # the prediction's detail
    # Outside the coverage, the prediction as it is.
    cover[..., 32:] = 0.0
    half = reference_correction(predicted, reference, cover, torch.tensor([2.0]))
    torch.testing.assert_close(half[..., 32:], predicted[..., 32:])


def test_the_correction_compares_the_prediction_as_softly_as_the_reference_sees_the_picture():
    """#14: a Reference is softer than its sampling. Compared with the prediction blurred as softly
    (`guide.reference_blur`), the colour error a prediction carries is corrected without the
    Reference's softness coming in with it: on photographs whose Reference has a third or two thirds of
    the Source's resolution, the colour error left against the truth drops by over a quarter; a blur of
    0 (a blocky Reference) corrects as before."""
    from ml.neural.models import reference_correction

    size = 240
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    cast = 0.04 * torch.stack([torch.sin(3 * xx + 1), torch.cos(2 * yy)])[None]  # a fade's uneven colour error
    cover, inner = torch.ones((1, 1, size, size)), (slice(None), slice(None), slice(12, -12), slice(12, -12))

    def ycbcr(rgb: np.ndarray) -> torch.Tensor:
        return rgb_to_ycbcr(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float())

    def error(corrected: torch.Tensor, truth: torch.Tensor) -> float:
        return float(((corrected - truth)[inner] ** 2).mean().sqrt())

    for name in ("astronaut", "coffee"):
        picture = _photo(name, size, size)
        truth = ycbcr(picture)[:, 1:]
        predicted = truth + cast
        for scale in (3.0, 1.5):
            small = transform.resize(picture, (int(size / scale),) * 2, anti_aliasing=True)
            reference = ycbcr(transform.resize(small, (size, size), order=1).astype(np.float32))[:, 1:]
            limit = torch.tensor([guide.sampling_sigma(np.diag([scale, scale, 1.0]))])
            blur = torch.tensor([guide.reference_blur(float(limit[0]))])

            plain = reference_correction(predicted, reference, cover, limit)
            blurred = reference_correction(predicted, reference, cover, limit, None, blur)
            assert error(blurred, truth) < 0.7 * error(plain, truth)
            torch.testing.assert_close(
                reference_correction(predicted, reference, cover, limit, None, torch.tensor([0.0])), plain)
    assert guide.reference_blur(7.0, blocky=True) == 0.0


def test_the_fine_weight_takes_the_references_finer_colour_where_the_source_has_only_grain():
    """#14: below its detail limit the Reference's colour replaces the prediction's by `fine_weight`
    (0 keeps the prediction's detail, 1 takes the Reference whole); the weight comes from how much of
    the Source's colour there its picture explains: a sharp photograph, faded or not, keeps its finer
    colour; a soft picture (as a 2K scan of it) under heavy grain, and printed text whose colour is flat
    but whose luma follows the Reference's closely, take the Reference's colour."""
    from ml.neural.models import reference_correction
    from ml.sample import add_film_grain

    _, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    predicted = 0.1 + 0.05 * (1.0 - 2.0 * (xx % 2))[None, None]
    reference, cover = torch.full_like(predicted, 0.3), torch.ones_like(predicted)
    sigma = torch.tensor([2.0])
    kept = reference_correction(predicted, reference, cover, sigma, torch.tensor([0.0]))
    torch.testing.assert_close(kept, reference_correction(predicted, reference, cover, sigma))
    torch.testing.assert_close(reference_correction(predicted, reference, cover, sigma, torch.tensor([1.0])),
                               reference)
    half = reference_correction(predicted, reference, cover, sigma, torch.tensor([0.5]))
    torch.testing.assert_close(half, 0.5 * (kept + reference))

    rng = np.random.default_rng(3)
    sharp = _photo("astronaut", 256, 256)  # detail down to the pixel
    soft = transform.resize(_photo("astronaut", 64, 64), (256, 256), order=3).astype(np.float32)
    page = _photo("text", 256, 256)[..., None] * np.array([0.95, 0.85, 0.65], np.float32)  # flat colour
    every = np.ones((256, 256), np.float32)
    scale = np.diag([4 / 3, 4 / 3, 1.0])  # a Reference at 3/4 of the Source's width
    limit = guide.sampling_sigma(scale)

    def as_reference(picture: np.ndarray) -> np.ndarray:  # resolved down to the Reference's pixels
        small = transform.resize(picture, (192, 192), anti_aliasing=True)
        return transform.resize(small, (256, 256), order=1).astype(np.float32)

    def weight(picture: np.ndarray, grain: float, fade: bool = True, cover: np.ndarray = every, **kwargs) -> float:
        source = add_film_grain(_faded(picture) if fade else picture, rng, grain)  # the sample's film grain
        return guide.fine_weight(source, as_reference(picture), cover, limit, **kwargs)

    assert weight(sharp, 0.01) == 0.0 and weight(sharp, 0.01, fade=False) == 0.0
    assert weight(soft, 0.03) == 1.0 and weight(soft, 0.03, fade=False) == 1.0
    # Printed text: its luma follows the Reference's (the luma's correlation, which still decides for a
    # blocky Reference, keeps the prediction's colour), but its finer colour is all grain.
    match, share = guide.fine_octave(add_film_grain(_faded(page), rng, 0.015), as_reference(page), every, limit)
    assert match > guide.FINE_MATCH_HIGH and share < guide.PICTURE_SHARE_LOW
    assert weight(page, 0.015) == 1.0 and weight(page, 0.015, blocky=True) == 0.0
    assert weight(soft, 0.03, blocky=True) == 1.0
    assert weight(soft, 0.03, cover=np.zeros_like(every)) == 0.0
    assert guide.fine_weight(sharp, sharp, every, 0.0) == 0.0
    summary = {"detail_sigma": 0.7, "fine_weight": 1.0, "frames": 1, "mean_coverage": 1.0, "unguided_frames": []}
    assert "mostly grain" in guide.guide_text(summary) and "taken whole" in guide.guide_text(summary)
    # Where the Reference does not cover, that share follows the luma, but only as output.grain clean does.
    assert "does not cover" in guide.guide_text({**summary, "colour_grain": "reduced"})
    assert "does not cover" not in guide.guide_text({**summary, "colour_grain": "kept"})
    assert "mostly grain" in report._guide_section(summary)
    assert guide.detail_sentence({**summary, "fine_weight": 0.2}) == ""


def test_colour_the_luma_does_not_explain_is_smoothed_where_it_does_not_match_the_references():
    """#14: a guided chroma frame's colour follows the luma (`grain_smoothing`) where the colour its
    luma does not explain, at the finest scale the Reference resolves, does not match the Reference's
    (`unexplained_colour_match`): printed text in one tint under heavy grain (its unexplained colour is
    grain) is smoothed whole; a colour photograph, whose colour varies apart from its luma as its
    Reference's does, is left alone; a frame the Reference does not cover, too. Against a Reference
    with coding errors in its colour, the corrected prediction carries those errors and matches; the
    prediction before the correction, from the Source alone, still tells the grain."""
    from ml.neural.models import reference_correction
    from ml.neural.predict import grain_smoothing, unexplained_colour_match
    from ml.sample import add_film_grain

    rng = np.random.default_rng(5)
    size = 240
    page = _photo("text", size, size)[..., None] * np.array([0.95, 0.8, 0.6], np.float32)  # one tint
    tinted = _photo("camera", size, size)[..., None] * np.array([0.9, 0.85, 0.7], np.float32)
    photo = _photo("astronaut", size, size)
    cover = torch.ones((1, 1, size, size))

    def ycbcr(rgb: np.ndarray) -> torch.Tensor:
        return rgb_to_ycbcr(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float())

    def smoothing(picture: np.ndarray, grain: float, coverage: torch.Tensor = cover, scale: float = 1 / 3,
                  coding_error: float = 0.0) -> tuple[float, float]:
        """(the share from the corrected prediction alone, from it and the Source-only prediction)."""
        sigma = torch.tensor([0.5 / scale * (2.0 if scale < 0.5 else 1.0)])  # `guide.detail_sigma`: SD 4:2:0, HD
        small = transform.resize(picture, (int(size * scale),) * 2, anti_aliasing=True)
        reference = ycbcr(transform.resize(small, (size, size), order=1).astype(np.float32))
        blocks = rng.normal(0.0, coding_error, (1, 2, size // 16, size // 16)).astype(np.float32)
        reference[:, 1:] += torch.from_numpy(blocks).repeat_interleave(16, 2).repeat_interleave(16, 3)
        source = ycbcr(add_film_grain(picture, rng, grain, chroma_ratio=0.4))  # the field corpus's heavy grain
        recovered = reference_correction(source, reference, coverage, sigma)  # as the guided model's output
        matches = unexplained_colour_match((recovered, source), torch.cat([reference, coverage], dim=1), sigma)
        return float(grain_smoothing(matches[0])[0]), float(grain_smoothing(*matches)[0])

    assert smoothing(page, 0.06) == (1.0, 1.0) and smoothing(tinted, 0.06) == (1.0, 1.0)
    assert smoothing(photo, 0.06) == (0.0, 0.0)
    assert smoothing(page, 0.01) == (0.0, 0.0)  # light grain: the unexplained colour is the picture's, matched
    assert smoothing(page, 0.06, torch.zeros_like(cover)) == (0.0, 0.0)
    # An HD Reference whose colour carries 16 px coding blocks.
    for picture in (page, tinted):
        assert smoothing(picture, 0.06, scale=0.75, coding_error=0.02) == (0.0, 1.0)
    assert smoothing(photo, 0.06, scale=0.75, coding_error=0.02) == (0.0, 0.0)
    summary = {"detail_sigma": 2.4, "fine_weight": 0.0, "colour_smoothing": 1.0, "half_chroma": True,
               "frames": 1, "mean_coverage": 1.0, "unguided_frames": []}
    assert "luma does not explain is grain" in guide.guide_text(summary)
    assert "coding error" not in guide.guide_text(summary)


def _with_colour_grain(picture: torch.Tensor, seed: int, sigma: float = 0.02) -> torch.Tensor:
    grainy = picture.clone()
    rng = np.random.default_rng(seed)
    grainy[:, 1:] += torch.from_numpy(rng.normal(0, sigma, tuple(grainy[:, 1:].shape)).astype(np.float32))
    return grainy


def _chroma_error(image: torch.Tensor, picture: torch.Tensor) -> float:
    return float(((image[:, 1:] - picture[:, 1:]) ** 2).mean())


def test_clean_grain_reduces_the_colour_grain_and_keeps_the_pictures_colour_edges():
    """#14: a chroma recovery carries the Source's colour grain through the grade; `output.grain`
    clean (the default) shrinks it, measured on the frame, and keeps the colour the luma explains
    (picture edges) and colour detail standing above the grain; keep_source leaves the prediction
    as it is; the luma is the Source's either way."""
    from ml.neural.predict import apply_grain_choice, reduce_colour_grain

    picture = torch.from_numpy(colour.rgb_to_ycbcr(_photo("astronaut", 256, 256))).permute(2, 0, 1)[None]
    grainy = _with_colour_grain(picture, 5)
    chroma = (1, 2)

    def chroma_error(image: torch.Tensor) -> float:
        return _chroma_error(image, picture)

    cleaned = apply_grain_choice(grainy, grainy, "clean", chroma)
    torch.testing.assert_close(cleaned[:, :1], grainy[:, :1], atol=0, rtol=0)
    assert chroma_error(cleaned) < 0.4 * chroma_error(grainy)
    # Without grain, the picture's colour stays: under 2 % of that grain's power is lost (a 3x3 blur loses 13 %).
    assert chroma_error(reduce_colour_grain(picture)) < 0.02 * chroma_error(grainy)
    kept = apply_grain_choice(grainy, grainy, "keep_source", chroma)
    torch.testing.assert_close(kept, grainy, atol=0, rtol=0)
    # Where the guide took the Reference's finer colour (coverage x fine weight), there is no Source
    # grain to reduce: that share is left as it is.
    share = torch.zeros((1, 1, 256, 256))
    share[..., :, 128:] = 1.0
    partly = apply_grain_choice(grainy, grainy, "clean", chroma, reference_share=share)
    torch.testing.assert_close(partly[..., 128:], grainy[..., 128:], atol=0, rtol=0)
    torch.testing.assert_close(partly[..., :128], cleaned[..., :128], atol=1e-6, rtol=0)
    # The inference line and the report say so where the prediction's detail is kept.
    summary = {"detail_sigma": 0.7, "fine_weight": 0.0, "frames": 1, "mean_coverage": 1.0, "unguided_frames": [],
               "colour_grain": "reduced"}
    assert "colour grain" in guide.guide_text(summary) and "colour grain" in report._guide_section(summary)
    assert "colour grain" not in guide.detail_sentence({**summary, "colour_grain": "kept"})
    assert "colour grain" not in guide.detail_sentence({**summary, "fine_weight": 1.0})


def test_colour_smoothing_keeps_the_colour_the_luma_explains_and_drops_the_grain():
    """#14: on a frame whose finer colour is grain and whose Reference's is coding error (a blocky
    Reference, `GuideFrame.colour_smoothing`), that share of the colour follows the luma: flat
    colour comes out flat, a colour edge on a luma edge stays where it is."""
    from ml.neural.predict import apply_grain_choice

    picture = torch.zeros((1, 3, 96, 96))
    picture[:, 0] = 0.3
    picture[..., 48:] = torch.tensor([0.6, -0.04, 0.06]).view(3, 1, 1)
    picture[:, 1:, :, :48] = torch.tensor([0.05, -0.03]).view(2, 1, 1)
    grainy = _with_colour_grain(picture, 8)
    chroma = (1, 2)
    reduced = apply_grain_choice(grainy, grainy, "clean", chroma)
    torch.testing.assert_close(apply_grain_choice(grainy, grainy, "clean", chroma, smoothing=torch.zeros(1)),
                               reduced, atol=0, rtol=0)
    smoothed = apply_grain_choice(grainy, grainy, "clean", chroma, smoothing=torch.ones(1))
    assert _chroma_error(smoothed, picture) < 0.3 * _chroma_error(reduced, picture)
    for half in (slice(0, 44), slice(52, 96)):  # each side keeps its own colour up to the edge
        torch.testing.assert_close(smoothed[:, 1:, :, half].mean(dim=(2, 3)), picture[:, 1:, :, half].mean(dim=(2, 3)),
                                   atol=3e-3, rtol=0)
    assert torch.equal(apply_grain_choice(grainy, grainy, "keep_source", chroma, smoothing=torch.ones(1)), grainy)
    summary = {"detail_sigma": 14.0, "fine_weight": 0.0, "colour_smoothing": 1.0, "coding_blocks": True,
               "frames": 1, "mean_coverage": 1.0, "unguided_frames": []}
    assert "follows the luma" in guide.guide_text(summary)
    assert "follows the luma" not in guide.guide_text({**summary, "colour_smoothing": 0.0})


def test_the_colour_grain_level_is_each_frames_own_and_the_references_share_follows_the_detail_limit():
    """#14: the reduction measures the noise on each frame, so a batch of frames (inference's) gives
    each frame what it gives alone: a clean frame beside a grainy one is not shrunk by the other's
    grain level. The share left alone is coverage x fine weight, and the coverage whole on a frame
    without a detail limit (the covered pixels took the Reference's colour whole)."""
    from ml.neural.models import reference_correction
    from ml.neural.predict import reduce_colour_grain, reference_share

    rng = np.random.default_rng(11)
    picture = torch.from_numpy(colour.rgb_to_ycbcr(_photo("astronaut", 128, 128))).permute(2, 0, 1)[None]
    grainy = picture.clone()
    grainy[:, 1:] += torch.from_numpy(rng.normal(0, 0.03, (1, 2, 128, 128)).astype(np.float32))
    batch = reduce_colour_grain(torch.cat([picture, grainy]))
    torch.testing.assert_close(batch[:1], reduce_colour_grain(picture), atol=1e-6, rtol=0)
    torch.testing.assert_close(batch[1:], reduce_colour_grain(grainy), atol=1e-6, rtol=0)

    cover = torch.zeros((3, 1, 128, 128))
    cover[..., :, 32:] = 1.0
    guide_batch = torch.cat([picture.repeat(3, 1, 1, 1), cover], dim=1)
    detail = torch.tensor([(0.0, 0.0), (2.0, 0.0), (2.0, 0.25)])
    share = reference_share(guide_batch, detail)
    torch.testing.assert_close(share[0], cover[0], atol=0, rtol=0)
    assert float(share[1].abs().max()) == 0.0
    torch.testing.assert_close(share[2], 0.25 * cover[2], atol=0, rtol=0)
    # The same rule as the correction itself: without a detail limit the Reference is taken whole.
    whole = reference_correction(grainy[:, 1:], picture[:, 1:], cover[:1], torch.tensor([0.0]), torch.tensor([0.0]))
    torch.testing.assert_close(whole[..., 32:], picture[:, 1:, :, 32:], atol=1e-6, rtol=0)


def test_the_job_chooses_where_the_finer_colour_comes_from(sample, tmp_path):
    """`output.fine_colour`: auto measures each frame's fine weight; model keeps the prediction's
    finer colour (0), reference takes the Reference's whole (1)."""
    job = _job(sample, tmp_path)
    frame = job.pairs[0].source_frame
    weights = {}
    for choice in ("auto", "model", "reference"):
        chosen = dataclasses.replace(job, output=dataclasses.replace(job.output, fine_colour=choice))
        weights[choice] = guide.GuidePlanner(chosen).guide(frame)[2].fine_weight
    assert weights["model"] == 0.0 and weights["reference"] == 1.0 and 0.0 <= weights["auto"] <= 1.0


def test_the_detail_scale_follows_the_references_resolution():
    assert guide.detail_sigma(np.diag([3.0, 3.0, 1.0])) == pytest.approx(3.0 * guide.DETAIL_SCALE)
    assert guide.detail_sigma(warp.translation(4, 2)) == pytest.approx(guide.DETAIL_SCALE)


def test_half_resolution_chroma_is_found_and_doubles_the_detail_limit(sample, tmp_path):
    """#14: a Reference whose chroma is coded at half its luma's resolution (4:2:0 video, as the field
    corpus codes it) is told apart from full-resolution chroma, also with burned-in subtitles (detail
    in the luma only) and letterbox bars; the guide then takes its colour only at twice the usual scale,
    and the dataset records it, so the baseline's band doubles too."""
    picture = _photo("coffee", 320, 192)
    half = field_corpus.degrade_reference(picture, field_corpus.ReferenceSpec(chroma_420=True))
    assert guide.chroma_octaves(picture)[0] > 0.8 and not guide.is_half_chroma(*guide.chroma_octaves(picture))
    assert guide.chroma_octaves(half)[0] < 0.5 and guide.is_half_chroma(*guide.chroma_octaves(half))
    subtitled, _ = field_corpus.burn_subtitle(picture.copy(), (0, 0, 320, 192))
    assert guide.chroma_octaves(subtitled)[0] > 0.7
    letterboxed = picture.copy()
    letterboxed[:24] = letterboxed[-24:] = 0.0
    assert guide.chroma_octaves(letterboxed)[0] > 0.8
    assert guide.chroma_octaves(np.full((64, 64, 3), 0.4, np.float32)) is None  # nothing to measure
    # A picture softer than its raster: 4:2:0 lowers its chroma's finest octave less against the luma's
    # (over the first threshold), but that octave is as weak as any 4:2:0 chroma's; the same soft picture
    # with full chroma keeps a ratio near 1. A blocky Reference is not read so (its blocks move both).
    soft = gaussian_blur(picture, 0.8)
    soft_half = guide.chroma_octaves(field_corpus.degrade_reference(soft, field_corpus.ReferenceSpec(chroma_420=True)))
    assert soft_half[0] > 0.6 and guide.is_half_chroma(*soft_half), soft_half
    assert not guide.is_half_chroma(*soft_half, blocky=True)
    assert not guide.is_half_chroma(*guide.chroma_octaves(soft))
    scaled = np.diag([3.0, 3.0, 1.0])
    assert guide.detail_sigma(scaled, half_chroma=True) == pytest.approx(2 * guide.detail_sigma(scaled))
    assert guide.detail_sigma(scaled, blocky=True, half_chroma=True) == guide.detail_sigma(scaled, blocky=True)

    plain = guide.GuidePlanner(_job(sample, tmp_path))
    assert not plain.half_chroma
    job = _job_with_coded_reference(sample, tmp_path, field_corpus.ReferenceSpec(chroma_420=True))
    planner = guide.GuidePlanner(job)
    assert planner.half_chroma and not planner.blocky
    frame = job.pairs[0].source_frame
    _, _, record = planner.guide(frame)
    _, _, plain_record = plain.guide(frame)
    assert record.half_chroma and record.detail_sigma == pytest.approx(2 * plain_record.detail_sigma, rel=0.05)
    summary = guide.guide_summary([record])
    assert summary["half_chroma"] and "half its luma's resolution" in guide.guide_text(summary)  # panel and CLI
    assert "half its luma's resolution" in report._guide_section(summary)
    export_dataset(job, out_dir=tmp_path / "half_ds")
    half_dataset = load_dataset(tmp_path / "half_ds")
    assert half_dataset.manifest["half_chroma"] and not half_dataset.manifest["coding_blocks"]
    scale = float(np.median([warp.scale_of(m) for m in guide.training_matrices(half_dataset)]))
    half_dataset.manifest["pairs"] = [{**entry, "matrix": warp.matrix_to_list(
        np.diag([2.0, 2.0, 1.0]) @ warp.as_matrix(entry["matrix"]))} for entry in half_dataset.manifest["pairs"]]
    assert baseline.dataset_band_sigma(half_dataset) == pytest.approx(2 * 2 * scale)  # an SD Reference's band, doubled
    half_dataset.manifest["half_chroma"] = False
    assert baseline.dataset_band_sigma(half_dataset) == pytest.approx(2 * scale)


# The field corpus's DVD-like coding (bench/field_corpus.py: 8x8 DCT blocks, 4:2:0 chroma), as its
# blocky kind's Reference has it.
BLOCK_CODED = field_corpus.ReferenceSpec(compression=0.04, chroma_420=True)


def _block_coded(rgb: np.ndarray) -> np.ndarray:
    return field_corpus.degrade_reference(rgb, BLOCK_CODED)


def _job_with_coded_reference(sample, tmp_path, spec) -> Job:
    """The sample job with its Reference frames coded as `spec` says (field_corpus.degrade_reference)."""
    info, _ = sample
    coded = tmp_path / "coded_reference"
    coded.mkdir()
    for path in Path(info.reference_pattern).parent.glob("*.exr"):
        write_exr(coded / path.name, field_corpus.degrade_reference(read_image(str(path)), spec))
    job = _job(sample, tmp_path)
    job.reference.path = str(coded / Path(info.reference_pattern).name)
    return job


def test_coding_blocks_are_found_on_a_block_coded_reference_and_nowhere_else():
    picture = _photo("coffee", 320, 192)
    coded = _block_coded(picture)
    assert guide.coding_block_phase(coded) == (7, 7)  # steps between pixels 7 and 8 of each block
    assert guide.coding_block_phase(coded[5:, 3:]) == (4, 2)  # a cropped decode keeps its grid
    assert guide.coding_block_phase(picture) is None
    letterboxed = picture.copy()
    letterboxed[:24] = letterboxed[-24:] = 0.0
    assert guide.coding_block_phase(letterboxed) is None  # bars are not blocks
    combed = picture.copy()
    combed[1::2] = np.roll(picture[1::2], 2, axis=1)  # interlaced fields of a moving picture
    assert guide.coding_block_phase(combed) is None
    blocky_letterbox = _block_coded(letterboxed)
    assert guide.coding_block_phase(blocky_letterbox) == (7, 7)


def test_a_block_coded_reference_sets_only_the_coarse_colour(sample, tmp_path):
    plain = guide.GuidePlanner(_job(sample, tmp_path))
    assert not plain.blocky
    job = _job_with_coded_reference(sample, tmp_path, BLOCK_CODED)
    planner = guide.GuidePlanner(job)
    assert planner.blocky
    frame = job.pairs[0].source_frame
    aligned, cover, record = planner.guide(frame)
    _, _, plain_record = plain.guide(frame)
    scale = plain_record.detail_sigma / guide.DETAIL_SCALE
    assert record.coding_blocks and not plain_record.coding_blocks
    assert record.detail_sigma == pytest.approx(scale * guide.BLOCKY_DETAIL * guide.CODING_BLOCK)
    # Its colour finer than the blocks is coding error: never taken; the share of the Source's finer
    # colour the fine weight finds to be grain is smoothed instead.
    measured = guide.fine_weight(source_frame(job, frame), aligned, cover,
                                 guide.sampling_sigma(warp.as_matrix(record.matrix), planner.half_chroma), blocky=True)
    assert record.fine_weight == 0.0 and record.colour_smoothing == pytest.approx(measured)
    assert plain_record.colour_smoothing == 0.0
    summary = guide.guide_summary([record])
    assert summary["coding_blocks"] and "coding blocks" in guide.guide_text(summary)  # the panel and CLI line
    assert "coding blocks" in report._guide_section(summary)
    assert "coding blocks" not in guide.guide_text(guide.guide_summary([plain_record]))
    # The dataset records it, so training and the baseline take only the colour coarser than the blocks.
    export_dataset(job, out_dir=tmp_path / "blocky_ds")
    blocky_dataset = load_dataset(tmp_path / "blocky_ds")
    assert blocky_dataset.manifest["coding_blocks"]
    assert guide.coding_block_sigma(blocky_dataset) == pytest.approx(record.detail_sigma, rel=0.05)
    assert baseline.dataset_band_sigma(blocky_dataset) == guide.coding_block_sigma(blocky_dataset)
    export_dataset(_job(sample, tmp_path), out_dir=tmp_path / "plain_ds")
    plain_dataset = load_dataset(tmp_path / "plain_ds")
    assert not plain_dataset.manifest["coding_blocks"] and guide.coding_block_sigma(plain_dataset) == 0.0
    job.branch = "spatial"  # detail is what a spatial model takes from the Reference: no limit
    assert not guide.GuidePlanner(job).blocky


def test_only_a_guided_models_outputs_depend_on_the_reference_and_the_warps(sample, tmp_path):
    """Re-aligning or re-pairing leaves a Source-only model's written frames current (resume skips
    them) and makes a guided model's frames stale (they are written again, not kept)."""
    from ml.neural.infer import InferOptions, recipe_hash

    job = _job(sample, tmp_path)
    moved = _job(sample, tmp_path)
    moved.alignment.solves = {k: [v[0], v[1], v[2] + 0.5, *v[3:]] for k, v in moved.alignment.solves.items()}
    options = InferOptions()
    assert recipe_hash(job, 0.0, "fp32", options) == recipe_hash(moved, 0.0, "fp32", options)
    assert recipe_hash(job, 0.0, "fp32", options, guided=True) != recipe_hash(moved, 0.0, "fp32", options, guided=True)
    # Where the finer colour comes from changes a guided model's pixels; the grain choice any model's.
    other = dataclasses.replace(job, output=dataclasses.replace(job.output, fine_colour="reference"))
    assert recipe_hash(job, 0.0, "fp32", options, guided=True) != recipe_hash(other, 0.0, "fp32", options, guided=True)
    kept = dataclasses.replace(job, output=dataclasses.replace(job.output, grain="keep_source"))
    assert recipe_hash(job, 0.0, "fp32", options) != recipe_hash(kept, 0.0, "fp32", options)
    # and the reduction's method: frames written before it (or by another version) are not resumed over
    from ml.neural import infer

    before = recipe_hash(job, 0.0, "fp32", options)
    infer.COLOUR_GRAIN_METHOD, method = "another", infer.COLOUR_GRAIN_METHOD
    try:
        assert recipe_hash(job, 0.0, "fp32", options) != before
    finally:
        infer.COLOUR_GRAIN_METHOD = method
    # and `auto`'s fine-colour rule, for a guided model only, and not where the choice is fixed
    def hashes() -> list[str]:  # Source-only and guided, for `auto` and for a fixed choice
        return [recipe_hash(j, 0.0, "fp32", options, guided) for j in (job, other) for guided in (False, True)]

    before = hashes()
    infer.FINE_COLOUR_RULE, rule = "another", infer.FINE_COLOUR_RULE
    try:
        assert [a != b for a, b in zip(before, hashes(), strict=True)] == [False, True, False, False]
    finally:
        infer.FINE_COLOUR_RULE = rule
    # and how the Reference corrects the prediction, for a guided model whatever the choice
    infer.CORRECTION_METHOD, correction = "another", infer.CORRECTION_METHOD
    try:
        assert [a != b for a, b in zip(before, hashes(), strict=True)] == [False, True, False, True]
    finally:
        infer.CORRECTION_METHOD = correction


def test_the_fine_colour_choice_travels_from_the_scene_into_job_json(addon, tmp_path):
    """The add-on (installed from its zip into the bpy module): the Inference panel's Fine Colour
    reaches the job the engine runs."""
    from importlib import import_module

    import bpy
    from conftest import ADDON_MODULE

    recipe = import_module(ADDON_MODULE + ".addon.recipe")
    fr = bpy.context.scene.film_recovery
    fr.work_dir, fr.branch = str(tmp_path), "chroma"
    assert fr.output.fine_colour == "auto"
    fr.output.fine_colour = "reference"
    assert recipe.recipe_to_job(fr).output.fine_colour == "reference"
    fr.output.fine_colour = "auto"


def test_a_grainy_low_structure_frame_against_an_sd_reference_keeps_its_guide(tmp_path):
    """Field corpus `low_structure`: its right Reference partner read 0.30 at the 160 px proxy (grain
    against an SD Reference with no structure there) and one frame lost its guide as 'other
    content'. Compared at the Reference's own sampling, every frame's partner clears the bar well,
    and a Reference frame of other content (another kind's picture) still does not."""
    shot = Path(field_corpus.generate_kind("low_structure", tmp_path / "low").out_dir)
    other_shot = Path(field_corpus.generate_kind("pan_scan", tmp_path / "other", frames=2).out_dir)
    truth = json.loads((shot / "truth" / "truth.json").read_text())
    src, ref = truth["source"], truth["reference"]
    matrices = {r["frame"]: warp.as_matrix(r["M"]) for r in truth["reference_frames"]}
    other = read_image(str(other_shot / "reference" / "reference.1001.exr"))
    for frame in range(src["first_frame"], src["last_frame"] + 1):
        source = read_image(str(shot / src["pattern"].replace("####", str(frame))))
        reference = read_image(str(shot / ref["pattern"].replace("####", str(frame))))
        m = matrices[frame]
        aligned = warp.warp_to_source(reference, m, source.shape)
        live = warp.valid_mask(m, reference.shape[:2], source.shape[:2])
        at_reference = guide.structure_match(source, aligned, live, warp.scale_of(m))
        assert at_reference > 0.38 and at_reference > guide.structure_match(source, aligned, live) + 0.05, frame
        cover, note = guide.coverage(source, aligned, m, reference.shape[:2])
        assert cover.mean() > 0.5 and "other content" not in note, (frame, note)
        stranger = warp.warp_to_source(np.ascontiguousarray(other[:reference.shape[0], :reference.shape[1]]), m,
                                       source.shape)
        assert guide.structure_match(source, stranger, live, warp.scale_of(m)) < 0.25, frame
