"""`validate`: check a job.json without running anything: every field, the plates' frames, pairs,
warps and crop (no frame is decoded, so it takes well under a second)."""

from __future__ import annotations

from ..errors import JobFileError

HELP = ("check a job.json: every field's type and range, every plate frame present, pairs inside the "
        "plates and unique, warps invertible, the crop inside the Source; lists every problem")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--for", dest="as_command", default="",
                        help="check as this command would (some commands skip checks of what they replace)")


def run(args, job, reporter) -> None:
    from ..validation import SKIPPED_BY_COMMAND, job_problems

    problems = job_problems(job, SKIPPED_BY_COMMAND.get(args.as_command, ()))
    for problem in problems:
        reporter.message(problem.describe(), level="error")
    if problems:
        raise JobFileError(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} found; the first: "
                           f"{problems[0].problem}", where=problems[0].where, fix=problems[0].fix)
    reporter.result(valid=True, name=job.name, branch=job.branch, pairs=len(job.pairs),
                    source_frames=job.source.last_frame - job.source.first_frame + 1)
