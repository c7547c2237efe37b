"""Add-on preferences: the Python used for engine jobs, compute device, default work folder."""

from __future__ import annotations

from typing import cast

import bpy

# The extension's own package (e.g. bl_ext.user_default.film_recovery): preferences are keyed by it.
ADDON_PACKAGE = __package__.rpartition(".")[0]


class FILMREC_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    python_path: bpy.props.StringProperty(
        name="Torch Python",
        description="Python interpreter with torch for training and inference. "
                    "Empty: Blender's own Python (used when it can import torch)",
        subtype="FILE_PATH", default="")
    device: bpy.props.EnumProperty(
        name="Compute device",
        items=[("auto", "Auto", "CUDA, then MPS, then CPU"), ("cuda", "CUDA", "NVIDIA GPU"),
               ("mps", "MPS", "Apple GPU"), ("cpu", "CPU", "Processor only (slow)")],
        default="auto")
    work_dir_default: bpy.props.StringProperty(
        name="Default work folder",
        description="Where datasets, models and renders go when the recipe names none "
                    "(empty: a folder beside the .blend)",
        subtype="DIR_PATH", default="")
    interpreter_report: bpy.props.StringProperty(name="Interpreter check", default="")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "python_path")
        row = layout.row()
        row.operator("film_recovery.check_interpreter", icon="CONSOLE")
        for line in self.interpreter_report.splitlines():
            layout.label(text=line)
        layout.prop(self, "device")
        layout.prop(self, "work_dir_default")


def get() -> FILMREC_AddonPreferences:
    preferences = bpy.context.preferences
    assert preferences is not None  # None only while Blender starts or quits, never while the add-on runs
    # Blender hands back the registered class's instance; the stubs know the base AddonPreferences only.
    return cast(FILMREC_AddonPreferences, preferences.addons[ADDON_PACKAGE].preferences)


classes = (FILMREC_AddonPreferences,)
