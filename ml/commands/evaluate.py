"""`evaluate`: Source, baseline and model side by side on the held-out pairs (and on clean truth
frames when given), temporal stability of the inferred sequence, and an HTML report that says
plainly whether the model beats the baseline."""

from __future__ import annotations

HELP = ("compare Source, baseline and model on the held-out pairs (and clean truth frames), measure "
        "temporal stability, and write an HTML + JSON report to work_dir/report/<run-id>/")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--truth", default="", help="folder of clean frames clean.####.exr (Source frame "
                        "numbers and resolution), e.g. the sample shot's truth/")
    parser.add_argument("--model-dir", default="", help="the model's display-referred frames <name>.####.exr "
                        "(default work_dir/infer/display)")
    parser.add_argument("--baseline-fit", default="", help="baseline fit.json (default work_dir/baseline/fit.json; "
                        "fitted now, a 17^3 LUT, when missing or fitted on another dataset)")
    parser.add_argument("--truth-frames", type=int, default=12, help="at most this many truth frames, evenly spaced")
    parser.add_argument("--temporal-frames", type=int, default=48,
                        help="at most this many consecutive inferred frames for temporal stability")
    parser.add_argument("--static-threshold", type=float, default=0.01,
                        help="Source luma change below which a pixel counts as static")
    parser.add_argument("--run-id", default="", help="report folder name (default: a timestamp)")


def run(args, job, reporter) -> None:
    from ..evaluation import EvaluateOptions, evaluate_job

    options = EvaluateOptions(truth=args.truth, model_dir=args.model_dir, baseline_fit=args.baseline_fit,
                              truth_frames=args.truth_frames, temporal_frames=args.temporal_frames,
                              static_threshold=args.static_threshold, run_id=args.run_id)
    result = evaluate_job(job, reporter, options)
    reporter.result(**result)
