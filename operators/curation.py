"""Stage 1 operators: suggest pairs, match Reference frames, pair table and contact sheet."""

import json
from pathlib import Path

import bpy

from ..addon import jobs, recipe
from .polls import NeedsPlates


class FILMREC_OT_suggest_pairs(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Suggest pairs that cover every shot's variety and avoid cuts, flashes, blur and near-duplicates"""

    bl_idname = "film_recovery.suggest_pairs"
    bl_label = "Suggest Pairs"
    command = "suggest"

    def job_args(self, context):
        return ["--scope", context.scene.film_recovery.pair_scope]

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.shots_json = json.dumps([{k: s[k] for k in ("name", "first", "last")} for s in result.get("shots", [])])
        pairs = [recipe.pair_from_dict(p) for p in result.get("pairs", [])]
        added = recipe.merge_pairs(fr, pairs)
        shots = len({p.shot for p in pairs})
        if result.get("reference_fps"):  # a speed-up transfer: every stage maps it frame for frame
            fr.reference.fps = result["reference_fps"]
        warnings = result.get("warnings", [])
        fr.job_state.message = (f"{len(pairs)} suggestions ({added} new) over {shots} shot(s); "
                                f"{len(result.get('rejected', []))} frames avoided"
                                + (f"; {warnings[0]}" if warnings else ""))


class FILMREC_OT_match_reference(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Find each pair's Reference frame by structure (ignores colour): off-by-one, per-shot offsets, drift"""

    bl_idname = "film_recovery.match_reference"
    bl_label = "Match Reference Frames"
    command = "match"

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        best = {m["source_frame"]: m for m in result.get("frames", [])}
        changed = 0
        for pair in fr.pairs:
            match = best.get(pair.source_frame)
            if match and match.get("in_range") and pair.reference_frame != match["reference_frame"]:
                pair.reference_frame = match["reference_frame"]
                changed += 1
        shots = result.get("shots", [])
        if len(shots) == 1:
            fr.reference_offset = shots[0]["offset"]
        warnings = result.get("warnings", [])
        fr.job_state.message = "; ".join(f"shot {s['shot']}: offset {s['offset']:+d} ({s['method']})"
                                         for s in shots) + f"; {changed} pair(s) updated" \
            + (f"; {warnings[0]}" if warnings else "")


class FILMREC_OT_pairs_table(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Export, import or verify the pair record (CSV or JSON, with file checksums)"""

    bl_idname = "film_recovery.pairs_table"
    bl_label = "Pair Table"
    command = "pairs"

    action: bpy.props.EnumProperty(items=[("export", "Export", "Write the pair table with checksums"),
                                          ("import", "Import", "Replace the pairs with a table's"),
                                          ("verify", "Verify", "Flag frames changed since export")])
    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="")

    def job_args(self, context):
        return [self.action] + ([bpy.path.abspath(self.filepath)] if self.filepath else [])

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        if self.action == "import":
            count = recipe.reload_pairs_from_job_file(fr, Path(recipe.recipe_to_job(fr).work_dir) / "job.json")
            fr.job_state.message = f"imported {count} pairs; {len(result.get('changed', []))} changed file(s)"
        elif self.action == "verify":
            changed = result.get("changed", [])
            fr.job_state.message = "all frames unchanged" if not changed else \
                f"{len(changed)} frame(s) changed or missing: see the pair table"
            if changed:
                self.report({"WARNING"}, fr.job_state.message)
        else:
            fr.job_state.message = f"wrote {result.get('table')}"


class FILMREC_OT_contact_sheet(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Write a contact sheet (Source | Reference | difference per pair) and open it in an Image Editor"""

    bl_idname = "film_recovery.contact_sheet"
    bl_label = "Contact Sheet"
    command = "pairs"

    def job_args(self, context):
        return ["sheet"]

    def on_result(self, context, result):
        sheet = result.get("sheet")
        fr = context.scene.film_recovery
        fr.job_state.preview_path = sheet or ""
        if sheet:
            image = bpy.data.images.load(sheet, check_existing=True)
            image.reload()


classes = (FILMREC_OT_suggest_pairs, FILMREC_OT_match_reference, FILMREC_OT_pairs_table,
           FILMREC_OT_contact_sheet)
