"""The extension as a user gets it: built zip, installed into bpy 5.0.1, panels, a real engine job."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from conftest import ADDON_MODULE  # noqa: E402

STAGES = ["ingest", "pairs", "align", "ground_truth", "train", "inference", "review"]


def test_zip_leaves_out_dev_files(extension_zip):
    import zipfile

    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "ml/cli.py" in names and "addon/jobs.py" in names
    for excluded in ("tests/", "bench/", "docs/", "scripts/", ".ci/", "requirements.txt"):
        assert not any(n.startswith(excluded) or n == excluded for n in names), excluded


def test_install_enable_finds_panels_and_recipe(addon):
    assert ADDON_MODULE in bpy.context.preferences.addons
    for space in ("sequencer", "compositor"):
        for stage in STAGES:
            assert hasattr(bpy.types, f"FILMREC_PT_{space}_{stage}"), (space, stage)
    scene = bpy.context.scene
    assert scene.film_recovery.training.steps > 0
    assert hasattr(bpy.ops.film_recovery, "setup_aces")
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    assert prefs.device == "auto"


def test_setup_aces_reports_changes(addon):
    scene = bpy.context.scene
    scene.view_settings.view_transform = "Standard"
    assert bpy.ops.film_recovery.setup_aces() == {"FINISHED"}
    assert bpy.data.colorspace.working_space == "ACEScg"
    assert scene.display_settings.display_device == "Rec.1886"
    assert scene.view_settings.view_transform == "ACES 1.3"


def test_recipe_round_trips_through_job_json(addon, tmp_path):
    from importlib import import_module

    recipe = import_module(ADDON_MODULE + ".addon.recipe")
    schema = import_module(ADDON_MODULE + ".ml.job")
    fr = bpy.context.scene.film_recovery
    fr.pairs.clear()  # the scene is shared by the tests of this session: start from no pairs or solves
    fr.alignment.solves.clear()
    fr.work_dir = str(tmp_path)
    fr.branch = "spatial"
    fr.training.steps = 321
    fr.balance.gain = (1.1, 0.9, 1.05)
    pair = fr.pairs.add()
    pair.source_frame, pair.reference_frame, pair.accepted, pair.reason = 1005, 1007, False, "flash"
    solve = fr.alignment.solves.add()
    solve.key, solve.matrix = "1005", (1, 0, 2.5, 0, 1, -1, 0, 0, 1)
    shot = fr.alignment.solves.add()
    shot.key = "global"
    path = recipe.write_job_file(fr)
    job = schema.load_job(path)
    assert job.branch == "spatial" and job.training.steps == 321
    assert job.pairs[0].reference_frame == 1007 and job.pairs[0].reason == "flash"
    assert job.alignment.solves["1005"][2] == pytest.approx(2.5)
    assert job.alignment.solves["global"] == pytest.approx([1, 0, 0, 0, 1, 0, 0, 0, 1])
    assert job.balance.gain == pytest.approx([1.1, 0.9, 1.05])
    # and back into a cleared recipe
    fr.pairs.clear()
    fr.alignment.solves.clear()
    recipe.job_into_recipe(job, fr)
    assert fr.pairs[0].reason == "flash" and fr.alignment.solves[0].key == "1005"
    assert fr.alignment.solves[1].key == "global"
    fr.pairs.clear()
    fr.alignment.solves.clear()


def test_operator_runs_engine_job_and_sees_progress(addon, tmp_path):
    fr = bpy.context.scene.film_recovery
    fr.work_dir = str(tmp_path)
    out = tmp_path / "sample"
    result = bpy.ops.film_recovery.generate_sample(out_dir=str(out), frames=6, width=96, height=64)
    assert result == {"FINISHED"}
    state = fr.job_state
    assert state.exit_code == 0 and not state.running
    assert state.events_seen >= 7  # one progress event per frame, at least, plus the result
    assert state.progress == pytest.approx(1.0)
    assert json.loads(state.last_result)["last_frame"] - json.loads(state.last_result)["first_frame"] == 5
    assert fr.source.path and Path(fr.source.path).parent.is_dir()
    strips = bpy.context.scene.sequence_editor.strips
    assert strips["FR Source"].channel == 1 and strips["FR Reference"].channel == 2
    assert len(strips["FR Source"].elements) == 6


def test_failed_job_reports_the_engine_error(addon, tmp_path):
    fr = bpy.context.scene.film_recovery
    fr.work_dir = str(tmp_path)
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where a folder should be")
    # bpy.ops turns an operator's ERROR report into RuntimeError: that is what a script sees.
    with pytest.raises(RuntimeError, match="sample failed"):
        bpy.ops.film_recovery.generate_sample(out_dir=str(blocker / "sample"), frames=6, width=64, height=64)
    assert fr.job_state.exit_code == 2 and "blocked" in fr.job_state.last_error


def test_cancel_stops_a_running_job_and_leaves_no_partial_files(addon, tmp_path):
    from importlib import import_module

    jobs = import_module(ADDON_MODULE + ".addon.jobs")
    out = tmp_path / "big"
    job = jobs.start("sample", None, ["--out", str(out), "--frames", "400", "--width", "1024",
                                      "--height", "576"])
    deadline = time.monotonic() + 60
    seen_progress = False
    while time.monotonic() < deadline and not seen_progress:
        seen_progress = any(e.get("type") == "progress" for e in job.drain())
        time.sleep(0.05)
    assert seen_progress, "the job never reported progress"
    assert bpy.ops.film_recovery.cancel_job() == {"FINISHED"}
    assert job.process.poll() is not None
    assert job.process.returncode != 0
    leftovers = [p for p in out.rglob("*") if ".part" in p.name]
    assert leftovers == []
    written = sorted(out.rglob("source.*.exr"))
    assert 0 < len(written) < 400


def test_disable_removes_classes_and_properties(addon):
    import addon_utils

    addon_utils.disable(ADDON_MODULE, default_set=True)
    try:
        assert not hasattr(bpy.types.Scene, "film_recovery")
        assert not any(name.startswith("FILMREC_") for name in dir(bpy.types))
        assert not hasattr(bpy.ops.film_recovery, "setup_aces") or \
            "setup_aces" not in dir(bpy.ops.film_recovery)
    finally:
        addon_utils.enable(ADDON_MODULE, default_set=True)
    assert hasattr(bpy.types.Scene, "film_recovery")


def test_check_interpreter_reports_torch_and_devices(addon, tmp_path):
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.python_path = ""  # auto: Blender's own Python (here the test interpreter, which has torch)
    assert bpy.ops.film_recovery.check_interpreter() == {"FINISHED"}
    assert "torch 2." in prefs.interpreter_report and "cpu" in prefs.interpreter_report
    assert "OpenEXR 3." in prefs.interpreter_report  # the fast EXR codec is there
    prefs.python_path = str(tmp_path / "no-such-python")
    with pytest.raises(RuntimeError, match="no such interpreter"):
        bpy.ops.film_recovery.check_interpreter()
    assert prefs.interpreter_report.startswith("Problem:")
    prefs.python_path = ""
