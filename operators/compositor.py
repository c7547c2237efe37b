"""Compositor operators: build the recipe's node groups, switch views, bypass the shared crop."""

import bpy

from ..addon import nodes, recipe
from ..ml.imageio import frame_path
from .polls import NeedsPlates


def sequence_image(pattern: str, first_frame: int, name: str) -> bpy.types.Image:
    """A frame pattern as one Image datablock (a sequence for frame patterns); reused when already loaded."""
    first = bpy.path.abspath(frame_path(pattern, first_frame))
    image = bpy.data.images.get(name)
    if image is None or bpy.path.abspath(image.filepath) != first:
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.load(first)
        image.name = name
    if first != pattern:
        image.source = "SEQUENCE"
    return image


def build_recipe_tree(context, view: str) -> bpy.types.NodeTree:
    fr = context.scene.film_recovery
    job = recipe.recipe_to_job(fr)
    source = sequence_image(job.source.path, job.source.first_frame, "FR Source")
    reference = sequence_image(job.reference.path, job.reference.first_frame, "FR Reference")
    settings = nodes.RecipeSettings.from_job(job, view=view, crop_bypass=fr.crop_bypass)
    return nodes.build_recipe_tree(context.scene, source, reference, settings)




class FILMREC_OT_build_node_trees(NeedsPlates, bpy.types.Operator):
    """Build (or update) the FR node groups from the recipe: Ingest, Align, shared Crop, Ground Truth, Review"""

    bl_idname = "film_recovery.build_node_trees"
    bl_label = "Build Node Groups"
    bl_options = {"REGISTER", "UNDO"}

    view: bpy.props.EnumProperty(name="View", items=[(v, v.replace("_", " ").title(), "") for v in nodes.VIEWS],
                                 default="ground_truth")

    def execute(self, context):
        try:
            tree = build_recipe_tree(context, self.view)
        except (ValueError, RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"Could not build the node groups: {exc}")
            return {"CANCELLED"}
        context.scene.film_recovery.compositor_view = self.view
        self.report({"INFO"}, f"{tree.name}: showing {self.view.replace('_', ' ')}")
        return {"FINISHED"}


class FILMREC_OT_toggle_crop_bypass(NeedsPlates, bpy.types.Operator):
    """Bypass the shared crop while solving alignment, or apply it (it is always applied last)"""

    bl_idname = "film_recovery.toggle_crop_bypass"
    bl_label = "Bypass Crop"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        fr = context.scene.film_recovery
        fr.crop_bypass = not fr.crop_bypass
        tree = bpy.data.node_groups.get(nodes.RECIPE_TREE)
        if tree is not None:
            nodes.set_crop_bypass(tree, fr.crop_bypass or not fr.crop.enabled)
        self.report({"INFO"}, "Shared crop bypassed" if fr.crop_bypass else "Shared crop applied")
        return {"FINISHED"}


class FILMREC_OT_key_crop(NeedsPlates, bpy.types.Operator):
    """Key the shared crop at the current frame (it holds until the next key): an animated crop
    steps around burned-in subtitles or logos. Shift-click removes the key here"""

    bl_idname = "film_recovery.key_crop"
    bl_label = "Key Crop"
    bl_options = {"REGISTER", "UNDO"}

    remove: bpy.props.BoolProperty(name="Remove", default=False)

    def invoke(self, context, event):
        self.remove = event.shift
        return self.execute(context)

    def execute(self, context):
        fr = context.scene.film_recovery
        frame = context.scene.frame_current
        keys = [key.frame for key in fr.crop.keys]
        if frame in keys:
            fr.crop.keys.remove(keys.index(frame))
        if not self.remove:
            key = fr.crop.keys.add()
            key.frame, key.x, key.y, key.width, key.height = frame, fr.crop.x, fr.crop.y, fr.crop.width, fr.crop.height
            fr.crop.enabled = True
        if bpy.data.node_groups.get(nodes.RECIPE_TREE) is not None:
            build_recipe_tree(context, fr.compositor_view)
        self.report({"INFO"}, f"Crop key {'removed' if self.remove else 'set'} at frame {frame} "
                              f"({len(fr.crop.keys)} key(s))")
        return {"FINISHED"}


classes = (FILMREC_OT_build_node_trees, FILMREC_OT_toggle_crop_bypass, FILMREC_OT_key_crop)
