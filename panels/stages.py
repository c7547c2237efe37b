"""What each stage panel shows. Operators do the work; these only lay out the recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bpy

from ..addon import preferences, props, recipe
from .common import draw_job_state

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import IconItems


def draw_ingest(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    fr = props.recipe_of(context.scene)
    draw_job_state(layout, fr)
    layout.operator("film_recovery.setup_aces", icon="COLOR")
    layout.operator("film_recovery.generate_sample", icon="FILE_IMAGE")
    layout.prop(fr, "work_dir")
    for label, plate in (("Source", fr.source), ("Reference", fr.reference)):
        box = layout.box()
        box.label(text=label)
        box.prop(plate, "path", text="")
        row = box.row(align=True)
        row.prop(plate, "first_frame", text="First")
        row.prop(plate, "last_frame", text="Last")
        box.prop(plate, "ingest", text="Ingest")
        # An SD Reference's rate and pixel aspect decide its pairing and its placement on the Source.
        row = box.row(align=True)
        row.prop(plate, "fps", text="fps")
        row.prop(plate, "pixel_aspect", text="Pixel aspect")
    layout.operator("film_recovery.load_plates", icon="SEQUENCE")
    layout.operator("film_recovery.run_qc", icon="CHECKBOX_HLT")
    if fr.qc_checks:
        box = layout.box()
        box.label(text=f"QC: {fr.qc_status.upper()}")
        icons: dict[str, IconItems] = {"pass": "CHECKMARK", "warn": "ERROR", "fail": "CANCEL"}
        for item in fr.qc_checks:
            row = box.row()
            row.alert = item.status == "fail"
            row.label(text=f"{item.check}: {item.message}"[:110], icon=icons[item.status])
    box = layout.box()
    box.label(text="Neutral pre-balance (Source)")
    box.operator("film_recovery.estimate_balance", icon="EYEDROPPER")
    box.prop(fr.balance, "enabled")
    row = box.row()
    row.prop(fr.balance, "gain")
    row = box.row()
    row.prop(fr.balance, "offset")
    box = layout.box()
    box.label(text="Clean-up (training copies only)")
    for name in ("reference_median", "reference_denoise", "reference_deband", "reference_dust", "source_degrain"):
        box.prop(fr.cleanup, name)
    box = layout.box()
    row = box.row()
    row.label(text="Conform (Reference onto the Source raster)")
    row.operator("film_recovery.detect_conform", text="", icon="FULLSCREEN_ENTER")
    box.prop(fr.conform, "mode")
    row = box.row(align=True)
    for name in ("scale_x", "scale_y", "offset_x", "offset_y"):
        row.prop(fr.conform, name)


def draw_pairs(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    fr = props.recipe_of(context.scene)
    draw_job_state(layout, fr)
    layout.prop(fr, "pair_scope")
    for warning in recipe.scope_warnings(fr)[:3]:
        layout.label(text=warning[:110], icon="ERROR")
    row = layout.row(align=True)
    row.operator("film_recovery.suggest_pairs", icon="LIGHT")
    row.operator("film_recovery.match_reference", icon="TIME")
    row = layout.row()
    row.template_list("FILMREC_UL_pairs", "", fr, "pairs", fr, "pairs_index", rows=5)
    col = row.column(align=True)
    col.operator("film_recovery.pair_add", text="", icon="ADD")
    col.operator("film_recovery.pair_remove", text="", icon="REMOVE")
    col.separator()
    col.operator("film_recovery.pair_move", text="", icon="TRIA_UP").direction = "UP"
    col.operator("film_recovery.pair_move", text="", icon="TRIA_DOWN").direction = "DOWN"
    row = layout.row(align=True)
    row.operator("film_recovery.pair_jump", icon="VIEWZOOM")
    row.operator("film_recovery.toggle_difference", icon="SELECT_DIFFERENCE")
    row = layout.row(align=True)
    row.operator("film_recovery.pair_set_status", text="Accept", icon="CHECKMARK").accept = True
    row.operator("film_recovery.pair_set_status", text="Reject", icon="CANCEL").accept = False
    if 0 <= fr.pairs_index < len(fr.pairs):
        pair = fr.pairs[fr.pairs_index]
        box = layout.box()
        col = box.column(align=True)
        for name in ("source_frame", "reference_frame", "timecode", "shot", "label", "rationale",
                     "reference_type", "compromises", "reason", "holdout"):
            col.prop(pair, name)
    layout.prop(fr, "reference_offset")
    row = layout.row(align=True)
    row.operator("film_recovery.pairs_table", text="Export", icon="EXPORT").action = "export"
    row.operator("film_recovery.pairs_table", text="Import", icon="IMPORT").action = "import"
    row.operator("film_recovery.pairs_table", text="Verify", icon="CHECKMARK").action = "verify"
    layout.operator("film_recovery.contact_sheet", icon="IMAGE_DATA")


def draw_align(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    fr = props.recipe_of(context.scene)
    draw_job_state(layout, fr)
    col = layout.column()
    col.prop(fr.alignment, "model")
    col.prop(fr.alignment, "mode")
    col.prop(fr.alignment, "roi")
    col.prop(fr.alignment, "smoothing")
    layout.operator("film_recovery.solve_alignment", icon="TRACKING")
    for line in fr.align_warnings.splitlines()[:4]:
        layout.label(text=line[:110], icon="ERROR")
    box = layout.box()
    frame = context.scene.frame_current if context.scene is not None else 0
    box.label(text=f"Manual warp (frame {frame})")
    box.prop(fr, "manual_offset")
    row = box.row()
    row.prop(fr, "manual_angle")
    row.prop(fr, "manual_scale")
    row = box.row(align=True)
    row.operator("film_recovery.key_manual", icon="KEYFRAME")
    manual = frame in {ref.frame for ref in fr.alignment.use_manual}
    row.operator("film_recovery.toggle_manual_frame", text="Manual" if manual else "Auto", icon="ARROW_LEFTRIGHT")
    row = layout.row(align=True)
    row.operator("film_recovery.build_node_trees", icon="NODETREE")
    row.operator("film_recovery.difference_view", icon="SELECT_DIFFERENCE")
    box = layout.box()
    row = box.row()
    row.label(text="Shared crop (Source px, from lower-left)")
    row.operator("film_recovery.toggle_crop_bypass", text="", icon="HIDE_ON" if fr.crop_bypass else "HIDE_OFF")
    box.prop(fr.crop, "enabled")
    row = box.row(align=True)
    for name in ("x", "y", "width", "height"):
        row.prop(fr.crop, name)
    row = box.row()
    row.operator("film_recovery.key_crop", icon="KEYFRAME_HLT")
    row.label(text=f"{len(fr.crop.keys)} key(s)")


def draw_ground_truth(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    fr = props.recipe_of(context.scene)
    draw_job_state(layout, fr)
    layout.prop(fr, "branch", expand=True)
    layout.label(text="Chroma: Source Y + Reference CbCr" if fr.branch == "chroma"
                 else "Spatial: Reference Y + Source CbCr", icon="INFO")
    layout.prop(fr.training, "holdout_every", text="Hold out every Nth pair")
    layout.operator("film_recovery.build_node_trees", text="Show Input | Ground Truth",
                    icon="NODETREE").view = "input_vs_ground_truth"
    layout.operator("film_recovery.export_dataset", icon="EXPORT")
    if fr.dataset_dir:
        layout.label(text=f"Dataset: {fr.dataset_dir}"[:110])


def _preview(layout: bpy.types.UILayout, kind: str) -> None:
    """A training/inference preview image (loaded by the job runner when the engine announces it)."""
    image = bpy.data.images.get(f"FR {kind}")
    if image is not None and image.preview is not None:
        layout.template_icon(icon_value=image.preview.icon_id, scale=10.0)


def _draw_spatial_defaults(layout: bpy.types.UILayout, training: Any) -> None:
    """The spatial branch's measured defaults, the ones that differ marked, and a button to use them."""
    from ..ml.job import spatial_training_defaults

    defaults = spatial_training_defaults()
    box = layout.box()
    box.label(text="Spatial defaults (measured, docs/benchmarks.md):", icon="INFO")
    text = ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in defaults.items())
    for start in range(0, len(text), 60):
        box.label(text=text[start:start + 60])
    differ = [name for name, value in defaults.items() if getattr(training, name) != value]
    if differ:
        box.label(text=f"Differs here: {', '.join(differ)}"[:110], icon="ERROR")
    box.operator("film_recovery.use_spatial_defaults", icon="CHECKMARK")


def draw_train(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    fr = props.recipe_of(context.scene)
    draw_job_state(layout, fr)
    training = fr.training
    col = layout.column()
    col.prop(fr, "branch")
    if fr.branch == "spatial":
        _draw_spatial_defaults(layout, training)
    for name in ("model", "size", "steps", "epochs", "batch", "crop_size", "learning_rate", "loss",
                 "gradient_loss", "augment", "position", "reference_guided", "start_from_grade", "device", "seed",
                 "validate_every", "checkpoint_every", "preview_every", "init_weights"):
        if name != "start_from_grade" or fr.branch == "chroma":  # the spatial branch has its tone curve
            col.prop(training, name)
    prefs_python = preferences.get().python_path or "Blender's Python"
    col.label(text=f"Interpreter: {prefs_python}", icon="CONSOLE")
    row = layout.row(align=True)
    row.operator("film_recovery.train", text="Train / Resume", icon="PLAY").start_over = False
    row.operator("film_recovery.train", text="Start Over", icon="FILE_REFRESH").start_over = True
    if fr.job_state.metrics:
        layout.label(text=fr.job_state.metrics[:120])
    _preview(layout, "loss_curve")
    _preview(layout, "contact_sheet")
    if fr.model_path:
        layout.label(text=f"Model: {fr.model_path}"[:110], icon="CHECKMARK")


def draw_inference(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    fr = props.recipe_of(context.scene)
    draw_job_state(layout, fr)
    layout.prop(fr, "model_path")
    col = layout.column()
    for name in ("display_exr", "aces_exr", "compression", "review", "overwrite", "grain"):
        col.prop(fr.output, name)
    if fr.branch == "chroma":  # where a guided chroma model's finer colour comes from
        col.prop(fr.output, "fine_colour")
    layout.operator("film_recovery.infer", icon="RENDER_ANIMATION")
    if fr.infer_display:
        layout.label(text=f"Frames: {fr.infer_display}"[:110])


def draw_review(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    fr = props.recipe_of(context.scene)
    draw_job_state(layout, fr)
    row = layout.row(align=True)
    for mode, label in (("result", "Result"), ("wipe", "A/B Wipe"), ("difference", "Difference")):
        row.operator("film_recovery.review", text=label).mode = mode
    layout.prop(fr.output, "grain")  # the Source's grain back (spatial) or kept (chroma), or clean
    layout.operator("film_recovery.fit_baseline", icon="COLOR")
    layout.prop(fr, "truth_dir")
    layout.operator("film_recovery.evaluate", icon="GRAPH")
    if fr.report_verdict:
        box = layout.box()
        box.alert = not fr.beat_baseline
        box.label(text="Model beats the baseline" if fr.beat_baseline else "Model does NOT beat the baseline",
                  icon="CHECKMARK" if fr.beat_baseline else "ERROR")
        box.label(text=fr.report_verdict[:120])
    layout.operator("film_recovery.open_report", icon="URL")
    if fr.report_verdict:
        layout.label(text="1:1 detail: Source | Baseline | Model | Reference")
        _preview(layout, "detail")
        layout.label(text="|ΔY| against the Reference: Baseline | Model")
        _preview(layout, "luma_difference")


STAGE_PANELS = [
    ("ingest", "Ingest", draw_ingest),
    ("pairs", "Pairs", draw_pairs),
    ("align", "Align & Crop", draw_align),
    ("ground_truth", "Ground Truth", draw_ground_truth),
    ("train", "Train", draw_train),
    ("inference", "Inference", draw_inference),
    ("review", "Review", draw_review),
]
