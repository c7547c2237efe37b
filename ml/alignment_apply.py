"""An alignment result into the recipe, and the dataset's check that it got there.

`align` solves into work_dir/align/align.json. What then lands in the recipe is decided here, once,
for both front doors: `ml align --apply` saves the job this returns, and the add-on's Solve
Alignment operator copies the same fields into the scene. The solves in job.alignment.solves are
the record that an alignment was applied; align.json carries a digest of its solves, so `dataset`
can tell a solve that exists on disk but never reached the job (`require_alignment_applied`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FilmRecoveryError
from .job import Job, Pair

ALIGN_FILE = ("align", "align.json")
APPLY_COMMAND = "python -m ml align job.json --apply"
_APPLY_FIX = f"Run `{APPLY_COMMAND}` (in Blender: Solve Alignment), then build the dataset again."
# The add-on stores matrices as float32 properties: a solve that went through the scene differs
# from align.json by float32 rounding (~6e-8 relative), well inside these tolerances.
_SAME_SOLVE_RTOL, _SAME_SOLVE_ATOL = 1e-6, 1e-6


def solves_digest(solves: Mapping[str, Sequence[float]]) -> str:
    """SHA-256 of a solves mapping in a canonical form (sorted keys, float values)."""
    canonical = {str(k): [float(v) for v in m] for k, m in solves.items()}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def apply_alignment_result(job: Job, result: Mapping[str, Any]) -> Job:
    """A copy of `job` with an `align` result applied, by the add-on's rules:

    - job.alignment.solves is replaced by the result's solves (failed frames are absent, so the
      dataset falls back to the global solve or the conform for them);
    - each pair the result scored gets its align_score (-1 when no score could be measured) and,
      when misaligned, "misaligned" added to its compromises once;
    - the proposed crop is taken only when the job has no crop enabled (an artist's crop wins) and
      the proposal is not empty; crop keys are left alone.
    """
    job = copy.deepcopy(job)
    job.alignment.solves = {str(k): [float(v) for v in m] for k, m in result.get("solves", {}).items()}
    scores = {int(p["source_frame"]): p for p in result.get("pairs", [])}
    for pair in job.pairs:
        scored = scores.get(pair.source_frame)
        if scored is None:
            continue
        pair.align_score = -1.0 if scored.get("align_score") is None else float(scored["align_score"])
        if scored.get("misaligned") and "misaligned" not in pair.compromises:
            pair.compromises = ", ".join(filter(None, [pair.compromises, "misaligned"]))
    proposal = result.get("crop") or {}
    if not job.crop.enabled and proposal.get("width", 0) > 0:
        job.crop.x, job.crop.y = int(proposal["x"]), int(proposal["y"])
        job.crop.width, job.crop.height = int(proposal["width"]), int(proposal["height"])
        job.crop.enabled = True
    return job


def same_solves(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]]) -> bool:
    """The same frames solved with the same matrices (up to the add-on's float32 storage)."""
    if set(a) != set(b):
        return False
    return all(np.allclose(np.asarray(a[k], np.float64), np.asarray(b[k], np.float64),
                           rtol=_SAME_SOLVE_RTOL, atol=_SAME_SOLVE_ATOL) for k in a)


def _solved_on_disk(path: Path) -> dict[str, list[float]]:
    """The solves align.json holds ({} when there is no align.json)."""
    if not path.exists():
        return {}
    try:
        solves = json.loads(path.read_text(encoding="utf-8")).get("solves", {})
        return {str(k): [float(v) for v in m] for k, m in solves.items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise FilmRecoveryError(f"cannot read the alignment results ({exc}).", where=str(path),
                                fix=f"Run `{APPLY_COMMAND}` to solve and apply the alignment again.") from exc


def no_alignment_warning(frames: Mapping[str, Mapping[str, Any]], limit: int = 240) -> str:
    """An `align` result's warning when no frame could be aligned ('' when any was): the first
    frame's reason and what to do. The CLI prints it, Solve Alignment shows it in the panel."""
    if not frames or any(info.get("status") != "failed" for info in frames.values()):
        return ""
    reason = _shortened(str(next(iter(frames.values())).get("message", "")) or "failed", limit)
    # The advice first: the panel shows a line's first 110 characters.
    return ("No frame could be aligned: check the Reference frames show the same picture, or use Key Manual Warp. "
            f"Until then the pairs keep the conform. Why: {reason}")


def _frames_text(frames: Sequence[int]) -> str:
    shown = ", ".join(map(str, frames[:8]))
    return shown + (f" and {len(frames) - 8} more" if len(frames) > 8 else "")


def require_alignment_applied(job: Job, pairs: Sequence[Pair]) -> None:
    """Refuse a dataset that would silently skip the alignment, naming the command that fixes it.

    1. work_dir/align/align.json holds solves that job.alignment.solves does not: `align` ran, but
       nothing applied its result to the job (the CLI's `align` without --apply).
    2. An accepted pair has no warp at all (no per-frame, global or switched-on manual solve) while
       the Reference is not on the Source raster (another size, pixel aspect or a conform that is
       not the identity): the plain conform would go into training unchecked.
    """
    if job.work_dir:
        path = job.work_path(*ALIGN_FILE)
        solved = _solved_on_disk(path)
        if solved and not same_solves(solved, job.alignment.solves):
            held = ("no warps" if not job.alignment.solves else
                    f"{len(job.alignment.solves)} other warp(s)")
            raise FilmRecoveryError(
                f"the alignment was solved ({len(solved)} warp(s) here) but never applied: job.alignment.solves "
                f"holds {held}, so the dataset would be built without it.", where=str(path), fix=_APPLY_FIX)

    from .dataset import pair_matrix  # dataset imports this module: import at call time
    from .ingest import plate_size

    ref_w, ref_h = plate_size(job.reference)
    src_w, src_h = plate_size(job.source)
    unsolved = []
    for pair in pairs:
        matrix, origin = pair_matrix(job, pair, (ref_h, ref_w), (src_h, src_w))
        if origin == "conform" and not np.allclose(matrix, np.eye(3), atol=1e-9):
            unsolved.append(pair.source_frame)
    if unsolved:
        failed = _failed_solves(job, unsolved)
        raise FilmRecoveryError(
            f"accepted pair(s) {_frames_text(unsolved)} have no alignment (no per-frame, global or manual warp) "
            f"and the Reference ({ref_w}x{ref_h}, pixel aspect {job.reference.pixel_aspect:g}) is not on the "
            f"Source raster ({src_w}x{src_h}, pixel aspect {job.source.pixel_aspect:g}, conform "
            f"'{job.conform.mode}'): the dataset would train on the unaligned conform."
            + (f" `align` ran and could not solve them: {failed}" if failed else ""),
            where="job.alignment.solves", fix=_UNSOLVABLE_FIX if failed else _APPLY_FIX)


_UNSOLVABLE_FIX = ("Check that those Reference frames show the same picture (the pair's sync), then align them by "
                   "hand (in Blender: Key Manual Warp on each; in job.json: alignment.manual and use_manual), or "
                   "accept pairs with more picture structure and run the alignment again; then build the dataset.")


def _failed_solves(job: Job, frames: Sequence[int], limit: int = 240) -> str:
    """The reason align.json gives for the first of `frames` it tried and failed ('' when none failed there)."""
    if not job.work_dir:
        return ""
    try:
        solved = json.loads(job.work_path(*ALIGN_FILE).read_text(encoding="utf-8")).get("frames", {})
    except (OSError, ValueError, AttributeError):
        return ""
    for frame in frames:
        info = solved.get(str(frame)) or {}
        if info.get("status") == "failed":
            return f"frame {frame}: " + _shortened(str(info.get("message", "")) or "failed", limit)
    return ""


def _shortened(text: str, limit: int) -> str:
    return text[:limit] + ("..." if len(text) > limit else "")
