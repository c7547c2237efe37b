"""Stage 0 operators: parity QC, the neutral pre-balance and the conform."""

import json

import bpy

from ..addon import jobs
from .polls import NeedsPlates


class FILMREC_OT_run_qc(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Parity QC: sizes, frame ranges, missing/duplicate frames, alpha, range, NaN/Inf, flicker, flashes, cast"""

    bl_idname = "film_recovery.run_qc"
    bl_label = "Run Parity QC"
    command = "qc"

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        fr.qc_checks.clear()
        for finding in result.get("findings", []):
            item = fr.qc_checks.add()
            item.check, item.status, item.message = finding["check"], finding["status"], finding["message"]
        fr.qc_status = result.get("status", "")
        fr.job_state.message = f"QC {fr.qc_status}: {sum(f['status'] != 'pass' for f in result.get('findings', []))} finding(s)"
        if fr.qc_status == "fail":
            self.report({"WARNING"}, "QC failed: later stages are blocked until the plates are fixed")


class FILMREC_OT_estimate_balance(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Estimate the neutral pre-balance (per-channel gain/offset) of the Source; you can edit it afterwards"""

    bl_idname = "film_recovery.estimate_balance"
    bl_label = "Estimate Neutral Balance"
    command = "balance"

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        balance = result["balance"]
        fr.balance.gain, fr.balance.offset = balance["gain"], balance["offset"]
        fr.balance.enabled = True
        fr.job_state.message = (f"cast before {json.dumps(result.get('cast_before'))[:60]}, "
                                f"after {json.dumps(result.get('cast_after'))[:60]}")


class FILMREC_OT_detect_conform(NeedsPlates, jobs.EngineJobOperator, bpy.types.Operator):
    """Place the Reference's picture area (bars excluded) over the Source's: the conform the
    alignment starts from (resolution, pixel aspect, letterbox/pillarbox). Runs as an engine job:
    the frames are decoded off Blender's main thread"""

    bl_idname = "film_recovery.detect_conform"
    bl_label = "Detect Conform"
    command = "conform"

    def on_result(self, context, result):
        fr = context.scene.film_recovery
        conform = result["conform"]
        fr.conform.mode, fr.conform.scale_x, fr.conform.scale_y = conform["mode"], conform["scale_x"], conform["scale_y"]
        fr.conform.offset_x, fr.conform.offset_y = conform["offset_x"], conform["offset_y"]
        fr.job_state.message = (f"Conform: {conform['mode']}, scale {conform['scale_x']:.4f}, "
                                f"offset ({conform['offset_x']:.1f}, {conform['offset_y']:.1f}) px")


classes = (FILMREC_OT_run_qc, FILMREC_OT_estimate_balance, FILMREC_OT_detect_conform)
