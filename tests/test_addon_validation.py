"""The add-on runs the engine's job checks before it starts any engine process, and the recipe's
properties carry the schema's ranges, so the panel cannot hold a value the engine refuses."""

from __future__ import annotations

import pytest
from test_bad_input import FRAMES, make_shot

bpy = pytest.importorskip("bpy")


def _load_shot(fr, root) -> None:
    make_shot(root)
    fr.work_dir = str(root / "work")
    fr.source.path, fr.reference.path = str(root / "plates" / "src.####.exr"), str(root / "plates" / "ref.####.exr")
    for plate in (fr.source, fr.reference):
        plate.first_frame, plate.last_frame = FRAMES[0], FRAMES[-1]
    fr.pairs.clear()
    fr.alignment.solves.clear()
    fr.crop.enabled = False


def test_a_bad_recipe_fails_before_any_engine_process_starts(addon, tmp_path):
    fr = bpy.context.scene.film_recovery
    _load_shot(fr, tmp_path)
    for _ in range(2):  # the same Source frame twice
        pair = fr.pairs.add()
        pair.source_frame = pair.reference_frame = 1002
    fr.job_state.command = ""
    with pytest.raises(RuntimeError, match="Source frame 1002 is listed twice"):
        bpy.ops.film_recovery.export_dataset()
    assert fr.job_state.command == ""  # no engine job was launched
    assert "listed twice" in fr.job_state.last_error and "Fix:" in fr.job_state.last_error
    assert not (tmp_path / "work" / "dataset").exists()
    fr.pairs.clear()  # leave the shared scene as other tests expect it


def test_a_crop_outside_the_raster_is_named_from_the_panel(addon, tmp_path):
    fr = bpy.context.scene.film_recovery
    _load_shot(fr, tmp_path)
    fr.crop.enabled, fr.crop.x, fr.crop.y, fr.crop.width, fr.crop.height = True, 100, 0, 100, 50
    with pytest.raises(RuntimeError, match="reaches outside the 160x96 Source raster"):
        bpy.ops.film_recovery.run_qc()
    fr.crop.enabled = False


def test_recipe_properties_carry_the_schema_ranges(addon):
    fr = bpy.context.scene.film_recovery
    fr.training.batch = 0
    fr.training.steps = -5
    fr.training.learning_rate = 5.0
    fr.source.fps = 0.0
    assert fr.training.batch == 1 and fr.training.steps == 1
    assert fr.training.learning_rate == 1.0 and fr.source.fps == 1.0
    fr.balance.gain = (-1.0, 1e30, 1.0)
    assert tuple(round(g, 4) for g in fr.balance.gain) == (0.01, 100.0, 1.0)
    fr.training.batch, fr.training.steps, fr.training.learning_rate, fr.source.fps = 8, 2000, 2e-3, 24.0
    fr.balance.gain = (1.0, 1.0, 1.0)
