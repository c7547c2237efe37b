"""Stage 1 as one call: propose training pairs for a job's Source (`suggest_for_job`), matching each
frame's Reference partner by structure or by time. The `suggest` command writes the pair table and,
with --apply, the pairs into job.json; the add-on runs that command."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import curation
from .errors import FilmRecoveryError
from .ingest import plate_frames, reference_frame, source_frame
from .job import Job
from .pairs import timecode


def suggest_for_job(job: Job, reporter, count: int | None = None, scope: str = "shot",
                    frames: Sequence[int] | None = None, match: bool = True, search: int = 3,
                    align_scores: Mapping[int, float] | None = None, max_align_error: float | None = None,
                    workers: int = 4) -> curation.Suggestion:
    """Suggested and rejected pairs for `frames` (default: the whole Source), with the shots and
    warnings (`curation.suggest_pairs`). Progress and the shots' Reference offsets go to `reporter`."""
    frames = list(plate_frames(job.source) if frames is None else frames)
    if not frames:
        raise FilmRecoveryError("no Source frames in the range.", where="--frames",
                                fix=f"Pick frames within {job.source.first_frame}-{job.source.last_frame}.")
    nominal = curation.nominal_mapping(job.source, job.reference)
    ref_first, ref_last = job.reference.first_frame, job.reference.last_frame
    has_reference = bool(job.reference.path)
    partner: dict[int, int | None] = {}
    if has_reference and match:
        matched = curation.match_frames(
            lambda f: source_frame(job, f), lambda f: reference_frame(job, f), frames, (ref_first, ref_last),
            nominal=nominal, search=search, conform=job.conform,
            pixel_aspects=(job.source.pixel_aspect, job.reference.pixel_aspect), workers=workers,
            progress=lambda d, t, stage: reporter.progress(d, t, f"match {stage}"))
        stats, cuts = matched.source_stats, matched.source_cuts
        partner = {m.source_frame: m.reference_frame if m.in_range else None for m in matched.frames}
        for shot in matched.shots:
            reporter.message(f"shot {shot.shot} ({shot.first}-{shot.last}): Reference offset {shot.offset:+d} "
                             f"({shot.method})")
    else:
        stats = curation.analyse_frames(lambda f: source_frame(job, f), frames, workers,
                                        lambda done, total, *_: reporter.progress(done, total, "analyse"))
        cuts = curation.detect_cuts(stats)
        for f in frames:
            r = nominal(f)
            partner[f] = r if (ref_first <= r <= ref_last or not has_reference) else None
    options = {} if max_align_error is None else {"max_align_error": max_align_error}
    suggestion = curation.suggest_pairs(stats, count, scope, cuts=cuts, align_scores=align_scores,
                                        reference_for=partner.get, timecode_for=lambda f: timecode(f, job.source.fps),
                                        **options)
    for text in suggestion.warnings:
        reporter.message(text, "warning")
    return suggestion
