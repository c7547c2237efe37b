"""Reading the dataset folder the dataset stage exports (manifest.json + input/ + target/ EXRs).

Everything is checked up front, so training never starts on a dataset it cannot finish:
missing files, unreadable or NaN frames, and Input/Target size mismatches are reported with
the file that is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FilmRecoveryError
from .imageio import file_sha256, read_image

DATASET_SCHEMA = "film_recovery.dataset"


@dataclass
class DatasetPair:
    name: str
    input_path: Path
    target_path: Path
    holdout: bool
    input: np.ndarray  # (H, W, 3) float32 RGB
    target: np.ndarray
    origin: tuple[int, int] = (0, 0)  # (row, column) of the image's top-left pixel in its Source frame
    frame_size: tuple[int, int] | None = None  # the Source frame's (height, width); None: the image's own
    guide: np.ndarray | None = None  # (H, W, 3) the aligned Reference (None: an export without guides)
    coverage: np.ndarray | None = None  # (H, W) 1 where the guide is real, agreeing Reference picture


@dataclass
class Dataset:
    folder: Path
    branch: str
    pairs: list[DatasetPair]
    manifest_hash: str  # SHA-256 of manifest.json: identifies the dataset a model was trained on
    colour: dict[str, Any] = field(default_factory=dict)
    preview_name: str | None = None  # the pair shown in contact sheets, if the manifest names one
    preview_input: np.ndarray | None = None  # preview frame when it is not one of the pairs
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def has_guides(self) -> bool:
        return all(p.guide is not None for p in self.pairs)

    @property
    def training_pairs(self) -> list[DatasetPair]:
        return [p for p in self.pairs if not p.holdout]

    @property
    def holdout_pairs(self) -> list[DatasetPair]:
        return [p for p in self.pairs if p.holdout]


def _resolve(folder: Path, relative: Any, where: str) -> Path:
    if not isinstance(relative, str) or not relative:
        raise FilmRecoveryError("missing file name.", where=where,
                                fix="Re-export the dataset from the Dataset stage.")
    return (folder / relative).resolve()


def _placement(entry: dict[str, Any], shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Where a pair image sits in its Source frame, from the manifest's crop (lower-left origin)
    and source_size; older manifests without them mean "the image is the whole frame"."""
    crop, size = entry.get("crop"), entry.get("source_size")
    if not (isinstance(crop, dict) and isinstance(size, list) and len(size) == 2):
        return (0, 0), None
    frame_w, frame_h = int(size[0]), int(size[1])
    top = frame_h - (int(crop.get("y", 0)) + shape[0])
    return (top, int(crop.get("x", 0))), (frame_h, frame_w)


def _check_checksums(recorded: Any, files: dict[str, Path], fix: str) -> None:
    """A file that differs from the checksum its manifest records was changed after the export
    (or by an interrupted one): training on it would mix two datasets."""
    if not isinstance(recorded, dict):
        return
    for role, path in files.items():
        expected = recorded.get(role)
        if expected and path.exists() and file_sha256(path) != expected:
            raise FilmRecoveryError("the file does not match the checksum in its manifest (changed after the "
                                    "export).", where=str(path), fix=fix)


_FIX_EXPORT = "Export the dataset first (Dataset stage, or `python -m ml dataset job.json`)."


def load_dataset(folder: str | Path) -> Dataset:
    """Read and validate a dataset folder into memory (float32 RGB arrays)."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    manifest, raw = _read_manifest(manifest_path)
    entries = manifest.get("pairs")
    if not isinstance(entries, list) or not entries:
        raise FilmRecoveryError("the dataset has no pairs.", where=str(manifest_path),
                                fix="Accept at least one pair in Pair Curation and export the dataset again.")
    pairs = [_load_pair(folder, entry, f"{manifest_path}: pairs[{i}]") for i, entry in enumerate(entries)]
    if not any(not p.holdout for p in pairs):
        raise FilmRecoveryError("every pair is marked holdout; nothing is left to train on.",
                                where=str(manifest_path), fix="Mark fewer pairs as holdout.")
    dataset = Dataset(folder, manifest["branch"], pairs, hashlib.sha256(raw).hexdigest(),
                      colour=manifest.get("colour") or {}, manifest=manifest)
    preview = manifest.get("preview")
    if preview:
        preview_path = _resolve(folder, preview, f"{manifest_path}: preview")
        match = next((p for p in pairs if p.input_path == preview_path), None)
        if match is not None:
            dataset.preview_name = match.name
        else:
            dataset.preview_input = read_image(str(preview_path))
    return dataset


def _read_manifest(manifest_path: Path) -> tuple[dict[str, Any], bytes]:
    """(the manifest, its bytes): a dataset manifest of a known branch, else a clear error."""
    if not manifest_path.exists():
        raise FilmRecoveryError("no dataset here (manifest.json not found).", where=str(manifest_path),
                                fix=_FIX_EXPORT)
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FilmRecoveryError(f"manifest is not valid JSON ({exc}).", where=str(manifest_path),
                                fix=_FIX_EXPORT) from exc
    if not isinstance(manifest, dict) or manifest.get("schema") != DATASET_SCHEMA:
        raise FilmRecoveryError("not a Film Recovery dataset manifest.", where=str(manifest_path), fix=_FIX_EXPORT)
    branch = manifest.get("branch")
    if branch not in ("chroma", "spatial"):
        raise FilmRecoveryError(f"branch is {branch!r}, expected 'chroma' or 'spatial'.",
                                where=f"{manifest_path}: branch", fix=_FIX_EXPORT)
    return manifest, raw


def _load_pair(folder: Path, entry: Any, where: str) -> DatasetPair:
    """One manifest entry's images, checked against their checksums and against each other's size."""
    if not isinstance(entry, dict):
        raise FilmRecoveryError("pair entry is not an object.", where=where, fix=_FIX_EXPORT)
    input_path = _resolve(folder, entry.get("input"), f"{where}.input")
    target_path = _resolve(folder, entry.get("target"), f"{where}.target")
    files = {"input": input_path, "target": target_path}
    if entry.get("guide") and entry.get("coverage"):
        files |= {"guide": _resolve(folder, entry["guide"], f"{where}.guide"),
                  "coverage": _resolve(folder, entry["coverage"], f"{where}.coverage")}
    _check_checksums(entry.get("checksums"), files, _FIX_EXPORT)
    source = read_image(str(input_path))
    target = read_image(str(target_path))
    guide = read_image(str(files["guide"])) if "guide" in files else None
    cover = read_image(str(files["coverage"]))[..., 0] if "coverage" in files else None
    for role, image in (("guide", guide), ("coverage", cover)):
        if image is not None and image.shape[:2] != source.shape[:2]:
            raise FilmRecoveryError(f"the {role} image is {image.shape[1]}x{image.shape[0]}, the Input "
                                    f"{source.shape[1]}x{source.shape[0]}.", where=str(files[role]), fix=_FIX_EXPORT)
    if source.shape != target.shape:
        raise FilmRecoveryError(f"Input is {source.shape[1]}x{source.shape[0]} but Target is "
                                f"{target.shape[1]}x{target.shape[0]}.", where=str(target_path),
                                fix="Input and Target must be the same size: export the dataset again "
                                    "with one shared crop.")
    origin, frame_size = _placement(entry, source.shape[:2])
    return DatasetPair(str(entry.get("name") or input_path.stem), input_path, target_path,
                       bool(entry.get("holdout", False)), source, target, origin, frame_size, guide, cover)
