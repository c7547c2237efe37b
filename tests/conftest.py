"""Shared fixtures. HOME points at a temp folder before bpy is imported, so no test touches
the user's Blender configuration; the add-on is installed from its built zip, as a user would."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_HOME = tempfile.mkdtemp(prefix="film_recovery_home_")
os.environ["HOME"] = _HOME
os.environ.pop("BLENDER_USER_RESOURCES", None)
os.environ["BLENDER_USER_CONFIG"] = str(Path(_HOME) / "config")
os.environ["BLENDER_USER_SCRIPTS"] = str(Path(_HOME) / "scripts")
os.environ["BLENDER_USER_EXTENSIONS"] = str(Path(_HOME) / "extensions")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ADDON_MODULE = "bl_ext.user_default.film_recovery"


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_extension import build
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return build(tmp_path_factory.mktemp("dist"))


def _ensure_installed(zip_path: Path):
    import importlib

    import addon_utils
    import bpy

    if ADDON_MODULE not in bpy.context.preferences.addons:
        if importlib.util.find_spec(ADDON_MODULE) is None:
            result = bpy.ops.extensions.package_install_files(
                filepath=str(zip_path), repo="user_default", enable_on_install=True)
            assert result == {"FINISHED"}, result
        else:
            addon_utils.enable(ADDON_MODULE, default_set=True)
    return importlib.import_module(ADDON_MODULE)


@pytest.fixture
def addon(extension_zip):
    """The extension installed from its zip into bpy and enabled (re-enabled if a test reset Blender)."""
    return _ensure_installed(extension_zip)
