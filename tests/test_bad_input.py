"""Bad input is caught before work starts, with one clear message (what, where, one fix) and a
documented exit code: one test per case a careless user or pipeline script produced."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ml.cli import main
from ml.imageio import write_exr
from ml.job import Cleanup, Job, Pair, Plate, Training, job_to_dict, save_job
from ml.job_format import job_format_markdown

ROOT = Path(__file__).resolve().parent.parent
FRAMES = list(range(1001, 1009))
SIZE = (96, 160)


def _picture() -> np.ndarray:
    from skimage import data

    return (data.coffee()[100:100 + SIZE[0] + 8, 200:200 + SIZE[1] + 8] / 255.0).astype(np.float32)


def make_shot(root: Path) -> Path:
    """A small shot on one raster (no alignment needed): a faded Source, a Reference with its colour."""
    picture = _picture()
    rng = np.random.default_rng(3)
    for i, frame in enumerate(FRAMES):
        clean = picture[i % 8:i % 8 + SIZE[0], i:i + SIZE[1]]
        faded = 0.15 + 0.7 * (0.6 * clean + 0.4 * clean.mean(axis=-1, keepdims=True))
        write_exr(root / "plates" / f"src.{frame:04d}.exr", faded + rng.normal(0, 0.01, clean.shape).astype(np.float32))
        write_exr(root / "plates" / f"ref.{frame:04d}.exr", clean)
    job = Job(name="shot", work_dir=str(root / "work"),
              source=Plate(path=str(root / "plates" / "src.####.exr"), first_frame=FRAMES[0], last_frame=FRAMES[-1]),
              reference=Plate(path=str(root / "plates" / "ref.####.exr"), first_frame=FRAMES[0],
                              last_frame=FRAMES[-1]),
              conform=Job().conform,
              pairs=[Pair(source_frame=f, reference_frame=f, holdout=f == 1006) for f in FRAMES[:6]],
              training=Training(model="unet", size="tiny", steps=4, batch=2, crop_size=32, checkpoint_every=2,
                                validate_every=2, preview_every=100, device="cpu"))
    return save_job(job, root / "job.json")


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> Path:
    return make_shot(tmp_path_factory.mktemp("bad_input"))


def edited(job_path: Path, tmp_path: Path, edit) -> Path:
    data = json.loads(job_path.read_text())
    edit(data)
    out = tmp_path / "job.json"
    out.write_text(json.dumps(data))  # json writes NaN/Infinity literals, as a careless script would
    return out


def run_cli(*argv: str) -> tuple[int, list[dict]]:
    import contextlib
    import io

    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        code = main(["--json", *argv])
    return code, [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def run_subprocess(*argv: str, **kwargs) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-m", "ml", "--json", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kwargs)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def error_of(events: list[dict]) -> dict:
    errors = [e for e in events if e["type"] == "error"]
    assert errors, events[-3:]
    error = errors[-1]
    assert "traceback" not in error, error["traceback"]
    assert error["message"].count("Fix:") <= 1, error["message"]  # one fix, said once
    return error


# (edit of job.json, where the message points, words it must say)
JOB_FILE_CASES = {
    "matrix with 3 values": (lambda d: d["alignment"]["solves"].update({"1001": [1, 2, 3]}),
                             "job.alignment.solves.1001", "has 3 values, expected 9"),
    "singular global matrix": (lambda d: d["alignment"]["solves"].update({"global": [1, 2, 0, 2, 4, 0, 0, 0, 1]}),
                               "job.alignment.solves.global", "singular"),
    "gain with 2 values": (lambda d: d["balance"].update(enabled=True, gain=[1.1, 0.9]),
                           "job.balance.gain", "has 2 values, expected 3"),
    "negative, huge and NaN gains": (lambda d: d["balance"].update(enabled=True, gain=[-1, 1e30, float("nan")]),
                                     "job.balance.gain[0]", "below the minimum"),
    "huge gain": (lambda d: d["balance"].update(gain=[1.0, 1e30, 1.0]), "job.balance.gain[1]", "above the maximum"),
    "NaN gain": (lambda d: d["balance"].update(gain=[1.0, 1.0, float("nan")]), "job.balance.gain[2]",
                 "not a finite number"),
    "NaN learning rate": (lambda d: d["training"].update(learning_rate=float("nan")), "job.training.learning_rate",
                          "not a finite number"),
    "negative steps": (lambda d: d["training"].update(steps=-5), "job.training.steps", "below the minimum 1"),
    "batch 0": (lambda d: d["training"].update(batch=0), "job.training.batch", "below the minimum 1"),
    "same pair twice": (lambda d: d["pairs"].append(dict(d["pairs"][0])), "job.pairs[6]", "listed twice"),
    "pair outside the Source plate": (lambda d: d["pairs"][0].update(source_frame=1200), "job.pairs[0].source_frame",
                                      "outside the source plate (1001-1008)"),
    "pair outside the Reference plate": (lambda d: d["pairs"][0].update(reference_frame=900),
                                         "job.pairs[0].reference_frame", "outside the reference plate"),
    "crop partly outside the raster": (lambda d: d["crop"].update(enabled=True, x=100, y=0, width=100, height=50),
                                       "job.crop", "reaches outside the 160x96 Source raster"),
    "empty crop": (lambda d: d["crop"].update(enabled=True, width=0, height=10), "job.crop", "the crop is empty"),
    "range past the last frame": (lambda d: d["source"].update(last_frame=1010), "src.####.exr",
                                  "frames 1009, 1010 missing (2 of 10 frames)"),
    "unknown field": (lambda d: d["training"].update(stepz=10), "job.training", "unknown field(s) stepz"),
}


@pytest.mark.parametrize("case", list(JOB_FILE_CASES))
def test_validate_catches_job_file_cases_in_under_a_second(shot, tmp_path, case):
    edit, where, words = JOB_FILE_CASES[case]
    job_path = edited(shot, tmp_path, edit)
    started = time.perf_counter()
    code, events = run_cli("validate", str(job_path))
    seconds = time.perf_counter() - started
    error = error_of(events)
    assert code == 2, events
    assert seconds < 1.0, seconds
    assert words in error["message"], error["message"]
    assert where in (error["where"] or ""), error
    assert error["fix"]


@pytest.mark.parametrize("command", ["dataset", "train", "infer", "align", "qc"])
def test_every_command_runs_the_checks_first(shot, tmp_path, command):
    job_path = edited(shot, tmp_path, lambda d: d["balance"].update(enabled=True, gain=[1.1, 0.9]))
    code, events = run_cli(command, str(job_path))
    assert code == 2 and "has 2 values, expected 3" in error_of(events)["message"]


def test_a_missing_source_frame_is_named_by_validate(shot, tmp_path):
    root = tmp_path / "shot"
    job_path = make_shot(root)
    (root / "plates" / "src.1005.exr").unlink()
    code, events = run_cli("validate", str(job_path))
    error = error_of(events)
    assert code == 2 and "frame 1005 missing (1 of 8 frames)" in error["message"]
    assert error["where"].endswith("src.####.exr") and "Re-export" in error["fix"]


def test_unknown_field_fix_points_to_a_job_format_page_that_matches_the_schema():
    page = ROOT / "docs" / "job-format.md"
    assert page.exists()
    assert page.read_text(encoding="utf-8") == job_format_markdown(), \
        "docs/job-format.md is stale: python -m ml.job_format > docs/job-format.md"
    for name in ("learning_rate", "holdout_every", "reference_denoise", "compression", "use_manual"):
        assert f"| `{name}` |" in page.read_text(encoding="utf-8")


def test_qc_fail_exits_3(tmp_path):
    root = tmp_path / "shot"
    job_path = make_shot(root)
    write_exr(root / "plates" / "ref.1003.exr", np.zeros((40, 40, 3), np.float32))  # a frame of another size
    code, events = run_cli("qc", str(job_path))
    assert code == 3, events[-1]
    result = next(e for e in events if e["type"] == "result")
    assert result["status"] == "fail"
    assert "parity QC failed" in error_of(events)["message"]


def test_dataset_runs_qc_itself_and_refuses_a_failing_one(tmp_path):
    root = tmp_path / "shot"
    job_path = make_shot(root)
    write_exr(root / "plates" / "ref.1003.exr", np.zeros((40, 40, 3), np.float32))
    assert not (root / "work" / "qc" / "qc.json").exists()
    code, events = run_cli("dataset", str(job_path))
    assert code == 3
    assert (root / "work" / "qc" / "qc.json").exists()  # QC ran first, as `qc` would have
    assert "parity QC failed" in error_of(events)["message"]
    assert not (root / "work" / "dataset" / "manifest.json").exists()


def _child_file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_disk_full_during_train_is_exit_2_and_leaves_no_checkpoint_without_sidecar(tmp_path):
    root = tmp_path / "shot"
    job_path = make_shot(root)
    assert run_cli("dataset", str(job_path))[0] == 0
    # A file size limit stands in for a full disk: every write past 20 kB fails as it would (EFBIG).
    code, events = run_subprocess("train", str(job_path), preexec_fn=_child_file_size_limit(20_000))
    error = error_of(events)
    assert code == 2, error
    assert "cannot write the file" in error["message"] and "Free disk space" in error["fix"]
    checkpoints = root / "work" / "train" / "checkpoints"
    weights = {p.name.split(".")[0] for p in checkpoints.glob("*.safetensors")}
    sidecars = {p.stem for p in checkpoints.glob("*.json")}
    assert weights <= sidecars, (weights, sidecars)
    assert not list((root / "work" / "train").rglob(".*.part*"))
    # With room again, training resumes and finishes.
    code, events = run_subprocess("train", str(job_path))
    assert code == 0, events[-1]


def test_killed_dataset_after_a_recipe_change_then_train_refuses_until_exported_again(tmp_path):
    root = tmp_path / "shot"
    job_path = make_shot(root)
    assert run_cli("dataset", str(job_path))[0] == 0
    data = json.loads(job_path.read_text())
    data["cleanup"]["reference_denoise"] = 0.5
    job_path.write_text(json.dumps(data))
    staging = root / "work" / ".dataset.staging"
    child = subprocess.Popen([sys.executable, "-m", "ml", "--json", "dataset", str(job_path)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(staging.glob("target/*.exr")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)  # mid-export, as kill -9 would
    child.wait()
    manifest = json.loads((root / "work" / "dataset" / "manifest.json").read_text())
    assert manifest["recipe"]["cleanup"]["reference_denoise"] == 0.0  # the old dataset is whole

    code, events = run_cli("train", str(job_path))
    error = error_of(events)
    assert code == 2
    assert "cleanup.reference_denoise" in error["message"] and "python -m ml dataset job.json" in error["fix"]

    assert run_cli("dataset", str(job_path))[0] == 0  # the command the message names
    assert not staging.exists() and not list((root / "work").rglob(".*.part*"))
    manifest = json.loads((root / "work" / "dataset" / "manifest.json").read_text())
    assert manifest["recipe"]["cleanup"]["reference_denoise"] == 0.5
    code, events = run_cli("train", str(job_path))
    assert code == 0, events[-1]


def test_a_dataset_file_changed_after_export_is_refused(tmp_path):
    root = tmp_path / "shot"
    job_path = make_shot(root)
    assert run_cli("dataset", str(job_path))[0] == 0
    target = root / "work" / "dataset" / "target" / "pair_001002.exr"
    write_exr(target, np.full((SIZE[0], SIZE[1], 3), 0.5, np.float32))
    code, events = run_cli("train", str(job_path))
    error = error_of(events)
    assert code == 2 and "does not match the checksum" in error["message"] and error["where"] == str(target)


def test_temp_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    root = tmp_path / "shot"
    job_path = make_shot(root)
    assert run_cli("dataset", str(job_path))[0] == 0
    assert run_cli("train", str(job_path))[0] == 0
    display = root / "work" / "infer" / "display"
    display.mkdir(parents=True, exist_ok=True)
    # What kill -9 leaves behind: atomic-write temp files, and checkpoint tensors without a sidecar.
    ours = display / ".shot.1002.k2j3abcd.part.exr"
    other_chunk = display / ".shot.1007.q9w8e7r6.part.exr"  # a farm node writing other frames
    for path in (ours, other_chunk):
        path.write_bytes(b"half a frame")
    checkpoints = root / "work" / "train" / "checkpoints"
    orphan = checkpoints / "ckpt_000099.safetensors"
    orphan.write_bytes(b"weights, no sidecar")
    (root / "work" / "train" / ".model_best.x1y2z3ab.part.safetensors").write_bytes(b"x")
    leftover = root / "work" / ".dataset.staging"
    (leftover / "input").mkdir(parents=True)

    code, events = run_cli("infer", str(job_path), "--frames", "1001-1004")
    assert code == 0, events[-1]
    assert not ours.exists() and other_chunk.exists()
    assert run_cli("train", str(job_path), "--steps", "6")[0] == 0
    assert not orphan.exists() and not list((root / "work" / "train").glob(".*.part*"))
    assert run_cli("dataset", str(job_path))[0] == 0
    assert not leftover.exists()


def test_a_sidecar_asking_for_a_huge_network_is_refused_before_it_is_built(tmp_path):
    root = tmp_path / "shot"
    job_path = make_shot(root)
    assert run_cli("dataset", str(job_path))[0] == 0
    assert run_cli("train", str(job_path))[0] == 0
    sidecar = root / "work" / "train" / "model_final.json"
    meta = json.loads(sidecar.read_text())
    meta["model"].update(width=100000, levels=12)
    sidecar.write_text(json.dumps(meta))
    data = json.loads(job_path.read_text())
    data["model_path"] = str(sidecar.with_suffix(".safetensors"))
    job_path.write_text(json.dumps(data))
    started = time.perf_counter()
    code, events = run_cli("infer", str(job_path))
    error = error_of(events)
    assert code == 2 and time.perf_counter() - started < 20
    assert "model.width is 100000" in error["message"] and error["where"] == str(sidecar)


def test_the_unedited_shot_is_valid(shot):
    code, events = run_cli("validate", str(shot))
    assert code == 0 and events[-1]["valid"] is True


def test_cleanup_ranges_are_checked():
    with pytest.raises(Exception, match="not one of 0, 3, 5"):
        from ml.job import job_from_dict

        data = job_to_dict(Job(cleanup=Cleanup()))
        data["cleanup"]["reference_median"] = 4
        job_from_dict(data)
