"""`sample`: write the built-in sample shot (faded Source, graded Reference, truth) to a folder."""

from __future__ import annotations

from ..sample import generate_sample

HELP = ("write the built-in sample shot: a faded Source, a graded letterboxed Reference and the truth "
        "(--branch spatial: a soft, grainy Source and a sharper Reference)")
NEEDS_JOB = False


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="folder to write (new, empty or an earlier sample)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same pixels (default 0)")
    parser.add_argument("--frames", type=int, default=24, help="frame count from 1001 (default 24)")
    parser.add_argument("--width", type=int, default=640, help="Source width (default 640)")
    parser.add_argument("--height", type=int, default=360, help="Source height (default 360)")
    parser.add_argument("--reference-width", type=int, default=None,
                        help="Reference width (default 3/4 of the Source)")
    parser.add_argument("--reference-height", type=int, default=None,
                        help="Reference height (default 3/4 of the Source)")
    parser.add_argument("--branch", choices=("chroma", "spatial"), default="chroma",
                        help="chroma (default): a faded Source, a softer graded Reference; spatial: a soft, "
                             "grainy Source and a sharper Reference in its own grade, at the Source's raster")


def run(args, job, reporter) -> None:
    info = generate_sample(args.out, seed=args.seed, frames=args.frames, width=args.width,
                           height=args.height, reporter=reporter,
                           reference_size=(args.reference_width, args.reference_height),
                           branch=args.branch)
    reporter.result(source=info.source_pattern, reference=info.reference_pattern,
                    clean=info.clean_pattern, truth=info.truth_path,
                    first_frame=info.first_frame, last_frame=info.last_frame,
                    cut_frame=info.cut_frame, reference_offset=info.reference_offset,
                    shot_offsets=info.shot_offsets, source_size=list(info.source_size),
                    reference_size=list(info.reference_size), letterbox_rows=info.letterbox_rows,
                    seed=info.seed, branch=info.branch)
