"""Checks of a whole job that need more than one field, or the plate folders, but decode no frame.

`load_job` already checks each field on its own (type, range, list length, NaN/Inf). This module
checks what only the job as a whole can tell: frames present for the plate ranges, pairs inside the
plates and unique, warps that are finite and invertible, the crop inside the Source raster, an
initial-weights model that exists. Every engine command runs these checks before any work (the CLI
and the add-on alike), so a bad job fails in well under a second, naming the field and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import FilmRecoveryError, JobFileError
from .imageio import frame_path, is_sequence
from .job import Crop, Job, Plate

# The checks a command may skip because the command itself replaces or reports on what they check.
CHECKS = ("work_dir", "source", "reference", "frames", "pairs", "solves", "crop", "init_weights")
SKIPPED_BY_COMMAND: dict[str, tuple[str, ...]] = {
    "qc": ("frames",),               # QC lists missing frames among its findings
    "suggest": ("pairs",),           # --apply replaces the pairs
    "match": ("pairs",),
    "pairs": ("pairs",),             # imports a pair table
    "align": ("solves",),            # --apply replaces the solves
    "run": ("pairs", "solves"),      # checks each stage as it comes; suggest and align replace these
    # These read the dataset and the Source only: a farm node need not mount the Reference.
    "train": ("source", "reference"),
    "infer": ("reference",),
    "baseline": ("reference",),
    "evaluate": ("reference",),
}
_MAX_LISTED = 5
# No real transfer is scaled by less than 1/100 (or more than 100x) in each direction.
_MIN_AREA_SCALE = 1e-4


def _listed(frames: list[int]) -> str:
    shown = ", ".join(map(str, frames[:_MAX_LISTED]))
    return shown + (f" and {len(frames) - _MAX_LISTED} more" if len(frames) > _MAX_LISTED else "")


def _plate_problems(name: str, plate: Plate, check_frames: bool) -> list[FilmRecoveryError]:
    where = f"job.{name}"
    if not plate.path:
        return [JobFileError("no plate path set.", where=f"{where}.path",
                             fix="Set the image sequence pattern (#### or %04d) or the movie file.")]
    if plate.last_frame < plate.first_frame:
        return [JobFileError(f"last_frame {plate.last_frame} is before first_frame {plate.first_frame}.",
                             where=where, fix=f"Set {where}.first_frame and last_frame to the plate's range.")]
    if not is_sequence(plate.path):
        if plate.first_frame != plate.last_frame and not _is_movie(plate.path):
            return [JobFileError("the path has no frame number (#### or %04d) but the range has several "
                                 "frames.", where=f"{where}.path", fix="Use a frame pattern such as shot.####.exr.")]
        if not os.path.isfile(plate.path):
            return [JobFileError("the file does not exist.", where=plate.path, fix=f"Check {where}.path.")]
        return []
    folder = Path(frame_path(plate.path, plate.first_frame)).parent
    try:
        present = set(os.listdir(folder))
    except OSError:
        return [JobFileError("the plate folder does not exist or cannot be read.", where=str(folder),
                             fix=f"Check {where}.path.")]
    frames = range(plate.first_frame, plate.last_frame + 1)
    missing = [f for f in frames if Path(frame_path(plate.path, f)).name not in present]
    if not check_frames and len(missing) < len(frames):
        return []
    if missing:
        return [JobFileError(f"frame{'s' if len(missing) > 1 else ''} {_listed(missing)} missing "
                             f"({len(missing)} of {len(frames)} frames).", where=plate.path,
                             fix=f"Re-export the missing frames, or set {where}.first_frame/last_frame to "
                                 "the frames that exist.")]
    return []


def _is_movie(path: str) -> bool:
    from .ingest import is_movie

    return is_movie(path)


def _pair_problems(job: Job) -> list[FilmRecoveryError]:
    problems: list[FilmRecoveryError] = []
    seen: dict[int, int] = {}
    for index, pair in enumerate(job.pairs):
        where = f"job.pairs[{index}]"
        if not pair.accepted:
            continue
        for side, frame, plate in (("source", pair.source_frame, job.source),
                                   ("reference", pair.reference_frame, job.reference)):
            if plate.path and not plate.first_frame <= frame <= plate.last_frame:
                problems.append(JobFileError(
                    f"{side} frame {frame} is outside the {side} plate ({plate.first_frame}-{plate.last_frame}).",
                    where=f"{where}.{side}_frame",
                    fix="Pick a frame inside the plate, or reject the pair (`python -m ml suggest job.json "
                        "--apply` rebuilds the list)."))
        if pair.source_frame in seen:
            problems.append(JobFileError(
                f"Source frame {pair.source_frame} is listed twice (also job.pairs[{seen[pair.source_frame]}]); "
                "it would count twice in the dataset.", where=where,
                fix="Remove the duplicate pair or reject it with a reason."))
        seen.setdefault(pair.source_frame, index)
    return problems


def _matrix_problems(name: str, matrices: dict[str, list[float]], allow_global: bool
                     ) -> list[FilmRecoveryError]:
    problems: list[FilmRecoveryError] = []
    fix = "Solve the alignment again (`python -m ml align job.json --apply`) or remove this entry."
    for key, values in matrices.items():
        where = f"job.alignment.{name}.{key}"
        if not (key.lstrip("-").isdigit() or (allow_global and key == "global")):
            problems.append(JobFileError(f"key {key!r} is not a Source frame number"
                                         f"{' or global' if allow_global else ''}.", where=where, fix=fix))
            continue
        matrix = np.asarray(values, dtype=np.float64).reshape(3, 3)
        # Area scale of the warp at the origin: det(M) / M[2,2]^3 (exact for affine warps). A warp
        # that squashes the Reference to a line or a point is not invertible for warping.
        area = abs(np.linalg.det(matrix)) / abs(matrix[2, 2]) ** 3 if matrix[2, 2] != 0 else 0.0
        if not _MIN_AREA_SCALE <= area <= 1 / _MIN_AREA_SCALE:
            problems.append(JobFileError(f"the matrix is singular or degenerate (area scale {area:.3g}): it "
                                         "cannot map the Reference onto the Source.", where=where, fix=fix))
    return problems


def _crop_problems(job: Job, source_size: tuple[int, int] | None) -> list[FilmRecoveryError]:
    crop: Crop = job.crop
    if not crop.enabled:
        return []
    problems: list[FilmRecoveryError] = []
    boxes = [("job.crop", crop.x, crop.y, crop.width, crop.height)]
    boxes += [(f"job.crop.keys[{i}]", k.x, k.y, k.width, k.height) for i, k in enumerate(crop.keys)]
    for where, x, y, width, height in boxes:
        if width <= 0 or height <= 0:
            problems.append(JobFileError(f"the crop is empty ({width}x{height}).", where=where,
                                         fix="Set a width and height above 0, or turn the crop off."))
            continue
        if source_size is None:
            continue
        src_w, src_h = source_size
        if x + width > src_w or y + height > src_h:
            problems.append(JobFileError(
                f"the crop x {x}, y {y}, {width}x{height} reaches outside the {src_w}x{src_h} Source raster "
                f"(right edge {x + width}, top edge {y + height}).", where=where,
                fix="Move or shrink the crop to fit inside the Source (Align & Crop: Detect Crop, or "
                    "`python -m ml align job.json --apply` proposes one)."))
    return problems


def job_problems(job: Job, skip: Iterable[str] = ()) -> list[FilmRecoveryError]:
    """Every problem found in the job (empty: fine). `skip` names checks of CHECKS to leave out."""
    skip = set(skip)
    problems: list[FilmRecoveryError] = []
    if "work_dir" not in skip and not job.work_dir:
        problems.append(JobFileError("work_dir is empty.", where="job.work_dir",
                                     fix="Set a work directory in the add-on preferences or job.json."))
    source_ok = "source" not in skip
    for name, plate in (("source", job.source), ("reference", job.reference)):
        if name not in skip:
            found = _plate_problems(name, plate, check_frames="frames" not in skip)
            source_ok = source_ok and not (found and name == "source")
            problems += found
    if "pairs" not in skip:
        problems += _pair_problems(job)
    if "solves" not in skip:
        problems += _matrix_problems("solves", job.alignment.solves, allow_global=True)
    problems += _matrix_problems("manual", job.alignment.manual, allow_global=False)
    for frame in job.alignment.use_manual:
        if str(frame) not in job.alignment.manual:
            problems.append(JobFileError(f"frame {frame} is switched to its manual warp but has none.",
                                         where="job.alignment.use_manual",
                                         fix="Key a manual nudge on that frame or switch it back to auto."))
    if "crop" not in skip:
        source_size = None
        if source_ok and job.crop.enabled:
            from .ingest import plate_size

            try:
                source_size = plate_size(job.source)
            except FilmRecoveryError as exc:
                problems.append(exc)
        problems += _crop_problems(job, source_size)
    weights = job.training.init_weights
    if "init_weights" not in skip and weights and not Path(weights).with_suffix(".json").is_file():
        problems.append(JobFileError("the initial-weights model (or its .json sidecar) does not exist.",
                                     where=weights, fix="Pick a model written by Film Recovery training, or clear "
                                                        "job.training.init_weights."))
    return problems


def require_valid_job(job: Job, command: str = "") -> None:
    """Raise the first problem (saying how many more there are) before a command does any work."""
    problems = job_problems(job, SKIPPED_BY_COMMAND.get(command, ()))
    if not problems:
        return
    first = problems[0]
    more = f" ({len(problems) - 1} more problem{'s' if len(problems) > 2 else ''}: " \
           "`python -m ml validate job.json` lists them all.)" if len(problems) > 1 else ""
    raise JobFileError(first.problem + more, where=first.where, fix=first.fix)
