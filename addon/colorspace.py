"""The input colourspace of an image or a strip, set in one typed place."""

from __future__ import annotations

from typing import Any

import bpy


def set_colorspace(owner: bpy.types.Image | bpy.types.ImageStrip | bpy.types.MovieStrip, name: str) -> None:
    """Name the colourspace Blender reads `owner`'s pixels in. Any here: the stubs list 'NONE' as the only
    name (the real ones come from the OCIO config at run time) and mark the settings optional (never None)."""
    settings: Any = owner.colorspace_settings
    settings.name = name
