"""Stages that are not built yet: visible in the panels, greyed out with the reason."""

import bpy

# operator id suffix -> (label, what it will do)
PENDING = {
}


def _make(name: str, label: str, plan: str) -> type:
    def poll(cls, context):
        cls.poll_message_set(f"Not available yet: {plan}")
        return False

    def execute(self, context):
        return {"CANCELLED"}

    return type(f"FILMREC_OT_{name}", (bpy.types.Operator,), {
        "bl_idname": f"film_recovery.{name}", "bl_label": label, "bl_description": plan,
        "poll": classmethod(poll), "execute": execute})


classes = tuple(_make(name, label, plan) for name, (label, plan) in PENDING.items())
