"""Training, baseline and evaluation operators (engine jobs in the torch Python)."""

import bpy

from ..addon import jobs
from .polls import NeedsDataset, NeedsPlates


class FILMREC_OT_train(NeedsDataset, jobs.EngineJobOperator, bpy.types.Operator):
    """Train the recovery model on the exported dataset (resumes from the last checkpoint unless told
    to start over); Blender stays responsive, ESC or Cancel stops it with a checkpoint"""

    bl_idname = "film_recovery.train"
    bl_label = "Train"
    command = "train"

    start_over: bpy.props.BoolProperty(name="Start over", default=False,
                                       description="Discard earlier checkpoints instead of resuming")

    def job_args(self, context):
        return ["--no-resume"] if self.start_over else []

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.model_path = result.get("best_model") or result.get("final_model") or ""
        metrics = result.get("metrics", {})
        psnr, source = metrics.get("best_psnr"), metrics.get("source_psnr")
        fallback = metrics.get("fallback_psnr")  # a guided model without its Reference
        fr.job_state.message = (f"{result.get('steps')} steps; model {fr.model_path}"
                                + (f"; validation {psnr:.2f} dB (Source {source:.2f} dB)"
                                   if isinstance(psnr, float) and isinstance(source, float) else "")
                                + (f", {fallback:.2f} dB where the Reference is missing"
                                   if isinstance(fallback, float) else ""))


class FILMREC_OT_use_spatial_defaults(bpy.types.Operator):
    """Set the training to the spatial branch's measured defaults (small UNet, gradient loss,
    augmentation, no position input; see docs/benchmarks.md)"""

    bl_idname = "film_recovery.use_spatial_defaults"
    bl_label = "Use Spatial Defaults"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from ..ml.job import spatial_training_defaults

        training = context.scene.film_recovery.training
        changed = []
        for name, value in spatial_training_defaults().items():
            if getattr(training, name) != value:
                setattr(training, name, value)
                changed.append(f"{name} {value}")
        self.report({"INFO"}, "Spatial defaults: " + (", ".join(changed) if changed else "already set"))
        return {"FINISHED"}


class FILMREC_OT_fit_baseline(NeedsDataset, jobs.EngineJobOperator, bpy.types.Operator):
    """Fit the MatchGrade-style baseline (smoothed 3D LUT) on the same pairs, export a .cube and apply it"""

    bl_idname = "film_recovery.fit_baseline"
    bl_label = "Fit Baseline"
    command = "baseline"

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.baseline_cube = result.get("cube", "")
        band = result.get("band_sigma") or 0.0
        matched = f", colour matched coarser than {band:.1f} px" if band else ""
        fr.job_state.message = f"baseline {result.get('kind')} fitted{matched}; .cube: {fr.baseline_cube}"


class FILMREC_OT_evaluate(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Score Source, baseline and model (PSNR, CIEDE2000, SSIM, temporal stability) and write the report"""

    bl_idname = "film_recovery.evaluate"
    bl_label = "Evaluate and Report"
    command = "evaluate"

    def job_args(self, context):
        truth = context.scene.film_recovery.truth_dir
        return ["--truth", bpy.path.abspath(truth)] if truth else []

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.report_path = result.get("report", "")
        fr.report_verdict = result.get("verdict", "")
        fr.beat_baseline = bool(result.get("beat_baseline"))
        if not fr.beat_baseline:
            self.report({"WARNING"}, f"The model does not beat the baseline: {fr.report_verdict}")


class FILMREC_OT_open_report(bpy.types.Operator):
    """Open the last evaluation report in the web browser"""

    bl_idname = "film_recovery.open_report"
    bl_label = "Open Report"

    @classmethod
    def poll(cls, context):
        if not context.scene.film_recovery.report_path:
            cls.poll_message_set("Run Evaluate first")
            return False
        return True

    def execute(self, context):
        bpy.ops.wm.url_open(url="file://" + context.scene.film_recovery.report_path)
        return {"FINISHED"}


classes = (FILMREC_OT_train, FILMREC_OT_use_spatial_defaults, FILMREC_OT_fit_baseline, FILMREC_OT_evaluate, FILMREC_OT_open_report)
