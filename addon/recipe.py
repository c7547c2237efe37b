"""Scene recipe <-> engine Job: the only place that knows both shapes.

The PropertyGroups mirror ml/job.py field by field (addon/props.py generates them), so this
walks the schema generically. Paths are made absolute here because the engine runs in another
process and never sees the .blend's folder.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Literal

import bpy

from ..ml import job as schema


def _read(pg: Any, cls: type) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in ("schema", "schema_version"):
            continue
        tp = hints[field.name]
        value = getattr(pg, field.name)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            values[field.name] = _read(value, tp)
        elif origin is list:
            (item_tp,) = typing.get_args(tp)
            if isinstance(item_tp, type) and dataclasses.is_dataclass(item_tp):
                values[field.name] = [_read(item, item_tp) for item in value]
            elif item_tp is int:
                values[field.name] = [item.frame for item in value]
            else:
                values[field.name] = [float(v) for v in value]
        elif origin is dict:
            values[field.name] = {item.key: matrix_values(item) for item in value}
        elif origin is Literal or tp in (bool, int, float, str):
            values[field.name] = value
        else:
            raise TypeError(f"unhandled schema type {tp!r} for {field.name}")
    return cls(**values)


def _write(pg: Any, obj: Any) -> None:
    cls = type(obj)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in ("schema", "schema_version"):
            continue
        tp = hints[field.name]
        value = getattr(obj, field.name)
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            _write(getattr(pg, field.name), value)
        elif origin is list:
            (item_tp,) = typing.get_args(tp)
            if dataclasses.is_dataclass(item_tp) or item_tp is int:
                collection = getattr(pg, field.name)
                collection.clear()
                for item in value:
                    new = collection.add()
                    if item_tp is int:
                        new.frame = item
                    else:
                        _write(new, item)
            else:
                setattr(pg, field.name, value)
        elif origin is dict:
            collection = getattr(pg, field.name)
            collection.clear()
            numeric_first = sorted(value.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0]))
            for key, matrix in numeric_first:
                new = collection.add()
                new.key = key
                set_matrix(new, matrix)
        else:
            setattr(pg, field.name, value)


def set_matrix(item: Any, values: list[float]) -> None:
    """Store a warp in a FrameMatrix item: the float32 vector the UI shows and the exact numbers."""
    item.matrix = values
    item.exact = json.dumps([float(v) for v in values])


def matrix_values(item: Any) -> list[float]:
    """A FrameMatrix item's warp at full precision, unless the float32 vector was edited since."""
    shown = [float(v) for v in item.matrix]
    try:
        exact = [float(v) for v in json.loads(item.exact)]
    except (ValueError, TypeError):
        return shown
    same = len(exact) == 9 and all(abs(a - b) <= 1e-6 * max(1.0, abs(a)) for a, b in zip(exact, shown, strict=True))
    return exact if same else shown


def default_work_dir() -> Path:
    """Beside the .blend (`<name>_film_recovery`), or the add-on's user folder for unsaved files."""
    from . import preferences

    configured = preferences.get().work_dir_default
    if bpy.data.filepath:
        blend = Path(bpy.data.filepath)
        if configured:
            return Path(bpy.path.abspath(configured))
        return blend.parent / f"{blend.stem}_film_recovery"
    if configured and not configured.startswith("//"):
        return Path(configured)
    return Path(bpy.utils.extension_path_user(preferences.ADDON_PACKAGE, create=True)) / "work"


def recipe_to_job(recipe: Any) -> schema.Job:
    from . import preferences

    job = _read(recipe, schema.Job)
    job.work_dir = str(Path(bpy.path.abspath(job.work_dir)) if job.work_dir else default_work_dir())
    for plate in (job.source, job.reference):
        if plate.path:
            plate.path = bpy.path.abspath(plate.path)
    for name in ("dataset_dir", "model_path"):
        if getattr(job, name):
            setattr(job, name, bpy.path.abspath(getattr(job, name)))
    if job.training.device == "auto":
        job.training.device = preferences.get().device  # the user's default compute device
    if job.training.init_weights:
        job.training.init_weights = bpy.path.abspath(job.training.init_weights)
    return job


def job_into_recipe(job: schema.Job, recipe: Any) -> None:
    _write(recipe, job)


def write_job_file(recipe: Any) -> Path:
    """Serialise the recipe into `<work_dir>/job.json` (atomically) and return its path."""
    job = recipe_to_job(recipe)
    path = Path(job.work_dir) / "job.json"
    schema.save_job(job, path)
    return path


def pair_from_dict(data: dict) -> schema.Pair:
    """An engine pair (as printed in a result event) as a schema Pair; unknown keys are ignored."""
    names = {f.name for f in dataclasses.fields(schema.Pair)}
    return schema.Pair(**{k: v for k, v in data.items() if k in names})


def merge_pairs(recipe: Any, pairs: list[schema.Pair]) -> int:
    """Add pairs to the recipe; a pair for a Source frame already listed replaces it. Returns how many were new."""
    existing = {item.source_frame: item for item in recipe.pairs}
    added = 0
    for pair in pairs:
        item = existing.get(pair.source_frame)
        if item is None:
            item = recipe.pairs.add()
            added += 1
        _write(item, pair)
    return added


def reload_pairs_from_job_file(recipe: Any, path: Path) -> int:
    """Replace the recipe's pairs with those of a job.json the engine rewrote (pair import)."""
    job = schema.load_job(path)
    recipe.pairs.clear()
    for pair in job.pairs:
        _write(recipe.pairs.add(), pair)
    return len(job.pairs)


def scope_warnings(recipe: Any) -> list[str]:
    """The guide's pair-count checks for the chosen scope, live (shots come from the last suggestion)."""
    from ..ml.curation import Shot, scope_check

    shots = [Shot(s["name"], s["first"], s["last"]) for s in json.loads(recipe.shots_json or "[]")]
    pairs = [_read(item, schema.Pair) for item in recipe.pairs]
    return scope_check(pairs, recipe.pair_scope, shots)
