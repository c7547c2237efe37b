"""Stage 2 as one call: solve a shot's Reference->Source warps, score its pairs against them, and
propose the one shared crop (`align_shot`). The `align` command writes the result as
work/align/align.json and, with --apply, into job.json; the add-on runs that command."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import align, crop, ingest, warp
from .alignment_apply import no_alignment_warning, solves_digest
from .errors import FilmRecoveryError
from .job import Crop, Job

_SCHEMA = "film_recovery.align"
_CACHE_FRAMES = 12  # decoded frames kept while solving (a 2K frame is ~38 MB)
PROBE_MARGIN = 0.05  # correlation by which the framed conform must beat the plain one to be used


def _parse_range(text: str) -> list[int]:
    first, sep, last = text.partition("-")
    try:
        a, b = int(first), int(last) if sep else int(first)
    except ValueError as exc:
        raise FilmRecoveryError(f"--frames {text!r} is not a range A-B.", where="--frames",
                                fix="Give two frame numbers, e.g. 1001-1048.") from exc
    if b < a:
        raise FilmRecoveryError(f"--frames {text!r} ends before it starts.", where="--frames")
    return list(range(a, b + 1))


def _frames_and_pairs(job: Job, frames_arg: str) -> tuple[list[int], dict[int, int], list[int]]:
    """(frames to solve, Source→Reference frame map, frames to score)."""
    accepted = {p.source_frame: p.reference_frame for p in job.pairs if p.accepted}
    offset = job.reference.first_frame - job.source.first_frame
    if frames_arg:
        frames = _parse_range(frames_arg)
    elif accepted:
        frames = sorted(accepted)
    else:
        frames = ingest.plate_frames(job.source)
    if not frames:
        raise FilmRecoveryError("no frames to align.", where="job.pairs",
                                fix="Accept some pairs, or pass --frames A-B.")
    # Frames without a pair use the plates' start offset (same shot, same cut).
    mapping = {f: accepted.get(f, f + offset) for f in frames}
    scored = [f for f in frames if f in accepted] or align.spread_frames(frames, 9)
    return frames, mapping, scored


@dataclasses.dataclass
class _Shot:
    """What the phases of align_shot share: the frames, their cached loaders, the conform, progress."""

    job: Job
    reporter: Any
    frames: list[int]  # frames to solve
    mapping: dict[int, int]  # Source frame -> Reference frame
    scored: list[int]  # frames whose pairs are scored
    source: Callable[[int], np.ndarray]
    reference: Callable[[int], np.ndarray]
    src_shape: tuple[int, int]
    ref_shape: tuple[int, int]
    init: np.ndarray  # where the solve starts: the conform, or that of the picture inside the bars
    ref_bars: crop.Borders  # the Reference's own black bars (top, bottom, left, right), from the scored frames
    solve_total: int = 0  # the solve phase's progress total (scoring counts on from it)


def _open_shot(job: Job, reporter, frames_arg: str) -> _Shot:
    """The frames to solve and score, cached frame loaders, the Reference's bars and where the solve starts."""
    frames, mapping, scored = _frames_and_pairs(job, frames_arg)
    source = functools.lru_cache(maxsize=_CACHE_FRAMES)(lambda f: ingest.source_frame(job, f))
    reference = functools.lru_cache(maxsize=_CACHE_FRAMES)(lambda f: ingest.reference_frame(job, f))
    first_src, first_ref = source(frames[0]), reference(mapping[frames[0]])
    src_shape, ref_shape = first_src.shape[:2], first_ref.shape[:2]
    init = ingest.conform_matrix(job.conform, (ref_shape[1], ref_shape[0]), (src_shape[1], src_shape[0]),
                                 job.reference.pixel_aspect, job.source.pixel_aspect)
    ref_bars = crop.detect_borders([reference(mapping[f]) for f in align.spread_frames(scored, 3)])
    shot = _Shot(job, reporter, frames, mapping, scored, source, reference, src_shape, ref_shape, init, ref_bars)
    shot.init = _starting_matrix(shot)
    return shot


def _starting_matrix(shot: _Shot) -> np.ndarray:
    """The conform, or the conform of the picture inside the Reference's bars where that aligns better.

    Bars are either a matte over the Source's own framing (the conform is right) or the frame around
    a picture scaled to fit inside them (a 16:9 picture letterboxed in a 4:3 transfer: the picture
    is a third larger than the conform says, too far for the solve to find from it). One probe solve
    of a middle frame from each decides.
    """
    job = shot.job
    top, bottom, left, right = shot.ref_bars
    height, width = shot.ref_shape
    if not any((top, bottom, left, right)) or job.conform.mode == "none" or top + bottom >= height // 2 \
            or left + right >= width // 2:
        return shot.init
    framed = ingest.conform_matrix(job.conform, (width - left - right, height - top - bottom),
                                   (shot.src_shape[1], shot.src_shape[0]), job.reference.pixel_aspect,
                                   job.source.pixel_aspect) @ warp.translation(-left, -top)
    probes = align.spread_frames(shot.scored, 3)  # the frames the bars were found on
    middle = probes[len(probes) // 2]
    src, ref = shot.source(middle), shot.reference(shot.mapping[middle])
    settings = job.alignment
    as_matte, as_frame = (align.solve_alignment(src, ref, settings.model, settings.roi, m)
                          for m in (shot.init, framed))
    if as_frame.confidence <= as_matte.confidence + PROBE_MARGIN:
        return shot.init
    shot.reporter.message(f"the Reference's picture sits inside its bars ({top}/{bottom}/{left}/{right} px): "
                          f"aligning from the conform of that picture (frame {middle} correlates "
                          f"{as_frame.confidence:.2f} from it, {as_matte.confidence:.2f} from the whole frame)")
    return framed


def _solve(shot: _Shot, model: str, mode: str) -> dict[int, align.Solve]:
    """Solve the shot's warps, reporting each frame solve and warning about every unsure one."""
    settings = shot.job.alignment

    def progress(done: int, total: int, frame: int, solve: align.Solve) -> None:
        shot.solve_total = total
        shot.reporter.progress(done, total + len(shot.scored), "align",
                               f"frame {frame}: {solve.status} ({solve.message})")

    options = align.SequenceOptions(model=model, mode=mode, smoothing=settings.smoothing, roi=settings.roi)
    solves = align.solve_sequence(shot.source, shot.reference, shot.frames, options, init=shot.init,
                                  pairs=shot.mapping, progress=progress)
    for f, s in solves.items():
        if s.status != "ok":
            shot.reporter.message(f"frame {f}: {s.message}", level="warning")
    return solves


def _score_pairs(shot: _Shot, solves: dict[int, align.Solve], ref_live: crop.Borders
                 ) -> tuple[list[dict[str, Any]], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Score each scored pair under the matrix the dataset will use (a manual key wins where switched on).

    Returns (pair entries, Sources, aligned References, live masks); the last three feed the crop.
    """
    settings = shot.job.alignment
    pairs_out, sources, aligned, masks = [], [], [], []
    for i, f in enumerate(shot.scored):
        key = str(f)
        if f in settings.use_manual and key in settings.manual:
            m, origin = warp.as_matrix(settings.manual[key]), "manual"
        else:
            m, origin = solves[f].matrix, "auto" if solves[f].usable else "conform"
        src, ref = shot.source(f), shot.reference(shot.mapping[f])
        warped = warp.warp_to_source(ref, m, src.shape)
        mask = warp.valid_mask(m, ref.shape, src.shape)
        score = align.alignment_score(src, warped, mask)
        live = crop.live_mask(m, ref.shape, src.shape, ref_live)
        finite = bool(np.isfinite(score))
        pairs_out.append({"source_frame": f, "reference_frame": shot.mapping[f],
                          "align_score": score if finite else None,
                          "misaligned": bool(not finite or score > align.MISALIGNED_THRESHOLD),
                          "matrix_from": origin, "confidence": solves[f].confidence})
        sources.append(src)
        aligned.append(warped)
        masks.append(live)
        shot.reporter.metric("align_score", score, frame=f)
        shot.reporter.progress(shot.solve_total + i + 1, shot.solve_total + len(shot.scored), "align",
                               f"scored frame {f}: {score:.2f} px")
    return pairs_out, sources, aligned, masks


def _warn_weave(reporter, pairs_out: list[dict[str, Any]]) -> None:
    """Suggest per-frame mode when most pairs stay misaligned under one shared matrix."""
    misaligned = [p["source_frame"] for p in pairs_out if p["misaligned"]]
    if len(misaligned) > len(pairs_out) // 2:
        reporter.message(f"{len(misaligned)} of {len(pairs_out)} pairs stay misaligned under one shared matrix: "
                         "the Source probably weaves; try --mode per_frame", level="warning")


def _edge_warnings(shot: _Shot, solves: dict[int, align.Solve], proposal: Crop,
                   ref_live: crop.Borders) -> list[str]:
    """Report where the aligned Reference leaves the crop in use empty, one warning per text."""
    by_text: dict[str, list[int]] = {}
    for f in shot.scored:
        in_use = crop.crop_at_frame(shot.job.crop, f) if shot.job.crop.enabled else proposal
        for text in align.edge_check(solves[f].matrix, shot.ref_shape, shot.src_shape, in_use, ref_live=ref_live):
            by_text.setdefault(text, []).append(f)
    warnings = [f"frame{'s' if len(fs) > 1 else ''} {', '.join(map(str, fs))}: {text}" for text, fs in by_text.items()]
    for text in warnings:
        shot.reporter.message(text, level="warning")
    return warnings


def _solved_matrices(solves: dict[int, align.Solve], mode: str) -> dict[str, list[float]]:
    """The usable warps keyed by Source frame, and in global mode the shot's matrix as `global`."""
    solved = {str(f): warp.matrix_to_list(s.matrix) for f, s in solves.items() if s.usable}
    if mode == "global" and solves and any(s.usable for s in solves.values()):
        solved["global"] = warp.matrix_to_list(next(s for s in solves.values() if s.usable).matrix)
    return solved


def align_shot(job: Job, reporter, frames_arg: str = "", model: str | None = None, mode: str | None = None
               ) -> dict[str, Any]:
    """Solve the Reference->Source warps of a shot, score its pairs and propose the shared crop;
    returns the align.json payload (see `ml/commands/align.py`). Progress, per-frame warnings and
    the pair scores go to `reporter`. Nothing is written."""
    settings = job.alignment
    model = model or settings.model
    mode = mode or settings.mode
    shot = _open_shot(job, reporter, frames_arg)
    solves = _solve(shot, model, mode)
    ref_live = shot.ref_bars
    pairs_out, sources, aligned, masks = _score_pairs(shot, solves, ref_live)
    if mode == "global":
        _warn_weave(reporter, pairs_out)
    margin = max(4, int(round(0.005 * shot.src_shape[1])))
    proposal = crop.shared_crop(sources, aligned, masks, margin=margin)
    warnings = _edge_warnings(shot, solves, proposal, ref_live)
    solved = _solved_matrices(solves, mode)
    frames = {str(f): {k: v for k, v in s.to_dict().items() if k != "matrix"} for f, s in solves.items()}
    failure = no_alignment_warning(frames)
    if failure:
        reporter.message(failure, level="warning")
    return {
        "schema": _SCHEMA, "version": 1, "model": model, "mode": mode, "roi": settings.roi,
        "solves": solved,
        "frames": frames,
        "pairs": pairs_out,
        "misaligned_threshold": align.MISALIGNED_THRESHOLD,
        "crop": dataclasses.asdict(proposal),
        "edge_warnings": warnings,
        "solves_sha256": solves_digest(solved),
    }
