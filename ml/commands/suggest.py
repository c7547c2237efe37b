"""`suggest`: propose training pairs for every shot, each with its rationale, and list the
rejected candidates with their reasons (near cut, flash, splice, blur, near-duplicate...)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import FilmRecoveryError

HELP = ("suggest training pairs covering each shot's variety (anchors, extremes), avoiding frames "
        "near cuts, flashes, splices, blur and near-duplicates; says why for each")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--count", type=int, default=None,
                        help="total pairs (default: shot scope 6 per shot, scene 16, sequence 32)")
    parser.add_argument("--scope", choices=["shot", "scene", "sequence"], default="shot",
                        help="training scope; sets the default count and the checks (shot 4-9 pairs "
                             "per shot, scene 12-24, sequence 24-64+)")
    parser.add_argument("--frames", default="", help="Source range A-B to choose from (default: the plate)")
    parser.add_argument("--no-match", action="store_true",
                        help="pair each frame with the Reference frame at the same time instead of "
                             "matching Reference frames by structure")
    parser.add_argument("--search", type=int, default=3, help="frames to search either side when matching")
    parser.add_argument("--align-scores", default="",
                        help="JSON {frame: score} from ml.align.alignment_score (residual px); frames "
                             "above --max-align-error are rejected")
    parser.add_argument("--max-align-error", type=float, default=None, help="default 0.5 px")
    parser.add_argument("--out", default="", help="pair table (.json or .csv; default "
                                                  "<work_dir>/pairs/suggested.json, a .csv is written beside)")
    parser.add_argument("--apply", action="store_true", help="write the accepted pairs into job.json")
    parser.add_argument("--workers", type=int, default=4, help="frame reader threads")


def parse_range(text: str, where: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        return int(first), int(last if sep else first)
    except ValueError:
        raise FilmRecoveryError(f"expected a frame range A-B, got {text!r}.", where=where) from None


def _load_scores(path: str) -> dict[int, float]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {int(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise FilmRecoveryError(f"cannot read alignment scores ({exc}).", where=path,
                                fix='Give a JSON object {"1001": 0.2, ...} of residual pixels.') from exc


def run(args, job, reporter) -> None:
    from ..ingest import plate_frames
    from ..job import save_job
    from ..pairs import build_records, save_records
    from ..suggest_stage import SuggestJobOptions, suggest_for_job

    frames = None
    if args.frames:
        first, last = parse_range(args.frames, "--frames")
        frames = [f for f in plate_frames(job.source) if first <= f <= last]
    options = SuggestJobOptions(match=not args.no_match, search=args.search, max_align_error=args.max_align_error,
                                workers=args.workers)
    suggestion = suggest_for_job(job, reporter, args.count, args.scope, frames,
                                 align_scores=_load_scores(args.align_scores) if args.align_scores else None,
                                 options=options)
    out = Path(args.out) if args.out else job.work_path("pairs", "suggested.json")
    records = build_records(job, suggestion.pairs + suggestion.rejected, checksums=False)
    save_records(out, records, job.name)
    save_records(out.with_suffix(".csv" if out.suffix.lower() == ".json" else ".json"), records, job.name)
    if args.apply:
        job.pairs = suggestion.pairs
        if suggestion.reference_fps:  # a speed-up transfer: every stage maps its frames one for one
            job.reference.fps = suggestion.reference_fps
        save_job(job, args.job)
    reporter.result(pairs=[dataclasses.asdict(p) for p in suggestion.pairs],
                    rejected=[{"frame": p.source_frame, "shot": p.shot, "reason": p.reason}
                              for p in suggestion.rejected],
                    shots=[dataclasses.asdict(s) for s in suggestion.shots], cuts=suggestion.cuts,
                    warnings=suggestion.warnings, table=str(out), applied=bool(args.apply),
                    reference_fps=suggestion.reference_fps)
