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

# stage name -> operator id under bpy.ops.film_recovery, in workflow order ("all" runs them all)
STAGES: dict[str, str] = {
    "setup": "setup_aces",          # ACES project settings
    "load": "load_plates",          # Source/Reference strips
    "qc": "run_qc",                 # Stage 0 parity QC
    "balance": "estimate_balance",  # Stage 0 neutral pre-balance
    "suggest": "suggest_pairs",     # Stage 1 pair suggestions (accepted as suggested)
    "align": "solve_alignment",     # Stage 2 solve, scores, shared crop
    "nodes": "build_node_trees",    # compositor node groups for the artist
    "dataset": "export_dataset",    # Stage 3 ground truth
    "train": "train",
    "infer": "infer",
    "baseline": "fit_baseline",
    "evaluate": "evaluate",         # metrics table + HTML report
    "review": "review",             # result strip + A/B wipe in the Sequencer, review tree
}

# What the built-in sample needs beyond the defaults: its Reference weaves (per-frame alignment),
# and a CPU-sized model so the whole job fits in minutes on two cores. The sample is a chroma
# job with an uneven fade, so the fast bilateral colour model with frame position is the right tool.
SAMPLE_SETTINGS = [
    "alignment.mode=per_frame", "training.holdout_every=4", "training.model=bilateral",
    "training.size=small", "training.steps=3000", "training.batch=8", "training.crop_size=128",
    "training.validate_every=500", "training.preview_every=1000", "training.checkpoint_every=1000",
]

# The spatial sample (`--sample --branch spatial`): a soft, grainy Source and a sharper Reference.
# Its training is the spatial branch's measured defaults (ml/job.py SPATIAL_TRAINING_DEFAULTS: a small
# UNet with a gradient term, augmentation, no position input), validated eight times a schedule.
def spatial_sample_settings() -> list[str]:
    sys.path.insert(0, str(ROOT))  # ml/job.py is plain Python: the checkout's own defaults
    from ml.job import spatial_training_defaults

    defaults = spatial_training_defaults()
    every = max(defaults["steps"] // 8, 1)
    return (["branch=spatial", "alignment.mode=per_frame", "training.holdout_every=4"]
            + [f"training.{name}={value}" for name, value in defaults.items()]
            + [f"training.validate_every={every}", f"training.preview_every={every * 4}",
               f"training.checkpoint_every={every * 4}"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="film_recovery_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--blend", help="the .blend to open (not needed inside `blender -b file.blend`)")
    parser.add_argument("--sample", action="store_true", help="start from the built-in sample shot")
    parser.add_argument("--sample-size", default="640x360", help="sample Source size WxH (default 640x360)")
    parser.add_argument("--sample-frames", type=int, default=24)
    parser.add_argument("--branch", choices=("chroma", "spatial"),
                        help="the recovery to run; with --sample also which sample shot: chroma (default, a faded "
                             "Source) or spatial (a soft, grainy Source and a sharper Reference)")
    parser.add_argument("--shot", help="start from a field-corpus shot folder (bench/field_corpus.py): its "
                                       "plates, frame ranges, fps, pixel aspects, truth and settings")
    parser.add_argument("--work-dir", help="work directory (default: the recipe's, or beside the .blend)")
    parser.add_argument("--stages", default="all",
                        help=f"comma-separated stages, or 'all': {', '.join(STAGES)}")
    parser.add_argument("--save", help="save the .blend here afterwards (default: the opened file, if any)")
    parser.add_argument("--zip", help="extension zip to install (default: build one from this checkout)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="set a recipe field before the stages, e.g. training.steps=2000 or "
                             "alignment.mode=per_frame (repeatable)")
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


def set_field(recipe, assignment: str) -> None:
    """`training.steps=2000` on the scene recipe, converted to the field's own type."""
    path, sep, text = assignment.partition("=")
    if not sep:
        raise RuntimeError(f"--set {assignment!r}: expected FIELD=VALUE")
    *owners, name = path.strip().split(".")
    target = recipe
    for owner in owners:
        target = getattr(target, owner, None)
        if target is None:
            raise RuntimeError(f"--set {assignment!r}: the recipe has no {owner!r}")
    if not hasattr(target, name):
        raise RuntimeError(f"--set {assignment!r}: the recipe has no field {path!r}")
    current = getattr(target, name)
    if isinstance(current, bool):
        value = text.strip().lower() in ("1", "true", "yes", "on")
    elif isinstance(current, (int, float)):
        value = type(current)(text)
    else:
        value = text
    try:
        setattr(target, name, value)
    except (TypeError, ValueError) as exc:
        raise RuntimeError(f"--set {assignment!r}: {exc}") from None


def shot_assignments(shot_dir: str) -> list[str]:
    """The recipe fields a field-corpus shot.json describes, as --set assignments."""
    import json

    folder = Path(shot_dir).resolve()
    shot = json.loads((folder / "shot.json").read_text())
    assignments = [f"name={shot['kind']}", f"truth_dir={folder / shot['truth_dir']}"]
    for plate in ("source", "reference"):
        info = shot[plate]
        assignments += [f"{plate}.path={folder / info['pattern']}", f"{plate}.ingest=display",
                        f"{plate}.first_frame={info['first_frame']}", f"{plate}.last_frame={info['last_frame']}",
                        f"{plate}.fps={info['fps']}", f"{plate}.pixel_aspect={info['pixel_aspect']}"]
    return assignments + [f"{name}={value}" for name, value in shot.get("settings", {}).items()]


def print_summary(recipe) -> None:
    """The metrics table and where everything is."""
    import json

    if recipe.report_path:
        report = json.loads((Path(recipe.report_path).parent / "report.json").read_text())
        channels = "CbCr" if report["branch"] == "chroma" else "Y"
        for evaluation in report["sets"]:
            print(f"\n{evaluation['label']}")
            print(f"  {'':10} {'PSNR ' + channels:>12} {'dE2000 mean':>12} {'dE2000 p95':>11} {'SSIM':>7}")
            for method, scores in evaluation["table"].items():
                print(f"  {method:10} {scores['psnr']:12.2f} {scores['delta_e_mean']:12.2f} "
                      f"{scores['delta_e_p95']:11.2f} {scores['ssim']:7.4f}")
        print(f"\n{recipe.report_verdict}")
        print(f"report:  {recipe.report_path}")
    if recipe.infer_display:
        print(f"frames:  {recipe.infer_display}")
    if recipe.model_path:
        print(f"model:   {recipe.model_path}")


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
        shot = shot_assignments(args.shot) if args.shot else []
        sample_settings = ((spatial_sample_settings() if args.branch == "spatial" else SAMPLE_SETTINGS)
                           if args.sample else [])
        branch = [f"branch={args.branch}"] if args.branch else []
        for assignment in sample_settings + shot + branch + args.set:
            set_field(fr, assignment)
        if args.sample:
            width, _, height = args.sample_size.partition("x")
            print("== sample ==", flush=True)
            result = bpy.ops.film_recovery.generate_sample(
                out_dir=str(Path(fr.work_dir or args.work_dir or ROOT / "work") / "sample"),
                frames=args.sample_frames, width=int(width), height=int(height), branch=args.branch or "chroma")
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
    print_summary(fr)
    print(f"work directory: {fr.work_dir}")
    return 0


if __name__ == "__main__":
    code = main(script_args())
    if in_blender():
        # Inside `blender -b`, sys.exit from a --python script is how the exit code reaches the shell.
        sys.exit(code)
    sys.exit(code)
