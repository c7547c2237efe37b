"""Inference and review operators."""

import bpy

from ..addon import jobs, review
from ..ml.guide import guide_text
from .compositor import sequence_image
from .polls import NeedsPlates


class FILMREC_OT_infer(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Run the trained model over the whole Source; write display EXR, archival ACES2065-1 EXR and
    review proxies (frames already written by this model are skipped)"""

    bl_idname = "film_recovery.infer"
    bl_label = "Run Inference"
    command = "infer"

    overwrite: bpy.props.BoolProperty(name="Overwrite", default=False,
                                      description="Write every frame again, even valid ones")

    @classmethod
    def poll(cls, context):
        if not super().poll(context):
            return False
        if not context.scene.film_recovery.model_path:
            cls.poll_message_set("Train a model first (Train panel), or set a model file")
            return False
        return True

    def job_args(self, context):
        return ["--overwrite"] if self.overwrite else []

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.infer_display = result.get("outputs", {}).get("display", "")
        if fr.infer_display and result.get("frame_range"):
            first, last = result["frame_range"]
            review.load_result_strip(context.scene, fr.infer_display, int(first), int(last))
        fps = result.get("fps")
        fr.job_state.message = (f"{len(result.get('written', []))} frames written, "
                                f"{len(result.get('skipped', []))} already done"
                                + (f", {fps:.1f} fps" if isinstance(fps, (int, float)) else "")
                                + guide_text(result.get("guide") or {}))


class FILMREC_OT_review(bpy.types.Operator):
    """Compare the recovered frames with the Source: result only, A/B wipe, or difference"""

    bl_idname = "film_recovery.review"
    bl_label = "Review"

    mode: bpy.props.EnumProperty(items=[("result", "Result", "The recovered frames"),
                                        ("wipe", "A/B Wipe", "Source on one side, result on the other"),
                                        ("difference", "Difference", "What the model changed")])

    @classmethod
    def poll(cls, context):
        if not context.scene.film_recovery.infer_display:
            cls.poll_message_set("Run inference first")
            return False
        return True

    def execute(self, context):
        fr = context.scene.film_recovery
        try:
            review.set_review_mode(context.scene, self.mode)
            source = sequence_image(fr.source.path, fr.source.first_frame, "FR Source")
            result = sequence_image(fr.infer_display, fr.source.first_frame, "FR Result")
            review.build_review_tree(context.scene, source, result, difference=self.mode == "difference")
        except (RuntimeError, OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


classes = (FILMREC_OT_infer, FILMREC_OT_review)
