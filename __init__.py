"""Film Recovery: restore faded or soft film scans inside Blender (register/unregister only)."""

from . import addon, operators, panels

_modules = (addon, operators, panels)


def register() -> None:
    for module in _modules:
        module.register()


def unregister() -> None:
    for module in reversed(_modules):
        module.unregister()
