"""Thin bpy operators, one module per stage. Each calls into addon/ (and through it the engine)."""

import bpy

from . import align, compositor, curation, ground_truth, ingest, jobs, pairs, pending, project

_classes = (*jobs.classes, *project.classes, *ingest.classes, *pairs.classes, *curation.classes, *compositor.classes, *align.classes,
            *ground_truth.classes,
            *pending.classes)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
