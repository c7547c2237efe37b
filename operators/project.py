"""Project set-up: ACES colour management and the built-in sample shot."""

from pathlib import Path

import bpy

from ..addon import jobs, recipe, sequencer


class FILMREC_OT_setup_aces(bpy.types.Operator):
    """Working space ACEScg, display Rec.1886, view ACES 1.3 (the Rec.709 2.4 ODT); report what changed"""

    bl_idname = "film_recovery.setup_aces"
    bl_label = "Set Up ACES Project"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        changes = []
        if bpy.data.colorspace.working_space != "ACEScg":
            before = bpy.data.colorspace.working_space
            bpy.ops.wm.set_working_color_space(working_space="ACEScg")
            changes.append(f"working space {before} -> ACEScg")
        for owner, attr, value in ((scene.display_settings, "display_device", "Rec.1886"),
                                   (scene.view_settings, "view_transform", "ACES 1.3"),
                                   (scene.view_settings, "look", "None"),
                                   (scene.sequencer_colorspace_settings, "name", "ACEScg")):
            before = getattr(owner, attr)
            if before != value:
                setattr(owner, attr, value)
                changes.append(f"{attr} {before} -> {value}")
        message = "; ".join(changes) if changes else "already set up, nothing changed"
        self.report({"INFO"}, f"ACES project: {message}")
        return {"FINISHED"}


class FILMREC_OT_generate_sample(jobs.EngineJobOperator, bpy.types.Operator):
    """Synthesise the built-in sample shot (faded Source, graded Reference, truth) and load it"""

    bl_idname = "film_recovery.generate_sample"
    bl_label = "Generate Sample Shot"

    command = "sample"
    needs_job = False

    out_dir: bpy.props.StringProperty(name="Folder", subtype="DIR_PATH", default="")
    frames: bpy.props.IntProperty(name="Frames", default=24, min=4)
    width: bpy.props.IntProperty(name="Width", default=640, min=64)
    height: bpy.props.IntProperty(name="Height", default=360, min=64)
    branch: bpy.props.EnumProperty(
        name="Kind", default="chroma",
        items=[("chroma", "Chroma (faded Source)", "A faded Source and a softer, graded Reference"),
               ("spatial", "Spatial (soft Source)", "A soft, grainy Source and a sharper Reference in its own grade")])

    def _out(self) -> Path:
        if self.out_dir:
            return Path(bpy.path.abspath(self.out_dir))
        return recipe.default_work_dir() / "sample"

    def job_args(self, context):
        return ["--out", str(self._out()), "--frames", str(self.frames),
                "--width", str(self.width), "--height", str(self.height), "--branch", self.branch]

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        first, last = int(result["first_frame"]), int(result["last_frame"])
        for plate, pattern, offset in ((fr.source, result["source"], 0),
                                       (fr.reference, result["reference"], 0)):
            plate.path, plate.ingest = pattern, "display"
            plate.first_frame, plate.last_frame = first + offset, last + offset
        if not fr.work_dir:
            fr.work_dir = str(recipe.default_work_dir())
        fr.truth_dir = str(Path(result["truth"]).parent) if result.get("truth") else ""
        fr.name = "sample_shot"
        fr.branch = result.get("branch", "chroma")  # the sample is made for one recovery
        sequencer.load_plates(context.scene)
        sequencer.set_render_size_from(recipe.recipe_to_job(fr).source, context.scene)


class FILMREC_OT_load_plates(bpy.types.Operator):
    """Put the Source and Reference plates on Sequencer channels 1 and 2 (replacing earlier strips)"""

    bl_idname = "film_recovery.load_plates"
    bl_label = "Load Plates"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        fr = context.scene.film_recovery
        if not (fr.source.path or fr.reference.path):
            cls.poll_message_set("Set a Source or Reference path first")
            return False
        return True

    def execute(self, context):
        try:
            loaded = sequencer.load_plates(context.scene)
        except (RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"Could not load plates: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Loaded {', '.join(loaded)}")
        return {"FINISHED"}


classes = (FILMREC_OT_setup_aces, FILMREC_OT_generate_sample, FILMREC_OT_load_plates)
