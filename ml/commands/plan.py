"""`plan`: the shots of the whole reel, grouped into training units, as plan.json (see ml/plan.py)."""

from __future__ import annotations

from pathlib import Path

HELP = ("find the reel's shots (the cut detection pairs use), group them into training units by scope "
        "(sequence, scene or shot, with the workflow's pair counts) and write plan.json with each unit's "
        "shots, frame ranges, pairs and status")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--scope", choices=["sequence", "scene", "shot"], default="sequence",
                        help="training unit: one model for the sequence (default), per scene, or per shot")
    parser.add_argument("--out", default="", help="plan file (default <work_dir>/plan/plan.json)")
    parser.add_argument("--count", type=int, default=None,
                        help="pairs per unit (default: the scope's preset: sequence 32, scene 16, shot 6 per shot)")
    parser.add_argument("--scenes", default="", help="scene scope: runs of shot numbers, e.g. 1-3,4-6 "
                        "(default: neighbouring shots of alike colour)")
    parser.add_argument("--min-gain", type=float, default=0.0,
                        help="dB a unit's model must gain over a shot's own baseline grade on that shot's "
                             "held-out pairs, or the shot gets its own model (default 0: it must not lose)")
    parser.add_argument("--max-drop", type=float, default=3.0,
                        help="dB below the unit's median shot at which a shot gets its own model (the model "
                             "generalises to the others, not to it; default 3, at least three scored shots)")
    parser.add_argument("--no-max-drop", action="store_true", help="leave the median rule out")
    parser.add_argument("--min-psnr", type=float, default=None,
                        help="PSNR (dB, branch channels) below which a shot gets its own model (default: none)")
    parser.add_argument("--baseline", choices=["unit", "shot"], default="unit",
                        help="what each shot's score is compared with: the 3D LUT fitted on the unit's training "
                             "pairs (default, what `ml baseline` fits) or on the shot's own (a stricter bar)")
    parser.add_argument("--chunk-frames", type=int, default=48, help="frames per inference task (default 48)")
    parser.add_argument("--holdout-per-shot", type=int, default=1,
                        help="held-out pairs per shot, the frames each model is scored on (default 1)")
    parser.add_argument("--gpus", type=int, default=1,
                        help="GPUs per unit's training (more than 1 trains under torchrun in its task)")
    parser.add_argument("--workers", type=int, default=4, help="frame reader threads")


def run(args, job, reporter) -> None:
    from ..plan import PlanRules, build_plan, default_plan_path, save_plan, summary_lines, write_unit_jobs
    from ..qc import require_qc_pass

    if args.count is not None and args.count < 1:
        from ..errors import FilmRecoveryError

        raise FilmRecoveryError(f"{args.count} pairs per unit.", where="--count", fix="Ask for 1 or more.")
    # Parity QC once for the reel (every unit's dataset stage would otherwise run it).
    require_qc_pass(job, reporter)
    rules = PlanRules(count=args.count, scenes=args.scenes, min_gain_db=args.min_gain, min_psnr=args.min_psnr,
                      max_drop_db=None if args.no_max_drop else args.max_drop, chunk_frames=args.chunk_frames,
                      holdout_per_shot=args.holdout_per_shot, gpus=args.gpus, baseline=args.baseline)
    plan = build_plan(job, args.job, args.scope, rules=rules, workers=args.workers,
                      progress=lambda done, total: reporter.progress(done, total, "plan", "analysing frames"))
    out = Path(args.out) if args.out else default_plan_path(job)
    save_plan(plan, out)
    write_unit_jobs(plan, job)
    for line in summary_lines(plan):
        reporter.message(line)
    for warning in plan.warnings:
        reporter.message(warning, "warning")
    reporter.result(plan=str(out), scope=plan.scope, cuts=plan.cuts,
                    shots=[{"name": s.name, "first": s.first, "last": s.last, "unit": s.model_unit, "scene": s.scene}
                           for s in plan.shots],
                    units=[{"id": u.id, "shots": u.shots, "frames": u.frames,
                            "pairs": sum(p["accepted"] for p in u.pairs),
                            "held_out": sum(p["accepted"] and p["holdout"] for p in u.pairs), "status": u.status}
                           for u in plan.units], warnings=plan.warnings)
