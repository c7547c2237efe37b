"""The recipe as a schema-versioned `job.json`: every engine command reads one.

The add-on serialises its scene recipe into this shape; batch and farm runs write it by hand
or with `python -m ml init`. Loading validates every field and names the one that is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import JobFileError

SCHEMA = "film_recovery.job"
SCHEMA_VERSION = 1

IngestPreset = Literal["display", "aces2065-1"]
Branch = Literal["chroma", "spatial"]
MotionModel = Literal["translation", "similarity", "affine", "perspective"]


@dataclass
class Plate:
    """A Source or Reference: an image sequence pattern (#### or %04d) or a movie file."""

    path: str = ""
    first_frame: int = 1
    last_frame: int = 1
    ingest: IngestPreset = "display"
    fps: float = 24.0
    pixel_aspect: float = 1.0


@dataclass
class Conform:
    """How the Reference raster is placed onto the Source raster (pixels, Source space)."""

    mode: Literal["fit", "fill", "stretch", "none"] = "fit"
    scale_x: float = 1.0
    scale_y: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0


@dataclass
class Balance:
    """Neutral pre-balance of the Source: out = in * gain + offset, per channel."""

    enabled: bool = False
    gain: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    offset: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])


@dataclass
class Cleanup:
    """Reference clean-up and optional Source degrain for training (never on the plates)."""

    reference_median: int = 0
    reference_denoise: float = 0.0
    reference_deband: float = 0.0
    reference_dust: bool = False
    source_degrain: float = 0.0


@dataclass
class Pair:
    source_frame: int = 1
    reference_frame: int = 1
    accepted: bool = True
    reason: str = ""
    timecode: str = ""
    shot: str = ""
    label: str = ""
    rationale: str = ""
    reference_type: Literal["telecine", "dvd", "print", "scan", "constructed"] = "telecine"
    compromises: str = ""
    holdout: bool = False
    align_score: float = -1.0


@dataclass
class Alignment:
    """Reference→Source warps. Matrices are 3x3 row-major, Source pixel = M @ Reference pixel."""

    model: MotionModel = "similarity"
    mode: Literal["global", "per_frame"] = "global"
    roi: float = 0.6
    smoothing: int = 5
    solves: dict[str, list[float]] = field(default_factory=dict)
    manual: dict[str, list[float]] = field(default_factory=dict)
    use_manual: list[int] = field(default_factory=list)


@dataclass
class CropKey:
    frame: int = 1
    x: int = 0
    y: int = 0
    width: int = 0
    height: int = 0


@dataclass
class Crop:
    """One crop shared by both branches, in Source pixels from the lower-left (Blender's Crop node)."""

    enabled: bool = False
    x: int = 0
    y: int = 0
    width: int = 0
    height: int = 0
    keys: list[CropKey] = field(default_factory=list)


@dataclass
class Training:
    model: Literal["unet", "bilateral"] = "unet"
    size: Literal["tiny", "small", "medium", "large"] = "small"
    steps: int = 2000
    epochs: int = 0  # > 0: steps = ceil(epochs x training pairs / batch), as CopyCat counts them
    batch: int = 8
    crop_size: int = 128
    learning_rate: float = 2e-3
    loss: Literal["charbonnier", "l1"] = "charbonnier"
    gradient_loss: float = 0.0  # weight of an L1 term on image gradients (sharper edges)
    position: bool = True  # the model also sees where each pixel sits in the frame (uneven fading)
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    seed: int = 0
    augment: bool = False
    checkpoint_every: int = 250
    validate_every: int = 100
    preview_every: int = 250
    init_weights: str = ""
    holdout_every: int = 0


@dataclass
class Output:
    display_exr: bool = True
    aces_exr: bool = True
    # PIZ: lossless, and on grainy scans both smaller than ZIP and about half its encode CPU
    # (docs/benchmarks.md); ZIP wins on clean, flat pictures; DWAA is lossy (archive only).
    compression: Literal["zip", "piz", "dwaa"] = "piz"
    review: Literal["none", "png", "movie"] = "png"
    overwrite: bool = False


@dataclass
class Job:
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    name: str = "shot"
    work_dir: str = ""
    branch: Branch = "chroma"
    source: Plate = field(default_factory=Plate)
    reference: Plate = field(default_factory=Plate)
    conform: Conform = field(default_factory=Conform)
    balance: Balance = field(default_factory=Balance)
    cleanup: Cleanup = field(default_factory=Cleanup)
    pairs: list[Pair] = field(default_factory=list)
    alignment: Alignment = field(default_factory=Alignment)
    crop: Crop = field(default_factory=Crop)
    training: Training = field(default_factory=Training)
    output: Output = field(default_factory=Output)
    dataset_dir: str = ""
    model_path: str = ""

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


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    wrong = f"expected {_type_name(tp)}, got {type(value).__name__} {value!r:.60}"
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise JobFileError(wrong + ".", where=where, fix="Give an object with the documented fields.")
        return _from_dict(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise JobFileError(wrong + ".", where=where)
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise JobFileError(wrong + ".", where=where)
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise JobFileError(wrong + ".", where=where)
        return {str(k): _convert(v, item_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise JobFileError(wrong + ".", where=where)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise JobFileError(wrong + ".", where=where)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JobFileError(wrong + ".", where=where)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise JobFileError(wrong + ".", where=where)
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {where}")


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise JobFileError(f"unknown field(s) {', '.join(unknown)}.", where=where,
                           fix="Remove them or check the spelling against docs/job-format.md.")
    kwargs = {}
    for name in names:
        path = f"{where}.{name}"
        if name not in data:
            raise JobFileError("missing field.", where=path,
                               fix="Add it (`python -m ml init` writes a complete job.json).")
        kwargs[name] = _convert(data[name], hints[name], path)
    return cls(**kwargs)


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
    return _from_dict(Job, data, "job")


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
