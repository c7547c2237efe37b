"""`baseline`: fit a MatchGrade-style global colour baseline on the training pairs, export it
as a .cube (checked through OpenColorIO) and render it over every Source frame, so the model
has something specific to beat."""

from __future__ import annotations

from ..baseline import DEFAULT_SMOOTHNESS

HELP = ("fit a global colour baseline (3D LUT, affine or root-polynomial) on the training pairs, "
        "export a .cube and render it over the Source into work_dir/baseline/")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--kind", choices=["lut", "affine", "rootpoly"], default="lut",
                        help="smoothed least-squares 3D LUT (default), 3x4 affine, or degree-2 root polynomial")
    parser.add_argument("--domain", choices=["display", "log"], default="display",
                        help="fit in display-referred values (default) or in a log2 encoding of linear light")
    parser.add_argument("--lut-size", type=int, choices=[17, 33], default=17, help="LUT nodes per axis")
    parser.add_argument("--smoothness", type=float, default=DEFAULT_SMOOTHNESS,
                        help="weight of the LUT's curvature penalty (higher = smoother)")
    parser.add_argument("--cube-size", type=int, default=33, help="nodes per axis of the exported .cube")
    parser.add_argument("--max-samples", type=int, default=2_000_000, help="pixels sampled from the pairs")
    parser.add_argument("--band-sigma", type=float, default=None,
                        help="match the LUT on colour coarser than this Gaussian (Source px); default: a "
                             "block-coded Reference's blocks, an SD Reference's pixel size on the Source (twice "
                             "that for 4:2:0 chroma), else 0 (pixel by pixel)")
    parser.add_argument("--no-render", action="store_true", help="fit and export only; do not render frames")
    parser.add_argument("--force", action="store_true", help="re-render frames this fit already rendered")


def run(args, job, reporter) -> None:
    from ..baseline import BaselineOptions, baseline_job

    options = BaselineOptions(args.kind, args.domain, args.lut_size, args.smoothness, args.cube_size,
                              args.max_samples, args.band_sigma, render=not args.no_render, force=args.force)
    reporter.result(**baseline_job(job, reporter, options))
