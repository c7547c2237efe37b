"""`validate`: check a job.json without running anything (schema, types, plate paths)."""

from __future__ import annotations

from pathlib import Path

from ..errors import FilmRecoveryError
from ..imageio import frame_path

HELP = "check a job.json: schema version, every field's type, and that the plates' first frames exist"
NEEDS_JOB = True


def add_arguments(parser) -> None:
    pass


def run(args, job, reporter) -> None:
    for name, plate in (("source", job.source), ("reference", job.reference)):
        if not plate.path:
            raise FilmRecoveryError("no plate path set.", where=f"job.{name}.path",
                                    fix="Set the image sequence pattern (#### or %04d) or movie file.")
        if plate.last_frame < plate.first_frame:
            raise FilmRecoveryError(f"last_frame {plate.last_frame} is before first_frame {plate.first_frame}.",
                                    where=f"job.{name}")
        first = frame_path(plate.path, plate.first_frame)
        if not Path(first).exists():
            raise FilmRecoveryError("the first frame does not exist.", where=first,
                                    fix=f"Check job.{name}.path and job.{name}.first_frame.")
    reporter.result(valid=True, name=job.name, branch=job.branch, pairs=len(job.pairs),
                    source_frames=job.source.last_frame - job.source.first_frame + 1)
