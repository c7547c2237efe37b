"""The built-in sample shot: sizes, cut, truth warps, temporal offset, determinism, damage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.transform import ProjectiveTransform, warp

from ml.cli import main
from ml.errors import FilmRecoveryError
from ml.imageio import frame_path, read_image
from ml.sample import apply_reference_grade, damage_source, generate_sample, load_truth

WIDTH, HEIGHT, FRAMES = 160, 90, 10


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    info = generate_sample(out, seed=3, frames=FRAMES, width=WIDTH, height=HEIGHT)
    return info, load_truth(out)


def _source(info, frame):
    return read_image(frame_path(info.source_pattern, frame))


def _reference(info, frame):
    return read_image(frame_path(info.reference_pattern, frame))


def _clean(info, frame):
    return read_image(frame_path(info.clean_pattern, frame))


def _luma(image):
    return image @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _histogram_distance(a, b):
    bins = np.linspace(0, 1, 33)
    return sum(np.abs(np.histogram(a[..., c], bins)[0] / a[..., c].size
                      - np.histogram(b[..., c], bins)[0] / b[..., c].size).sum() for c in range(3))


def _detail_correlation(a, b):
    """Correlation of band-passed luma: structure only, blind to grade, fade and most grain."""
    def band(image):
        from skimage.filters import gaussian
        luma = _luma(image)
        smooth = gaussian(luma, 1.0)
        return smooth - gaussian(luma, 4.0)
    a, b = band(a), band(b)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _reference_on_source(reference, matrix, shape, letterbox):
    """Resample the Reference onto the Source raster (shared convention) and its valid mask."""
    back = ProjectiveTransform(matrix=np.linalg.inv(matrix))
    image = warp(reference, back, output_shape=shape, order=1, cval=np.nan)
    rows = np.ones(reference.shape[:2])
    rows[:letterbox + 2] = 0
    rows[-letterbox - 2:] = 0
    rows[:, :2] = 0
    rows[:, -2:] = 0
    mask = warp(rows, back, output_shape=shape, order=0, cval=0) > 0.5
    return np.nan_to_num(image), mask


def _masked_correlation(a, b, mask):
    return _detail_correlation(a * mask[..., None], b * mask[..., None])


def test_layout_sizes_and_ranges(sample):
    info, truth = sample
    assert (info.first_frame, info.last_frame) == (1001, 1000 + FRAMES)
    assert info.cut_frame == 1001 + FRAMES // 2 == truth["cut_frame"]
    assert info.reference_offset == 2 and info.shot_offsets == {"A": 0, "B": 2}
    assert info.source_size == (WIDTH, HEIGHT) and info.reference_size == (120, 68)
    for frame in range(info.first_frame, info.last_frame + 1):
        assert _source(info, frame).shape == (HEIGHT, WIDTH, 3)
        assert _clean(info, frame).shape == (HEIGHT, WIDTH, 3)
        assert _reference(info, frame).shape == (68, 120, 3)
    with pytest.raises(FilmRecoveryError):  # nothing past the range
        read_image(frame_path(info.source_pattern, info.last_frame + 1))
    assert len(truth["reference_frames"]) == FRAMES
    assert truth["reference"]["letterbox"]["top"] == info.letterbox_rows == 5


def test_values_finite_in_range_and_letterbox_black(sample):
    info, _ = sample
    for frame in range(info.first_frame, info.last_frame + 1):
        for image in (_source(info, frame), _reference(info, frame), _clean(info, frame)):
            assert np.isfinite(image).all()
            assert image.min() >= 0.0 and image.max() <= 1.0
        reference = _reference(info, frame)
        rows = info.letterbox_rows
        assert reference[:rows].max() == 0.0 and reference[-rows:].max() == 0.0
        assert reference[rows:-rows].mean() > 0.05  # the picture itself is not black


def test_cut_is_where_truth_says(sample):
    info, truth = sample
    frames = range(info.first_frame, info.last_frame)
    source_jumps = {f + 1: _histogram_distance(_source(info, f), _source(info, f + 1)) for f in frames}
    cut = max(source_jumps, key=source_jumps.get)
    assert cut == truth["cut_frame"]
    assert source_jumps[cut] > 4 * max(v for f, v in source_jumps.items() if f != cut)
    # The Reference edit holds shot A longer: its cut comes `offset` frames later.
    reference_jumps = {f + 1: _histogram_distance(_reference(info, f), _reference(info, f + 1))
                       for f in frames}
    reference_cut = max(reference_jumps, key=reference_jumps.get)
    assert reference_cut == truth["reference_cut_frame"] == cut + 2


def test_truth_warps_map_reference_onto_clean_source(sample):
    info, truth = sample
    for entry in truth["reference_frames"]:
        matrix = entry["M_matrix"]
        assert matrix.shape == (3, 3) and abs(np.linalg.det(matrix)) > 1e-6
        # Reference centre lands near the Source centre (conform 4/3 plus a few px).
        centre = matrix @ [(120 - 1) / 2, (68 - 1) / 2, 1.0]
        assert np.hypot(centre[0] / centre[2] - (WIDTH - 1) / 2, centre[1] / centre[2] - (HEIGHT - 1) / 2) < 6
    # The exact M gives the best structural match; shifting it by a fraction of a pixel is worse.
    steps = (-0.5, -0.25, 0.0, 0.25, 0.5)
    for entry in truth["reference_frames"][::3]:
        if entry["source_frame"] is None:
            continue
        clean = _clean(info, entry["source_frame"])
        reference = _reference(info, entry["frame"])
        _, mask = _reference_on_source(reference, entry["M_matrix"], (HEIGHT, WIDTH), info.letterbox_rows)
        scores = {}
        for dx in steps:
            for dy in steps:
                nudged = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) @ entry["M_matrix"]
                on_source, _ = _reference_on_source(reference, nudged, (HEIGHT, WIDTH), info.letterbox_rows)
                scores[dx, dy] = _masked_correlation(on_source, clean, mask)
        assert max(scores, key=scores.get) == (0.0, 0.0), (entry["frame"], scores)
        assert scores[0.0, 0.0] > 0.95


def test_pairs_and_offset_are_real(sample):
    info, truth = sample
    pairs = {p["source_frame"]: p["reference_frame"] for p in truth["pairs"]}
    assert pairs[info.first_frame] == info.first_frame
    assert pairs[info.cut_frame] == info.cut_frame + 2
    assert pairs[info.last_frame] is None  # its partner would lie past the Reference's last frame
    matrices = {e["frame"]: e["M_matrix"] for e in truth["reference_frames"]}
    for frame in range(info.cut_frame + 2, info.last_frame - 1):  # shot B frames with both candidates
        source = _source(info, frame)
        scores = {}
        for reference_frame in (frame, frame + 2):
            on_source, mask = _reference_on_source(_reference(info, reference_frame), matrices[reference_frame],
                                                   (HEIGHT, WIDTH), info.letterbox_rows)
            scores[reference_frame] = _masked_correlation(on_source, source, mask)
        assert scores[frame + 2] > scores[frame] + 0.05, (frame, scores)


def test_deterministic_for_a_seed(tmp_path, sample):
    info, _ = sample
    again = generate_sample(tmp_path / "again", seed=3, frames=FRAMES, width=WIDTH, height=HEIGHT)
    other = generate_sample(tmp_path / "other", seed=4, frames=FRAMES, width=WIDTH, height=HEIGHT)
    for frame in (info.first_frame, info.last_frame):
        assert np.array_equal(_source(again, frame), _source(info, frame))
        assert np.array_equal(_reference(again, frame), _reference(info, frame))
        assert np.abs(_source(other, frame) - _source(info, frame)).mean() > 0.01
    assert load_truth(tmp_path / "again")["reference_frames"][0]["M"] == \
        load_truth(info.out_dir)["reference_frames"][0]["M"]


def test_fade_varies_across_the_frame(sample):
    """The magenta cast added by the fade differs left vs right: no global grade can undo it."""
    info, truth = sample
    grey = np.full((HEIGHT, WIDTH, 3), 0.4, dtype=np.float32)
    fade = read_image(info.out_dir + "/" + truth["fade_strength_map"])[..., 0]
    faded = damage_source(grey, fade, np.ones(3, dtype=np.float32), None)
    cast = faded[..., 0] - faded[..., 1]
    third = WIDTH // 3
    assert cast[:, :third].mean() > cast[:, -third:].mean() + 0.05  # stronger on the left
    assert cast.min() > 0.02  # magenta/red everywhere
    # On the real frames: pixels of the same clean colour come out redder on the left.
    for frame in (info.first_frame, info.cut_frame):
        source, clean = _source(info, frame), _clean(info, frame)
        bins = np.floor(clean * 6).astype(int) @ [36, 6, 1]
        redness = source[..., 0] - source[..., 1]
        differences = []
        for colour in np.unique(bins):
            left = redness[:, :third][bins[:, :third] == colour]
            right = redness[:, -third:][bins[:, -third:] == colour]
            if left.size > 20 and right.size > 20:
                differences.append(left.mean() - right.mean())
        assert np.median(differences) > 0.03, (frame, differences)
    # Faded and milky overall: blacks lifted, saturation collapsed.
    source, clean = _source(info, info.first_frame), _clean(info, info.first_frame)
    assert np.percentile(source, 1) > np.percentile(clean, 1) + 0.03
    assert np.std(source - source.mean(axis=2, keepdims=True)) < np.std(clean - clean.mean(axis=2, keepdims=True))
    assert truth["damage"]["fade_map"]["blotch_list"]


def test_grade_is_global_and_mild():
    ramp = np.linspace(0, 1, 64, dtype=np.float32)[:, None, None].repeat(3, axis=2)
    graded = apply_reference_grade(ramp)
    assert np.all(np.diff(graded[:, 0, 1]) >= 0)  # monotonic
    assert np.abs(graded - ramp).max() < 0.1
    assert graded[40, 0, 0] > graded[40, 0, 2]  # warm


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["--json", "sample", "--out", str(out), "--frames", "6", "--width", "64", "--height", "48"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    progress = [e for e in events if e["type"] == "progress"]
    assert [e["done"] for e in progress] == list(range(1, 7))
    result = events[-1]
    assert result["type"] == "result" and result["cut_frame"] == 1004 and result["reference_offset"] == 2
    assert result["source_size"] == [64, 48] and result["reference_size"] == [48, 36]
    assert (out / "truth" / "truth.json").exists() and (out / "sample.json").exists()
    # Regenerating shorter in the same folder leaves no frames past the new range.
    assert main(["--json", "sample", "--out", str(out), "--frames", "6", "--width", "64", "--height", "48",
                 "--seed", "1"]) == 0
    assert sorted(p.name for p in (out / "source").iterdir())[-1] == "source.1006.exr"


def test_refuses_a_foreign_folder_and_bad_sizes(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FilmRecoveryError) as error:
        generate_sample(tmp_path, frames=6, width=64, height=48)
    assert error.value.where == str(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert main(["--json", "sample", "--out", str(tmp_path / "tiny"), "--frames", "3"]) == 2
    assert "frames" in capsys.readouterr().out
    with pytest.raises(FilmRecoveryError):
        load_truth(tmp_path / "nowhere")
