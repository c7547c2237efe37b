"""Alignment in the recipe: manual nudges and the Sequencer's view of the solves."""

from __future__ import annotations

import math

import bpy
import numpy as np

from ..ml import warp
from ..ml.job import Job


def base_matrix(job: Job, frame: int, reference_size: tuple[int, int], source_size: tuple[int, int]) -> np.ndarray:
    """The automatic warp for a Source frame: its own solve, the shot's global solve, or the conform."""
    solves = job.alignment.solves
    if str(frame) in solves:
        return warp.as_matrix(solves[str(frame)])
    if "global" in solves:
        return warp.as_matrix(solves["global"])
    from ..ml.ingest import conform_matrix

    return conform_matrix(job.conform, reference_size, source_size, job.reference.pixel_aspect,
                          job.source.pixel_aspect)


def nudged(matrix: np.ndarray, source_size: tuple[int, int], offset_x: float, offset_y: float,
           angle_deg: float, scale: float) -> np.ndarray:
    """A manual correction on top of `matrix`: scale/turn about the Source centre, then move
    (offset_y positive = up, angle positive = counter-clockwise, as Blender's Transform node)."""
    centre = ((source_size[0] - 1) / 2.0, (source_size[1] - 1) / 2.0)
    return warp.similarity(scale, angle_deg, offset_x, -offset_y, centre) @ matrix


def strip_transform(matrix: np.ndarray, reference_size: tuple[int, int], source_size: tuple[int, int]
                    ) -> tuple[float, float, float, float]:
    """(offset_x, offset_y, rotation_rad, scale) that place a FIT Reference strip like `matrix`.

    The Sequencer fits the strip to the render, then scales and turns it about its centre and
    moves it (y up). This is the similarity part of the warp; the compositor's Align group does
    the exact (affine/perspective) warp.
    """
    m = warp.as_matrix(matrix)
    a, b = m[0, 0], m[1, 0]
    total_scale = math.hypot(a, b)
    angle = math.atan2(b, a)  # y-down; on screen (y-up) the turn is the opposite sign
    ref_centre = np.array([(reference_size[0] - 1) / 2.0, (reference_size[1] - 1) / 2.0, 1.0])
    moved = m @ ref_centre
    moved = moved[:2] / moved[2]
    src_centre = ((source_size[0] - 1) / 2.0, (source_size[1] - 1) / 2.0)
    fit = min(source_size[0] / reference_size[0], source_size[1] / reference_size[1])
    return (float(moved[0] - src_centre[0]), float(-(moved[1] - src_centre[1])), float(-angle),
            float(total_scale / fit))


def key_reference_strip(scene: bpy.types.Scene, job: Job, reference_size: tuple[int, int],
                        source_size: tuple[int, int]) -> int:
    """Key the Reference strip's transform at every solved frame (manual keys win). Returns keys set."""
    strip = scene.sequence_editor_create().strips.get("FR Reference")
    if strip is None:
        return 0
    transform = strip.transform
    frames = sorted({int(k) for k in job.alignment.solves if k.isdigit()}
                    | {int(k) for k in job.alignment.manual if k.isdigit()})
    if not frames:
        frames = [scene.frame_current]
    for frame in frames:
        key = str(frame)
        if frame in job.alignment.use_manual and key in job.alignment.manual:
            matrix = warp.as_matrix(job.alignment.manual[key])
        else:
            matrix = base_matrix(job, frame, reference_size, source_size)
        ox, oy, rotation, scale = strip_transform(matrix, reference_size, source_size)
        transform.offset_x, transform.offset_y, transform.rotation = ox, oy, rotation
        transform.scale_x = transform.scale_y = scale
        for prop in ("offset_x", "offset_y", "rotation", "scale_x", "scale_y"):
            transform.keyframe_insert(prop, frame=frame)
    return len(frames)
