"""`pairs`: the pair table for traceability: export (CSV/JSON with file checksums), import into
job.json, verify that the frame files are unchanged, and draw a contact sheet."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import FilmRecoveryError

HELP = "export/import the pair table (CSV or JSON, with SHA-256 of each frame), verify it, draw a contact sheet"
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["export", "import", "verify", "sheet"],
                        help="export: job pairs -> table; import: table -> job.json; verify: table's "
                             "checksums against the files; sheet: contact sheet PNG of the pairs")
    parser.add_argument("table", nargs="?", default="",
                        help="table path (.csv or .json); for sheet, the PNG path. Default: "
                             "<work_dir>/pairs/pairs.json (sheet: <work_dir>/pairs/contact_sheet.png)")
    parser.add_argument("--no-checksums", action="store_true", help="export without hashing the frames")
    parser.add_argument("--all", action="store_true", help="sheet: include rejected pairs")
    parser.add_argument("--thumb-width", type=int, default=240, help="sheet: thumbnail width in pixels")


def alignment_matrices(job) -> dict[int, list[float]]:
    """Per-frame Reference->Source matrices from job.alignment: manual keys where the artist chose
    them, else the solves (frame-number keys)."""
    matrices: dict[int, list[float]] = {}
    for key, values in job.alignment.solves.items():
        if key.lstrip("-").isdigit():
            matrices[int(key)] = values
    for frame in job.alignment.use_manual:
        if str(frame) in job.alignment.manual:
            matrices[frame] = job.alignment.manual[str(frame)]
    return matrices


def run(args, job, reporter) -> None:
    from .. import pairs as table
    from ..job import save_job

    default = job.work_path("pairs", "contact_sheet.png" if args.action == "sheet" else "pairs.json")
    path = Path(args.table) if args.table else default
    if args.action == "export":
        if not job.pairs:
            raise FilmRecoveryError("the job has no pairs.", where="job.pairs",
                                    fix="Run `python -m ml suggest job.json --apply` or add pairs in the add-on.")
        records = table.build_records(job, checksums=not args.no_checksums)
        missing = [r.source_frame for r in records if not args.no_checksums and
                   (not r.source_sha256 or not r.reference_sha256)]
        if missing:
            reporter.message(f"frame files missing for pair(s) {missing}; their checksums are empty.", "warning")
        table.save_records(path, records, job.name)
        reporter.result(table=str(path), pairs=len(records))
    elif args.action == "import":
        records = table.load_records(path)
        job.pairs = [r.to_pair() for r in records]
        save_job(job, args.job)
        changes = table.verify_checksums(records, job)
        for c in changes:
            reporter.message(f"pair {c.source_frame}: {c.side} frame {c.status} ({c.path})", "warning")
        reporter.result(imported=len(records), changed=[dataclasses.asdict(c) for c in changes])
    elif args.action == "verify":
        changes = table.verify_checksums(table.load_records(path), job)
        for c in changes:
            reporter.message(f"pair {c.source_frame}: {c.side} frame {c.status} ({c.path})", "warning")
        reporter.result(table=str(path), ok=not changes, changed=[dataclasses.asdict(c) for c in changes])
    else:
        from ..contact_sheet import write_contact_sheet
        from ..ingest import reference_frame, source_frame

        chosen = [p for p in job.pairs if p.accepted or args.all]
        if not chosen:
            raise FilmRecoveryError("no pairs to show.", where="job.pairs",
                                    fix="Accept some pairs, or pass --all to include rejected ones.")
        png, sidecar = write_contact_sheet(
            path, chosen, lambda f: source_frame(job, f), lambda f: reference_frame(job, f),
            matrices=alignment_matrices(job), conform=job.conform,
            pixel_aspects=(job.source.pixel_aspect, job.reference.pixel_aspect), thumb_width=args.thumb_width)
        reporter.preview(str(png), "contact_sheet")
        reporter.result(sheet=str(png), layout=str(sidecar), rows=len(chosen))
