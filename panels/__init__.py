"""Sidebar panels (Sequencer and Compositor, one "Film Recovery" category), one per stage."""

import bpy

from . import pairs_list
from .common import make_panels
from .farm import FARM_PANELS
from .stages import STAGE_PANELS

_classes: list[type] = []


def register() -> None:
    _classes[:] = [*pairs_list.classes, *make_panels(STAGE_PANELS + FARM_PANELS)]
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
    _classes.clear()
