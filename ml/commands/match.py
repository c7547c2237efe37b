"""`match`: find the Reference frame that shows each Source frame (off-by-one, a constant offset
per shot, or drift), by structure that ignores colour; report a robust offset per shot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import FilmRecoveryError

HELP = ("find the Reference frame matching each Source frame by structure (ignores colour), with a "
        "confidence per frame and a robust offset per shot; shot-aware")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--frames", default="",
                        help="Source frames, e.g. 1001-1012,1015 (default: the job's pairs, else every frame)")
    parser.add_argument("--search", type=int, default=5, help="Reference frames to search either side")
    parser.add_argument("--out", default="", help="where to write the match report (default "
                                                  "<work_dir>/pairs/match.json)")
    parser.add_argument("--apply", action="store_true",
                        help="set each job pair's reference_frame to the recommended match")
    parser.add_argument("--workers", type=int, default=4, help="frame reader threads")


def parse_frames(text: str) -> list[int]:
    """'1001-1005,1010' -> [1001, ..., 1005, 1010]."""
    frames: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, sep, last = part.partition("-")
        try:
            a, b = int(first), int(last if sep else first)
        except ValueError:
            raise FilmRecoveryError(f"cannot read {part!r}.", where="--frames",
                                    fix="Use frames and ranges such as 1001-1012,1015.") from None
        frames.update(range(min(a, b), max(a, b) + 1))
    return sorted(frames)


def run(args, job, reporter) -> None:
    from .. import curation
    from ..imageio import atomic_path
    from ..ingest import plate_frames, reference_frame, source_frame
    from ..job import save_job

    if not job.reference.path:
        raise FilmRecoveryError("no Reference plate.", where="job.reference.path", fix="Set the Reference plate.")
    all_frames = plate_frames(job.source)
    plate_frames(job.reference)  # validates the Reference range
    wanted = parse_frames(args.frames) if args.frames else sorted({p.source_frame for p in job.pairs}) or all_frames
    outside = [f for f in wanted if f not in set(all_frames)]
    if outside:
        raise FilmRecoveryError(f"frame(s) {outside[:5]} are outside the Source range.", where="--frames",
                                fix=f"Use frames within {job.source.first_frame}-{job.source.last_frame}.")
    result = curation.match_frames(
        lambda f: source_frame(job, f), lambda f: reference_frame(job, f), all_frames,
        (job.reference.first_frame, job.reference.last_frame), frames=wanted,
        nominal=curation.nominal_mapping(job.source, job.reference),
        options=curation.MatchOptions(search=args.search, conform=job.conform,
                                      pixel_aspects=(job.source.pixel_aspect, job.reference.pixel_aspect),
                                      workers=args.workers),
        progress=lambda d, t, stage: reporter.progress(d, t, stage))
    for shot in result.shots:
        reporter.message(f"shot {shot.shot} ({shot.first}-{shot.last}): offset {shot.offset:+d} by {shot.method}"
                         + (f", drift {shot.drift:+.3f} frame/frame" if abs(shot.drift) > 1e-6 else ""))
    speed_note = curation.speed_change_note(result.shots, job.source.fps, job.reference.fps)
    if speed_note:
        reporter.message(speed_note, "warning")
    frames = [{k: v for k, v in dataclasses.asdict(m).items() if k != "scores"} |
              {"scores": {str(r): round(s, 4) for r, s in m.scores.items()}} for m in result.frames]
    payload = {"frames": frames, "shots": [dataclasses.asdict(s) for s in result.shots],
               "source_cuts": result.source_cuts, "reference_cuts": result.reference_cuts}
    out = Path(args.out) if args.out else job.work_path("pairs", "match.json")
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if args.apply:
        best = {m.source_frame: m for m in result.frames}
        for pair in job.pairs:
            if pair.source_frame in best and best[pair.source_frame].in_range:
                pair.reference_frame = best[pair.source_frame].reference_frame
        save_job(job, args.job)
    reporter.result(report=str(out), applied=bool(args.apply), warnings=[speed_note] if speed_note else [], **payload)
