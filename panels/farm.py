"""The Farm panel: the reel's plan (shots, units, status, a button per unit), the farm run, Flamenco."""

from __future__ import annotations

import bpy

from ..addon import farm, props
from .common import draw_job_state


def draw_farm(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    fr = props.recipe_of(context.scene)
    settings = fr.farm
    draw_job_state(layout, fr)
    col = layout.column()
    col.prop(settings, "scope")
    row = col.row(align=True)
    row.prop(settings, "min_gain")
    row.prop(settings, "use_min_psnr", text="")
    sub = row.row()
    sub.enabled = settings.use_min_psnr
    sub.prop(settings, "min_psnr")
    row = col.row(align=True)
    row.prop(settings, "use_max_drop", text="")
    sub = row.row()
    sub.enabled = settings.use_max_drop
    sub.prop(settings, "max_drop")
    col.prop(settings, "baseline")
    col.prop(settings, "chunk_frames")
    layout.operator("film_recovery.plan_reel", icon="SEQ_STRIP_DUPLICATE")
    layout.prop(settings, "plan_path")
    plan, why = farm.cached_plan(farm.plan_path(fr))
    if plan is None:
        layout.label(text=why[:110], icon="INFO")
        return
    box = layout.box()
    box.label(text=f"{len(plan.shots)} shots, {len(plan.units)} units ({plan.scope})", icon="SEQUENCE")
    for shot in plan.shots:
        row = box.row()
        own = shot.model_unit != shot.group_unit
        row.label(text=f"shot {shot.name}: {shot.first}-{shot.last}", icon="FILE_MOVIE")
        row.label(text=f"{shot.model_unit}{' (own model)' if own else ''}", icon="ERROR" if own else "BLANK1")
        row.label(text=shot.status)
    box = layout.box()
    for unit in plan.units:
        row = box.row(align=True)
        pairs = sum(1 for p in unit.pairs if p["accepted"])
        row.label(text=f"{unit.id}: {', '.join(unit.shots)} | {pairs} pairs | {unit.status}"[:80])
        row.operator("film_recovery.run_farm", text="", icon="PLAY").unit = unit.id
        if unit.parent:
            box.label(text=f"  falls back from {unit.parent}: {unit.reason}"[:110], icon="INFO")
    col = layout.column()
    col.prop(settings, "where", expand=True)
    if settings.where == "local":
        col.prop(settings, "workers")
    elif settings.where == "scheduler":
        col.prop(settings, "scheduler")
    row = col.row(align=True)
    row.prop(settings, "threads")
    row.prop(settings, "retries")
    layout.operator("film_recovery.run_farm", text="Run Farm (whole plan)", icon="RENDER_ANIMATION").unit = ""
    box = layout.box()
    box.label(text="Flamenco")
    box.prop(settings, "manager_url")
    box.prop(settings, "flamenco_python")
    box.prop(settings, "flamenco_engine_root")
    box.operator("film_recovery.submit_flamenco", icon="EXPORT")
    if settings.last_submission:
        box.label(text=settings.last_submission[:110])


FARM_PANELS = [("farm", "Farm", draw_farm)]
