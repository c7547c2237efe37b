"""The pairs list (UIList) shown in the Pairs panel."""

from __future__ import annotations

from typing import Any

import bpy


class FILMREC_UL_pairs(bpy.types.UIList):
    """Source -> Reference frame, label, accepted/rejected, hold-out, alignment score."""

    def draw_item(self, context: bpy.types.Context, layout: bpy.types.UILayout, data: Any, item: Any,  # noqa: PLR0913  Blender calls it with these
                  icon: int | None, active_data: Any, active_propname: str | None, index: int | None,
                  flt_flag: int | None = None) -> None:
        row = layout.row(align=True)
        row.label(text="", icon="CHECKMARK" if item.accepted else "CANCEL")
        row.label(text=f"{item.source_frame} > {item.reference_frame}")
        row.label(text=item.shot or "-")
        row.label(text=item.label or item.reason or "")
        if item.holdout:
            row.label(text="", icon="HIDE_ON")
        if item.align_score >= 0:
            row.label(text=f"{item.align_score:.2f}")


classes = (FILMREC_UL_pairs,)
