"""Stage 3: ground truth and the training dataset, with provenance.

For each accepted pair: the Source frame (ingest, balance, optional training degrain) and the
Reference frame (ingest, clean-up) warped onto the Source raster, both cut by the one shared crop
(the guide's CopyBBox: identical boxes), converted to YCbCr with the same chain, and recombined:

    chroma:  target = Source Y    + Reference CbCr
    spatial: target = Reference Y + Source CbCr

then a light safety clamp to 0..1. Input and target are written as half EXR with a manifest that
records frames, warps, crop, colour settings, checksums and the rejected pairs with reasons.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import colour
from .alignment_apply import require_alignment_applied
from .crop import Borders, crop_at_frame, crop_to_slices, detect_borders, live_mask
from .errors import FilmRecoveryError
from .guide import GuidePlanner, coverage
from .imageio import atomic_path, file_sha256, read_image, write_exr
from .ingest import plate_frame_path, reference_frame, source_frame
from .job import Job, Pair, as_stored, job_to_dict
from .qc import require_qc_pass
from .warp import as_matrix, valid_mask, warp_to_source

DATASET_SCHEMA = "film_recovery.dataset"
DATASET_VERSION = 1
# Half floats keep ~3 significant digits: the "unchanged" channels may differ by this after a write.
HALF_TOLERANCE = 2e-3


def recombine(source_rgb: np.ndarray, aligned_reference_rgb: np.ndarray, branch: str) -> np.ndarray:
    """Source and aligned Reference recombined in YCbCr (BT.709 full range), before the clamp."""
    if branch not in ("chroma", "spatial"):
        raise FilmRecoveryError(f"unknown branch {branch!r}.", where="job.branch",
                                fix="Choose 'chroma' or 'spatial'; build one target per pass.")
    src = colour.rgb_to_ycbcr(source_rgb)
    ref = colour.rgb_to_ycbcr(aligned_reference_rgb)
    target = src.copy()
    if branch == "chroma":
        target[..., 1:] = ref[..., 1:]
    else:
        target[..., 0] = ref[..., 0]
    return colour.ycbcr_to_rgb(target)


def build_target(source_rgb: np.ndarray, aligned_reference_rgb: np.ndarray, branch: str) -> np.ndarray:
    """The ground truth: the recombination with the guide's light safety clamp to 0..1."""
    return np.clip(recombine(source_rgb, aligned_reference_rgb, branch), 0.0, 1.0)


def pair_matrix(job: Job, pair: Pair, reference_shape: tuple[int, int], source_shape: tuple[int, int]
                ) -> tuple[np.ndarray, str]:
    """The warp for a pair (manual key if the frame is switched to manual, else the auto solve,
    else the global solve, else the plain conform) and where it came from."""
    key = str(pair.source_frame)
    alignment = job.alignment
    if pair.source_frame in alignment.use_manual and key in alignment.manual:
        return as_matrix(alignment.manual[key]), "manual"
    if key in alignment.solves:
        return as_matrix(alignment.solves[key]), "auto"
    if "global" in alignment.solves:
        return as_matrix(alignment.solves["global"]), "auto-global"
    from .ingest import conform_matrix

    ref_h, ref_w = reference_shape
    src_h, src_w = source_shape
    return as_matrix(conform_matrix(job.conform, (ref_w, ref_h), (src_w, src_h),
                                    job.reference.pixel_aspect, job.source.pixel_aspect)), "conform"


@dataclass
class PairImages:
    input: np.ndarray
    target: np.ndarray
    clamped: np.ndarray  # pixels the 0..1 safety clamp changed
    aligned_reference: np.ndarray
    valid: np.ndarray
    coverage: np.ndarray  # where a reference-guided model may take the aligned Reference (ml.guide)
    matrix: np.ndarray
    matrix_source: str
    crop_box: tuple[int, int, int, int]  # x, y, width, height (lower-left origin)
    source_size: tuple[int, int]  # the whole Source frame's (width, height)
    # Bars found on this pair's whole frames (top, bottom, left, right): a bar is one in every frame,
    # so `bar_problems` judges the crop against the smallest over all pairs.
    source_borders: Borders = (0, 0, 0, 0)
    reference_borders: Borders = (0, 0, 0, 0)
    reference_shape: tuple[int, int] = (0, 0)


def make_pair_images(job: Job, pair: Pair) -> PairImages:
    """Input and ground truth for one pair, cropped identically (nothing written)."""
    src = source_frame(job, pair.source_frame, balanced=True, degrained=job.cleanup.source_degrain > 0)
    ref = reference_frame(job, pair.reference_frame, cleaned=True)
    matrix, origin = pair_matrix(job, pair, ref.shape[:2], src.shape[:2])
    aligned = warp_to_source(ref, matrix, src.shape)
    valid = valid_mask(matrix, ref.shape, src.shape)
    crop = crop_at_frame(job.crop, pair.source_frame)
    rows, cols = crop_to_slices(crop, src.shape[0], src.shape[1])
    box = (cols.start, src.shape[0] - rows.stop, cols.stop - cols.start, rows.stop - rows.start)
    unclamped = recombine(src[rows, cols], aligned[rows, cols], job.branch)
    clamped = np.any((unclamped < 0.0) | (unclamped > 1.0), axis=-1)
    ref_borders = detect_borders([ref])
    cover, _ = coverage(src, aligned, matrix, ref.shape[:2], ref_borders)
    return PairImages(src[rows, cols], np.clip(unclamped, 0.0, 1.0), clamped, aligned[rows, cols],
                      valid[rows, cols], cover[rows, cols], matrix, origin, box, (src.shape[1], src.shape[0]),
                      detect_borders([src]), ref_borders, ref.shape[:2])


def validate_pair(name: str, images: PairImages) -> list[str]:
    """Problems that would poison training, each naming the pair and the fix (empty: fine)."""
    problems = []
    if images.input.shape != images.target.shape:
        problems.append(f"{name}: input {images.input.shape} and target {images.target.shape} differ in size.")
    if images.input.size == 0:
        problems.append(f"{name}: the crop is empty. Fix: set the shared crop (Align & Crop panel).")
        return problems
    for label, image in (("input", images.input), ("target", images.target)):
        if not np.isfinite(image).all():
            problems.append(f"{name}: {label} has NaN/Inf pixels. Fix: run QC and repair the frame.")
    invalid = 1.0 - float(images.valid.mean())
    if invalid > 0.001:
        problems.append(f"{name}: {invalid:.1%} of the crop has no Reference picture (warp border). "
                        "Fix: shrink the shared crop (Detect Crop) or check the alignment.")
    return problems


def _without_pixels(images: PairImages) -> PairImages:
    """What `bar_problems` needs of a pair, without holding its pictures until every pair is done."""
    return dataclasses.replace(images, input=images.input[:0], target=images.target[:0],
                               clamped=images.clamped[:0], aligned_reference=images.aligned_reference[:0],
                               valid=images.valid[:0], coverage=images.coverage[:0])


def _box_to_slices(box: tuple[int, int, int, int], height: int) -> tuple[slice, slice]:
    x, y, width, box_height = box
    return slice(height - y - box_height, height - y), slice(x, x + width)


def bar_problems(frames: list[int], pairs: list[PairImages]) -> list[FilmRecoveryError]:
    """Black bars (letterbox, pillarbox) inside the crop, judged over every pair at once.

    A bar is near black and the same in every frame (`crop.detect_borders` over several frames),
    so a flat mid-grey edge, or a night edge that is dark in some frames only, is picture. The
    Reference's bars are found on its own raster and carried through each pair's warp, as `align`
    does when it proposes the crop."""
    source_bars = tuple(min(p.source_borders[i] for p in pairs) for i in range(4))
    reference_bars = tuple(min(p.reference_borders[i] for p in pairs) for i in range(4))
    fix = "Shrink the shared crop to the live picture (Detect Crop, or `python -m ml align job.json --apply`)."
    problems = []
    for frame, images in zip(frames, pairs, strict=True):
        width, height = images.source_size
        rows, cols = _box_to_slices(images.crop_box, height)
        top, bottom, left, right = source_bars
        inside = (max(0, top - rows.start), max(0, rows.stop - (height - bottom)),
                  max(0, left - cols.start), max(0, cols.stop - (width - right)))
        if max(inside) > 0:
            problems.append(FilmRecoveryError(
                f"black border inside the crop on the Source (top {inside[0]}, bottom {inside[1]}, left "
                f"{inside[2]}, right {inside[3]} px).", where=f"pair {frame}", fix=fix))
        warped = valid_mask(images.matrix, images.reference_shape, (height, width))[rows, cols]
        live = live_mask(images.matrix, images.reference_shape, (height, width), reference_bars)[rows, cols]
        barred = float(warped.mean() - (live & warped).mean())
        if barred > 0.001:
            problems.append(FilmRecoveryError(f"the Reference's black bars cover {barred:.1%} of the crop.",
                                              where=f"pair {frame}", fix=fix))
    return problems


def unchanged_channel_error(input_rgb: np.ndarray, target_rgb: np.ndarray, branch: str,
                            clamped: np.ndarray) -> float:
    """Largest difference on the channels the branch keeps from the Source (Y for chroma, CbCr for
    spatial), over the pixels the safety clamp left alone (`clamped` marks the others)."""
    keep = slice(0, 1) if branch == "chroma" else slice(1, 3)
    diff = np.abs(colour.rgb_to_ycbcr(input_rgb)[..., keep] - colour.rgb_to_ycbcr(target_rgb)[..., keep])
    untouched = ~clamped
    return float(diff[untouched].max()) if untouched.any() else 0.0


@functools.lru_cache(maxsize=256)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def _plate_file_sha256(path: str) -> str:
    """A plate file's hash, once per file (a movie holds every frame: hash it once, not per pair)."""
    stat = os.stat(path)
    return _cached_sha256(path, stat.st_size, stat.st_mtime_ns)


def _holdout(job: Job, pair: Pair, index: int) -> bool:
    every = job.training.holdout_every
    return pair.holdout or (every > 0 and index % every == every - 1)


def _check_single_branch(out_dir: Path, job: Job) -> None:
    manifest = out_dir / "manifest.json"
    if not manifest.exists():
        return
    earlier = json.loads(manifest.read_text())
    if earlier.get("branch") not in (None, job.branch) and earlier.get("source_plate") == job.source.path:
        raise FilmRecoveryError(
            f"this dataset folder holds a {earlier['branch']} target for the same Source; a {job.branch} "
            "target must not be combined with it (one target build per branch).", where=str(manifest),
            fix="Validate the first pass, run inference, then point the Source plate at that pass's "
                "output and build the second pass into another dataset folder.")


def dataset_recipe(job: Job) -> dict:
    """The recipe fields that decide a dataset's pixels and pairs (notes, scores and training
    settings do not): recorded in the manifest, so training can refuse a dataset of another recipe."""
    data = job_to_dict(job)
    return {"branch": job.branch, "source": data["source"], "reference": data["reference"],
            "conform": data["conform"], "balance": data["balance"], "cleanup": data["cleanup"],
            "crop": data["crop"],
            "alignment": {k: data["alignment"][k] for k in ("solves", "manual", "use_manual")},
            "pairs": [[p.source_frame, p.reference_frame, p.holdout] for p in job.pairs if p.accepted],
            "holdout_every": job.training.holdout_every}


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def recipe_changes(recorded: dict, current: dict) -> list[str]:
    """The recipe fields (dotted names) whose values differ between two `dataset_recipe`s, their numbers
    compared as job files are read (32-bit: a manifest written before that reading still matches)."""
    before, after = _flatten(as_stored(recorded)), _flatten(as_stored(current))
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# What an export folder holds; anything else there is the user's, and is never swapped away.
_DATASET_ENTRIES = {"input", "target", "guide", "coverage", "manifest.json"}


def _staging_names(out: Path) -> tuple[Path, Path]:
    return out.parent / f".{out.name}.staging", out.parent / f".{out.name}.previous"


def _fresh_staging_folder(out: Path) -> Path:
    """An empty folder beside `out` to export into. A folder left by an interrupted export (and the
    previous dataset of an interrupted swap) is removed first."""
    if out.exists() and not out.is_dir():
        raise FilmRecoveryError("the dataset path is a file, not a folder.", where=str(out),
                                fix="Choose a dataset folder (job.dataset_dir or --out).")
    if out.is_dir():
        foreign = sorted(set(os.listdir(out)) - _DATASET_ENTRIES)
        if foreign:
            raise FilmRecoveryError(f"the dataset folder holds other files ({', '.join(foreign[:3])}); an export "
                                    "replaces the folder whole.", where=str(out),
                                    fix="Choose an empty or dataset-only folder (job.dataset_dir or --out).")
    staging, previous = _staging_names(out)
    for stale in (staging, previous):
        if stale.exists():
            shutil.rmtree(stale)
    staging.mkdir(parents=True)
    return staging


def _swap_in(staging: Path, out: Path) -> None:
    """Replace `out` by the finished export in two renames, so a reader sees the old dataset or the
    new one, never a mix."""
    _, previous = _staging_names(out)
    if out.exists():
        os.replace(out, previous)
    os.replace(staging, out)
    if previous.exists():
        shutil.rmtree(previous)


def check_dataset_recipe(folder: Path, manifest: dict, job: Job) -> str | None:
    """Refuse a dataset exported with another recipe, naming what changed; returns a warning for a
    manifest that records no recipe (hand-made or from an older version), None otherwise."""
    recorded = manifest.get("recipe")
    if not isinstance(recorded, dict):
        return (f"{folder / 'manifest.json'} records no recipe (made by hand or by an older version): "
                "cannot check that it matches this job.")
    changed = recipe_changes(recorded, dataset_recipe(job))
    if changed:
        listed = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise FilmRecoveryError(f"the dataset was exported with another recipe (changed since: {listed}).",
                                where=str(folder / "manifest.json"),
                                fix="Export the dataset again: `python -m ml dataset job.json` (Export Dataset "
                                    "in the Ground Truth panel).")
    return None


def export_dataset(job: Job, reporter=None, out_dir: str | Path | None = None) -> dict:
    """Write input/target EXRs and manifest.json for the accepted pairs; returns the manifest."""
    out = Path(out_dir or job.dataset_dir or job.work_path("dataset"))
    accepted = [p for p in job.pairs if p.accepted]
    if not accepted:
        raise FilmRecoveryError("no accepted pairs.", where="job.pairs",
                                fix="Add pairs (Pairs panel: Add Current Frame or Suggest Pairs) and accept some.")
    _check_single_branch(out, job)
    require_alignment_applied(job, accepted)
    require_qc_pass(job, reporter)
    staging = _fresh_staging_folder(out)
    records = _export_pairs(job, reporter, staging, accepted)
    manifest = _manifest(job, records)
    if manifest["coding_blocks"] and reporter is not None:
        reporter.message("The Reference shows video coding blocks (an 8 px grid): the baseline and the model "
                         "take from it only colour coarser than its blocks.")
    elif manifest["half_chroma"] and reporter is not None:
        reporter.message("The Reference's chroma has half its luma's resolution (4:2:0 video): the "
                         "baseline and the model take from it only colour at twice its pixel size.")
    if not any(r["holdout"] for r in records) and reporter is not None:
        reporter.message("No held-out pairs: training cannot report validation PSNR. "
                         "Mark pairs as hold-out or set training.holdout_every.", level="warning")
    with atomic_path(staging / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    _swap_in(staging, out)
    return manifest


def _export_pairs(job: Job, reporter, staging: Path, accepted: list[Pair]) -> list[dict]:
    """Every accepted pair's files into `staging`, four at a time; their manifest records, once the
    bars inside the crop are judged over all of them."""
    records, checked = [], []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for record, images in pool.map(lambda item: _export_pair(job, staging, *item), enumerate(accepted)):
            records.append(record)
            checked.append(images)
            if reporter is not None:
                reporter.progress(len(records), len(accepted), "dataset", f"pair {record['source_frame']}")
    problems = bar_problems([r["source_frame"] for r in records], checked)
    if problems:
        more = f" ({len(problems) - 1} more in other pairs.)" if len(problems) > 1 else ""
        raise FilmRecoveryError(problems[0].problem + more, where=problems[0].where, fix=problems[0].fix)
    return records


def _export_pair(job: Job, staging: Path, index: int, pair: Pair) -> tuple[dict, PairImages]:
    """One pair: its images made, checked and written; (its manifest record, its images without pixels)."""
    name = f"pair_{pair.source_frame:06d}"
    images = make_pair_images(job, pair)
    problems = validate_pair(name, images)
    if problems:
        problem, _, fix = problems[0].partition(" Fix: ")
        more = f" ({len(problems) - 1} more problem(s) on this pair.)" if len(problems) > 1 else ""
        raise FilmRecoveryError(problem.removeprefix(f"{name}: ") + more, where=f"pair {pair.source_frame}",
                                fix=fix or None)
    paths = _write_pair(job, staging, name, pair, images)
    written_error = unchanged_channel_error(read_image(paths["input"]), read_image(paths["target"]), job.branch,
                                            images.clamped)
    return _pair_record(job, index, pair, images, paths, written_error), _without_pixels(images)


def _write_pair(job: Job, staging: Path, name: str, pair: Pair, images: PairImages) -> dict[str, Path]:
    """The pair's input, target, aligned Reference and coverage EXRs; role -> path."""
    attrs = {"film_recovery:branch": job.branch, "film_recovery:source_frame": pair.source_frame,
             "film_recovery:reference_frame": pair.reference_frame, "colorInteropID": "g24_rec709_display"}
    # The aligned Reference and its coverage: what a reference-guided model sees (ml.guide).
    pixels = {"input": images.input, "target": images.target, "guide": images.aligned_reference,
              "coverage": images.coverage}
    paths = {role: staging / role / f"{name}.exr" for role in pixels}
    for role, image in pixels.items():
        write_exr(paths[role], image, attributes={**attrs, "film_recovery:role": role})
    return paths


def _pair_record(job: Job, index: int, pair: Pair, images: PairImages, paths: dict[str, Path],
                 written_error: float) -> dict:
    """The manifest's entry for one written pair."""
    name = paths["input"].stem
    return {"name": name, "source_frame": pair.source_frame, "reference_frame": pair.reference_frame,
            "input": f"input/{name}.exr", "target": f"target/{name}.exr",
            "guide": f"guide/{name}.exr", "coverage": f"coverage/{name}.exr",
            "guide_coverage": float(images.coverage.mean()),
            "holdout": _holdout(job, pair, index), "shot": pair.shot, "label": pair.label,
            "rationale": pair.rationale, "align_score": pair.align_score,
            "matrix": images.matrix.reshape(-1).tolist(), "matrix_source": images.matrix_source,
            "crop": dict(zip(("x", "y", "width", "height"), images.crop_box, strict=True)),
            "size": [int(images.input.shape[1]), int(images.input.shape[0])],
            "source_size": list(images.source_size),
            "unchanged_channel_max_error": written_error,
            "clamped_fraction": float(images.clamped.mean()),
            "checksums": {"input": file_sha256(paths["input"]), "target": file_sha256(paths["target"]),
                          "guide": file_sha256(paths["guide"]), "coverage": file_sha256(paths["coverage"]),
                          "source_file": _plate_file_sha256(plate_frame_path(job.source, pair.source_frame)),
                          "reference_file": _plate_file_sha256(plate_frame_path(job.reference, pair.reference_frame))}
            }


def _manifest(job: Job, records: list[dict]) -> dict:
    """The dataset's manifest: its pairs, the rejected ones, and the recipe and colour settings."""
    from . import __version__

    job_dict = job_to_dict(job)
    planner = GuidePlanner(job) if job.branch == "chroma" and job.reference.path else None
    return {
        "schema": DATASET_SCHEMA, "version": DATASET_VERSION, "engine": __version__,
        "branch": job.branch, "source_plate": job.source.path, "reference_plate": job.reference.path,
        "pairs": records,
        # A block-coded Reference (`guide.coding_block_phase`): its colour is trusted only coarser than its
        # blocks; one with half-resolution chroma (`guide.is_half_chroma`) only at twice its pixel size.
        "coding_blocks": bool(planner and planner.blocky), "half_chroma": bool(planner and planner.half_chroma),
        "preview": records[len(records) // 2]["input"],
        "rejected": [{"source_frame": p.source_frame, "reference_frame": p.reference_frame, "reason": p.reason}
                     for p in job.pairs if not p.accepted],
        "crop": job_dict["crop"], "alignment": {k: job_dict["alignment"][k] for k in ("model", "mode", "roi")},
        "colour": {"config": colour.OCIO_CONFIG, "source_ingest": job.source.ingest,
                   "reference_ingest": job.reference.ingest, "ycbcr": "BT.709 full range",
                   "balance": job_dict["balance"], "cleanup": job_dict["cleanup"]},
        "job_hash": hashlib.sha256(json.dumps(job_dict, sort_keys=True).encode()).hexdigest(),
        "recipe": dataset_recipe(job), "recipe_hash": recipe_hash(dataset_recipe(job)),
    }
