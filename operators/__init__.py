"""Thin bpy operators, one module per stage. Each calls into addon/ (and through it the engine)."""

import bpy

from . import jobs, pending, project

_classes = (*jobs.classes, *project.classes, *pending.classes)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
