"""Pieces every stage panel shares: the job progress box and the two sidebars."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import bpy

CATEGORY = "Film Recovery"

# A stage panel's body: draw_<stage>(layout, context).
StageDraw = Callable[[bpy.types.UILayout, bpy.types.Context], None]


def draw_job_state(layout: bpy.types.UILayout, fr: Any) -> None:
    """Progress bar, message and Cancel while a job runs; the last error otherwise."""
    state = fr.job_state
    if state.running:
        box = layout.box()
        row = box.row(align=True)
        row.progress(factor=state.progress, type="BAR", text=f"{state.stage} {state.progress:.0%}")
        row.operator("film_recovery.cancel_job", text="", icon="CANCEL")
        if state.message:
            box.label(text=state.message)
    elif state.last_error:
        box = layout.box()
        box.alert = True
        for line in state.last_error.splitlines()[:4]:
            box.label(text=line[:120], icon="ERROR")


class SidebarPanel:
    """Shared settings; subclasses pick the editor."""

    bl_region_type = "UI"
    bl_category = CATEGORY


def _panel_draw(draw_stage: StageDraw) -> Callable[[bpy.types.Panel, bpy.types.Context], None]:
    def draw(self: bpy.types.Panel, context: bpy.types.Context) -> None:  # Blender checks: exactly (self, context)
        if self.layout is not None:  # always, while Blender draws the panel
            draw_stage(self.layout, context)

    return draw


def make_panels(stage_panels: Sequence[tuple[str, str, StageDraw]]) -> list[type]:
    """One panel class per stage in the Sequencer and in the Compositor sidebar."""
    classes = []
    for space, short, poll in (("SEQUENCE_EDITOR", "sequencer", None),
                               ("NODE_EDITOR", "compositor",
                                lambda cls, context: getattr(context.space_data, "tree_type", "") == "CompositorNodeTree")):
        for key, label, draw in stage_panels:
            attrs = {"bl_space_type": space, "bl_label": label,
                     "bl_idname": f"FILMREC_PT_{short}_{key}",
                     "draw": _panel_draw(draw)}
            if poll is not None:
                attrs["poll"] = classmethod(poll)
            classes.append(type(f"FILMREC_PT_{short}_{key}", (SidebarPanel, bpy.types.Panel), attrs))
    return classes
