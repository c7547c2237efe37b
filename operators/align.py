"""Stage 2 operators: automatic solve, manual keys with a per-frame auto/manual switch, difference view."""

from __future__ import annotations

import bpy

from ..addon import alignment, jobs, recipe
from ..ml import warp
from ..ml.alignment_apply import apply_alignment_result, no_alignment_warning
from ..ml.ingest import plate_size
from . import compositor
from .polls import NeedsPlates


def _sizes(job) -> tuple[tuple[int, int], tuple[int, int]]:
    """(Reference size, Source size) as (width, height)."""
    return plate_size(job.reference), plate_size(job.source)


def _store_alignment(fr, job) -> None:
    """Copy what apply_alignment_result changes (solves, pair scores and compromises, crop) into the scene."""
    fr.alignment.solves.clear()
    for key, matrix in job.alignment.solves.items():
        item = fr.alignment.solves.add()
        item.key = key
        recipe.set_matrix(item, matrix)
    for item, pair in zip(fr.pairs, job.pairs, strict=True):  # recipe_to_job keeps the pairs' order
        item.align_score, item.compromises = pair.align_score, pair.compromises
    for name in ("x", "y", "width", "height", "enabled"):
        setattr(fr.crop, name, getattr(job.crop, name))


def _refresh_views(context) -> None:
    """Keep the node groups and the Reference strip in step with the recipe's warps."""
    job = recipe.recipe_to_job(context.scene.film_recovery)
    reference_size, source_size = _sizes(job)
    alignment.key_reference_strip(context.scene, job, reference_size, source_size)
    if bpy.data.node_groups.get("FR Recipe") is not None:
        compositor.build_recipe_tree(context, context.scene.film_recovery.compositor_view)


class FILMREC_OT_solve_alignment(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Solve the Reference-to-Source warp on structure (not colour) in a central ROI, score every pair,
    propose the shared crop and check its edges"""

    bl_idname = "film_recovery.solve_alignment"
    bl_label = "Solve Alignment"
    command = "align"

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        # The engine decides what lands in the recipe (the same rules as `ml align --apply`);
        # only the fields it changes are copied back, so the scene's own paths stay as they are.
        _store_alignment(fr, apply_alignment_result(recipe.recipe_to_job(fr), result))
        failure = no_alignment_warning(result.get("frames", {}))
        fr.align_warnings = "\n".join(([failure] if failure else []) + result.get("edge_warnings", []))
        failed = [f for f, info in result.get("frames", {}).items() if info.get("status") == "failed"]
        misaligned = [p["source_frame"] for p in result.get("pairs", []) if p["misaligned"]]
        fr.job_state.message = (f"{len(result.get('solves', {}))} warps; {len(misaligned)} misaligned pair(s); "
                                f"{len(failed)} failed solve(s)")
        try:
            _refresh_views(context)
        except (OSError, ValueError, RuntimeError) as exc:
            self.report({"WARNING"}, f"Solved, but the views could not be updated: {exc}")


class FILMREC_OT_key_manual(NeedsPlates, bpy.types.Operator):
    """Key a manual warp for the current frame (the auto warp nudged by the offset/angle/scale below)
    and switch this frame to manual"""

    bl_idname = "film_recovery.key_manual"
    bl_label = "Key Manual Warp"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        fr = context.scene.film_recovery
        frame = context.scene.frame_current
        job = recipe.recipe_to_job(fr)
        reference_size, source_size = _sizes(job)
        base = alignment.base_matrix(job, frame, reference_size, source_size)
        matrix = alignment.nudged(base, source_size, fr.manual_offset[0], fr.manual_offset[1],
                                  fr.manual_angle, fr.manual_scale)
        existing = {item.key: item for item in fr.alignment.manual}
        item = existing.get(str(frame)) or fr.alignment.manual.add()
        item.key = str(frame)
        recipe.set_matrix(item, warp.matrix_to_list(matrix))
        if frame not in {ref.frame for ref in fr.alignment.use_manual}:
            fr.alignment.use_manual.add().frame = frame
        _refresh_views(context)
        self.report({"INFO"}, f"Manual warp keyed at frame {frame}")
        return {"FINISHED"}


class FILMREC_OT_toggle_manual_frame(NeedsPlates, bpy.types.Operator):
    """Switch the current frame between the automatic and the manual warp (the guide's Dissolve 0/1)"""

    bl_idname = "film_recovery.toggle_manual_frame"
    bl_label = "Auto / Manual"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        fr = context.scene.film_recovery
        frame = context.scene.frame_current
        frames = [ref.frame for ref in fr.alignment.use_manual]
        if frame in frames:
            fr.alignment.use_manual.remove(frames.index(frame))
            state = "auto"
        else:
            if str(frame) not in {item.key for item in fr.alignment.manual}:
                self.report({"ERROR"}, f"Frame {frame} has no manual warp: key one first")
                return {"CANCELLED"}
            fr.alignment.use_manual.add().frame = frame
            state = "manual"
        _refresh_views(context)
        self.report({"INFO"}, f"Frame {frame}: {state}")
        return {"FINISHED"}


class FILMREC_OT_difference_view(NeedsPlates, bpy.types.Operator):
    """Compositor difference of Source and aligned Reference (geometry should be near black), or back"""

    bl_idname = "film_recovery.difference_view"
    bl_label = "Difference View"

    def execute(self, context):
        fr = context.scene.film_recovery
        view = "ground_truth" if fr.compositor_view == "alignment_difference" else "alignment_difference"
        # The stubs know Blender's own operators only: this add-on's are registered at run time.
        return bpy.ops.film_recovery.build_node_trees(view=view)  # type: ignore[attr-defined]


classes = (FILMREC_OT_solve_alignment, FILMREC_OT_key_manual, FILMREC_OT_toggle_manual_frame,
           FILMREC_OT_difference_view)
