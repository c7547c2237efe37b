"""`evaluate`: Source, baseline and model side by side on the held-out pairs (and on clean truth
frames when given), temporal stability of the inferred sequence, and an HTML report that says
plainly whether the model beats the baseline."""

from __future__ import annotations

import json
from pathlib import Path

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


def _baseline(job, dataset, path: Path, reporter):
    from ..baseline import fit_from_dataset, load_fit, save_fit

    if path.exists():
        fit = load_fit(path)
        if fit.settings.get("dataset_hash") == dataset.manifest_hash:
            return fit
        reporter.message(f"{path} was fitted on another dataset; fitting the baseline again.", "warning")
    else:
        reporter.message("No baseline fit yet; fitting a 17^3 LUT on the training pairs.")
    fit = fit_from_dataset(dataset, seed=job.training.seed)
    save_fit(fit, path)
    return fit


def run(args, job, reporter) -> None:
    from ..dataset_io import load_dataset
    from ..evaluation import evaluate_pairs, evaluate_temporal, evaluate_truth, verdict
    from ..ingest import source_frame
    from ..report import finite_json, new_run_id, read_training_log, write_report
    from .baseline import dataset_folder

    dataset = load_dataset(dataset_folder(job))
    fit = _baseline(job, dataset, Path(args.baseline_fit) if args.baseline_fit else job.work_path("baseline", "fit.json"),
                    reporter)
    model_dir = Path(args.model_dir) if args.model_dir else job.work_path("infer", "display")

    def read_source(frame: int):
        return source_frame(job, frame)

    sets = [evaluate_pairs(job, fit, dataset, model_dir,
                           progress=lambda done, total: reporter.progress(done, total, "evaluate pairs"))]
    if args.truth:
        sets.append(evaluate_truth(job, fit, args.truth, model_dir, read_source, args.truth_frames,
                                   progress=lambda done, total: reporter.progress(done, total, "evaluate truth")))
    temporal = evaluate_temporal(job, fit, model_dir, read_source, args.temporal_frames, args.static_threshold,
                                 progress=lambda done, total: reporter.progress(done, total, "temporal"))
    primary = sets[-1]  # the truth, when given, is the better judge than the pairs' targets
    beat, text = verdict(primary.table, job.branch)
    for method, scores in primary.table.items():
        for name in ("psnr", "delta_e_mean", "delta_e_p95", "ssim"):
            reporter.metric(f"{method}_{name}", scores[name], set=primary.key)
    if temporal:
        for name, value in temporal["chroma_change"].items():
            reporter.metric(f"{name}_temporal_chroma_change", value)
    if not beat:
        reporter.message(text, "warning")

    report_root = job.work_path("report")
    run_dir = report_root / (args.run_id or new_run_id(report_root))
    options = {"truth": args.truth, "model_dir": str(model_dir), "baseline_fit": fit.fit_id,
               "truth_frames": args.truth_frames, "temporal_frames": args.temporal_frames,
               "static_threshold": args.static_threshold}
    baseline = {"kind": fit.kind, "domain": fit.domain, "fit_id": fit.fit_id, **fit.settings, **fit.stats}
    guide_file = model_dir.parent / "guide.json"
    guide = json.loads(guide_file.read_text())["summary"] if guide_file.exists() else None
    report = write_report(run_dir, job=job, sets=sets, beat_baseline=beat, verdict=text, temporal=temporal,
                          baseline=baseline, training_log=read_training_log(job.work_path("train", "log.jsonl")),
                          options=options, guide=guide)
    index = run_dir / "index.html"
    # The Review panel shows the first evaluated image's 1:1 crops and luma difference.
    items = next((s["items"] for s in report["sets"] if s["key"] == primary.key), [])
    for kind in ("detail", "luma_difference"):
        if items and items[0].get(kind):
            reporter.preview(str(run_dir / items[0][kind]), kind)
    reporter.preview(str(index), "report")
    headline = {method: {k: primary.table[method][k] for k in ("psnr", "delta_e_mean", "delta_e_p95", "ssim")}
                for method in primary.table}
    reporter.result(report=str(index), report_json=str(run_dir / "report.json"), run_id=run_dir.name,
                    evaluated_on=primary.key, beat_baseline=beat, verdict=text, headline=finite_json(headline),
                    temporal=finite_json(temporal["chroma_change"]) if temporal else None)
