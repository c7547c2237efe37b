"""`baseline`: fit a MatchGrade-style global colour baseline on the training pairs, export it
as a .cube (checked through OpenColorIO) and render it over every Source frame, so the model
has something specific to beat."""

from __future__ import annotations

from ..baseline import DEFAULT_SMOOTHNESS, dataset_folder

HELP = ("fit a global colour baseline (3D LUT, affine or root-polynomial) on the training pairs, "
        "export a .cube and render it over the Source into work_dir/baseline/")
NEEDS_JOB = True

CUBE_TOLERANCE = 1e-4  # OCIO vs numpy on the exported LUT; larger means the export is wrong


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
    parser.add_argument("--no-render", action="store_true", help="fit and export only; do not render frames")
    parser.add_argument("--force", action="store_true", help="re-render frames this fit already rendered")


def run(args, job, reporter) -> None:
    from ..baseline import (
        bake_error,
        bake_lut,
        check_cube_with_ocio,
        fit_from_dataset,
        render_baseline_frames,
        save_fit,
        write_cube,
    )
    from ..dataset_io import load_dataset
    from ..errors import FilmRecoveryError

    dataset = load_dataset(dataset_folder(job))
    reporter.progress(0, 1, "baseline fit", f"{args.kind} in the {args.domain} domain, "
                      f"{len(dataset.training_pairs)} training pair(s)")
    fit = fit_from_dataset(dataset, args.kind, args.domain, args.lut_size, args.smoothness, args.max_samples,
                           job.training.seed)
    reporter.progress(1, 1, "baseline fit", f"fit RMSE {fit.stats['fit_rmse']:.4f}")
    reporter.metric("baseline_fit_rmse", fit.stats["fit_rmse"])
    if "holdout_rmse" in fit.stats:
        reporter.metric("baseline_holdout_rmse", fit.stats["holdout_rmse"])

    out_dir = job.work_path("baseline")
    fit_path = save_fit(fit, out_dir / "fit.json")
    lut = bake_lut(fit, args.cube_size)
    cube_path = write_cube(out_dir / f"{job.name}_baseline.cube", lut,
                           title=f"Film Recovery baseline {fit.kind}/{fit.domain} {fit.fit_id}")
    ocio_difference = check_cube_with_ocio(cube_path, lut)
    if ocio_difference > CUBE_TOLERANCE:
        raise FilmRecoveryError(f"OpenColorIO applies the exported LUT differently (max {ocio_difference:.2g}).",
                                where=str(cube_path), fix="Report this as a bug; the .cube export is wrong.")
    cube_error = bake_error(fit, lut)
    reporter.metric("cube_ocio_difference", ocio_difference)
    reporter.metric("cube_bake_error", cube_error)

    counts = {"written": 0, "skipped": 0}
    if not args.no_render:
        from ..ingest import plate_frames, source_frame

        counts = render_baseline_frames(fit, list(plate_frames(job.source)), lambda frame: source_frame(job, frame),
                                        out_dir, job.name, reporter, compression=job.output.compression,
                                        force=args.force)
    reporter.result(fit=str(fit_path), cube=str(cube_path), fit_id=fit.fit_id, kind=fit.kind, domain=fit.domain,
                    fit_rmse=fit.stats["fit_rmse"], holdout_rmse=fit.stats.get("holdout_rmse"),
                    cube_ocio_difference=ocio_difference, cube_bake_error=cube_error,
                    frames=str(out_dir / f"{job.name}.####.exr"), **counts)
