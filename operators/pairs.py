"""Pair curation in the sidebar: add, remove, reorder, jump, accept/reject with a reason."""

import bpy

from ..addon import jobs, sequencer


def _active_pair(context):
    fr = context.scene.film_recovery
    if 0 <= fr.pairs_index < len(fr.pairs):
        return fr.pairs[fr.pairs_index]
    return None


class _NeedsActivePair(jobs.OperatorMixin):
    @classmethod
    def poll(cls, context):
        if _active_pair(context) is None:
            cls.poll_message_set("Select a pair in the list first")
            return False
        return True


class FILMREC_OT_pair_add(bpy.types.Operator):
    """Add the current frame as a pair (Reference frame = Source frame plus the shot's known offset)"""

    bl_idname = "film_recovery.pair_add"
    bl_label = "Add Current Frame"
    bl_options = {"REGISTER", "UNDO"}

    frame: bpy.props.IntProperty(name="Source frame", default=-1,
                                 description="Source frame to add (-1: the current frame)")

    def execute(self, context):
        fr = context.scene.film_recovery
        frame = context.scene.frame_current if self.frame < 0 else self.frame
        if any(p.source_frame == frame for p in fr.pairs):
            self.report({"WARNING"}, f"Frame {frame} is already a pair")
            return {"CANCELLED"}
        pair = fr.pairs.add()
        pair.source_frame = frame
        pair.reference_frame = frame + fr.reference_offset
        pair.accepted = True
        pair.label = f"f{frame}"
        fps = max(fr.source.fps, 1.0)
        seconds, ff = divmod(frame, round(fps))
        pair.timecode = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{ff:02d}"
        fr.pairs_index = len(fr.pairs) - 1
        return {"FINISHED"}


class FILMREC_OT_pair_remove(_NeedsActivePair, bpy.types.Operator):
    """Remove the selected pair from the list"""

    bl_idname = "film_recovery.pair_remove"
    bl_label = "Remove Pair"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        fr = context.scene.film_recovery
        fr.pairs.remove(fr.pairs_index)
        fr.pairs_index = min(fr.pairs_index, len(fr.pairs) - 1)
        return {"FINISHED"}


class FILMREC_OT_pair_move(_NeedsActivePair, bpy.types.Operator):
    """Move the selected pair up or down"""

    bl_idname = "film_recovery.pair_move"
    bl_label = "Move Pair"
    bl_options = {"REGISTER", "UNDO"}

    direction: bpy.props.EnumProperty(items=[("UP", "Up", ""), ("DOWN", "Down", "")])

    def execute(self, context):
        fr = context.scene.film_recovery
        target = fr.pairs_index + (-1 if self.direction == "UP" else 1)
        if not 0 <= target < len(fr.pairs):
            return {"CANCELLED"}
        fr.pairs.move(fr.pairs_index, target)
        fr.pairs_index = target
        return {"FINISHED"}


class FILMREC_OT_pair_jump(_NeedsActivePair, bpy.types.Operator):
    """Go to the selected pair's Source frame, showing Source, Reference and (optionally) their difference"""

    bl_idname = "film_recovery.pair_jump"
    bl_label = "Show Pair"

    def execute(self, context):
        pair = _active_pair(context)
        context.scene.frame_set(pair.source_frame)
        sequencer.show_pair(context.scene, pair.source_frame, pair.reference_frame)
        return {"FINISHED"}


class FILMREC_OT_pair_set_status(_NeedsActivePair, bpy.types.Operator):
    """Accept or reject the selected pair; a rejection needs a reason (it is kept in the pair record)"""

    bl_idname = "film_recovery.pair_set_status"
    bl_label = "Accept / Reject Pair"
    bl_options = {"REGISTER", "UNDO"}

    accept: bpy.props.BoolProperty(name="Accept", default=True)
    reason: bpy.props.StringProperty(name="Reason", default="")

    def invoke(self, context, event):
        if self.accept:
            return self.execute(context)
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        pair = _active_pair(context)
        if not self.accept and not self.reason.strip():
            self.report({"ERROR"}, "Give a reason for rejecting the pair (e.g. flash, residual parallax)")
            return {"CANCELLED"}
        pair.accepted = self.accept
        pair.reason = self.reason.strip() if not self.accept else pair.reason
        return {"FINISHED"}


class FILMREC_OT_toggle_difference(bpy.types.Operator):
    """Show the Reference over the Source as a difference (structure only should remain), or normally"""

    bl_idname = "film_recovery.toggle_difference"
    bl_label = "Difference View"

    def execute(self, context):
        on = sequencer.toggle_difference(context.scene)
        self.report({"INFO"}, "Difference view on" if on else "Difference view off")
        return {"FINISHED"}


classes = (FILMREC_OT_pair_add, FILMREC_OT_pair_remove, FILMREC_OT_pair_move, FILMREC_OT_pair_jump,
           FILMREC_OT_pair_set_status, FILMREC_OT_toggle_difference)
