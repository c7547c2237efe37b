"""Model and checkpoint files: safetensors for tensors, a JSON sidecar for everything else.

No pickle anywhere: weights, optimizer moments and RNG state are safetensors; scalars live in
the JSON. The sidecar records the weights file's size and SHA-256, so a truncated or damaged
file is rejected with a message naming it. Every file is written atomically, the sidecar last:
a model exists once its JSON does.

Layout of a training folder:
  checkpoints/ckpt_000250.safetensors       weights
  checkpoints/ckpt_000250.state.safetensors optimizer moments + RNG state
  checkpoints/ckpt_000250.json              metadata, training scalars, hashes of both files
  model_best.safetensors / .json            best on validation
  model_final.safetensors / .json           last step
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import FilmRecoveryError
from ..imageio import atomic_path, file_sha256, is_temp_file
from .models import ModelConfig, RecoveryModel, build_model

MODEL_SCHEMA = "film_recovery.model"
MODEL_SCHEMA_VERSION = 1
_CKPT_NAME = re.compile(r"^ckpt_(\d+)\.json$")


def sidecar_path(weights_path: str | Path) -> Path:
    return Path(weights_path).with_suffix(".json")



def _file_record(path: Path) -> dict[str, Any]:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


_WRITE_FIX = "Free disk space (or choose an output folder you can write to), then train again: it resumes."


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        with atomic_path(path) as tmp:
            save_file(clean, str(tmp))
    except (SafetensorError, OSError) as exc:  # disk full, quota, file size limit
        raise FilmRecoveryError(f"cannot write the file ({exc}).", where=str(path), fix=_WRITE_FIX) from exc
    return _file_record(path)


def _remove_on_failure(paths: list[Path]):
    """Context: if the block fails, remove `paths`, so no weights file is left without the sidecar
    that makes it a model (a half-written checkpoint could be mistaken for one)."""
    import contextlib

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except BaseException:
            for path in paths:
                path.unlink(missing_ok=True)
            raise
    return guard()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    except OSError as exc:
        raise FilmRecoveryError(f"cannot write the file ({exc.strerror or exc}).", where=str(path),
                                fix=_WRITE_FIX) from exc


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FilmRecoveryError("the model's JSON sidecar is missing.", where=str(path),
                                fix="Keep the .json file next to its .safetensors file (they are one model).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FilmRecoveryError(f"the model's JSON sidecar is unreadable ({exc}).", where=str(path),
                                fix="The file is damaged: retrain, or resume from an earlier checkpoint.") from exc
    if not isinstance(data, dict) or data.get("schema") != MODEL_SCHEMA:
        raise FilmRecoveryError(f"not a Film Recovery model file (schema {data.get('schema')!r}).",
                                where=str(path), fix="Pick a model written by Film Recovery training.")
    if data.get("schema_version") != MODEL_SCHEMA_VERSION:
        raise FilmRecoveryError(f"unknown model format version {data.get('schema_version')!r}.",
                                where=str(path), fix="Use the Film Recovery version that trained it.")
    return data


def _read_tensors(path: Path, record: dict[str, Any] | None, device: str | torch.device = "cpu"
                  ) -> dict[str, torch.Tensor]:
    fix = "The file is truncated or damaged: retrain, or resume from an earlier checkpoint."
    if not path.exists():
        raise FilmRecoveryError("file not found.", where=str(path), fix="Check the model path.")
    if record is not None:
        size = path.stat().st_size
        if size != record.get("bytes"):
            raise FilmRecoveryError(f"the file is {size} bytes, its sidecar says {record.get('bytes')} "
                                    "(truncated or replaced).", where=str(path), fix=fix)
        if file_sha256(path) != record.get("sha256"):
            raise FilmRecoveryError("the file's checksum does not match its sidecar (corrupted).",
                                    where=str(path), fix=fix)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FilmRecoveryError(f"not a readable safetensors file ({exc}).", where=str(path), fix=fix) from exc


# Bounds of a model a sidecar may describe. A damaged or hostile sidecar must not make the loader
# build a network of hundreds of gigabytes before the weights are even read.
_CONFIG_LIMITS = {"width": (1, 256), "levels": (1, 6), "downsample": (1, 16), "grid_depth": (1, 64)}
_CONFIG_CHOICES = {"kind": ("unet", "bilateral"), "size": ("tiny", "small", "medium", "large"),
                   "branch": ("chroma", "spatial"), "position": (True, False), "tone_curve": (True, False),
                   "colour_lut": (True, False)}
MAX_PARAMETERS = 50_000_000  # the large UNet has about 7.8 M


def checked_config(data: Any, where: Path) -> ModelConfig:
    """The sidecar's model configuration, bounds-checked before any network is built."""
    fix = "The sidecar is damaged or not from Film Recovery: retrain, or use the model's original .json."
    try:
        config = ModelConfig(**data)
    except TypeError as exc:
        raise FilmRecoveryError(f"the model configuration is missing or invalid ({exc}).", where=str(where),
                                fix=fix) from exc
    for name, allowed in _CONFIG_CHOICES.items():
        if getattr(config, name) not in allowed:
            raise FilmRecoveryError(f"model.{name} is {getattr(config, name)!r}, not one of {allowed}.",
                                    where=str(where), fix=fix)
    for name, (low, high) in _CONFIG_LIMITS.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise FilmRecoveryError(f"model.{name} is {value!r}, outside {low}-{high}.", where=str(where), fix=fix)
    with torch.device("meta"):  # counts parameters without allocating them
        parameters = sum(p.numel() for p in build_model(config).parameters())
    if parameters > MAX_PARAMETERS:
        raise FilmRecoveryError(f"the model would have {parameters:,} parameters (at most {MAX_PARAMETERS:,} "
                                "are supported).", where=str(where), fix=fix)
    return config


def unwrap(model: torch.nn.Module) -> RecoveryModel:
    """The RecoveryModel inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def save_model(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any]) -> Path:
    """Write weights + sidecar. `metadata` holds branch, colour, hashes, step, metrics, ..."""
    path = Path(path)
    core = unwrap(model)
    with _remove_on_failure([path]):
        record = _write_tensors(path, core.state_dict())
        sidecar = {"schema": MODEL_SCHEMA, "schema_version": MODEL_SCHEMA_VERSION, **metadata,
                   "model": core.config.to_dict(), "weights": record}
        _write_json(sidecar_path(path), sidecar)
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[RecoveryModel, dict[str, Any]]:
    """Rebuild a model from `<name>.safetensors` + `<name>.json` (no pickle), in eval mode."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    metadata = _read_json(sidecar_path(path))
    model = build_model(checked_config(metadata.get("model"), sidecar_path(path)))
    state = _read_tensors(path, metadata.get("weights"), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FilmRecoveryError(f"the weights do not fit the model described in the sidecar ({exc}).",
                                where=str(path), fix="Keep each .safetensors with its own .json.") from exc
    return model.to(device).eval(), metadata


def starting_grade_fix(theirs: dict[str, Any], ours: dict[str, Any], action: str) -> str | None:
    """When two model configurations differ only in the starting grade (`colour_lut`; a model
    trained before it has none): the switch that makes them match, else None."""
    if theirs == ours or {**theirs, "colour_lut": ours.get("colour_lut")} != ours:
        return None
    return f"Turn Start From Grade {'on' if theirs.get('colour_lut') else 'off'} (training.start_from_grade) to {action}."


def load_weights_into(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """Initial weights (fine-tune) from an earlier model; its architecture must match."""
    path = Path(path)
    metadata = _read_json(sidecar_path(path))
    core = unwrap(model)
    theirs, ours = dict(metadata.get("model") or {}), core.config.to_dict()
    if theirs != ours:
        fix = (starting_grade_fix(theirs, ours, "fine-tune from these weights")
               or "Pick initial weights of the same model type, size and branch, or clear Initial Weights.")
        raise FilmRecoveryError(f"initial weights are a {metadata.get('model')} model, this training uses "
                                f"{ours}.", where=str(path), fix=fix)
    state = _read_tensors(path, metadata.get("weights"))
    core.load_state_dict(state, strict=True)
    return metadata


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"ckpt_{step:06d}.safetensors"


def save_checkpoint(folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    metadata: dict[str, Any], training_state: dict[str, Any]) -> Path:
    """Weights, optimizer moments and RNG state at `step`; JSON written last marks it complete."""
    weights = checkpoint_path(folder, step)
    core = unwrap(model)
    with _remove_on_failure([weights, weights.with_suffix(".state.safetensors")]):
        weights_record = _write_tensors(weights, core.state_dict())
        tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
        for index, state in optimizer.state_dict()["state"].items():
            for name, value in state.items():
                tensors[f"optim.{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
        state_record = _write_tensors(weights.with_suffix(".state.safetensors"), tensors)
        sidecar = {"schema": MODEL_SCHEMA, "schema_version": MODEL_SCHEMA_VERSION, **metadata, "step": step,
                   "model": core.config.to_dict(), "weights": weights_record, "state": state_record,
                   "training_state": training_state}
        _write_json(sidecar_path(weights), sidecar)
    return weights


def load_checkpoint(weights: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
                    ) -> dict[str, Any]:
    """Restore weights, optimizer and RNG from a checkpoint; returns its sidecar."""
    metadata = _read_json(sidecar_path(weights))
    core = unwrap(model)
    core.load_state_dict(_read_tensors(weights, metadata.get("weights")), strict=True)
    tensors = _read_tensors(weights.with_suffix(".state.safetensors"), metadata.get("state"))
    torch.set_rng_state(tensors.pop("rng.torch"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    # The param groups are rebuilt identically by the trainer; only the moments are restored.
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return metadata


def remove_incomplete(folder: Path) -> list[Path]:
    """Remove what a killed run left in a checkpoint folder: temp files of atomic writes and
    checkpoint tensors whose sidecar was never written. Returns what was removed."""
    if not folder.is_dir():
        return []
    complete = {path.stem for _, path in list_checkpoints(folder)}
    removed = []
    for item in folder.iterdir():
        stem = item.name.split(".", 1)[0]
        orphan = item.name.endswith(".safetensors") and stem not in complete
        if is_temp_file(item) or orphan:
            item.unlink(missing_ok=True)
            removed.append(item)
    return removed


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, weights path) of every complete checkpoint, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for item in folder.iterdir():
        match = _CKPT_NAME.match(item.name)
        if match:
            found.append((int(match.group(1)), item.with_suffix(".safetensors")))
    return sorted(found)


def read_checkpoint_metadata(weights: Path) -> dict[str, Any]:
    return _read_json(sidecar_path(weights))


def remove_checkpoint(weights: Path) -> None:
    # Sidecar first, so a half-removed checkpoint no longer counts as complete.
    for path in (sidecar_path(weights), weights, weights.with_suffix(".state.safetensors")):
        path.unlink(missing_ok=True)
