"""`dataset`: build the ground truth and export the training set for the accepted pairs."""

from __future__ import annotations

HELP = "build ground truth (chroma or spatial) for the accepted pairs and write the dataset + manifest"
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=None, help="dataset folder (default: job.dataset_dir or <work>/dataset)")


def run(args, job, reporter) -> None:
    from ..dataset import export_dataset

    manifest = export_dataset(job, reporter, args.out)
    pairs = manifest["pairs"]
    reporter.result(dataset_dir=str(args.out or job.dataset_dir or job.work_path("dataset")),
                    branch=manifest["branch"], pairs=len(pairs),
                    holdout=sum(1 for p in pairs if p["holdout"]), rejected=len(manifest["rejected"]),
                    unchanged_channel_max_error=max(p["unchanged_channel_max_error"] for p in pairs))
