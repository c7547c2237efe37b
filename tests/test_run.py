"""`python -m ml run job.json`: the whole pipeline from the command line, with the add-on's decisions
applied between stages (balance written, pairs merged, alignment applied, model recorded), and a
stop at the first stage that fails, with that stage's error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml.alignment_apply import APPLY_COMMAND, same_solves
from ml.commands.run import STAGES, merge_pairs, parse_stages
from ml.errors import FilmRecoveryError
from ml.job import Job, Pair, Plate, load_job, save_job
from ml.sample import generate_sample

ROOT = Path(__file__).resolve().parent.parent


def _ml(*args: str, timeout: float = 600) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-m", "ml", "--json", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events


def _sample_job(folder: Path) -> Path:
    info = generate_sample(folder / "sample", seed=1, frames=12, width=192, height=108)
    job = Job(name="sample_shot", work_dir=str(folder / "work"),
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame))
    # The batch script's sample settings (per-frame alignment for the weave, the bilateral model),
    # with a CPU-sized training run.
    job.alignment.mode = "per_frame"
    job.training.model, job.training.size, job.training.steps = "bilateral", "small", 40
    job.training.batch, job.training.crop_size, job.training.holdout_every = 4, 64, 4
    job.training.validate_every = job.training.preview_every = job.training.checkpoint_every = 20
    job.training.device = "cpu"
    path = folder / "job.json"
    save_job(job, path)
    return path


def test_run_goes_through_every_stage_and_keeps_the_addons_decisions(tmp_path):
    job_path = _sample_job(tmp_path)
    code, events = _ml("run", str(job_path), "--truth", str(tmp_path / "sample" / "truth"))
    errors = [e for e in events if e["type"] == "error"]
    assert code == 0, errors
    result = next(e for e in events if e["type"] == "result")
    assert result["stages"] == list(STAGES)
    assert set(result["times"]) == set(STAGES) and all(t > 0 for t in result["times"].values())
    # Each time is rounded to the millisecond: allow half a millisecond per stage.
    assert result["total_seconds"] >= sum(result["times"].values()) - 5e-4 * len(result["times"])
    # Progress is forwarded under each stage's name (a stage's own sub-stages after a colon).
    progress_stages = {e["stage"].split(":")[0] for e in events if e["type"] == "progress"}
    assert {"qc", "balance", "align", "dataset", "train", "infer", "baseline", "evaluate"} <= progress_stages
    assert [e["stage"] for e in events if e["type"] == "metric" and e["name"] == "stage_seconds"] == list(STAGES)

    work = tmp_path / "work"
    job = load_job(job_path)
    assert job.balance.enabled and job.balance.gain != [1.0, 1.0, 1.0]  # balance --write
    assert job.pairs and all(p.rationale for p in job.pairs)  # the suggestions, merged in
    align_json = json.loads((work / "align" / "align.json").read_text())
    assert same_solves(job.alignment.solves, align_json["solves"]) and job.crop.enabled  # align --apply
    assert all(p.align_score >= 0 for p in job.pairs if p.accepted)
    assert Path(job.dataset_dir) == work / "dataset" and (work / "dataset" / "manifest.json").exists()
    assert Path(job.model_path).exists() and Path(job.model_path).parent == work / "train"
    assert len(list((work / "infer" / "display").glob("sample_shot.*.exr"))) == 12
    # Reference-guided by default: every frame gets its Reference partner and coverage, recorded.
    guide = result["results"]["infer"]["guide"]
    assert guide["frames"] == 12 and guide["mean_coverage"] > 0.5, guide
    assert guide["colour_grain"] == "reduced"  # output.grain clean, the default, on the chroma branch
    frames = json.loads((work / "infer" / "guide.json").read_text())["frames"]
    assert {f["source_frame"] for f in frames} == set(range(1001, 1013))
    assert all(f["reference_frame"] is not None and f["matrix"] for f in frames if f["coverage"] > 0)
    report = json.loads(Path(result["results"]["evaluate"]["report_json"]).read_text())
    assert report["guide"]["frames"] == 12
    assert list((work / "baseline").glob("*.cube"))
    assert result["results"]["evaluate"]["evaluated_on"] == "truth"
    assert Path(result["results"]["evaluate"]["report"]).exists()
    # Without truth the judge is the held-out pairs, whose targets are the guide's own Reference colour:
    # the verdict and the report say so, and give the model's score from the Source alone.
    code, events = _ml("evaluate", str(job_path))
    verdict = next(e for e in events if e["type"] == "result")
    assert code == 0 and verdict["evaluated_on"] == "holdout" and "not an independent test" in verdict["verdict"]
    holdout = json.loads(Path(verdict["report_json"]).read_text())["sets"][0]
    assert holdout["key"] == "holdout" and any("From the Source alone" in note for note in holdout["notes"])


def test_run_stops_at_the_first_failing_stage_with_its_error(tmp_path):
    from tests.test_align_apply import H, W, _write_plates

    job = _write_plates(tmp_path, reference_size=(W // 2, H // 2))  # no solve, another raster
    save_job(job, tmp_path / "job.json")
    code, events = _ml("run", str(tmp_path / "job.json"), "--stages", "dataset,train")
    assert code == 2  # bad input, as `python -m ml dataset` would exit
    error = next(e for e in events if e["type"] == "error")
    assert APPLY_COMMAND in error["message"] and error["where"] == "job.alignment.solves"
    assert any(e["type"] == "message" and "stopped at stage 'dataset'" in e["text"] for e in events)
    assert not any(e["type"] == "result" for e in events)
    assert not (tmp_path / "work" / "train").exists()  # the later stage never started


def test_stages_are_checked_and_run_in_workflow_order():
    assert parse_stages("align, qc,dataset") == ["qc", "align", "dataset"]
    with pytest.raises(FilmRecoveryError, match="polish"):
        parse_stages("qc,polish")
    code, events = _ml("run", "missing.json", "--stages", "qc", timeout=60)
    assert code == 2 and events[-1]["type"] == "error"


def test_suggested_pairs_merge_by_source_frame_as_in_the_addon():
    mine = [Pair(source_frame=1001, reference_frame=1001, reason="hand-picked", accepted=False),
            Pair(source_frame=1005, reference_frame=1005)]
    suggested = [Pair(source_frame=1005, reference_frame=1006, rationale="anchor"),
                 Pair(source_frame=1009, reference_frame=1009, rationale="extreme")]
    merged = merge_pairs(mine, suggested)
    assert [(p.source_frame, p.reference_frame) for p in merged] == [(1001, 1001), (1005, 1006), (1009, 1009)]
    assert merged[0].reason == "hand-picked" and merged[1].rationale == "anchor"


def test_a_qc_failure_stops_the_run_at_qc(tmp_path):
    import numpy as np

    from ml.imageio import write_exr
    from tests.test_align_apply import H, W, _write_plates

    job = _write_plates(tmp_path)
    broken = np.full((H, W, 3), 0.5, np.float32)
    broken[10, 10] = np.nan  # a frame QC must fail
    write_exr(tmp_path / "src.1002.exr", broken)
    save_job(job, tmp_path / "job.json")
    code, events = _ml("run", str(tmp_path / "job.json"), "--stages", "qc,balance", timeout=120)
    # The exit code the stage that knows would give: `dataset` refuses the same QC report.
    dataset_code, dataset_events = _ml("dataset", str(tmp_path / "job.json"), timeout=120)
    assert code == dataset_code != 0
    error = next(e for e in events if e["type"] == "error")
    assert error["where"].endswith("qc.json") and "NaN" in error["message"]
    assert any(e["type"] == "message" and "stopped at stage 'qc'" in e["text"] for e in events)
    assert "NaN" in next(e for e in dataset_events if e["type"] == "error")["message"]
    assert not load_job(tmp_path / "job.json").balance.enabled  # balance never ran
