"""Render one frame of a compositor node tree to a numpy array (tests and add-on previews).

The compositor's Group Output is written as a float EXR and read back with OpenImageIO. EXR
output is never view-transformed, so the array holds the tree's working-space values as they
are (an Image node with a Non-Color image -> Group Output reads back bit-identical).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy
import numpy as np

_RENDER_SETTINGS = ("resolution_x", "resolution_y", "resolution_percentage", "filepath",
                    "use_compositing", "use_sequencer", "pixel_aspect_x", "pixel_aspect_y")
_IMAGE_SETTINGS = ("file_format", "color_depth", "color_mode", "exr_codec")


def render_tree(scene: bpy.types.Scene, tree: bpy.types.NodeTree, frame: int, width: int,
                height: int) -> np.ndarray:
    """Render `tree` as the scene's compositor at `frame`, width x height pixels.

    Returns float32 (height, width, 4) RGBA, row 0 at the top. Every scene setting touched (the
    compositing node group, frame, resolution, output format and path) is restored afterwards.
    An image smaller than the render (a crop) lands centred at an integer offset: render at the
    crop's size to get exactly the crop.
    """
    import OpenImageIO as oiio

    render = scene.render
    image_settings = render.image_settings
    saved_render = {name: getattr(render, name) for name in _RENDER_SETTINGS}
    saved_image = {name: getattr(image_settings, name) for name in _IMAGE_SETTINGS}
    saved_tree = scene.compositing_node_group
    saved_frame = (scene.frame_current, scene.frame_subframe)
    with tempfile.TemporaryDirectory(prefix="film_recovery_render_") as tmp:
        out_path = Path(tmp) / "frame.exr"
        try:
            scene.compositing_node_group = tree
            render.resolution_x = int(width)
            render.resolution_y = int(height)
            render.resolution_percentage = 100
            render.pixel_aspect_x = render.pixel_aspect_y = 1.0
            render.use_compositing = True
            render.use_sequencer = False
            image_settings.file_format = "OPEN_EXR"
            image_settings.color_depth = "32"
            image_settings.color_mode = "RGBA"
            image_settings.exr_codec = "ZIP"
            render.filepath = str(out_path)
            scene.frame_set(int(frame))
            bpy.ops.render.render(write_still=True, scene=scene.name)
            if not out_path.exists():
                raise RuntimeError(f"the compositor wrote no image for frame {frame} (is the tree's "
                                   "Group Output connected?)")
            inp = oiio.ImageInput.open(os.fspath(out_path))
            if inp is None:
                raise RuntimeError(f"cannot read the rendered frame: {oiio.geterror()}")
            try:
                pixels = inp.read_image(format="float")
            finally:
                inp.close()
        finally:
            scene.compositing_node_group = saved_tree
            for name, value in saved_render.items():
                setattr(render, name, value)
            for name, value in saved_image.items():
                setattr(image_settings, name, value)
            scene.frame_set(saved_frame[0], subframe=saved_frame[1])
    return np.ascontiguousarray(pixels, dtype=np.float32)
