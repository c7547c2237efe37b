"""`ml plan`: the reel's shots (the cut detection pairs use), units by scope, held-out pairs per shot,
unit jobs; the fallback decision from per-shot scores; the tasks a farm runs (torchrun for several
GPUs); bad plans and bad options refused naming the field and the fix. No training here."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml.errors import FilmRecoveryError
from ml.farm import task_command
from ml.job import Job, Plate, load_job, save_job
from ml.plan import (
    Plan,
    PlanRules,
    build_plan,
    chunks,
    decide_fallbacks,
    load_plan,
    parse_scenes,
    plan_tasks,
    save_plan,
    torchrun_launcher,
    write_unit_jobs,
)
from ml.reel import generate_reel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reel(tmp_path_factory) -> tuple[Path, Job]:
    folder = tmp_path_factory.mktemp("reel")
    info = generate_reel(folder / "reel", shots=4, frames_per_shot=8, width=96, height=64, odd_shot=3)
    job = Job(name="reel", work_dir=str(folder / "work"),
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame))
    save_job(job, folder / "job.json")
    return folder / "job.json", job


def test_sequence_plan_finds_the_reels_shots_and_holds_out_a_pair_per_shot(reel):
    job_path, job = reel
    plan = build_plan(job, job_path, "sequence")
    assert plan.cuts == [1009, 1017, 1025]  # the reel's hard cuts, found by ml.curation.detect_cuts
    assert [(s.name, s.first, s.last) for s in plan.shots] == [("1", 1001, 1008), ("2", 1009, 1016),
                                                                 ("3", 1017, 1024), ("4", 1025, 1032)]
    (unit,) = plan.units
    assert unit.id == "sequence" and unit.shots == ["1", "2", "3", "4"] and unit.status == "planned"
    assert unit.frames == [[1001, 1008], [1009, 1016], [1017, 1024], [1025, 1032]]
    for shot in plan.shots:
        members = [p for p in unit.pairs if shot.first <= p["source_frame"] <= shot.last]
        assert sum(p["holdout"] for p in members) == 1 and len(members) >= 2, shot.name
        assert all(p["shot"] == shot.name for p in members)
        # Pairs are never right next to a cut (the Reference may lag there).
        assert not any(c - 2 <= p["source_frame"] <= c + 1 for p in members for c in plan.cuts)
        assert shot.model_unit == shot.group_unit == "sequence"
        assert shot.fallback_pairs and all(p["shot"] == shot.name for p in shot.fallback_pairs)


def test_shot_and_scene_scopes_and_named_scenes(reel):
    job_path, job = reel
    shot_plan = build_plan(job, job_path, "shot")
    assert [u.id for u in shot_plan.units] == ["shot-1", "shot-2", "shot-3", "shot-4"]
    assert all(u.scope == "shot" and len(u.shots) == 1 for u in shot_plan.units)
    scene_plan = build_plan(job, job_path, "scene", rules=PlanRules(scenes="1-2,3-4"))
    assert [(u.id, u.shots) for u in scene_plan.units] == [("scene-1", ["1", "2"]), ("scene-2", ["3", "4"])]
    assert parse_scenes("1,2-4", 4) == [0, 1, 1, 1]
    for bad in ("1-2,4", "2-4", "1-3", "1-x"):
        with pytest.raises(FilmRecoveryError) as error:
            parse_scenes(bad, 4)
        assert error.value.where == "--scenes" and error.value.fix


def test_plan_file_round_trip_and_unit_jobs(reel, tmp_path):
    job_path, job = reel
    plan = build_plan(job, job_path, "sequence", rules=PlanRules(chunk_frames=3))
    path = save_plan(plan, tmp_path / "plan.json")
    again = load_plan(path)
    assert again.as_dict() == plan.as_dict()
    (unit_job_path,) = write_unit_jobs(again)
    unit_job = load_job(unit_job_path)
    assert unit_job.work_dir == job.work_dir and unit_job.name == job.name  # frames land in the reel's infer/
    assert [p.source_frame for p in unit_job.pairs] == [p["source_frame"] for p in plan.units[0].pairs]
    assert unit_job.dataset_dir.endswith("plan/units/sequence/dataset")
    assert unit_job.model_path.endswith("plan/units/sequence/train/model_best.safetensors")


def test_bad_plan_files_and_options_are_refused_with_a_fix(reel, tmp_path):
    job_path, job = reel
    plan = build_plan(job, job_path, "sequence")
    data = plan.as_dict()
    cases = {"schema": ({**data, "schema": "x"}, "not a Film Recovery plan"),
             "version": ({**data, "version": 9}, "plan version"),
             "status": ({**data, "units": [{**data["units"][0], "status": "cooking"}]}, "unknown status"),
             "unit": ({**data, "shots": [{**data["shots"][0], "model_unit": "nope"}, *data["shots"][1:]]}, "names a unit")}
    for name, (content, words) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(FilmRecoveryError) as error:
            load_plan(path)
        assert words in error.value.problem and str(path) in error.value.where and error.value.fix, name
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(FilmRecoveryError, match="not valid JSON"):
        load_plan(tmp_path / "broken.json")
    for scope, rules, where in (("reel", PlanRules(), "--scope"),
                                ("sequence", PlanRules(chunk_frames=0), "--chunk-frames"),
                                ("sequence", PlanRules(gpus=0), "--gpus"),
                                ("sequence", PlanRules(baseline="global"), "--baseline"),
                                ("sequence", PlanRules(min_psnr=float("nan")), "--min-gain/--min-psnr/--max-drop"),
                                ("sequence", PlanRules(max_drop_db=float("inf")), "--min-gain/--min-psnr/--max-drop")):
        with pytest.raises(FilmRecoveryError) as error:
            build_plan(job, job_path, scope, rules=rules)
        assert error.value.where == where and error.value.fix


def _numbers(model: float, baseline: float) -> dict:
    row = lambda psnr: {"psnr": psnr, "delta_e_mean": 2.0, "delta_e_p95": 5.0, "ssim": 0.99, "images": 1}  # noqa: E731
    return {"scored": True, "held_out": 1, "training_pairs": 3, "source": row(20.0), "baseline": row(baseline),
            "model": row(model)}


def test_a_shot_that_loses_to_the_baseline_gets_its_own_unit_recorded_with_the_numbers(reel):
    job_path, job = reel
    plan = build_plan(job, job_path, "sequence")
    group = copy.deepcopy(plan.units[0])
    scores = {"shots": {"1": _numbers(36.0, 34.0), "2": _numbers(38.0, 37.5), "3": _numbers(29.0, 33.0),
                        "4": {"scored": False, "held_out": 0, "training_pairs": 2, "why": "no held-out pair"}}}
    added = decide_fallbacks(plan, "sequence", scores)
    assert [u.id for u in added] == ["shot-3"] and plan.units[0].status == "scored"
    fallback = added[0]
    assert fallback.parent == "sequence" and fallback.scope == "shot" and fallback.shots == ["3"]
    assert "loses to the baseline" in fallback.reason and "29.00 vs 33.00" in fallback.reason
    # The shot's own model is scored on the very frames the sequence model was.
    held = sorted(p["source_frame"] for p in group.pairs if p["holdout"] and p["shot"] == "3")
    assert sorted(p["source_frame"] for p in fallback.pairs if p["holdout"]) == held
    assert any(not p["holdout"] for p in fallback.pairs)
    assert plan.shot("3").model_unit == "shot-3" and plan.shot("3").group_unit == "sequence"
    assert plan.shot("1").model_unit == "sequence"
    (decision,) = plan.fallbacks
    assert decision["before"]["model"]["psnr"] == 29.0 and decision["after"] is None and decision["held_out"] == held
    # Deciding again changes nothing; the shot unit's own scores become the decision's "after".
    assert decide_fallbacks(plan, "sequence", scores) == []
    assert decide_fallbacks(plan, "shot-3", {"shots": {"3": _numbers(35.5, 34.0)}}) == []
    assert plan.fallbacks[0]["after"]["model"]["psnr"] == 35.5
    # Inference of shot 3 uses its own model, the others the sequence model.
    infer = {t.shot: t for t in plan_tasks(plan) if t.kind == "infer"}
    assert infer["3"].argv[-1].endswith("units/shot-3/train/model_best.safetensors") and infer["3"].unit == "shot-3"
    assert infer["1"].argv[-1].endswith("units/sequence/train/model_best.safetensors")


def test_the_artists_thresholds(reel):
    job_path, job = reel
    plan = build_plan(job, job_path, "sequence", rules=PlanRules(min_psnr=35.0))
    added = decide_fallbacks(plan, "sequence", {"shots": {"1": _numbers(36.0, 34.0), "2": _numbers(34.5, 30.0)}})
    assert [u.id for u in added] == ["shot-2"] and "below the plan's threshold of 35.00 dB" in added[0].reason
    plan = build_plan(job, job_path, "sequence", rules=PlanRules(min_gain_db=1.0))
    added = decide_fallbacks(plan, "sequence", {"shots": {"1": _numbers(36.0, 34.0), "2": _numbers(34.5, 34.0)}})
    assert [u.id for u in added] == ["shot-2"] and "below the plan's +1.00 dB" in added[0].reason
    plan = build_plan(job, job_path, "shot")  # a shot unit never falls back further
    assert decide_fallbacks(plan, "shot-1", {"shots": {"1": _numbers(20.0, 34.0)}}) == []


def test_a_shot_far_below_the_units_other_shots_gets_its_own_model_by_default(reel):
    """The odd shot beats the unit's baseline grade (which fits it badly too) but the sequence model
    does far worse on it than on the rest: by default that is a fallback as well."""
    job_path, job = reel
    scores = {"shots": {"1": _numbers(36.9, 31.6), "2": _numbers(40.3, 37.2), "3": _numbers(31.3, 27.7),
                        "4": _numbers(35.5, 33.8)}}
    plan = build_plan(job, job_path, "sequence")
    added = decide_fallbacks(plan, "sequence", scores)
    assert [u.id for u in added] == ["shot-3"]
    assert "below the unit's median shot (36.20 dB; the plan allows 3.00)" in added[0].reason
    plan = build_plan(job, job_path, "sequence", rules=PlanRules(max_drop_db=None))  # `ml plan --no-max-drop`
    assert decide_fallbacks(plan, "sequence", scores) == []


def test_tasks_depend_on_their_units_model_and_chunk_the_shots(reel):
    job_path, job = reel
    plan = build_plan(job, job_path, "shot", rules=PlanRules(chunk_frames=3, gpus=2))
    tasks = {t.id: t for t in plan_tasks(plan, python="/py")}
    assert tasks["shot-1:train"].after == ["shot-1:dataset"] and tasks["shot-1:score"].after == ["shot-1:train"]
    infer = [t for t in tasks.values() if t.kind == "infer" and t.shot == "2"]
    assert [t.frame_range for t in infer] == [[1009, 1011], [1012, 1014], [1015, 1016]]
    assert all(t.after == ["shot-2:score"] and "--frames" in t.argv for t in infer)
    assert chunks(1, 10, 4) == [(1, 4), (5, 8), (9, 10)]
    # A unit with two GPUs trains under torchrun inside its task.
    train = tasks["shot-1:train"]
    assert train.gpus == 2
    assert train.command("/py")[:9] == ["/py", "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                                        "--nproc_per_node", "2", "-m"]
    assert train.command("/py")[9:12] == ["ml", "--json", "train"]
    assert torchrun_launcher(4, "/py")[7] == "4"
    spec = {"kind": "train", "gpus": 2, "argv": train.argv}
    assert task_command(spec, "/py") == [*torchrun_launcher(2, "/py"), *train.argv]
    assert task_command({**spec, "gpus": 1}, "/py") == ["/py", "-m", "ml", "--json", *train.argv]


def test_plan_command_writes_plan_and_unit_jobs(reel, tmp_path):
    job_path, job = reel
    out = tmp_path / "p" / "plan.json"
    done = subprocess.run([sys.executable, "-m", "ml", "--json", "plan", str(job_path), "--scope", "scene",
                           "--scenes", "1,2-4", "--min-gain", "0.5", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, done.stderr[-2000:]
    result = events[-1]
    assert result["type"] == "result" and result["plan"] == str(out) and result["cuts"] == [1009, 1017, 1025]
    assert [u["shots"] for u in result["units"]] == [["1"], ["2", "3", "4"]]
    assert any(e["type"] == "progress" and e["stage"] == "plan" for e in events)
    plan: Plan = load_plan(out)
    assert plan.min_gain_db == 0.5 and all(plan.unit_job_path(u.id).exists() for u in plan.units)
    bad = subprocess.run([sys.executable, "-m", "ml", "--json", "plan", str(job_path), "--chunk-frames", "0",
                          "--out", str(tmp_path / "bad.json")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    error = json.loads(bad.stdout.splitlines()[-1])
    assert bad.returncode == 2 and error["where"] == "--chunk-frames" and error["fix"]
