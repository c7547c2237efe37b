"""`conform`: estimate where the Reference's picture (bars excluded) sits on the Source raster.

The conform the alignment starts from: resolution, pixel aspect, letterbox or pillarbox. Reads the
first frame of each plate; `--write` stores the estimate in job.json (atomically), as the add-on's
Detect Conform button does.
"""

from __future__ import annotations

import dataclasses

from ..ingest import estimate_conform, read_plate_frame
from ..job import save_job

HELP = "estimate the Reference's conform onto the Source raster (--write stores it in job.json)"
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--write", action="store_true", help="store the conform in job.json, atomically")


def run(args, job, reporter) -> None:
    reporter.progress(0, 2, "conform", f"source {job.source.first_frame}")
    source = read_plate_frame(job.source, job.source.first_frame)
    reporter.progress(1, 2, "conform", f"reference {job.reference.first_frame}")
    reference = read_plate_frame(job.reference, job.reference.first_frame)
    conform = estimate_conform(reference, source, job.reference.pixel_aspect, job.source.pixel_aspect)
    reporter.progress(2, 2, "conform")
    reporter.message(f"Conform: {conform.mode}, scale {conform.scale_x:.4f} x {conform.scale_y:.4f}, "
                     f"offset ({conform.offset_x:.1f}, {conform.offset_y:.1f}) px")
    if args.write:
        job.conform = conform
        save_job(job, args.job)
        reporter.message(f"Conform written to {args.job}.")
    reporter.result(conform=dataclasses.asdict(conform), written=bool(args.write))
