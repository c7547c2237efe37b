"""Film scale: plan the reel, run the plan (or one unit of it) on Dask, submit it to Flamenco."""

import bpy

from ..addon import farm, jobs
from ..ml.errors import FilmRecoveryError
from .polls import NeedsPlates


class FILMREC_OT_plan_reel(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Find the reel's shots, group them into training units by scope and write plan.json
    (shots, units, frame ranges, pairs, status)"""

    bl_idname = "film_recovery.plan_reel"
    bl_label = "Plan Reel"
    command = "plan"

    def job_args(self, context):
        return farm.plan_arguments(context.scene.film_recovery.farm)

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.farm.plan_path = result.get("plan", "")
        fr.job_state.message = f"{len(result.get('shots', []))} shot(s), {len(result.get('units', []))} unit(s)"


class _NeedsPlan(jobs.OperatorMixin):
    @classmethod
    def poll(cls, context):
        fr = context.scene.film_recovery
        plan, why = farm.cached_plan(farm.plan_path(fr))
        if plan is None:
            cls.poll_message_set(why)
            return False
        if issubclass(cls, jobs.EngineJobOperator) and jobs.active_job() is not None:
            cls.poll_message_set("A Film Recovery job is running: wait or cancel it")
            return False
        return True


class FILMREC_OT_run_farm(_NeedsPlan, jobs.EngineJobOperator, bpy.types.Operator):
    """Run the plan (or one unit) on Dask: dataset, train, per-shot score and fallback, then chunked
    inference; finished tasks are reused"""

    bl_idname = "film_recovery.run_farm"
    bl_label = "Run Farm"
    command = "farm"
    needs_job = False

    unit: bpy.props.StringProperty(name="Unit", default="", description="Only this unit (empty: the whole plan)")

    def job_args(self, context):
        fr = context.scene.film_recovery
        return farm.farm_arguments(fr.farm, farm.plan_path(fr), self.unit)

    def _launch(self, context):
        try:
            self.job_args(context)
        except FilmRecoveryError as exc:
            self.report({"ERROR"}, exc.describe())
            return None
        return super()._launch(context)

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.job_state.message = (f"{result.get('done')}/{result.get('tasks')} tasks, frames "
                                f"{result.get('frames_done')}/{result.get('frames_total')}, "
                                f"{len(result.get('fallbacks', []))} shot fallback(s)")


class FILMREC_OT_submit_flamenco(_NeedsPlan, bpy.types.Operator):
    """Submit the plan to a Flamenco Manager as a Film Recovery job (needs farm/flamenco/film_recovery.js
    in the Manager's scripts folder)"""

    bl_idname = "film_recovery.submit_flamenco"
    bl_label = "Submit to Flamenco"

    def execute(self, context):
        fr = context.scene.film_recovery
        try:
            answer = farm.submit(fr)
        except FilmRecoveryError as exc:
            fr.farm.last_submission = exc.describe()
            self.report({"ERROR"}, exc.describe())
            return {"CANCELLED"}
        fr.farm.last_submission = f"submitted: job {answer.get('id', '?')} ({answer.get('status', '?')})"
        self.report({"INFO"}, fr.farm.last_submission)
        return {"FINISHED"}


classes = (FILMREC_OT_plan_reel, FILMREC_OT_run_farm, FILMREC_OT_submit_flamenco)
