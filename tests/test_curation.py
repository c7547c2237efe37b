"""Stage 1 engine: cut detection, bad-frame rejection, pair suggestion, scope checks and temporal
matching, on synthetic pans over scikit-image photographs and on the built-in sample shot."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from skimage import data, transform

from ml import curation
from ml.job import Pair
from ml.primitives import luma  # noqa: E402

W, H = 160, 90
FIRST = 1001


def _photo(name: str, width: int) -> np.ndarray:
    image = getattr(data, name)().astype(np.float32) / 255.0
    return transform.rescale(image, width / image.shape[1], channel_axis=2, anti_aliasing=True).astype(np.float32)


def _pan(photo: np.ndarray, n: int, seed: int, y0: int, speed: float = 3.0) -> list[np.ndarray]:
    """A camera pan: `speed` pixels per frame, with film grain."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        x = int(round(i * speed))
        frame = photo[y0:y0 + H, x:x + W]
        assert frame.shape == (H, W, 3)
        frames.append(np.clip(frame + rng.normal(0, 0.015, frame.shape).astype(np.float32), 0, 1))
    return frames


def _graded_reference(frame: np.ndarray) -> np.ndarray:
    """Another transfer of the same picture: different grade, 3/4 resolution, letterbox bars."""
    graded = np.clip(frame, 0, 1) ** 1.3 * np.array([1.1, 0.95, 0.8], np.float32)
    small = transform.resize(graded, (round(H * 0.75), round(W * 0.75)), anti_aliasing=True).astype(np.float32)
    small[:5] = 0.0
    small[-5:] = 0.0
    return small


@pytest.fixture(scope="module")
def photos():
    return _photo("astronaut", 300), _photo("coffee", 300)


@pytest.fixture(scope="module")
def two_shots(photos):
    """24 frames, cut at 1013; a flash at 1005 and a motion-blurred frame at 1008 in shot 1."""
    frames = _pan(photos[0], 12, 1, 10) + _pan(photos[1], 12, 2, 40)
    frames[4] = np.clip(frames[4] * 1.6 + 0.1, 0, 1)
    kernel = np.ones(9, np.float32) / 9
    frames[7] = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), 1, frames[7])
    return {FIRST + i: f for i, f in enumerate(frames)}


def _stats(frames: dict[int, np.ndarray]) -> list[curation.FrameStats]:
    return curation.analyse_frames(frames.__getitem__, sorted(frames), workers=2)


def test_cut_is_found_and_flash_is_not_a_cut(two_shots):
    stats = _stats(two_shots)
    assert curation.detect_cuts(stats) == [1013]
    shots = curation.split_shots(sorted(two_shots), [1013])
    assert [(s.first, s.last) for s in shots] == [(1001, 1012), (1013, 1024)]
    bad = curation.find_bad_frames(stats, shots)
    assert bad[1005].startswith("flash")
    assert bad[1008].startswith("motion blur")
    assert set(bad) == {1005, 1008}


def test_splice_frame_is_not_a_cut_and_is_rejected(photos):
    frames = _pan(photos[0], 12, 3, 10)
    frames[6] = _pan(photos[1], 1, 4, 40)[0]  # one foreign frame spliced in
    stats = _stats({FIRST + i: f for i, f in enumerate(frames)})
    assert curation.detect_cuts(stats) == []
    bad = curation.find_bad_frames(stats, curation.split_shots([s.frame for s in stats], []))
    assert bad == {1007: "splice or damaged frame: unlike both neighbours"}


def test_suggestions_cover_every_shot_with_rationale_and_avoid_bad_frames(two_shots):
    suggestion = curation.suggest_pairs(_stats(two_shots), scope="shot")
    chosen = [p.source_frame for p in suggestion.pairs]
    assert {p.shot for p in suggestion.pairs} == {"1", "2"}
    assert sum(p.shot == "1" for p in suggestion.pairs) == 6 and sum(p.shot == "2" for p in suggestion.pairs) == 6
    assert not set(chosen) & {1005, 1008, 1011, 1012, 1013, 1014}
    reasons = {p.source_frame: p.reason for p in suggestion.rejected}
    assert reasons[1005].startswith("flash") and reasons[1008].startswith("motion blur")
    assert all(reasons[f] == "near cut at 1013" for f in (1011, 1012, 1013, 1014))
    assert all(not p.accepted for p in suggestion.rejected)
    for pair in suggestion.pairs:
        assert pair.accepted and pair.rationale.startswith(f"shot {pair.shot} ")
        assert "texture" in pair.rationale
    # Short ranges anchor at the beginning and end of each shot's usable frames.
    assert {1001, 1010, 1015, 1024} <= set(chosen)
    assert suggestion.warnings == []


def test_near_duplicates_are_avoided(photos):
    # A held frame (8 identical pictures, only grain differs), then a pan.
    still = _pan(photos[0], 1, 5, 10)[0]
    rng = np.random.default_rng(6)
    held = [np.clip(still + rng.normal(0, 0.01, still.shape).astype(np.float32), 0, 1) for _ in range(8)]
    frames = {FIRST + i: f for i, f in enumerate(held + _pan(photos[0], 8, 7, 10, speed=6.0)[1:])}
    stats = _stats(frames)
    suggestion = curation.suggest_pairs(stats, count=6, scope="shot")
    chosen = [s for s in stats if s.frame in {p.source_frame for p in suggestion.pairs}]
    assert len(chosen) == 6
    held_frames = set(range(FIRST, FIRST + 8))
    assert sum(s.frame in held_frames for s in chosen) == 1
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            assert curation.signature_distance(a, b) >= 0.012
    duplicates = [p for p in suggestion.rejected if p.reason.startswith("near-duplicate of")]
    assert {p.source_frame for p in duplicates} == held_frames - {s.frame for s in chosen}


def test_alignment_scores_reject_frames_that_still_disagree(two_shots):
    stats = _stats(two_shots)
    scores = {f: 0.1 for f in two_shots} | {1001: 2.5, 1024: float("nan")}
    suggestion = curation.suggest_pairs(stats, scope="shot", align_scores=scores)
    rejected = {p.source_frame: p.reason for p in suggestion.rejected}
    assert rejected[1001].startswith("structure disagrees after alignment (residual 2.50 px")
    assert 1001 not in {p.source_frame for p in suggestion.pairs}
    assert 1024 in {p.source_frame for p in suggestion.pairs}  # NaN: no structure to judge, kept
    assert all(p.align_score == pytest.approx(0.1) for p in suggestion.pairs if p.source_frame != 1024)


def test_scope_check_warnings():
    shots = [curation.Shot("1", 1001, 1012), curation.Shot("2", 1013, 1024)]
    two = [Pair(source_frame=f) for f in (1002, 1006)]
    warnings = curation.scope_check(two, "shot", shots)
    assert any(w.startswith("shot 1: 2 pair(s); shot scope wants 4–9") for w in warnings)
    assert any(w.startswith("shot 2 (1013-1024) has no pairs") for w in warnings)
    many = [Pair(source_frame=f) for f in range(1001, 1025)]
    assert any("at most 9" in w for w in curation.scope_check(many, "shot", shots))
    assert any("scene scope wants 12–24" in w for w in curation.scope_check(two, "scene", shots))
    assert curation.scope_check(many, "sequence", shots) == []
    assert curation.scope_check(many[:20], "sequence", shots)[0] == "the sequence: 20 pair(s); sequence scope wants 24+."
    # Coverage: a plate whose brightness ramps, paired only at its dark end.
    stats = [curation.FrameStats(f, luma_mean=0.1 + 0.03 * i, luma_low=0.0, luma_high=1.0, saturation=0.1,
                                 warmth=0.0, texture=0.05, sharpness=1.0, signature=np.zeros((2, 2)),
                                 histogram=np.zeros(64)) for i, f in enumerate(range(1001, 1025))]
    dark = [Pair(source_frame=f) for f in range(1001, 1009)]
    assert any(w.startswith("poor coverage of luma range") for w in curation.scope_check(dark, "shot", shots, stats))
    spread = [Pair(source_frame=f) for f in (1001, 1004, 1008, 1012, 1013, 1017, 1020, 1024)]
    assert curation.scope_check(spread, "shot", shots, stats) == []


def test_count_below_shot_count_warns(two_shots):
    suggestion = curation.suggest_pairs(_stats(two_shots), count=1, scope="sequence")
    assert len(suggestion.pairs) == 1
    assert any("some shots get none" in w for w in suggestion.warnings)
    assert any("has no pairs" in w for w in suggestion.warnings)


@pytest.fixture(scope="module")
def offset_plates(photos):
    """Source 1001-1024 (cut at 1013). Reference: shot 1 one frame late (off-by-one), shot 2 two
    frames late and its edit holds shot 1 longer, so Reference 1013-1014 still show shot 1."""
    n = 12
    source = {FIRST + i: f for i, f in enumerate(_pan(photos[0], n, 1, 10) + _pan(photos[1], n, 2, 40))}
    ref_a, ref_b = _pan(photos[0], n + 4, 11, 10), _pan(photos[1], n + 4, 12, 40)
    reference = {}
    for r in range(1001, 1025):
        reference[r] = _graded_reference(ref_a[max(r - 1002, 0)] if r < 1015 else ref_b[r - 1015])
    return source, reference


def test_match_recovers_off_by_one_and_constant_offsets_without_crossing_the_cut(offset_plates):
    source, reference = offset_plates
    result = curation.match_frames(source.__getitem__, reference.__getitem__, sorted(source), (1001, 1024),
                                   options=curation.MatchOptions(search=4, workers=2))
    offsets = {s.shot: (s.offset, s.method) for s in result.shots}
    assert offsets == {"1": (1, "content"), "2": (2, "content")}
    assert result.source_cuts == [1013] and result.reference_cuts == [1015]
    by_frame = {m.source_frame: m for m in result.frames}
    for f in range(1002, 1013):
        assert by_frame[f].reference_frame == f + 1 and by_frame[f].confidence > 0.8
    for f in range(1013, 1023):
        assert by_frame[f].reference_frame == f + 2 and by_frame[f].confidence > 0.8
    # Shot 2's first frame must not match Reference 1013/1014 (shot 1 content across the cut).
    assert by_frame[1013].content_frame == 1015
    # No Reference frame shows Source 1023-1024: the shot offset points past the plate.
    assert not by_frame[1024].in_range and by_frame[1024].reference_frame == 1026


def test_a_telecine_offset_as_large_as_a_frame_of_a_slow_pan_is_not_read_as_a_sync_offset(photos):
    """Found on a field shot: a slow pan (here 1 px a frame) and a transfer whose raster sits one
    frame's motion off. Scored as they lie, the previous Reference frame lines up exactly and wins
    every frame; a candidate may now shift a proxy pixel first, so structure cannot tell the two,
    and the frames keep their nominal partners."""
    frames = _pan(photos[0], 12, 3, 20, speed=1.0)
    ahead = _pan(photos[0], 13, 3, 20, speed=1.0)[1:]  # the same film frames, one pixel further along
    source = {FIRST + i: f for i, f in enumerate(frames)}
    reference = {FIRST + i: _graded_reference(f) for i, f in enumerate(ahead)}

    def match(misfit: int) -> curation.MatchResult:
        return curation.match_frames(source.__getitem__, reference.__getitem__, sorted(source), (FIRST, FIRST + 11),
                                     options=curation.MatchOptions(search=3, workers=2, misfit=misfit))

    fooled = match(0)
    assert [s.offset for s in fooled.shots] == [-1]
    kept = match(1)
    assert [s.offset for s in kept.shots] == [0]
    assert all(m.reference_frame == m.source_frame for m in kept.frames)


def test_match_ignores_grade_but_not_structure(offset_plates):
    source, reference = offset_plates
    a = curation.structure_descriptor(luma(curation.resize(source[1005], 128, 72)))
    graded = np.clip(source[1005] ** 0.6 * np.array([0.7, 1.0, 1.2], np.float32), 0, 1)
    b = curation.structure_descriptor(luma(curation.resize(graded, 128, 72)))
    c = curation.structure_descriptor(luma(curation.resize(source[1020], 128, 72)))
    assert curation.structure_correlation(a, b) > 0.9
    assert curation.structure_correlation(a, c) < 0.3


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from ml.sample import generate_sample

    return generate_sample(tmp_path_factory.mktemp("sample"), seed=0, frames=24, width=320, height=180)


def _loader(pattern: str):
    from ml.imageio import frame_path, read_image

    return lambda f: read_image(frame_path(pattern, f))


def test_sample_shot_suggestions_cover_both_shots_and_avoid_the_cut(sample):
    frames = list(range(sample.first_frame, sample.last_frame + 1))
    suggestion = curation.suggest_pairs(curation.analyse_frames(_loader(sample.source_pattern), frames, 2))
    assert suggestion.cuts == [sample.cut_frame]
    assert {p.shot for p in suggestion.pairs} == {"1", "2"}
    assert all(abs(p.source_frame - sample.cut_frame + 0.5) > 2 for p in suggestion.pairs)


def test_sample_shot_matching_recovers_the_known_offsets(sample):
    truth = json.loads(open(sample.truth_path).read())
    frames = list(range(sample.first_frame, sample.last_frame + 1))
    result = curation.match_frames(_loader(sample.source_pattern), _loader(sample.reference_pattern), frames,
                                   (sample.first_frame, sample.last_frame),
                                   options=curation.MatchOptions(search=5, workers=2))
    assert [s.offset for s in result.shots] == [0, sample.reference_offset]
    assert result.reference_cuts == [truth["reference_cut_frame"]]
    by_frame = {m.source_frame: m for m in result.frames}
    for pair in truth["pairs"]:
        if pair["reference_frame"] is None:
            assert not by_frame[pair["source_frame"]].in_range
        else:
            assert by_frame[pair["source_frame"]].reference_frame == pair["reference_frame"]


def test_suggest_and_match_commands_on_the_sample(sample, tmp_path):
    from ml.cli import main
    from ml.job import Job, Plate, load_job, save_job

    plates = dict(first_frame=sample.first_frame, last_frame=sample.last_frame)
    job = Job(name="sample", work_dir=str(tmp_path / "work"), source=Plate(path=sample.source_pattern, **plates),
              reference=Plate(path=sample.reference_pattern, **plates))
    job_path = save_job(job, tmp_path / "job.json")
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--json", "suggest", str(job_path), "--apply", "--workers", "2"]) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    result = events[-1]
    assert result["type"] == "result" and result["applied"]
    pairs = load_job(job_path).pairs
    assert pairs and {p.shot for p in pairs} == {"1", "2"}
    for pair in pairs:  # shot 2 pairs use the +2 offset found at the cut; no pair past the plate
        assert pair.reference_frame == pair.source_frame + (2 if pair.shot == "2" else 0)
        assert pair.reference_frame <= sample.last_frame and pair.timecode
    assert any(r["reason"].startswith("no matching Reference frame") for r in result["rejected"])
    assert (tmp_path / "work" / "pairs" / "suggested.json").exists()
    assert (tmp_path / "work" / "pairs" / "suggested.csv").exists()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--json", "match", str(job_path), "--frames", "1015-1018", "--search", "3"]) == 0
    report = json.loads(out.getvalue().splitlines()[-1])
    assert [m["reference_frame"] for m in report["frames"]] == [1017, 1018, 1019, 1020]


def test_a_speed_up_transfer_mapped_by_time_is_named_with_the_fix(photos, tmp_path):
    """#14: a PAL speed-up Reference (every film frame once, at 25 fps) entered at its file rate maps by
    time and slips a frame every 24; the match still finds each frame, and `suggest` and `match` warn
    with the fix (the Source's rate), in the result the add-on's panel line shows. Entered at the
    Source's rate, the same plates map one to one and nothing is said."""
    import contextlib

    from ml.cli import main
    from ml.imageio import write_exr
    from ml.job import Job, Plate, save_job

    n = 48
    frames = _pan(photos[0], n, 5, 10, speed=2.5)
    for folder, images in (("source", frames), ("reference", [_graded_reference(f) for f in frames])):
        (tmp_path / folder).mkdir()
        for i, image in enumerate(images):
            write_exr(tmp_path / folder / f"{folder}.{FIRST + i}.exr", image)
    plates = dict(first_frame=FIRST, last_frame=FIRST + n - 1)

    def run(command: str, reference_fps: float) -> dict:
        job = Job(name="speedup", work_dir=str(tmp_path / "work"),
                  source=Plate(path=str(tmp_path / "source" / "source.####.exr"), fps=24.0, **plates),
                  reference=Plate(path=str(tmp_path / "reference" / "reference.####.exr"), fps=reference_fps,
                                  **plates))
        job_path = save_job(job, tmp_path / "job.json")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["--json", command, str(job_path), "--workers", "2", "--search", "4"]) == 0
        return json.loads(out.getvalue().splitlines()[-1])

    matched = run("match", 25.0)
    assert matched["shots"][0]["method"] == "content"
    assert matched["shots"][0]["drift"] == pytest.approx(-1 / 24, abs=0.01)
    found = {m["source_frame"]: m["reference_frame"] for m in matched["frames"]}
    assert sum(found[f] == f for f in found) >= 0.9 * n  # one to one, whatever the rate says
    assert len(matched["warnings"]) == 1 and "set reference.fps to the Source's 24" in matched["warnings"][0]
    suggested = run("suggest", 25.0)
    assert any("speed-up transfer" in w for w in suggested["warnings"])
    assert not run("match", 24.0)["warnings"] and not any("speed-up" in w for w in run("suggest", 24.0)["warnings"])
    # A Reference that really runs by time at 25 fps drifts by nothing against the 25 fps mapping.
    steady = curation.ShotOffset("1", FIRST, FIRST + n - 1, 0, 0.0, "content", 20)
    assert curation.speed_change_note([steady], 24.0, 25.0) is None


def _telecine(film: list[np.ndarray], second_mix: str) -> dict[int, np.ndarray]:
    """29.97 fps video of 24 fps film by 3:2 pulldown (AA BB BC CD DD): BC combed (odd rows from C),
    CD `second_mix` ("combed" the same way, or "blended" half and half)."""
    video = []
    for start in range(0, len(film) - 3, 4):
        a, b, c, d = film[start:start + 4]
        bc, cd = b.copy(), c.copy()
        bc[1::2] = c[1::2]
        if second_mix == "combed":
            cd[1::2] = d[1::2]
        else:
            cd = 0.5 * (c + d)
        video += [a, b, bc, cd, d]
    return {FIRST + i: frame for i, frame in enumerate(video)}


def test_a_pulldown_references_mixed_frames_are_found_and_a_clean_one_has_none(photos):
    """Hard telecine (both mixed frames combed) and a blending deinterlacer (one combed, one blended):
    the two mixed frames of each cadence cycle are found, whatever phase the cadence starts at; the
    same pan without pulldown, and a Reference too short for two cycles, have none."""
    film = _pan(photos[0], 16, 3, 20, speed=2.0)
    for second_mix in ("combed", "blended"):
        video = _telecine(film, second_mix)
        for skip in (0, 2):  # the cadence starting at another phase
            frames = {f: image for f, image in video.items() if f >= FIRST + skip}
            found = curation.field_mixed_frames({f: curation.interlace_measures(image) for f, image in frames.items()})
            expected = {f: ("combed" if (f - FIRST) % 5 == 2 else second_mix) for f in frames if (f - FIRST) % 5 in (2, 3)}
            assert found == expected, (second_mix, skip, found)
    clean = {FIRST + i: frame for i, frame in enumerate(film)}
    assert curation.field_mixed_frames({f: curation.interlace_measures(image) for f, image in clean.items()}) == {}
    short = dict(list(_telecine(film, "combed").items())[:9])
    assert curation.field_mixed_frames({f: curation.interlace_measures(image) for f, image in short.items()}) == {}
    assert curation.is_pulldown(23.976, 29.97) and curation.is_pulldown(24.0, 30.0)
    assert not curation.is_pulldown(24.0, 25.0) and not curation.is_pulldown(24.0, 24.0)


def test_a_cadence_broken_at_a_video_edit_is_found_again_after_it(photos):
    """Two telecined shots joined on video, the second's cadence two frames on: each run between the
    cuts has its own cadence. Without the cut, one cadence is forced on both and the second run's
    mixed frames are missed."""
    first = _telecine(_pan(photos[0], 16, 4, 20, speed=2.0), "combed")
    second = list(_telecine(_pan(photos[1], 16, 5, 30, speed=2.0), "blended").values())[2:]
    cut = FIRST + len(first)
    video = {**first, **{cut + i: frame for i, frame in enumerate(second)}}
    measures = {f: curation.interlace_measures(image) for f, image in video.items()}
    expected = {f: "combed" for f in first if (f - FIRST) % 5 in (2, 3)}
    expected.update({cut + i: ("combed" if (i + 2) % 5 == 2 else "blended") for i in range(len(second))
                     if (i + 2) % 5 in (2, 3)})
    assert curation.field_mixed_frames(measures, [cut]) == expected
    assert curation.field_mixed_frames(measures) != expected
