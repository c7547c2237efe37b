"""`init`: write a complete job.json for batch and farm runs without Blender."""

from __future__ import annotations

from pathlib import Path

from ..job import Job, Plate, save_job

HELP = "write a complete job.json (every field, defaults filled) for batch runs"
NEEDS_JOB = False


def add_arguments(parser) -> None:
    parser.add_argument("out", help="where to write job.json")
    parser.add_argument("--source", default="", help="Source frame pattern, e.g. scans/src.####.exr")
    parser.add_argument("--reference", default="", help="Reference frame pattern")
    parser.add_argument("--frames", default="1-1", help="Source frame range A-B")
    parser.add_argument("--work-dir", default="", help="work directory (default: beside job.json)")
    parser.add_argument("--branch", choices=["chroma", "spatial"], default="chroma")


def run(args, job, reporter) -> None:
    first, _, last = args.frames.partition("-")
    out = Path(args.out)
    new = Job(name=out.stem, work_dir=args.work_dir or str(out.parent.resolve() / "work"),
              branch=args.branch,
              source=Plate(path=args.source, first_frame=int(first), last_frame=int(last or first)),
              reference=Plate(path=args.reference, first_frame=int(first), last_frame=int(last or first)))
    if args.branch == "spatial":  # the spatial branch's measured training defaults (ml/job.py)
        from ..job import spatial_training_defaults

        for name, value in spatial_training_defaults().items():
            setattr(new.training, name, value)
    save_job(new, out)
    reporter.result(job=str(out))
