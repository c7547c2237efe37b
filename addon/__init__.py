"""Blender-side library: the scene recipe, preferences, engine job runner, Sequencer and node set-up."""

import bpy

from . import jobs, preferences, props


def register() -> None:
    for cls in preferences.classes:
        bpy.utils.register_class(cls)
    props.register()
    jobs.register()


def unregister() -> None:
    jobs.unregister()
    props.unregister()
    for cls in reversed(preferences.classes):
        bpy.utils.unregister_class(cls)
