"""Plates as Sequencer strips: Source and Reference on their own channels, in the right colourspace."""

from __future__ import annotations

import os
from typing import cast

import bpy

from ..ml.imageio import frame_path, is_sequence
from . import props
from .colorspace import set_colorspace

SOURCE_CHANNEL, REFERENCE_CHANNEL, RESULT_CHANNEL = 1, 2, 3

# What Blender should call each ingest preset's pixels (names in Blender 5.0's colour config).
INGEST_COLORSPACE = {"display": "Rec.1886", "aces2065-1": "ACES2065-1"}


def _remove_named(scene: bpy.types.Scene, name: str) -> None:
    strips = scene.sequence_editor_create().strips
    existing = strips.get(name)
    if existing is not None:
        strips.remove(existing)


def load_plate_strip(scene: bpy.types.Scene, plate, name: str, channel: int) -> bpy.types.Strip:
    """(Re)create the strip `name` for a plate; idempotent, so loading again replaces it."""
    editor = scene.sequence_editor_create()
    _remove_named(scene, name)
    pattern = bpy.path.abspath(plate.path)
    strip: bpy.types.ImageStrip | bpy.types.MovieStrip
    # new_image / new_movie make an ImageStrip / a MovieStrip; the stubs say Strip, their base.
    if is_sequence(pattern):
        first = frame_path(pattern, plate.first_frame)
        strip = cast(bpy.types.ImageStrip, editor.strips.new_image(
            name=name, filepath=first, channel=channel, frame_start=plate.first_frame, fit_method="FIT"))
        for frame in range(plate.first_frame + 1, plate.last_frame + 1):
            strip.elements.append(os.path.basename(frame_path(pattern, frame)))
    else:
        strip = cast(bpy.types.MovieStrip, editor.strips.new_movie(
            name=name, filepath=pattern, channel=channel, frame_start=plate.first_frame, fit_method="FIT"))
    set_colorspace(strip, INGEST_COLORSPACE[plate.ingest])
    return strip


def load_plates(scene: bpy.types.Scene) -> list[str]:
    """Source on channel 1, Reference on channel 2; the scene frame range follows the Source."""
    fr = props.recipe_of(scene)
    loaded = []
    if fr.source.path:
        load_plate_strip(scene, fr.source, "FR Source", SOURCE_CHANNEL)
        scene.frame_start, scene.frame_end = fr.source.first_frame, fr.source.last_frame
        scene.render.fps = max(1, round(fr.source.fps))
        loaded.append("Source")
    if fr.reference.path:
        load_plate_strip(scene, fr.reference, "FR Reference", REFERENCE_CHANNEL)
        loaded.append("Reference")
    return loaded


def set_render_size_from(plate, scene: bpy.types.Scene) -> None:
    """The render raster follows the Source plate (image sequence or movie)."""
    from ..ml.ingest import plate_size

    scene.render.resolution_x, scene.render.resolution_y = plate_size(plate)
    scene.render.resolution_percentage = 100


def show_pair(scene: bpy.types.Scene, source_frame: int, reference_frame: int) -> None:
    """Slide the Reference strip so its `reference_frame` sits under the Source's `source_frame`."""
    strips = scene.sequence_editor_create().strips
    reference = strips.get("FR Reference")
    if reference is None:
        return
    fr = props.recipe_of(scene)
    reference.frame_start = fr.reference.first_frame - (reference_frame - source_frame)


def toggle_difference(scene: bpy.types.Scene) -> bool:
    """Reference blended as Difference over the Source, or back to normal. Returns the new state."""
    strips = scene.sequence_editor_create().strips
    reference = strips.get("FR Reference")
    if reference is None:
        raise RuntimeError("No 'FR Reference' strip: load the plates first.")
    on = reference.blend_type != "DIFFERENCE"
    reference.blend_type = "DIFFERENCE" if on else "REPLACE"
    return on
