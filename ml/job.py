"""The recipe as a schema-versioned `job.json`: every engine command reads one.

The add-on serialises its scene recipe into this shape; batch and farm runs write it by hand
or with `python -m ml init`. Loading validates every field and names the one that is wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import struct
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import JobFileError

SCHEMA = "film_recovery.job"
SCHEMA_VERSION = 1

IngestPreset = Literal["display", "aces2065-1"]
Branch = Literal["chroma", "spatial"]
MotionModel = Literal["translation", "similarity", "affine", "perspective"]


def _field(default: Any, doc: str, *, low: float | None = None, high: float | None = None,
           length: int | None = None, choices: tuple | None = None, added: bool = False) -> Any:
    """A schema field with its documentation and its valid range (checked on load, drawn as the
    add-on's slider limits, listed in docs/job-format.md): `low`/`high` bound numbers (and every
    number in a list), `length` fixes a list's size, `choices` lists the allowed values. `added`:
    the field came after job files were in use, so a file without it takes the default (every
    other field must be present)."""
    metadata = {"doc": doc, "low": low, "high": high, "length": length, "choices": choices, "added": added}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Plate:
    """A Source or Reference: an image sequence pattern (#### or %04d) or a movie file."""

    path: str = _field("", "Image sequence pattern (`####` or `%04d` for the frame number) or movie file.")
    first_frame: int = _field(1, "First frame number (a movie's frame 0).", low=0)
    last_frame: int = _field(1, "Last frame number, inclusive.", low=0)
    ingest: IngestPreset = _field("display", "`display`: a display-referred export (Rec.709 2.4 ODT, 0-1); "
                                  "`aces2065-1`: an ACES master, taken through the ACES 1.3 Rec.709 view.")
    fps: float = _field(24.0, "Frame rate.", low=1.0, high=1000.0)
    pixel_aspect: float = _field(1.0, "Pixel aspect ratio (anamorphic SD: e.g. 1.0926 for PAL 4:3).",
                                 low=0.1, high=10.0)


@dataclass
class Conform:
    """How the Reference raster is placed onto the Source raster (pixels, Source space)."""

    mode: Literal["fit", "fill", "stretch", "none"] = _field(
        "fit", "Placement of the Reference picture on the Source raster before alignment.")
    scale_x: float = _field(1.0, "Extra horizontal scale after the placement.", low=0.01, high=100.0)
    scale_y: float = _field(1.0, "Extra vertical scale after the placement.", low=0.01, high=100.0)
    offset_x: float = _field(0.0, "Extra horizontal offset, Source pixels.", low=-1e5, high=1e5)
    offset_y: float = _field(0.0, "Extra vertical offset, Source pixels (y up).", low=-1e5, high=1e5)


@dataclass
class Balance:
    """Neutral pre-balance of the Source: out = in * gain + offset, per channel."""

    enabled: bool = _field(False, "Apply the pre-balance to the Source (training, inference, node view).")
    gain: list[float] = _field([1.0, 1.0, 1.0], "R, G, B gain.", low=0.01, high=100.0, length=3)
    offset: list[float] = _field([0.0, 0.0, 0.0], "R, G, B offset, added after the gain.",
                                 low=-1.0, high=1.0, length=3)


@dataclass
class Cleanup:
    """Reference clean-up and optional Source degrain for training (never on the plates)."""

    reference_median: int = _field(0, "Median filter size on the Reference's chroma (0 off, 3 or 5).",
                                   choices=(0, 3, 5))
    reference_denoise: float = _field(0.0, "Reference chroma denoise strength (0 off).", low=0.0, high=20.0)
    reference_deband: float = _field(0.0, "Reference chroma deband: smooths steps below strength/255 "
                                     "(0 off).", low=0.0, high=64.0)
    reference_dust: bool = _field(False, "Remove single-frame dust specks from the Reference.")
    source_degrain: float = _field(0.0, "Source degrain for training and inference input, Gaussian sigma "
                                   "in pixels (0 off); never written to the plates.", low=0.0, high=10.0)


@dataclass
class Pair:
    source_frame: int = _field(1, "Source frame number (inside the Source plate's range).", low=0)
    reference_frame: int = _field(1, "Reference frame number (inside the Reference plate's range).", low=0)
    accepted: bool = _field(True, "Train on this pair (rejected pairs keep their reason).")
    reason: str = _field("", "Why the pair was rejected.")
    timecode: str = _field("", "Source timecode, for the pair table.")
    shot: str = _field("", "Shot name.")
    label: str = _field("", "Free label.")
    rationale: str = _field("", "Why the pair was chosen.")
    reference_type: Literal["telecine", "dvd", "print", "scan", "constructed"] = _field(
        "telecine", "What the Reference frame comes from.")
    compromises: str = _field("", "Known compromises (e.g. misaligned).")
    holdout: bool = _field(False, "Keep out of training; used for validation.")
    align_score: float = _field(-1.0, "Residual misalignment in pixels after alignment (-1: not measured).",
                                low=-1.0, high=1e6)


@dataclass
class Alignment:
    """Reference→Source warps. Matrices are 3x3 row-major, Source pixel = M @ Reference pixel."""

    model: MotionModel = _field("affine", "Motion model of the shot's matrix (per-frame mode tracks a similarity "
                                "on top of it). Affine by default: a transfer's scale differs per axis "
                                "(anamorphic or SD pixels, telecine geometry), which a similarity cannot follow.")
    mode: Literal["global", "per_frame"] = _field(
        "global", "One matrix for the shot, or per-frame tracking (gate weave) on top of it.")
    roi: float = _field(0.6, "Central fraction of the frame used to solve.", low=0.05, high=1.0)
    smoothing: int = _field(5, "Per-frame mode: frames in the window that smooths the weave.", low=0, high=1000)
    solves: dict[str, list[float]] = _field(
        {}, "Solved warps: Source frame number (or `global`) to 9 numbers, row-major 3x3, finite and "
            "invertible. Written by `align --apply` or the Solve Alignment button.", length=9)
    manual: dict[str, list[float]] = _field({}, "Manual warps keyed like `solves`.", length=9)
    use_manual: list[int] = _field([], "Source frames that use their manual warp instead of the solve.")


@dataclass
class CropKey:
    frame: int = _field(1, "Source frame from which this crop holds.", low=0)
    x: int = _field(0, "Left edge, Source pixels.", low=0)
    y: int = _field(0, "Bottom edge, Source pixels from the lower-left.", low=0)
    width: int = _field(0, "Width in pixels.", low=0)
    height: int = _field(0, "Height in pixels.", low=0)


@dataclass
class Crop:
    """One crop shared by both branches, in Source pixels from the lower-left (Blender's Crop node)."""

    enabled: bool = _field(False, "Use the crop (it must lie inside the Source raster).")
    x: int = _field(0, "Left edge, Source pixels.", low=0)
    y: int = _field(0, "Bottom edge, Source pixels from the lower-left.", low=0)
    width: int = _field(0, "Width in pixels (more than 0 when enabled).", low=0)
    height: int = _field(0, "Height in pixels (more than 0 when enabled).", low=0)
    keys: list[CropKey] = _field([], "Animated crop: each key holds from its frame on.")


@dataclass
class Training:
    model: Literal["unet", "bilateral"] = _field("unet", "Network: UNet, or the bilateral-grid colour model.")
    size: Literal["tiny", "small", "medium", "large"] = _field("small", "Network size.")
    steps: int = _field(2000, "Optimisation steps (ignored when epochs is above 0).", low=1, high=10_000_000)
    epochs: int = _field(0, "Above 0: steps = ceil(epochs x training pairs / batch), as CopyCat counts them.",
                         low=0, high=1_000_000)
    batch: int = _field(8, "Crops per step.", low=1, high=4096)
    crop_size: int = _field(128, "Training crop size in pixels.", low=16, high=8192)
    learning_rate: float = _field(2e-3, "Peak learning rate (AdamW, warm-up then cosine); a UNet on the chroma "
                                  "branch's starting grade trains at a quarter of it.", low=1e-8, high=1.0)
    loss: Literal["charbonnier", "l1"] = _field("charbonnier", "Reconstruction loss.")
    gradient_loss: float = _field(0.0, "Weight of an L1 term on image gradients (sharper edges).",
                                  low=0.0, high=100.0)
    position: bool = _field(True, "The model also sees where each pixel sits in the frame (uneven fading).")
    reference_guided: bool = _field(
        True, "Reference-guided: the model also sees the aligned Reference (its channels and where it covers) "
              "in training and at inference, takes the Reference's channels where it covers and agrees with the "
              "Source, and predicts from the Source alone where it does not (bars, subtitles, missing frames). "
              "Off: a Source-only model.")
    start_from_grade: bool = _field(
        True, "Chroma branch: the network's colour sits on the shot's baseline grade (the 3D LUT the `baseline` "
              "stage fits, fitted to the training pairs before the first step and saved in the model), so training "
              "starts where the baseline ends. Off: on the Source's own colour, as models trained before it "
              "(fine-tuning from one of those needs it off).", added=True)
    device: Literal["auto", "cuda", "mps", "cpu"] = _field("auto", "Compute device.")
    seed: int = _field(0, "Random seed.", low=0)
    augment: bool = _field(False, "Paired flips and turns of the training crops.")
    checkpoint_every: int = _field(250, "Steps between checkpoints.", low=1)
    validate_every: int = _field(100, "Steps between validations.", low=1)
    preview_every: int = _field(250, "Steps between preview images.", low=1)
    init_weights: str = _field("", "A model to start from (same type, size and branch); empty: random.")
    holdout_every: int = _field(0, "Also hold out every Nth accepted pair for validation (0: flagged pairs only).",
                                low=0)


@dataclass
class Output:
    display_exr: bool = _field(True, "Write the display-referred EXR frames.")
    aces_exr: bool = _field(True, "Write the archival ACES2065-1 EXR frames.")
    # PIZ: lossless, and on grainy scans both smaller than ZIP and about half its encode CPU
    # (docs/benchmarks.md); ZIP wins on clean, flat pictures; DWAA is lossy (archive only).
    compression: Literal["zip", "piz", "dwaa"] = _field(
        "piz", "EXR compression: PIZ lossless (best on grain), ZIP lossless, DWAA lossy (archive only).")
    review: Literal["none", "png", "movie"] = _field("png", "Review output.")
    overwrite: bool = _field(False, "Replace frames that already exist (otherwise they are kept and resumed).")
    # Restoration artists deliver a recovery either with the plate's own grain (it matches the rest of
    # the film) or clean (for a re-grain later); the target (the Reference's luma or colour) holds none.
    grain: Literal["clean", "keep_source"] = _field(
        "clean", "Spatial branch: `clean` delivers the restored luma as the model predicts it (no grain, or the "
        "Reference's); `keep_source` separates the Source's grain (its luma above a 1.5 px Gaussian, "
        "`ml.neural.predict.source_grain`) and adds it back over the restored luma. Chroma branch: the luma is the "
        "Source's, grain and all, either way; `clean` reduces the colour grain the recovered colour carries from the "
        "Source (`ml.neural.predict.reduce_colour_grain`; on a guided frame whose colour the luma does not explain is "
        "grain, unlike the Reference's, the colour follows the luma: `grain_smoothing`), `keep_source` leaves it.")
    # Below the Reference's resolution a chroma model's colour detail is the Source's own: picture, or
    # grain the Reference does not have. `auto` tells them apart per frame (ml.guide.fine_weight).
    fine_colour: Literal["auto", "model", "reference"] = _field(
        "auto", "Chroma branch, reference-guided model: where the colour detail finer than the Reference resolves "
        "comes from. `auto` decides per frame: the model's prediction (the Source's detail) where the Source's colour "
        "there is what its picture's luma detail explains, the Reference's colour where it is more (grain; from a "
        "blocky Reference, whose colour that fine is coding error, the colour the luma explains instead); "
        "`model` always keeps the prediction's detail; `reference` takes the Reference's colour whole.", added=True)


# The spatial branch's training, chosen from measurements on the spatial sample (bench/bench_spatial.py
# --grid, docs/benchmarks.md "Spatial recovery"): a small UNet (tiny and position input measured worse;
# the luma residual sits on a fitted tone curve, models.LumaCurve), 64 px crops (several blur widths),
# Charbonnier + a gradient term (better than without), paired flips/turns (no worse on 400 steps, and
# against overfitting the few pairs' grain on longer ones), a schedule a CPU finishes in minutes.
# The Train panel shows these and applies them on request; `ml init --branch spatial` writes them.
SPATIAL_TRAINING_DEFAULTS: dict[str, Any] = {
    "model": "unet", "size": "small", "steps": 400, "batch": 8, "crop_size": 64, "learning_rate": 2e-3,
    "loss": "charbonnier", "gradient_loss": 1.0, "augment": True, "position": False}


def spatial_training_defaults() -> dict[str, Any]:
    """The measured training settings for the spatial branch (a copy: field name -> value)."""
    return dict(SPATIAL_TRAINING_DEFAULTS)


@dataclass
class Job:
    schema: str = _field(SCHEMA, f"Always `{SCHEMA}`.")
    schema_version: int = _field(SCHEMA_VERSION, f"Always {SCHEMA_VERSION}.")
    name: str = _field("shot", "Shot or job name (reports, file headers).")
    work_dir: str = _field("", "Folder for datasets, checkpoints, renders and reports.")
    branch: Branch = _field("chroma", "`chroma`: target = Source Y + Reference CbCr; "
                            "`spatial`: target = Reference Y + Source CbCr.")
    source: Plate = field(default_factory=Plate, metadata={"doc": "The faded or soft scan to restore."})
    reference: Plate = field(default_factory=Plate, metadata={"doc": "The better-preserved transfer."})
    conform: Conform = field(default_factory=Conform, metadata={"doc": "Reference placement."})
    balance: Balance = field(default_factory=Balance, metadata={"doc": "Neutral pre-balance."})
    cleanup: Cleanup = field(default_factory=Cleanup, metadata={"doc": "Clean-up for training."})
    pairs: list[Pair] = _field([], "Training pairs; accepted Source frames must be unique.")
    alignment: Alignment = field(default_factory=Alignment, metadata={"doc": "Warps."})
    crop: Crop = field(default_factory=Crop, metadata={"doc": "The one shared crop."})
    training: Training = field(default_factory=Training, metadata={"doc": "Training settings."})
    output: Output = field(default_factory=Output, metadata={"doc": "Inference outputs."})
    dataset_dir: str = _field("", "Dataset folder (default: `dataset` in the work folder).")
    model_path: str = _field("", "Model for inference (default: the training's best model).")

    def work_path(self, *parts: str) -> Path:
        """A path inside the work directory (created on demand by writers, not here)."""
        if not self.work_dir:
            raise JobFileError("work_dir is empty.", where="job.work_dir",
                               fix="Set a work directory in the add-on preferences or job.json.")
        return Path(self.work_dir).joinpath(*parts)


def job_to_dict(job: Job) -> dict[str, Any]:
    return dataclasses.asdict(job)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, dict):
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


# The JSON scalars a recipe field may hold; a bool is never taken for a number.
_SCALARS: dict[type, Callable[[Any], bool]] = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    wrong = JobFileError(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r:.60}.", where=where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise JobFileError(wrong.problem, where=where, fix="Give an object with the documented fields.")
        return _from_dict(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise wrong
        return value
    if origin is list:
        if not isinstance(value, list):
            raise wrong
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        _key_tp, item_tp = typing.get_args(tp)
        return {str(k): _convert(v, item_tp, f"{where}.{k}") for k, v in value.items()}
    if tp in _SCALARS:
        if not _SCALARS[tp](value):
            raise wrong
        return float(value) if tp is float else value
    raise TypeError(f"unsupported schema type {tp!r} at {where}")


def as_stored(data: Any) -> Any:
    """A job file's numbers as the add-on stores them: Blender's float properties are 32-bit. Read so
    by both front doors, a recipe gives every stage the same numbers (a PAL pixel aspect or 29.97 fps
    a few units in the 8th digit apart moved an alignment solve and the crop a pixel between the
    doors). Whole numbers, strings and the pair tables' own files are left as they are."""
    if isinstance(data, dict):
        return {key: as_stored(value) for key, value in data.items()}
    if isinstance(data, list):
        return [as_stored(value) for value in data]
    if isinstance(data, float):
        try:
            return struct.unpack("f", struct.pack("f", data))[0]
        except OverflowError:  # beyond 32 bits: the field's limits say what is wrong with it
            return data
    return data


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise JobFileError(f"unknown field(s) {', '.join(unknown)}.", where=where,
                           fix="Remove them or check the spelling against docs/job-format.md.")
    kwargs = {}
    for name in names:
        path = f"{where}.{name}"
        if name not in data and fields[name].metadata.get("added"):
            continue  # a job file from before the field: the default
        if name not in data:
            raise JobFileError("missing field.", where=path,
                               fix="Add it (`python -m ml init` writes a complete job.json).")
        kwargs[name] = _convert(data[name], hints[name], path)
        _check_limits(kwargs[name], fields[name].metadata, path)
    return cls(**kwargs)


def _number_problem(value: Any, meta: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    low, high = meta.get("low"), meta.get("high")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if low is not None and value < low:
            return f"{value:g} is below the minimum {low:g}"
        if high is not None and value > high:
            return f"{value:g} is above the maximum {high:g}"
    return None


def _check_limits(value: Any, meta: Any, where: str) -> None:
    """Ranges, list lengths and choices from the field's metadata (see `_field`); NaN/Inf never pass."""
    fix = "See docs/job-format.md for each field's range."
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise JobFileError(f"{value!r} is not one of {', '.join(map(repr, choices))}.", where=where, fix=fix)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_limits(item, meta, f"{where}.{key}")
        return
    if isinstance(value, list):
        length = meta.get("length")
        if length is not None and len(value) != length:
            raise JobFileError(f"has {len(value)} values, expected {length}.", where=where, fix=fix)
        for i, item in enumerate(value):
            problem = _number_problem(item, meta)
            if problem:
                raise JobFileError(problem + ".", where=f"{where}[{i}]", fix=fix)
        return
    problem = _number_problem(value, meta)
    if problem:
        raise JobFileError(problem + ".", where=where, fix=fix)


def job_from_dict(data: Any) -> Job:
    if not isinstance(data, dict):
        raise JobFileError("the top level must be a JSON object.", where="job")
    if data.get("schema") != SCHEMA:
        raise JobFileError(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}.", where="job.schema",
                           fix="This is not a Film Recovery job file.")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise JobFileError(f"unknown schema version {version!r}; this engine reads version {SCHEMA_VERSION}.",
                           where="job.schema_version",
                           fix="Re-export the job from the add-on version that matches this engine.")
    return _from_dict(Job, as_stored(data), "job")


def load_job(path: str | os.PathLike) -> Job:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobFileError(f"cannot read the job file ({exc.strerror}).", where=str(path),
                           fix="Check the path.") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobFileError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
                           where=str(path)) from exc
    return job_from_dict(data)


def save_job(job: Job, path: str | os.PathLike) -> Path:
    from .imageio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(job_to_dict(job), indent=2), encoding="utf-8")
    return path
