"""The Farm panel's operators under real bpy (the extension installed from its zip): Plan Reel writes
plan.json from the scene's recipe, the panel's per-unit button runs that unit through the engine's
farm (serial here), and Submit to Flamenco posts the plan's job to a stand-in server on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
from importlib import import_module
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Recorder.received.append((self.path, body))
        answer = b'{"id": "job-7", "status": "queued"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_plan_reel_run_one_unit_and_submit_to_flamenco(addon, tmp_path):
    from ml.reel import generate_reel

    info = generate_reel(tmp_path / "reel", shots=2, frames_per_shot=8, width=96, height=64, odd_shot=0)
    fr = bpy.context.scene.film_recovery
    fr.pairs.clear()
    fr.alignment.solves.clear()
    fr.crop.enabled = False
    fr.balance.enabled = False
    fr.dataset_dir = fr.model_path = ""
    fr.work_dir = str(tmp_path / "work")
    fr.name = "reel"
    for plate in (fr.source, fr.reference):
        plate.first_frame, plate.last_frame, plate.ingest = info.first_frame, info.last_frame, "display"
    fr.source.path, fr.reference.path = info.source_pattern, info.reference_pattern
    t = fr.training
    t.model, t.size, t.steps, t.batch, t.crop_size, t.device = "bilateral", "tiny", 4, 4, 32, "cpu"
    t.validate_every = t.checkpoint_every = 2
    fr.output.aces_exr, fr.output.review = False, "none"

    for space in ("sequencer", "compositor"):  # the Farm panel sits in both sidebars
        assert hasattr(bpy.types, f"FILMREC_PT_{space}_farm")
    farm = fr.farm
    farm.scope, farm.chunk_frames, farm.where, farm.threads = "shot", 8, "serial", 1
    assert not bpy.ops.film_recovery.run_farm.poll()  # no plan yet
    assert bpy.ops.film_recovery.plan_reel() == {"FINISHED"}
    assert Path(farm.plan_path).exists() and fr.job_state.exit_code == 0
    helpers = import_module(addon.__name__ + ".addon.farm")
    plan, why = helpers.cached_plan(farm.plan_path)
    assert why == "" and [u.id for u in plan.units] == ["shot-1", "shot-2"] and plan.cuts == [1009]
    assert helpers.farm_arguments(farm, farm.plan_path, "shot-1")[-2:] == ["--unit", "shot-1"]
    farm.where = "scheduler"
    with pytest.raises(Exception, match="scheduler"):
        helpers.farm_arguments(farm, farm.plan_path)
    farm.where = "serial"

    # The unit's button: dataset, train, score and its shot's inference, through the engine's farm.
    assert bpy.ops.film_recovery.run_farm(unit="shot-1") == {"FINISHED"}, fr.job_state.last_error
    plan, _ = helpers.cached_plan(farm.plan_path)
    assert plan.unit("shot-1").status == "done" and plan.unit("shot-2").status == "planned"
    assert plan.shot("1").status == "inferred"
    assert len(list((tmp_path / "work" / "infer" / "display").glob("reel.*.exr"))) == 8
    assert fr.job_state.stage == "farm" and "frames" in fr.job_state.message

    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        farm.manager_url = f"http://127.0.0.1:{server.server_port}"
        farm.flamenco_python = "/farm/bin/python3"
        assert bpy.ops.film_recovery.submit_flamenco() == {"FINISHED"}
    finally:
        server.shutdown()
        server.server_close()
    ((path, body),) = _Recorder.received
    assert path == "/api/v3/jobs" and body["type"] == "film-recovery"
    assert body["settings"]["python"] == "/farm/bin/python3" and "job-7" in farm.last_submission
    assert [t["id"] for t in json.loads(body["settings"]["tasks"])][:3] == ["shot-1:dataset", "shot-1:train",
                                                                          "shot-1:score"]
    farm.manager_url = "not a url"
    with pytest.raises(RuntimeError, match="Manager URL"):
        bpy.ops.film_recovery.submit_flamenco()
