"""Job control and environment checks."""

import bpy

from ..addon import interpreter, jobs, preferences


class FILMREC_OT_cancel_job(bpy.types.Operator):
    """Stop the running Film Recovery job; partial outputs are discarded, training keeps a checkpoint"""

    bl_idname = "film_recovery.cancel_job"
    bl_label = "Cancel Job"

    @classmethod
    def poll(cls, context):
        if jobs.active_job() is None:
            cls.poll_message_set("No Film Recovery job is running")
            return False
        return True

    def execute(self, context):
        jobs.cancel_active()
        context.scene.film_recovery.job_state.message = "cancelling"
        self.report({"INFO"}, "Film Recovery job cancelled")
        return {"FINISHED"}


class FILMREC_OT_check_interpreter(bpy.types.Operator):
    """Run the engine in the configured Python and show its torch version and compute devices"""

    bl_idname = "film_recovery.check_interpreter"
    bl_label = "Check Interpreter"

    def execute(self, context):
        prefs = preferences.get()
        python = interpreter.resolve_python(prefs.python_path)
        try:
            report = interpreter.check_python(python)
        except (RuntimeError, OSError) as exc:
            prefs.interpreter_report = f"Problem: {exc}"
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        prefs.interpreter_report = interpreter.describe(report)
        if not report.get("torch"):
            self.report({"WARNING"}, f"{python} has no torch: set 'Torch Python' to one that has")
        else:
            self.report({"INFO"}, prefs.interpreter_report.replace("\n", "; "))
        return {"FINISHED"}


classes = (FILMREC_OT_cancel_job, FILMREC_OT_check_interpreter)
