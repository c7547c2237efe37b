"""Run Film Recovery stages headless, on a saved .blend or on the built-in sample shot.

Inside Blender (the add-on installed and enabled there):
    blender -b shot.blend --python scripts/film_recovery_batch.py -- --stages qc,align,train
With the bpy module (installs the freshly built extension zip into a private Blender user folder):
    .venv/bin/python scripts/film_recovery_batch.py --blend shot.blend --stages all
    .venv/bin/python scripts/film_recovery_batch.py --sample --work-dir work/demo --stages all

Each stage calls the add-on's own operator (the same one the panel button runs), so batch and
UI runs share one code path. Exit code 0 when every stage succeeded, 1 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDON_ID = "film_recovery"

# stage name -> (operator id under bpy.ops.film_recovery, keyword arguments builder)
STAGES: dict[str, str] = {
    "setup": "setup_aces",
    "load": "load_plates",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="film_recovery_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--blend", help="the .blend to open (not needed inside `blender -b file.blend`)")
    parser.add_argument("--sample", action="store_true", help="start from the built-in sample shot")
    parser.add_argument("--sample-size", default="640x360", help="sample Source size WxH (default 640x360)")
    parser.add_argument("--sample-frames", type=int, default=24)
    parser.add_argument("--work-dir", help="work directory (default: the recipe's, or beside the .blend)")
    parser.add_argument("--stages", default="all",
                        help=f"comma-separated stages, or 'all': {', '.join(STAGES)}")
    parser.add_argument("--save", help="save the .blend here afterwards (default: the opened file, if any)")
    parser.add_argument("--zip", help="extension zip to install (default: build one from this checkout)")
    return parser.parse_args(argv)


def script_args() -> list[str]:
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]


def in_blender() -> bool:
    return "bpy" in sys.modules and not sys.argv[0].endswith(".py")


def ensure_extension(zip_path: str | None, reinstall: bool):
    """Enable the extension. With the bpy module, (re)install it from a freshly built zip first,
    so the run uses this checkout; inside Blender use the installed one."""
    import addon_utils
    import bpy

    module = f"bl_ext.user_default.{ADDON_ID}"
    if module in bpy.context.preferences.addons and not reinstall:
        return importlib.import_module(module)
    if reinstall or importlib.util.find_spec(module) is None:
        if zip_path is None:
            sys.path.insert(0, str(ROOT / "scripts"))
            from build_extension import build

            zip_path = str(build(ROOT / "dist"))
        print(f"installing {zip_path}")
        bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                 enable_on_install=True)
    else:
        addon_utils.enable(module, default_set=True)
    return importlib.import_module(module)


def run_stage(name: str) -> None:
    import bpy

    operator = getattr(bpy.ops.film_recovery, STAGES[name])
    started = time.monotonic()
    print(f"== {name} ==", flush=True)
    result = operator()
    if result != {"FINISHED"}:
        state = bpy.context.scene.film_recovery.job_state
        raise RuntimeError(f"stage '{name}' ended {result}: {state.last_error or state.message}")
    print(f"   {name} done in {time.monotonic() - started:.1f} s", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not in_blender():
        # A private Blender user folder, so the bpy module never touches the user's own config.
        user_dir = Path(args.work_dir or ROOT / "work").resolve() / "blender-user"
        os.environ.setdefault("BLENDER_USER_RESOURCES", str(user_dir))
    import bpy

    if args.blend:
        bpy.ops.wm.open_mainfile(filepath=str(Path(args.blend).resolve()))
    ensure_extension(args.zip, reinstall=not in_blender())
    fr = bpy.context.scene.film_recovery
    if args.work_dir:
        fr.work_dir = str(Path(args.work_dir).resolve())
    stages = list(STAGES) if args.stages == "all" else [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"error: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    try:
        if args.sample:
            width, _, height = args.sample_size.partition("x")
            print("== sample ==", flush=True)
            result = bpy.ops.film_recovery.generate_sample(
                out_dir=str(Path(fr.work_dir or args.work_dir or ROOT / "work") / "sample"),
                frames=args.sample_frames, width=int(width), height=int(height))
            if result != {"FINISHED"}:
                raise RuntimeError(fr.job_state.last_error or "sample generation failed")
        for stage in stages:
            run_stage(stage)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    save_to = args.save or (bpy.data.filepath or None)
    if save_to:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(save_to).resolve()))
        print(f"saved {Path(save_to).resolve()}")
    print(f"work directory: {fr.work_dir}")
    return 0


if __name__ == "__main__":
    code = main(script_args())
    if in_blender():
        # Inside `blender -b`, sys.exit from a --python script is how the exit code reaches the shell.
        sys.exit(code)
    sys.exit(code)
