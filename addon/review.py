"""Review of the recovered frames: a Sequencer strip above the Source with A/B wipe or difference,
and an "FR Review" compositor tree (Source vs result through the shared Review group)."""

from __future__ import annotations

import os
from typing import Any, cast

import bpy

from ..ml.imageio import frame_path
from . import nodes, sequencer
from .colorspace import set_colorspace

RESULT_STRIP, WIPE_STRIP = "FR Result", "FR Wipe"
REVIEW_TREE = "FR Review Result"


def load_result_strip(scene: bpy.types.Scene, pattern: str, first: int, last: int) -> bpy.types.Strip:
    """The recovered display-referred frames on the channel above the Reference (replaced if present)."""
    editor = scene.sequence_editor_create()
    for name in (WIPE_STRIP, RESULT_STRIP):
        existing = editor.strips.get(name)
        if existing is not None:
            editor.strips.remove(existing)
    # new_image makes an ImageStrip; the stubs say Strip, its base.
    strip = cast(bpy.types.ImageStrip, editor.strips.new_image(
        name=RESULT_STRIP, filepath=frame_path(pattern, first), channel=sequencer.RESULT_CHANNEL,
        frame_start=first, fit_method="FIT"))
    for frame in range(first + 1, last + 1):
        strip.elements.append(os.path.basename(frame_path(pattern, frame)))
    set_colorspace(strip, sequencer.INGEST_COLORSPACE["display"])
    return strip


def set_review_mode(scene: bpy.types.Scene, mode: str, wipe: float = 0.5) -> None:
    """'result' (the recovered frames), 'wipe' (Source | result A/B) or 'difference'."""
    editor = scene.sequence_editor_create()
    result = editor.strips.get(RESULT_STRIP)
    source = editor.strips.get("FR Source")
    if result is None or source is None:
        raise RuntimeError("Run inference first: there is no 'FR Result' strip.")
    wipe_strip = editor.strips.get(WIPE_STRIP)
    if wipe_strip is not None:
        editor.strips.remove(wipe_strip)
    result.blend_type = "DIFFERENCE" if mode == "difference" else "REPLACE"
    if mode == "wipe":
        wipe_strip = editor.strips.new_effect(name=WIPE_STRIP, type="WIPE", channel=sequencer.RESULT_CHANNEL + 1,
                                              frame_start=result.frame_final_start,
                                              length=result.frame_final_duration, input1=source, input2=result)
        wipe_strip.transition_type = "SINGLE"
        wipe_strip.direction = "IN"
        wipe_strip.effect_fader = wipe
        wipe_strip.use_default_fade = False


def _new_node(tree: bpy.types.NodeTree, bl_idname: str) -> Any:
    """A new node in `tree`, typed Any as nodes.py's are: its class (its settings and sockets) follows
    `bl_idname`, which the stubs cannot see."""
    return tree.nodes.new(bl_idname)


def build_review_tree(scene: bpy.types.Scene, source_image: bpy.types.Image, result_image: bpy.types.Image,
                      difference: bool, wipe: float = 0.5) -> bpy.types.NodeTree:
    """Source (through Ingest) against the result in the shared Review group; becomes the scene's compositor."""
    ingest, review = nodes.build_ingest_group(), nodes.build_review_group()
    tree = bpy.data.node_groups.get(REVIEW_TREE) or bpy.data.node_groups.new(REVIEW_TREE, "CompositorNodeTree")
    tree.nodes.clear()
    interface = tree.interface
    assert interface is not None  # every node tree has one; the stubs mark it optional
    if not interface.items_tree:
        interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    src, res = _new_node(tree, "CompositorNodeImage"), _new_node(tree, "CompositorNodeImage")
    for node, image in ((src, source_image), (res, result_image)):
        node.image = image
        set_colorspace(image, "Non-Color")
    ingest_node = _new_node(tree, "CompositorNodeGroup")
    ingest_node.node_tree = ingest
    review_node = _new_node(tree, "CompositorNodeGroup")
    review_node.node_tree = review
    out = _new_node(tree, "NodeGroupOutput")
    src.location, res.location, ingest_node.location = (-600, 150), (-600, -150), (-350, 150)
    review_node.location, out.location = (-100, 0), (150, 0)
    tree.links.new(src.outputs["Image"], ingest_node.inputs["Image"])
    tree.links.new(ingest_node.outputs["Image"], review_node.inputs["A"])
    tree.links.new(res.outputs["Image"], review_node.inputs["B"])
    tree.links.new(review_node.outputs["Image"], out.inputs["Image"])
    review_node.inputs["Difference"].default_value = difference
    review_node.inputs["Wipe"].default_value = wipe
    scene.compositing_node_group = tree
    return tree
