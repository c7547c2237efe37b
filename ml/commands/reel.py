"""`reel`: write the sample reel (several shots of one faded print, one of which faded differently)."""

from __future__ import annotations

HELP = ("write the sample reel: several shots with hard cuts, a faded Source and graded Reference on one "
        "raster, one shot faded differently (what `plan` and `farm` are measured on)")
NEEDS_JOB = False


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="folder to write (new, empty or an earlier reel)")
    parser.add_argument("--shots", type=int, default=4, help="shots (default 4)")
    parser.add_argument("--frames-per-shot", type=int, default=8, help="frames per shot (default 8)")
    parser.add_argument("--width", type=int, default=160, help="width (default 160)")
    parser.add_argument("--height", type=int, default=96, help="height (default 96)")
    parser.add_argument("--odd-shot", type=int, default=3, help="the shot that fades differently (0: none; default 3)")
    parser.add_argument("--seed", type=int, default=0)


def run(args, job, reporter) -> None:
    from ..reel import generate_reel

    info = generate_reel(args.out, args.shots, args.frames_per_shot, args.width, args.height, args.odd_shot,
                         args.seed, reporter)
    reporter.result(**info.as_dict())
