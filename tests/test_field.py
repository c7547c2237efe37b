"""The field corpus (bench/field_corpus.py) and the field harness (bench/field.py) on a fast subset.

Four kinds at the small size run unattended through the engine CLI sequence, one of them also
through scripts/film_recovery_batch.py. Each run must either complete and report the scores, or
stop at a named stage with a message that names the frame or the fix. Scores themselves are
benchmarks (docs/benchmarks.md), not pass/fail.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import field  # noqa: E402
import field_corpus  # noqa: E402

from ml import sample  # noqa: E402
from ml.imageio import frame_path, read_image  # noqa: E402
from ml.warp import as_matrix, valid_mask, warp_to_source  # noqa: E402

# Flat grey edges, 3:2 pulldown NTSC, a Reference covering part of the Source, the spatial branch.
FAST_KINDS = ("grey_edge", "ntsc_pulldown", "pan_scan", "spatial_soft")
BATCH_KIND = "grey_edge"
FRAMES = 12
# Tiny schedule: the harness's wiring and reports are under test here, and that the Reference guides the model.
HARNESS = field.HarnessSettings(steps=5, batch=4, crop_size=32, eval_frames=2, lean_outputs=True)
PIPELINE_STAGES = set(field.CLI_STAGES) | set(field.BATCH_STAGES) | {"start"}


@pytest.fixture(scope="module")
def field_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("field")
    cli = field.run_field(out, "small", list(FAST_KINDS), ("cli",), HARNESS, frames=FRAMES, log=lambda _: None)
    batch = field.run_field(out / "batch", "small", [BATCH_KIND], ("batch",), HARNESS, frames=FRAMES,
                            log=lambda _: None)
    return out, cli, batch


def test_corpus_kinds_cover_the_brief():
    kinds = field_corpus.KINDS
    assert len(kinds) >= 10
    assert {k.branch for k in kinds.values()} == {"chroma", "spatial"}
    used = {name for k in kinds.values() for name in field_corpus.PHOTO_SOURCES[k.photo]}
    assert not used & set(sample.PHOTOS)
    framings = {k.reference.framing for k in kinds.values()}
    assert {"letterbox", "pillarbox", "overscan", "pan_scan"} <= framings
    assert {k.reference.cadence for k in kinds.values()} == {"film", "pal_speedup", "pulldown"}
    assert any(k.reference.subtitles for k in kinds.values())
    assert max(k.reference.turn_max_deg for k in kinds.values()) == pytest.approx(0.26)
    # Every kind has its own place in the seed order, so a kind added later changes no existing shot.
    assert sorted(field_corpus.seed_index(name) for name in kinds) == list(range(len(kinds)))
    with pytest.raises(KeyError, match="_ADDED_KINDS"):
        field_corpus.seed_index("not_yet_added")


def test_every_corpus_picture_is_the_same_on_every_run():
    """A picture drawn at random (scikit-image's binary blobs) is seeded: the same shot, run after run."""
    for name, make in field_corpus.PHOTO_MAKERS.items():
        assert np.array_equal(make(), make()), name


def test_pulldown_cadence():
    fields = field_corpus.pulldown_fields(10)
    assert [(a, b) for a, b, _ in fields[:5]] == [(0, 0), (1, 1), (1, 2), (2, 3), (3, 3)]
    assert [how for *_, how in fields[:5]] == ["clean", "clean", "combed", "blended", "clean"]
    assert fields[5][:2] == (4, 4)


def _shot(out: Path, kind: str) -> Path:
    return out / "shots" / kind


def test_shots_are_written_with_truth_the_engine_reads(field_run):
    out, _, _ = field_run
    for kind in FAST_KINDS:
        shot = field_corpus.load_shot(_shot(out, kind))
        truth = sample.load_truth(_shot(out, kind))  # the sample's reader takes the corpus's truth
        assert shot["branch"] == field_corpus.KINDS[kind].branch
        assert (shot["source"]["width"], shot["source"]["height"]) == (320, 180)
        first, last = shot["source"]["first_frame"], shot["source"]["last_frame"]
        assert last - first + 1 == FRAMES
        assert len(truth["reference_frames"]) == shot["reference"]["last_frame"] - first + 1
        image = read_image(frame_path(shot["reference"]["path"], first))
        assert image.shape == (shot["reference"]["height"], shot["reference"]["width"], 3)
        assert np.isfinite(image).all() and 0.0 <= image.min() and image.max() <= 1.0
    pulldown = sample.load_truth(_shot(out, "ntsc_pulldown"))
    assert pulldown["reference"]["last_frame"] - pulldown["reference"]["first_frame"] + 1 == 15  # 12 x 5/4
    assert [p["reference_frame"] for p in pulldown["pairs"]][:4] == [1001, 1002, None, 1005]


def _structure(image):
    from skimage.filters import gaussian

    luma = image @ np.array([0.2126, 0.7152, 0.0722])
    return gaussian(luma, 1.0) - gaussian(luma, 4.0)


def test_truth_warps_are_exact(field_run):
    """The true warp matches the clean frame better than the same warp nudged by a quarter pixel."""
    out, _, _ = field_run
    shot = _shot(out, "pan_scan")
    truth = sample.load_truth(shot)
    for entry in truth["reference_frames"][::5]:
        reference = read_image(frame_path(str(shot / sample.REFERENCE_PATTERN), entry["frame"]))
        clean = read_image(frame_path(str(shot / sample.CLEAN_PATTERN), entry["source_frame"]))
        scores = {}
        for dx, dy in ((0, 0), (0.25, 0), (-0.25, 0), (0, 0.25), (0, -0.25)):
            matrix = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) @ as_matrix(entry["M"])
            mask = valid_mask(matrix, reference.shape, clean.shape)
            mask[:6], mask[-6:], mask[:, :6], mask[:, -6:] = False, False, False, False
            a = _structure(warp_to_source(reference, matrix, clean.shape))[mask]
            b = _structure(clean)[mask]
            a, b = a - a.mean(), b - b.mean()
            scores[dx, dy] = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
        assert max(scores, key=scores.get) == (0, 0), scores
        assert scores[0, 0] > 0.9


def test_generation_is_deterministic(field_run, tmp_path):
    out, _, _ = field_run
    again = field_corpus.generate_kind("pan_scan", tmp_path / "again", "small", frames=FRAMES)
    for pattern in (sample.SOURCE_PATTERN, sample.REFERENCE_PATTERN, sample.CLEAN_PATTERN):
        for frame in (1001, 1000 + FRAMES):
            assert np.array_equal(read_image(frame_path(str(Path(again.out_dir) / pattern), frame)),
                                  read_image(frame_path(str(_shot(out, "pan_scan") / pattern), frame)))


NAMES_FRAME_OR_FIX = re.compile(r"\b\d{4}\b|fix|frame|pair|crop|--", re.IGNORECASE)


def _check_door(kind: str, run: dict) -> None:
    if not run["completed"]:
        assert run["stopped_at"] in PIPELINE_STAGES, (kind, run)
        assert run["message"] and NAMES_FRAME_OR_FIX.search(run["message"]), (kind, run["message"])
        return
    quality = run["quality"]
    assert quality and quality["frames"], (kind, run)
    methods = quality["methods"]
    assert {"source", "baseline", "model"} <= set(methods), (kind, methods)
    for method, scores in methods.items():
        assert math.isfinite(scores["psnr"]), (kind, method, scores)
        assert math.isfinite(scores["delta_e_mean"] if quality["branch"] == "chroma" else scores["ssim"])
    assert run["alignment"] and math.isfinite(run["alignment"]["mean_px"]), (kind, run)
    assert run["stage_seconds"]


def test_fast_subset_runs_through_the_cli_door(field_run):
    out, cli, _ = field_run
    assert [s["kind"] for s in cli["shots"]] == list(FAST_KINDS)
    for shot in cli["shots"]:
        _check_door(shot["kind"], shot["doors"]["cli"])
    # Reference-guided (the default): even this tiny schedule beats the 3D-LUT baseline on the kinds
    # whose Reference beats it, because the aligned Reference guides every frame at inference.
    for shot in cli["shots"]:
        methods = shot["doors"]["cli"]["quality"]["methods"]
        if shot["kind"] in ("grey_edge", "spatial_soft"):
            assert methods["model"]["psnr"] > methods["baseline"]["psnr"], (shot["kind"], methods)
        # What the inputs allow, chroma kinds only: a grade fitted to the truth beats one fitted to the Reference.
        assert ({"truth_grade", "truth_grade_guided", "baseline_guided"} <= set(methods)) == \
            (shot["branch"] == "chroma"), shot["kind"]
        if shot["branch"] == "chroma":
            assert methods["truth_grade"]["psnr"] > methods["baseline"]["psnr"], (shot["kind"], methods)
    saved = json.loads((out / "field.json").read_text())
    assert saved["shots"][0]["doors"]["cli"].keys() == cli["shots"][0]["doors"]["cli"].keys()
    table = (out / "field.md").read_text()
    for kind in FAST_KINDS:
        assert f"| {kind} |" in table


def test_pulldown_frames_that_mix_two_film_frames_are_not_pairs(field_run):
    """The NTSC shot's Reference shows a third of its film frames only in combed or blended frames: the
    CLI door's suggest finds those frames from the Reference's cadence and pairs no Source frame with
    one, so every training pair shows one film frame whole (truth: no pair on other content)."""
    out, cli, _ = field_run
    (shot,) = [s for s in cli["shots"] if s["kind"] == "ntsc_pulldown"]
    run = shot["doors"]["cli"]
    assert run["completed"], run["message"]
    assert run["alignment"]["pairs"] >= 4 and run["alignment"]["mismatched_pairs"] == [], run["alignment"]
    truth = sample.load_truth(_shot(out, "ntsc_pulldown"))
    mixed = {e["frame"] for e in truth["reference_frames"] if e["field_mix"] != "clean"}
    suggested = json.loads((out / "work" / "ntsc_pulldown" / "cli" / "pairs" / "suggested.json").read_text())
    refused = {p["reference_frame"] for p in suggested["pairs"] if "mixes two film frames" in p["reason"]}
    assert refused and refused <= mixed, (refused, mixed)
    assert not {p["reference_frame"] for p in suggested["pairs"] if p["accepted"]} & mixed
    # Pairing by time without matching (`suggest --no-match`) reads the Reference for them too.
    code, text, events, _ = field.run_engine(["suggest", str(out / "work" / "ntsc_pulldown" / "cli" / "job.json"),
                                              "--no-match"], 300)
    assert code == 0, text
    (result,) = [e for e in events if e.get("type") == "result"]
    assert not {p["reference_frame"] for p in result["pairs"]} & mixed
    assert any("mixes two film frames" in r["reason"] for r in result["rejected"]), result["rejected"]
    # The bench's measure of the same detector: the NTSC shot's mixed frames found as the truth has
    # them, none on a clean Reference.
    import bench_pulldown

    rows = bench_pulldown.measure([out / "shots"], log=lambda _: None)
    by_kind = {row["kind"]: row for row in rows}
    assert by_kind["ntsc_pulldown"]["found"] == by_kind["ntsc_pulldown"]["truth"] != {}
    assert by_kind["grey_edge"]["found"] == {} and by_kind["grey_edge"]["combed_phase"] < 0.15
    assert "| ntsc_pulldown | 112x76 | 15 |" in bench_pulldown.markdown(rows)
    # Inference: a Source frame whose film frame only a mixed frame shows is guided by the nearest
    # clean Reference frame instead, and its record says so.
    from ml.guide import GuidePlanner
    from ml.job import load_job

    planner = GuidePlanner(load_job(out / "work" / "ntsc_pulldown" / "cli" / "job.json"))
    assert set(planner.mixed_reference_frames()) == mixed
    lone = [p["source_frame"] for p in truth["pairs"] if p["reference_frame"] is None]
    frame = next(f for f in lone if f not in planner.pair_partner)
    candidates = planner.candidate_partners(frame)
    assert candidates[0] not in mixed and any(r in mixed for r in candidates), candidates
    _, cover, record = planner.guide(frame)
    assert cover is not None and record.reference_frame not in mixed and "mixes two film frames" in record.note


def test_a_reel_plan_pairs_no_source_frame_with_a_mixed_pulldown_frame(field_run, tmp_path):
    """Film scale: `ml plan` pairs by time without matching, but for an NTSC Reference it reads the
    Reference once for its cadence and refuses the Source frames whose partner mixes two film frames,
    as the shot's suggest does."""
    from ml.job import Job, Plate
    from ml.plan import build_plan

    out, _, _ = field_run
    shot = field_corpus.load_shot(_shot(out, "ntsc_pulldown"))
    source, reference = shot["source"], shot["reference"]
    job = Job(name="reel", work_dir=str(tmp_path / "work"),
              source=Plate(path=source["path"], first_frame=source["first_frame"], last_frame=source["last_frame"],
                           fps=source["fps"]),
              reference=Plate(path=reference["path"], first_frame=reference["first_frame"],
                              last_frame=reference["last_frame"], fps=reference["fps"]))
    plan = build_plan(job, tmp_path / "job.json", "shot")
    truth = sample.load_truth(_shot(out, "ntsc_pulldown"))
    mixed = {e["frame"] for e in truth["reference_frames"] if e["field_mix"] != "clean"}
    paired = {p["reference_frame"] for unit in plan.units for p in unit.pairs}
    assert paired and not paired & mixed, (paired, mixed)
    # The same Reference told as 24 fps (no pulldown) is paired by time, mixed frames and all.
    job.reference.fps = source["fps"]
    assert any(p["reference_frame"] in mixed for unit in build_plan(job, tmp_path / "job.json", "shot").units
               for p in unit.pairs)


def test_batch_door_runs_the_addon_on_a_shot(field_run):
    out, cli, batch = field_run
    run = batch["shots"][0]["doors"]["batch"]
    _check_door(BATCH_KIND, run)
    assert (out / "batch" / "work" / BATCH_KIND / "batch" / "shot.blend").exists() or not run["completed"]
    cli_run = cli["shots"][0]["doors"]["cli"]
    assert run["completed"] and cli_run["completed"], (run["message"], cli_run["message"])
    # One recipe, two doors: the same warps, the same dataset and the same metrics. Blender holds the
    # recipe's scalar numbers (ROI, pixel aspect, ...) in 32 bits, so the solves agree to ~1e-4 px, not
    # bit for bit; the Source inputs are identical, and the metrics agree.
    assert run["alignment"]["mean_px"] == pytest.approx(cli_run["alignment"]["mean_px"], abs=1e-3)

    def dataset_pairs(work):
        manifest = json.loads((work / "dataset" / "manifest.json").read_text())
        return {p["source_frame"]: p for p in manifest["pairs"]}

    batch_pairs = dataset_pairs(out / "batch" / "work" / BATCH_KIND / "batch")
    cli_pairs = dataset_pairs(out / "work" / BATCH_KIND / "cli")
    assert batch_pairs.keys() == cli_pairs.keys()
    for frame, pair in batch_pairs.items():
        assert pair["reference_frame"] == cli_pairs[frame]["reference_frame"]
        assert pair["checksums"]["input"] == cli_pairs[frame]["checksums"]["input"], frame
        assert np.allclose(pair["matrix"], cli_pairs[frame]["matrix"], atol=1e-3), frame
    for method, tolerance in (("source", 1e-3), ("baseline", 0.02), ("model", 0.3)):
        assert run["quality"]["methods"][method]["psnr"] == pytest.approx(
            cli_run["quality"]["methods"][method]["psnr"], abs=tolerance), method


def test_runs_over_different_kinds_merge_into_one_table(field_run):
    """Parallel runs (one GPU machine, kinds split over several processes) give one table that names
    the doors, the machine and how many runs shared it."""
    out, cli, _ = field_run
    assert "through one front door: the engine CLI sequence" in field.markdown(cli)
    assert cli["device"] == field.training_device()
    merged = field.merge_results([out / "batch" / "field.json", out / "field.json"])
    order = list(field_corpus.KINDS)
    assert [s["kind"] for s in merged["shots"]] == sorted([BATCH_KIND, *FAST_KINDS], key=order.index)
    table = field.markdown(merged)
    assert "through both front doors:" in table and "2 runs over different kinds at once" in table
    assert table.count(f"| {BATCH_KIND} |") == 2
    with pytest.raises(ValueError, match="none given"):
        field.merge_results([])
    with pytest.raises(ValueError, match="run_3/field.json"):  # a run stopped before its first shot
        field.merge_results([out / "field.json", out / "run_3" / "field.json"])
    # The product validates every 100 steps (best model kept); the CPU-sized default once, at the end.
    assert HARNESS.recipe()["training.validate_every"] == HARNESS.steps
    assert field.HarnessSettings(validate_every=100).recipe()["training.validate_every"] == 100


def test_a_finished_run_is_scored_again_without_running_its_doors(field_run, tmp_path):
    """`--rescore` (after a change to the scoring): each door's work folder is scored again, the
    doors' outcomes and stage times are kept, and the table says when it was scored."""
    import shutil

    out, _, batch = field_run
    copy = tmp_path / "run"
    shutil.copytree(out / "batch", copy)
    saved = json.loads((copy / "field.json").read_text())
    door = saved["shots"][0]["doors"]["batch"]
    door["quality"]["methods"]["model"]["psnr"] = 0.0  # as scored by older code
    (copy / "field.json").write_text(json.dumps(saved))
    result = field.rescore_folder(copy)
    again, before = result["shots"][0]["doors"]["batch"], batch["shots"][0]["doors"]["batch"]
    assert again["quality"]["methods"]["model"]["psnr"] == pytest.approx(before["quality"]["methods"]["model"]["psnr"])
    assert again["stage_seconds"] == before["stage_seconds"] and again["completed"]
    assert json.loads((copy / "field.json").read_text())["rescored"] == result["rescored"]
    assert f"scored again {result['rescored']} (`--rescore`)" in (copy / "field.md").read_text()
    with pytest.raises(SystemExit, match="field.json not found"):
        field.rescore_folder(tmp_path / "no_run")


def test_what_an_sd_references_colour_allows_is_measured_against_truth(field_run):
    """bench_reference_limits on the fast subset's SD NTSC kind: its Reference's colour agrees with the
    truth's more, the coarser the scale; fitted on colour coarser than the band, even the truth gives a
    grade no better than the pixel-by-pixel truth grade; and a picture whose colour follows its luma
    has that slope."""
    import bench_reference_limits as limits

    from ml import colour

    out, _, _ = field_run
    (row,) = limits.measure(out, ["ntsc_pulldown"], log=lambda _: None)
    agreement = [octave["correlation"] for octave in row["octaves"]]
    assert agreement == sorted(agreement) and agreement[-1] > 0.9 > agreement[0], agreement
    assert row["band_sigma"] > row["detail_sigma"] > 0
    assert row["band_truth_grade"]["psnr"] <= row["field"]["truth_grade"]["psnr"] + 0.05
    assert "| ntsc_pulldown | 112x76 |" in limits.markdown(out, [row])

    rng = np.random.default_rng(0)
    luma = rng.uniform(0.3, 0.7, (64, 64)).astype(np.float32)
    tinted = np.stack([luma, 0.2 * (luma - 0.5), np.zeros_like(luma)], axis=-1)
    source = colour.ycbcr_to_rgb(np.stack([luma, np.zeros_like(luma), np.zeros_like(luma)], axis=-1))
    assert limits.fine_colour_slope(colour.ycbcr_to_rgb(tinted), source, 2.0) == pytest.approx(0.2, abs=1e-3)


def test_docs_section_is_replaced_not_duplicated():
    document = "# Benchmarks\n\n## A\n\na\n\n## Field corpus\n\nold\n\n## Measured on a lent GPU\n\ng\n"
    once = field.replace_section(document, "## Field corpus\n\nnew")
    assert once.count("## Field corpus") == 1 and "new" in once and "old" not in once
    assert once.index("## A") < once.index("## Field corpus") < once.index("## Measured on a lent GPU")
    fresh = field.replace_section("# Benchmarks\n\n## A\n\n## Measured on a lent GPU\n", "## Field corpus\n\nx")
    assert fresh.index("## Field corpus") < fresh.index("## Measured on a lent GPU")
    assert field.replace_section(once, "## Field corpus\n\nnew") == once


def test_the_table_says_where_the_baseline_beats_the_model():
    """The quality lines name each kind whose 3D-LUT baseline scores better than the model, with both numbers."""
    def shot(kind: str, branch: str, model: dict, baseline: dict) -> dict:
        quality = {"methods": {"model": model, "baseline": baseline, "source": {"psnr": 10.0, "delta_e_mean": 20.0,
                                                                                 "ssim": 0.1}}, "gap_closed": 1.0}
        return {"kind": kind, "branch": branch, "doors": {"cli": {"completed": True, "quality": quality}}}

    result = {"shots": [
        shot("ahead", "chroma", {"psnr": 40.0, "delta_e_mean": 1.5, "ssim": 0.9},
             {"psnr": 35.0, "delta_e_mean": 3.0, "ssim": 0.9}),
        shot("behind", "chroma", {"psnr": 30.0, "delta_e_mean": 4.2, "ssim": 0.9},
             {"psnr": 31.0, "delta_e_mean": 3.9, "ssim": 0.9}),
        shot("sharp", "spatial", {"psnr": 30.0, "delta_e_mean": 1.0, "ssim": 0.95},
             {"psnr": 22.0, "delta_e_mean": 1.0, "ssim": 0.6})]}
    lines = field.quality_goals(result)
    behind = [line for line in lines if "baseline scores better" in line]
    assert behind == ["- chroma, cli: the 3D-LUT baseline scores better than the model on behind "
                      "(CIEDE2000 3.9 vs 4.2, PSNR-CbCr 31.0 vs 30.0 dB)."]
    # The same test against another reference point of the scores, where a shot has it.
    result["shots"][0]["doors"]["cli"]["quality"]["methods"]["baseline_guided"] = {
        "psnr": 41.0, "delta_e_mean": 1.4, "ssim": 0.9}
    assert field.baseline_wins(result, "chroma", "cli", rival="baseline_guided") == [
        "ahead (CIEDE2000 1.4 vs 1.5, PSNR-CbCr 41.0 vs 40.0 dB)"]
    assert any(line.startswith("- chroma, cli: the guided baseline (true warps) scores better than the model on ahead")
               for line in field.quality_goals(result))
    # Never "1.6 vs 1.6": as many figures as tell the two apart.
    result["shots"][0]["doors"]["cli"]["quality"]["methods"]["baseline_guided"] = {
        "psnr": 39.0, "delta_e_mean": 1.4969, "ssim": 0.9}
    assert field.baseline_wins(result, "chroma", "cli", rival="baseline_guided") == ["ahead (CIEDE2000 1.497 vs 1.5)"]


def test_guided_grade_takes_the_references_resolved_colour():
    """`guided_grade` corrects a grade by the Reference's CbCr where it covers: whole at sigma 0,
    only below sigma otherwise (a colour cast passes, the Reference's fine chroma does not), and the
    grade's luma is untouched."""
    from ml import colour

    rng = np.random.default_rng(3)
    graded = np.clip(rng.uniform(0.2, 0.8, (48, 64, 3)), 0, 1).astype(np.float32)
    ycc = colour.rgb_to_ycbcr(graded)
    cast = ycc.copy()
    cast[..., 1:] += np.array([0.03, -0.02])
    checker = (np.indices((48, 64)).sum(axis=0) % 2 * 2 - 1)[..., None] * 0.02
    fine = cast.copy()
    fine[..., 1:] += checker
    reference = colour.ycbcr_to_rgb(fine)
    everywhere, nowhere = np.ones((48, 64), bool), np.zeros((48, 64), bool)

    whole = colour.rgb_to_ycbcr(field.guided_grade(graded, reference, everywhere, 0.0))
    assert np.allclose(whole[..., 1:], fine[..., 1:], atol=1e-4)
    assert np.allclose(whole[..., 0], ycc[..., 0], atol=1e-4)
    assert np.allclose(field.guided_grade(graded, reference, nowhere, 3.0), graded, atol=1e-5)
    coarse = colour.rgb_to_ycbcr(field.guided_grade(graded, reference, everywhere, 3.0))
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(coarse[inner][..., 1:] - cast[inner][..., 1:]).max() < 2e-3  # the cast, not the checker
    # With the guide's fine weight (the Source's finer colour is grain), the finer colour is the Reference's too.
    assert np.allclose(field.guided_grade(graded, reference, everywhere, 3.0, fine_weight=1.0),
                       field.guided_grade(graded, reference, everywhere, 0.0), atol=1e-5)


def test_the_table_says_where_the_guided_truth_grade_misses_the_goal():
    """A chroma kind whose guided truth grade misses the CIEDE2000 goal is named, with the truth
    grade's and the model's numbers; a kind whose guided truth grade meets it, and the spatial branch, are not."""
    def shot(kind: str, guided: float) -> dict:
        methods = {name: {"psnr": 30.0, "delta_e_mean": value, "ssim": 0.9}
                   for name, value in (("model", 2.5), ("baseline", 3.0), ("truth_grade", 2.6), ("truth_grade_guided", guided))}
        return {"kind": kind, "branch": "chroma",
                "doors": {"cli": {"completed": True, "quality": {"methods": methods, "gap_closed": None}}}}

    result = {"shots": [shot("limited", 2.3), shot("reachable", 1.4)]}
    assert field.guided_grade_misses(result, "chroma", "cli") == ["limited (guided 2.30, truth grade 2.60, model 2.50)"]
    assert field.guided_grade_misses(result, "spatial", "cli") == []
    assert any("the truth grade, guided, also misses CIEDE2000 2.0 on limited" in line
               for line in field.quality_goals(result))


def test_the_table_reads_the_chroma_goal_over_the_corpus_too():
    """Beside the per-kind goal, one line per door reads it over the corpus: the mean CIEDE2000 and
    the gap closed between the mean PSNRs, over the completed chroma kinds that have all three scores."""
    def shot(kind: str, branch: str, model: float, baseline: float, reference: float, completed: bool = True) -> dict:
        methods = {name: {"psnr": psnr, "delta_e_mean": 40.0 / psnr, "ssim": 0.9}
                   for name, psnr in (("model", model), ("baseline", baseline), ("reference", reference))}
        return {"kind": kind, "branch": branch,
                "doors": {"cli": {"completed": completed, "quality": {"methods": methods, "gap_closed": None}}}}

    result = {"shots": [shot("a", "chroma", 40.0, 30.0, 35.0), shot("b", "chroma", 36.0, 34.0, 39.0),
                        shot("stopped", "chroma", 10.0, 50.0, 20.0, completed=False),
                        shot("detail", "spatial", 10.0, 50.0, 20.0)]}
    line = field.corpus_means(result, "cli")
    # means: model 38, baseline 32, Reference 37 -> (38 - 32) / (37 - 32) = 120 %
    assert line.startswith("over the corpus (2 kinds), mean CIEDE2000 1.06 (baseline 1.25, the Reference's own 1.08)")
    assert "the model closes 120% of the gap between them" in line
    assert f"- chroma, cli: {line}" in field.quality_goals(result)
    assert field.corpus_means({"shots": [result["shots"][3]]}, "cli") == ""
    result["shots"][1]["doors"]["cli"]["quality"]["methods"]["reference"]["psnr"] = 20.0  # means: 27.5 < 32
    assert field.corpus_means(result, "cli").endswith("Reference 27.5): the Reference's does not beat the "
                                                       "baseline's (no gap to close).")


def test_shots_outside_the_corpus_generate_apart_from_it_and_are_named_so(tmp_path):
    """bench/field_outside.py: its kinds are seeded apart from the corpus's own (so neither changes
    the other, also when the corpus gains a kind), every picture is made from scikit-image offline,
    and its section says they are outside."""
    import copy

    import field_outside

    saved = (dict(field_corpus.KINDS), dict(field_corpus.PHOTO_SOURCES), dict(field_corpus.PHOTO_MAKERS),
             dict(field_corpus.OUTSIDE_SEEDS))
    try:
        field_outside.register()
        indices = [field_corpus.seed_index(k.name) for k in field_outside.KINDS]
        corpus_indices = [field_corpus.seed_index(name) for name in saved[0]]
        assert min(indices) > max(corpus_indices) and len(set(indices)) == len(indices)
        assert indices == [field_outside.OUTSIDE_SEED_BASE + i for i in range(len(indices))]
        for kind in field_outside.KINDS:
            for photo in filter(None, (kind.photo, kind.cut_to)):
                assert not set(field_corpus.PHOTO_SOURCES[photo]) & set(sample.PHOTOS)
        _check_cut_shot(field_corpus.generate_kind("x_cut_pulldown", tmp_path / "cut", frames=12))
        _check_fast_pan(field_corpus.generate_kind("x_fast_pan_pulldown", tmp_path / "fast", frames=8))
        shot = field_corpus.generate_kind("x_horse_letterbox_flat", tmp_path / "horse", frames=2)
        assert Path(shot.out_dir, "truth", "truth.json").exists()
        result = {"size": "small", "date": "d", "cpu_count": 2, "harness": copy.deepcopy(field.HarnessSettings().__dict__),
                  "shots": []}
        text = field_outside.section(result)
        assert text.startswith(field_outside.TITLE) and "0 shots outside the field corpus" in text
    finally:
        field_corpus.KINDS.clear()
        field_corpus.KINDS.update(saved[0])
        field_corpus.PHOTO_SOURCES.clear()
        field_corpus.PHOTO_SOURCES.update(saved[1])
        field_corpus.PHOTO_MAKERS.clear()
        field_corpus.PHOTO_MAKERS.update(saved[2])
        field_corpus.OUTSIDE_SEEDS.clear()
        field_corpus.OUTSIDE_SEEDS.update(saved[3])


def _check_fast_pan(shot) -> None:
    """x_fast_pan_pulldown pans four times as fast as the others, and the product finds its Reference's
    mixed frames as the truth has them."""
    from ml import curation

    truth = sample.load_truth(shot.out_dir)
    assert [s["camera"]["pan_source_px_per_frame"] for s in truth["shots"]] == [6.0]
    reference = field_corpus.load_shot(shot.out_dir)["reference"]
    measures = {e["frame"]: curation.interlace_measures(read_image(frame_path(reference["path"], e["frame"])))
                for e in truth["reference_frames"]}
    assert curation.field_mixed_frames(measures) == \
        {e["frame"]: e["field_mix"] for e in truth["reference_frames"] if e["field_mix"] != "clean"}


def _check_cut_shot(shot) -> None:
    """A shot that cuts to another picture: the truth names the cut and each frame's shot, the
    pulldown Reference frame whose fields straddle the cut is the first of the second shot's, and the
    product's curation finds the cut in the Source and keeps its pairs away from it."""
    from ml import curation

    truth = json.loads(Path(shot.out_dir, "truth", "truth.json").read_text())
    cut = truth["cut_frame"]
    assert cut == 1008 and [p["shot"] for p in truth["pairs"]] == ["A"] * 7 + ["B"] * 5
    straddling = next(e for e in truth["reference_frames"] if e["frame"] == truth["reference_cut_frame"])
    assert min(straddling["fields"]) < cut <= max(straddling["fields"]) and straddling["field_mix"] != "clean"
    pattern = str(Path(shot.out_dir) / sample.SOURCE_PATTERN)
    frames = list(range(truth["first_frame"], truth["last_frame"] + 1))
    suggestion = curation.suggest_pairs(curation.analyse_frames(lambda f: read_image(frame_path(pattern, f)), frames, 2))
    assert suggestion.cuts == [cut]
    assert all(abs(p.source_frame - cut + 0.5) > 2 for p in suggestion.pairs)


def test_a_speed_up_reference_pairs_frame_for_frame_and_a_converted_one_by_time(tmp_path):
    """A 25 fps Reference of a 24 fps Source, told as 25 fps: a speed-up transfer (every film frame once)
    is paired frame for frame, and `suggest --apply` sets reference.fps to the Source's so every stage
    maps it so; the same pictures converted by time (a frame repeated every 24) keep the mapping by
    time. On a slow pan no single frame's match is trusted; the whole shot's agreement tells."""
    import shutil

    shot = field_corpus.load_shot(field_corpus.generate_kind("pal_speedup", tmp_path / "pal", frames=40).out_dir)
    reference = shot["reference"]
    first, last = reference["first_frame"], reference["last_frame"]
    converted = tmp_path / "converted" / "reference.####.exr"  # the same time span: 42 frames for 40
    converted.parent.mkdir()
    converted_last = first + round((last - first + 1) * 25 / 24) - 1
    for frame in range(first, converted_last + 1):
        shown = min(last, first + int((frame - first) * 24 / 25 + 0.5))
        shutil.copy(frame_path(reference["path"], shown), frame_path(str(converted), frame))
    for name, path, expected_fps, reference_last in (("speedup", reference["path"], 24.0, last),
                                                     ("converted", str(converted), 25.0, converted_last)):
        work = tmp_path / name
        job = work / "job.json"
        source = shot["source"]
        commands = [["init", str(job), "--source", source["path"], "--reference", path, "--frames",
                     f"{source['first_frame']}-{source['last_frame']}", "--work-dir", str(work), "--branch", "chroma"]]
        code, text, _, _ = field.run_engine(commands[0], 300)
        assert code == 0, text
        field.apply_settings(job, {**shot["settings"], "reference.first_frame": first,
                                   "reference.last_frame": reference_last})
        code, text, events, _ = field.run_engine(["suggest", str(job), "--apply"], 300)
        assert code == 0, text
        saved = json.loads(job.read_text())
        assert saved["reference"]["fps"] == pytest.approx(expected_fps), name
        step = 1.0 if expected_fps == 24.0 else 25 / 24
        for pair in saved["pairs"]:
            assert pair["reference_frame"] == first + int((pair["source_frame"] - first) * step + 0.5), (name, pair)
        said = " ".join(e.get("text", "") for e in events if e.get("type") == "message")
        assert ("frame for frame" in said) == (name == "speedup"), said
    # `ml run` (the one-command pipeline) keeps what suggest decided, as the add-on does.
    run_job = tmp_path / "run" / "job.json"
    run_job.parent.mkdir()
    speedup = json.loads((tmp_path / "speedup" / "job.json").read_text())
    speedup.update(pairs=[], work_dir=str(run_job.parent))
    speedup["reference"]["fps"] = 25.0
    run_job.write_text(json.dumps(speedup))
    code, text, _, _ = field.run_engine(["run", str(run_job), "--stages", "suggest"], 300)
    assert code == 0, text
    saved = json.loads(run_job.read_text())
    assert saved["reference"]["fps"] == pytest.approx(24.0) and saved["pairs"]
    assert all(p["reference_frame"] == p["source_frame"] for p in saved["pairs"]), saved["pairs"]
    # The add-on's Suggest Pairs (the batch door) takes the same decision into the scene's recipe.
    batch = field.run_batch_door(shot, tmp_path / "batch", HARNESS, field.build_zip())
    assert batch.completed, batch.message
    saved = json.loads((tmp_path / "batch" / "job.json").read_text())
    assert saved["reference"]["fps"] == pytest.approx(24.0)
    assert all(p["reference_frame"] == p["source_frame"] for p in saved["pairs"]), saved["pairs"]
