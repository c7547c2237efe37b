"""Thin bpy operators, one module per stage. Each calls into addon/ (and through it the engine)."""

import bpy

from . import align, compositor, curation, farm, ground_truth, inference, ingest, jobs, pairs, project, train

# In workflow order: set-up, Stage 0 ingest, Stage 1 pairs, Stage 2 align, Stage 3 ground truth, train,
# inference and review.
_classes = (*jobs.classes, *project.classes, *ingest.classes, *pairs.classes, *curation.classes,
            *compositor.classes, *align.classes, *ground_truth.classes, *train.classes, *inference.classes,
            *farm.classes)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
