"""The panel flow under real bpy, stage by stage, through the add-on's own operators (as the
panel buttons and batch runs call them) on a small sample shot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    return tmp_path_factory.mktemp("flow")


def _reset_recipe(fr, work: Path) -> None:
    fr.pairs.clear()
    fr.alignment.solves.clear()
    fr.alignment.manual.clear()
    fr.alignment.use_manual.clear()
    fr.qc_checks.clear()
    fr.qc_status = ""
    fr.crop.enabled = False
    fr.dataset_dir = ""
    fr.work_dir = str(work)


def test_ingest_pairs_align_dataset_flow(addon, shot):
    scene = bpy.context.scene
    fr = scene.film_recovery
    _reset_recipe(fr, shot)
    assert bpy.ops.film_recovery.generate_sample(out_dir=str(shot / "sample"), frames=16, width=320,
                                                 height=180) == {"FINISHED"}
    assert bpy.ops.film_recovery.setup_aces() == {"FINISHED"}

    # Stage 0: QC finds the plates consistent enough to go on; the checklist lands in the recipe.
    assert bpy.ops.film_recovery.run_qc() == {"FINISHED"}
    assert fr.qc_status in {"pass", "warn"} and len(fr.qc_checks) > 3
    assert (shot / "qc" / "qc.json").exists()
    assert bpy.ops.film_recovery.estimate_balance() == {"FINISHED"}
    assert fr.balance.enabled and list(fr.balance.gain) != [1.0, 1.0, 1.0]

    # Stage 1: suggestions from both shots, then reject one with a reason and export the table.
    assert bpy.ops.film_recovery.suggest_pairs() == {"FINISHED"}
    shots = {p.shot for p in fr.pairs}
    assert len(fr.pairs) >= 4 and len(shots) == 2, [(p.source_frame, p.shot) for p in fr.pairs]
    assert all(p.rationale for p in fr.pairs)
    from importlib import import_module

    recipe = import_module(addon.__name__ + ".addon.recipe")
    fr.pair_scope = "scene"
    assert any("scene scope wants 12" in w for w in recipe.scope_warnings(fr))
    fr.pair_scope = "shot"
    fr.pairs_index = 0
    assert bpy.ops.film_recovery.pair_set_status(accept=False, reason="gate hair") == {"FINISHED"}
    assert not fr.pairs[0].accepted and fr.pairs[0].reason == "gate hair"
    with pytest.raises(RuntimeError, match="reason"):
        bpy.ops.film_recovery.pair_set_status(accept=False, reason="")
    table = shot / "pairs.csv"
    assert bpy.ops.film_recovery.pairs_table(action="export", filepath=str(table)) == {"FINISHED"}
    assert "gate hair" in table.read_text()
    assert bpy.ops.film_recovery.pair_add() == {"FINISHED"}  # the current frame, by hand
    assert bpy.ops.film_recovery.pair_remove() == {"FINISHED"}

    # Stage 2: automatic solve lands in the recipe, the crop proposal is taken, scores per pair.
    fr.alignment.model, fr.alignment.mode = "similarity", "per_frame"  # the sample weaves
    assert bpy.ops.film_recovery.solve_alignment() == {"FINISHED"}
    assert len(fr.alignment.solves) >= 3
    assert fr.crop.enabled and fr.crop.width > 0
    accepted = [p for p in fr.pairs if p.accepted]
    assert all(p.align_score >= 0 for p in accepted)
    strip = scene.sequence_editor.strips["FR Reference"]
    assert strip.transform.scale_x == pytest.approx(1.0, abs=0.05)  # sample Reference is ~1.01x after fit
    scene.frame_set(accepted[0].source_frame)
    fr.manual_offset = (0.5, 0.0)
    assert bpy.ops.film_recovery.key_manual() == {"FINISHED"}
    assert accepted[0].source_frame in {ref.frame for ref in fr.alignment.use_manual}
    assert bpy.ops.film_recovery.toggle_manual_frame() == {"FINISHED"}  # back to auto
    assert bpy.ops.film_recovery.build_node_trees(view="alignment_difference") == {"FINISHED"}
    assert scene.compositing_node_group.name == "FR Recipe"
    assert bpy.ops.film_recovery.detect_conform() == {"FINISHED"}
    assert fr.conform.scale_x == pytest.approx(1.0, abs=0.05)  # the sample's Reference is letterboxed 16:9
    # An animated crop: a smaller crop from the second pair on (a subtitle), keyed in the recipe.
    scene.frame_set(accepted[1].source_frame)
    fr.crop.height -= 8
    assert bpy.ops.film_recovery.key_crop() == {"FINISHED"}
    assert [key.frame for key in fr.crop.keys] == [accepted[1].source_frame]

    # Stage 3: the dataset for the accepted pairs.
    assert bpy.ops.film_recovery.export_dataset() == {"FINISHED"}
    manifest = json.loads((Path(fr.dataset_dir) / "manifest.json").read_text())
    assert len(manifest["pairs"]) == len(accepted)
    heights = {p["source_frame"]: p["crop"]["height"] for p in manifest["pairs"]}
    assert heights[accepted[1].source_frame] == fr.crop.keys[0].height
    assert manifest["rejected"][0]["reason"] == "gate hair"
