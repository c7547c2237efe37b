"""`ml farm` on a real Dask cluster started with the `dask` command line on 127.0.0.1: a two-shot plan
runs end to end on the CPU (tiny models), one worker is killed in the middle of a training task, and
the outputs are byte-identical to a serial run of the same plan. Also: a failing task is retried and
reported with its log; a unit asking for two GPUs trains under torchrun (two gloo processes on the CPU).

Every process a test starts (scheduler, workers, the farm client) is killed in `finally`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ml.job import Job, Plate, load_job, save_job  # noqa: E402
from ml.plan import PlanRules, build_plan, load_plan, save_plan, write_unit_jobs  # noqa: E402
from ml.reel import generate_reel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).with_name("dask"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _reel_plan(folder: Path, shots: int = 2, scope: str = "shot", gpus: int = 1, steps: int = 24) -> Path:
    info = generate_reel(folder / "reel", shots=shots, frames_per_shot=8, width=96, height=64, odd_shot=0)
    job = Job(name="reel", work_dir=str(folder / "work"),
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame))
    t = job.training
    t.model, t.size, t.steps, t.batch, t.crop_size, t.device = "bilateral", "tiny", steps, 4, 32, "cpu"
    t.validate_every = t.checkpoint_every = 6
    t.preview_every = 1000
    job.output.aces_exr, job.output.review = False, "none"
    save_job(job, folder / "job.json")
    plan = build_plan(job, folder / "job.json", scope, rules=PlanRules(chunk_frames=4, gpus=gpus))
    path = save_plan(plan, folder / "work" / "plan" / "plan.json")
    write_unit_jobs(plan)
    return path


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _outputs(work: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((work / "infer").rglob("*.exr"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def _reset(folder: Path, plan_copy: str) -> None:
    """The plan as planned, no unit outputs, no frames: what a fresh farm run starts from."""
    work = folder / "work"
    for unit in (work / "plan" / "units").iterdir():
        for name in ("dataset", "train", "done", "logs", "scores.json"):
            target = unit / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    shutil.rmtree(work / "infer", ignore_errors=True)
    (work / "plan" / "plan.json").write_text(plan_copy)


def test_dask_cluster_with_a_killed_worker_matches_a_serial_run(tmp_path):
    plan_path = _reel_plan(tmp_path, steps=90)
    plan_copy = plan_path.read_text()
    work = tmp_path / "work"

    serial = subprocess.run([sys.executable, "-m", "ml", "--json", "farm", str(plan_path), "--serial", "--threads", "1"],
                            capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=900)
    assert serial.returncode == 0, serial.stdout[-3000:] + serial.stderr[-3000:]
    serial_result = _events(serial.stdout)[-1]
    assert serial_result["failed"] == {} and serial_result["frames_done"] == serial_result["frames_total"] == 16
    expected = _outputs(work)
    assert len(expected) == 16
    serial_plan = load_plan(plan_path)
    serial_models = {u.id: json.loads(Path(serial_plan.model_path(u.id)).with_suffix(".json").read_text())["weights"]
                     for u in serial_plan.units}
    _reset(tmp_path, plan_copy)

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = client = None
    workers: dict[str, subprocess.Popen] = {}
    try:
        scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=ROOT)
        for name in ("w1", "w2"):
            workers[name] = subprocess.Popen(
                [DASK, "worker", address, "--name", name, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                 "--no-dashboard", "--death-timeout", "60"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=ROOT)
        client = subprocess.Popen([sys.executable, "-m", "ml", "--json", "farm", str(plan_path), "--scheduler", address,
                                   "--threads", "1", "--retries", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
        lines: list[str] = []
        killed = resumed_unit = ""
        deadline = time.monotonic() + 900
        assert client.stdout is not None
        for line in client.stdout:
            lines.append(line)
            assert time.monotonic() < deadline, "the farm run took too long"
            event = json.loads(line) if line.startswith("{") else {}
            if killed or event.get("type") != "progress":
                continue
            training = [r for r in event.get("running", []) if r["task"].endswith(":train") and r["worker"] in workers]
            if training:
                # Let it write a checkpoint first, so the retry on the other worker resumes from it.
                unit = training[0]["task"].split(":")[0]
                checkpoints = work / "plan" / "units" / unit / "train" / "checkpoints"
                wait_until = time.monotonic() + 20
                # A checkpoint is complete when its JSON is written, last (an unfinished one is removed on retry).
                while time.monotonic() < wait_until and not list(checkpoints.glob("ckpt_*.json")):
                    time.sleep(0.05)
                resumed_unit = unit if list(checkpoints.glob("ckpt_*.json")) else ""
                killed = training[0]["worker"]
                workers[killed].send_signal(signal.SIGKILL)
                workers[killed].wait(timeout=30)
        client.wait(timeout=120)
        stderr = client.stderr.read() if client.stderr else ""
        assert client.returncode == 0, "".join(lines)[-3000:] + stderr[-3000:]
    finally:
        _stop(client)
        for process in workers.values():
            _stop(process)
        _stop(scheduler)

    assert killed, "no training task was seen running to kill its worker"
    # The killed worker's engine process died with it (no orphan keeps writing into the work folder).
    import psutil

    orphans = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
               if any(str(tmp_path) in part for part in (p.info["cmdline"] or []))]
    assert orphans == []
    events = _events("".join(lines))
    result = events[-1]
    assert result["type"] == "result" and result["executor"] == "dask" and result["failed"] == {}
    assert result["frames_done"] == result["frames_total"] == 16
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and {"tasks_done", "tasks_total", "frames_done", "frames_total", "running"} <= set(progress[-1])
    survivor = ({"w1", "w2"} - {killed}).pop()
    assert survivor in result["workers"]
    # The same frames, byte for byte, and the same weights, as the serial run.
    assert _outputs(work) == expected
    plan = load_plan(plan_path)
    assert all(u.status == "done" for u in plan.units) and all(s.status == "inferred" for s in plan.shots)
    for unit in plan.units:
        weights = json.loads(Path(plan.model_path(unit.id)).with_suffix(".json").read_text())["weights"]
        assert weights == serial_models[unit.id], unit.id
        assert plan.unit(unit.id).scores == serial_plan.unit(unit.id).scores
    print(f"killed {killed} while it trained; resumed from a checkpoint: {resumed_unit or 'no'}")
    if resumed_unit:  # the retry on the surviving worker resumed from the checkpoint the killed one wrote
        log = (plan.unit_dir(resumed_unit) / "logs" / f"{resumed_unit}__train.log").read_text()
        assert "Resuming from step" in log and f"# worker {survivor}" in log
    # A second run, on an embedded local cluster, reuses every finished task.
    again = subprocess.run([sys.executable, "-m", "ml", "--json", "farm", str(plan_path), "--local", "2"],
                           capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert again.returncode == 0
    rerun = _events(again.stdout)[-1]
    assert rerun["executor"] == "dask" and rerun["skipped"] == rerun["tasks"] == result["tasks"]
    assert _outputs(work) == expected


def test_a_failing_task_is_retried_and_reported_with_its_log(tmp_path):
    plan_path = _reel_plan(tmp_path, shots=2, scope="sequence")
    plan = load_plan(plan_path)
    job = load_job(plan.unit_job_path("sequence"))
    job.reference.path = str(tmp_path / "missing" / "ref.####.exr")  # the dataset cannot read it
    save_job(job, plan.unit_job_path("sequence"))
    plan.job = str(plan.unit_job_path("sequence"))  # unit jobs are written from the plan's job
    save_plan(plan, plan_path)
    done = subprocess.run([sys.executable, "-m", "ml", "--json", "farm", str(plan_path), "--serial", "--retries", "1"],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    events = _events(done.stdout)
    assert done.returncode == 1
    error = events[-1]
    assert error["type"] == "error" and error["where"] == "sequence:dataset" and "log:" in error["message"]
    assert "ml farm" in error["fix"]
    log = plan.unit_dir("sequence") / "logs" / "sequence__dataset.log"
    assert log.exists() and "ml --json dataset" in log.read_text()
    assert load_plan(plan_path).unit("sequence").status == "failed"
    assert any(e["type"] == "message" and "sequence:dataset failed" in e.get("text", "") for e in events)


def test_a_two_gpu_unit_trains_under_torchrun(tmp_path):
    """No GPU here: torchrun starts two processes that train data-parallel over gloo on the CPU."""
    plan_path = _reel_plan(tmp_path, shots=1, scope="shot", gpus=2, steps=4)
    plan = load_plan(plan_path)
    (unit,) = plan.units
    run = lambda task: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "ml", "--json", "farm", str(plan_path), "--task", f"{unit.id}:{task}"],
        capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert run("dataset").returncode == 0
    trained = run("train")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    log = (plan.unit_dir(unit.id) / "logs" / f"{unit.id}__train.log").read_text()
    assert "torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2" in log.splitlines()[0]
    assert "x2" in log  # the training message names the two processes
    final = json.loads((plan.model_path(unit.id).parent / "model_final.json").read_text())
    assert final["step"] == 4 and final["training"]["batch"] == 4
    # The unit's model is the best validated one: after 4 steps that may still be the starting grade (step 0).
    best = json.loads(plan.model_path(unit.id).with_suffix(".json").read_text())
    assert best["step"] in (0, 4) and best["training"]["batch"] == 4
