"""Stage 1 as one call: propose training pairs for a job's Source (`suggest_for_job`), matching each
frame's Reference partner by structure or by time. The `suggest` command writes the pair table and,
with --apply, the pairs into job.json; the add-on runs that command."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import curation
from .errors import FilmRecoveryError
from .ingest import plate_frames, reference_frame, source_frame
from .job import Job
from .pairs import timecode

# Source stats, Source cuts, each Source frame's Reference partner (None: no partner), why a partner
# cannot be used (a frame mixing two film frames' fields), and warnings.
_Partners = tuple[list[curation.FrameStats], list[int], dict[int, int | None], dict[int, str], list[str]]


@dataclass(frozen=True)
class SuggestJobOptions:
    """The `suggest` command's matching and strictness flags (the defaults are the command's)."""

    match: bool = True                    # find each frame's Reference partner by structure (else by time)
    search: int = 3                       # Reference frames to search either side when matching
    max_align_error: float | None = None  # None: curation.SuggestOptions' default
    workers: int = 4                      # frame reader threads


def suggest_for_job(job: Job, reporter, count: int | None = None, scope: str = "shot",
                    frames: Sequence[int] | None = None, *, align_scores: Mapping[int, float] | None = None,
                    options: SuggestJobOptions | None = None) -> curation.Suggestion:
    """Suggested and rejected pairs for `frames` (default: the whole Source), with the shots and
    warnings (`curation.suggest_pairs`). Progress and the shots' Reference offsets go to `reporter`."""
    options = options or SuggestJobOptions()
    frames = list(plate_frames(job.source) if frames is None else frames)
    if not frames:
        raise FilmRecoveryError("no Source frames in the range.", where="--frames",
                                fix=f"Pick frames within {job.source.first_frame}-{job.source.last_frame}.")
    implied_fps = None
    if job.reference.path and options.match:
        (stats, cuts, partner, refused, notes), implied_fps = _matched_partners(job, frames, options, reporter)
    else:
        stats, cuts, partner, refused, notes = _nominal_partners(job, frames, options.workers, reporter)
    strictness = curation.SuggestOptions() if options.max_align_error is None else \
        curation.SuggestOptions(max_align_error=options.max_align_error)
    suggestion = curation.suggest_pairs(stats, count, scope, cuts=cuts, align_scores=align_scores,
                                        reference_for=partner.get, timecode_for=lambda f: timecode(f, job.source.fps),
                                        partner_problem=refused.get, options=strictness)
    suggestion.warnings[:0] = notes
    suggestion.reference_fps = implied_fps
    for text in suggestion.warnings:
        reporter.message(text, "warning")
    return suggestion


def _matched_partners(job: Job, frames: list[int], options: SuggestJobOptions, reporter
                      ) -> tuple[_Partners, float | None]:
    """Source stats, cuts and each frame's Reference partner found by structure (`curation.match_frames`)
    around the Reference frame at the same time; for a Reference at a speed-up's rate also around the
    frame as many frames on (a speed-up transfer), keeping the mapping whose pairs agree better. Reports
    each shot's offset; returns also the Reference rate the matches imply where it is not the job's."""
    def match(nominal):
        return curation.match_frames(
            lambda f: source_frame(job, f), lambda f: reference_frame(job, f), frames,
            (job.reference.first_frame, job.reference.last_frame), nominal=nominal,
            options=curation.MatchOptions(search=options.search, conform=job.conform,
                                          pixel_aspects=(job.source.pixel_aspect, job.reference.pixel_aspect),
                                          workers=options.workers),
            progress=lambda d, t, stage: reporter.progress(d, t, f"match {stage}"))

    matched, implied_fps, notes = match(curation.nominal_mapping(job.source, job.reference)), None, []
    if curation.is_speed_change(job.source.fps, job.reference.fps):
        one_to_one = match(curation.frame_for_frame_mapping(job.source, job.reference))
        by_time, frame_for_frame = curation.mapping_agreements(matched, one_to_one)
        if frame_for_frame > by_time:
            matched, implied_fps = one_to_one, job.source.fps
            notes.append(f"the Reference's frames follow the Source's one for one, not by time at "
                         f"{job.reference.fps:g} fps: a speed-up transfer (such as PAL 25 fps of 24 fps film). "
                         f"Pairs are matched frame for frame; --apply also sets reference.fps to the Source's "
                         f"{job.source.fps:g} so every stage maps them so.")
    partner: dict[int, int | None] = {m.source_frame: m.reference_frame if m.in_range else None
                                      for m in matched.frames}
    mixed = curation.field_mixed_frames(matched.reference_interlace, matched.reference_cuts) \
        if curation.is_pulldown(job.source.fps, job.reference.fps) else {}
    refused, pulldown_note = _field_mixed_partners(mixed, len(matched.reference_interlace), partner)
    if pulldown_note:
        notes.append(pulldown_note)
    for shot in matched.shots:
        reporter.message(f"shot {shot.shot} ({shot.first}-{shot.last}): Reference offset {shot.offset:+d} "
                         f"({shot.method})")
    speed_note = curation.speed_change_note(matched.shots, job.source.fps, implied_fps or job.reference.fps)
    return (matched.source_stats, matched.source_cuts, partner, refused,
            notes + ([speed_note] if speed_note else [])), implied_fps


def _field_mixed_partners(mixed: Mapping[int, str], frames_read: int,
                          partner: Mapping[int, int | None]) -> tuple[dict[int, str], str | None]:
    """Why each Source frame paired to a Reference frame that mixes two film frames' fields (`mixed`,
    found among `frames_read` Reference frames) cannot be a pair, and a note naming those frames."""
    if not mixed:
        return {}, None
    refused = {f: curation.mixed_partner_reason(r, mixed[r]) for f, r in partner.items() if r in mixed}
    listed = ", ".join(f"{r} {how}" for r, how in sorted(mixed.items()))
    note = (f"the Reference has 3:2 pulldown: {len(mixed)} of its {frames_read} frames read mix "
            f"two film frames' fields ({listed}); the {len(refused)} Source frame(s) paired to them are not "
            f"suggested as pairs.")
    return refused, note


def reference_field_mixes(job: Job, source_cuts: Sequence[int], workers: int = 4) -> dict[int, str]:
    """For a Reference at a 3:2 pulldown's rate, its frames that mix two film frames' fields, reading the
    whole plate once (`curation.read_field_mixes`; the cadence found between the Source's cuts, mapped
    by time); else none. For the callers that pair by time without matching: `suggest --no-match`, `ml plan`."""
    if not job.reference.path or not curation.is_pulldown(job.source.fps, job.reference.fps):
        return {}
    nominal = curation.nominal_mapping(job.source, job.reference)
    return curation.read_field_mixes(lambda f: reference_frame(job, f), plate_frames(job.reference),
                                     [nominal(c) for c in source_cuts], workers)


def _nominal_partners(job: Job, frames: list[int], workers: int, reporter) -> _Partners:
    """Source stats, cuts and each frame's Reference partner at the same time (None outside the Reference);
    for a pulldown Reference, why a partner that mixes two film frames cannot be used."""
    stats = curation.analyse_frames(lambda f: source_frame(job, f), frames, workers,
                                    lambda done, total, *_: reporter.progress(done, total, "analyse"))
    cuts = curation.detect_cuts(stats)
    nominal = curation.nominal_mapping(job.source, job.reference)
    ref_first, ref_last = job.reference.first_frame, job.reference.last_frame
    partner: dict[int, int | None] = {}
    for f in frames:
        r = nominal(f)
        partner[f] = r if (ref_first <= r <= ref_last or not job.reference.path) else None
    mixed = reference_field_mixes(job, cuts, workers)
    refused, pulldown_note = _field_mixed_partners(mixed, job.reference.last_frame - ref_first + 1, partner)
    return stats, cuts, partner, refused, [pulldown_note] if pulldown_note else []
