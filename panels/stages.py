"""What each stage panel shows. Operators do the work; these only lay out the recipe."""

from __future__ import annotations

from .common import draw_job_state


def _pending(layout, operator: str, plan: str) -> None:
    col = layout.column()
    col.label(text=plan, icon="INFO")
    col.operator(operator)


def draw_ingest(layout, context) -> None:
    fr = context.scene.film_recovery
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
    layout.operator("film_recovery.load_plates", icon="SEQUENCE")


def draw_pairs(layout, context) -> None:
    fr = context.scene.film_recovery
    layout.label(text=f"{len(fr.pairs)} pairs")


def draw_align(layout, context) -> None:
    fr = context.scene.film_recovery
    layout.prop(fr.alignment, "model")
    layout.prop(fr.alignment, "mode")


def draw_ground_truth(layout, context) -> None:
    fr = context.scene.film_recovery
    layout.prop(fr, "branch", expand=True)


def draw_train(layout, context) -> None:
    fr = context.scene.film_recovery
    col = layout.column()
    col.prop(fr.training, "model")
    col.prop(fr.training, "size")


def draw_inference(layout, context) -> None:
    fr = context.scene.film_recovery
    layout.prop(fr, "model_path")


def draw_review(layout, context) -> None:
    fr = context.scene.film_recovery
    if fr.job_state.metrics:
        layout.label(text=fr.job_state.metrics[:120])


STAGE_PANELS = [
    ("ingest", "Ingest", draw_ingest),
    ("pairs", "Pairs", draw_pairs),
    ("align", "Align & Crop", draw_align),
    ("ground_truth", "Ground Truth", draw_ground_truth),
    ("train", "Train", draw_train),
    ("inference", "Inference", draw_inference),
    ("review", "Review", draw_review),
]
