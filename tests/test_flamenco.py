"""The Flamenco job type (farm/flamenco/film_recovery.js): compileJob under node with a stand-in for
Flamenco's `author` API turns a plan into train and chunked-inference tasks with their dependencies,
each an `exec` of the engine's idempotent task runner; the submission body and the POST to
`/api/v3/jobs`, against a stand-in HTTP server on 127.0.0.1 (no Flamenco Manager runs here)."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from ml.errors import FilmRecoveryError
from ml.farm import FLAMENCO_JOB_TYPE, flamenco_submission, submit_to_flamenco
from ml.job import Job, Plate, save_job
from ml.plan import PlanRules, build_plan, load_plan, plan_tasks, save_plan
from ml.reel import generate_reel

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "farm" / "flamenco" / "compile_check.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("flamenco")
    info = generate_reel(folder / "reel", shots=3, frames_per_shot=8, width=96, height=64)
    job = Job(name="reel", work_dir=str(folder / "work"),
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame))
    save_job(job, folder / "job.json")
    plan = build_plan(job, folder / "job.json", "scene", rules=PlanRules(scenes="1-2,3", chunk_frames=5, gpus=2))
    return save_plan(plan, folder / "work" / "plan" / "plan.json")


def _compile(tmp_path: Path, job: dict) -> tuple[int, dict]:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    done = subprocess.run([NODE, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout.splitlines()[-1])


def test_compile_job_makes_the_plans_tasks_with_dependencies(plan_path, tmp_path):
    submission = flamenco_submission(plan_path, python="/farm/python3", engine_root="/farm/film_recovery")
    assert submission["type"] == FLAMENCO_JOB_TYPE and submission["priority"] == 50
    assert {"name", "type", "priority", "submitter_platform", "settings", "metadata"} <= set(submission)
    code, compiled = _compile(tmp_path, {"name": submission["name"], "settings": submission["settings"]})
    assert code == 0, compiled
    assert compiled["job_type"] == "Film Recovery" and "plan" in compiled["settings"]
    expected = plan_tasks(load_plan(plan_path))
    tasks = {t["name"]: t for t in compiled["tasks"]}
    assert list(tasks) == [t.id for t in expected]
    for task in expected:
        authored = tasks[task.id]
        assert authored["dependencies"] == task.after
        (command,) = authored["commands"]
        assert command["name"] == "exec" and command["parameters"]["exe"] == "/farm/python3"
        args = command["parameters"]["args"]
        assert args[0] == "-c" and args[2] == "/farm/film_recovery"
        assert args[3:] == ["--json", "farm", str(plan_path.resolve()), "--task", task.id, "--retries", "0"]
        assert authored["type"] == ("film-recovery-gpu" if task.kind in ("train", "infer") else "misc")
    # Train then chunked inference per unit: scene-1 holds shots 1 and 2 (16 frames in chunks of 5).
    infer = [t for t in compiled["tasks"] if t["name"].startswith("scene-1:infer:")]
    assert [t["name"].rsplit(":", 1)[1] for t in infer] == ["1001-1005", "1006-1008", "1009-1013", "1014-1016"]
    assert all(t["dependencies"] == ["scene-1:score"] for t in infer)
    assert tasks["scene-1:train"]["dependencies"] == ["scene-1:dataset"]


def test_the_exec_command_runs_the_engines_task_runner(plan_path, tmp_path):
    """The exact command line compileJob writes, run here: the dataset task of a unit."""
    submission = flamenco_submission(plan_path, python=str(Path(shutil.which("python3") or "python3")),
                                     engine_root=str(ROOT))
    code, compiled = _compile(tmp_path, {"name": "x", "settings": submission["settings"]})
    (command,) = next(t for t in compiled["tasks"] if t["name"] == "scene-2:dataset")["commands"]
    import sys

    done = subprocess.run([sys.executable, *command["parameters"]["args"]], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["type"] == "result" and result["task"] == "scene-2:dataset" and not result["skipped"]
    assert (load_plan(plan_path).unit_dir("scene-2") / "dataset" / "manifest.json").exists()


def test_compile_job_refuses_bad_settings(plan_path, tmp_path):
    settings = flamenco_submission(plan_path)["settings"]
    tasks = json.loads(settings["tasks"])
    cases = {"not json": {**settings, "tasks": "["},
             "no plan": {**settings, "plan": ""},
             "unknown dependency": {**settings, "tasks": json.dumps([{**tasks[1], "after": ["nope"]}])},
             "twice": {**settings, "tasks": json.dumps([tasks[0], tasks[0]])},
             "kind": {**settings, "tasks": json.dumps([{**tasks[0], "kind": "render"}])}}
    for name, bad in cases.items():
        code, compiled = _compile(tmp_path, {"name": "x", "settings": bad})
        assert code == 3 and compiled["error"], name


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Recorder.received.append((self.path, body))
        answer = json.dumps({"id": "job-1", "status": "queued", **body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_submission_is_posted_to_api_v3_jobs(plan_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        submission = flamenco_submission(plan_path)
        answer = submit_to_flamenco(f"http://127.0.0.1:{server.server_port}/", submission, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert answer["id"] == "job-1"
    ((path, body),) = _Recorder.received
    assert path == "/api/v3/jobs" and body == submission
    with pytest.raises(FilmRecoveryError) as error:
        submit_to_flamenco("flamenco:8080", submission)
    assert error.value.where == "Flamenco Manager URL" and error.value.fix
    with pytest.raises(FilmRecoveryError) as error:
        submit_to_flamenco(f"http://127.0.0.1:{server.server_port}", submission, timeout=2)  # closed now
    assert "cannot reach" in error.value.problem
