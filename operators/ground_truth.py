"""Stage 3 operator: build the ground truth and export the training dataset."""

import bpy

from ..addon import jobs
from .polls import NeedsPlates


class FILMREC_OT_export_dataset(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Write Input and Ground Truth (half EXR) for the accepted pairs, with a manifest of frames,
    warps, crop, colour settings, checksums and the rejected pairs"""

    bl_idname = "film_recovery.export_dataset"
    bl_label = "Export Dataset"
    command = "dataset"

    @classmethod
    def poll(cls, context):
        if not super().poll(context):
            return False
        fr = context.scene.film_recovery
        if not any(p.accepted for p in fr.pairs):
            cls.poll_message_set("Accept at least one pair first (Pairs panel)")
            return False
        if fr.qc_status == "fail":
            cls.poll_message_set("Parity QC failed: fix the plates and run QC again (Ingest panel)")
            return False
        return True

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.dataset_dir = result["dataset_dir"]
        fr.job_state.message = (f"{result['pairs']} pairs ({result['holdout']} held out), "
                                f"{result['rejected']} rejected; unchanged channels within "
                                f"{result['unchanged_channel_max_error']:.1e}")


classes = (FILMREC_OT_export_dataset,)
