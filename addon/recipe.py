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
        if dataclasses.is_dataclass(tp):
            values[field.name] = _read(value, tp)
        elif origin is list:
            (item_tp,) = typing.get_args(tp)
            if dataclasses.is_dataclass(item_tp):
                values[field.name] = [_read(item, item_tp) for item in value]
            elif item_tp is int:
                values[field.name] = [item.frame for item in value]
            else:
                values[field.name] = [float(v) for v in value]
        elif origin is dict:
            values[field.name] = {str(item.frame): [float(v) for v in item.matrix] for item in value}
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
            for frame, matrix in sorted(value.items(), key=lambda kv: int(kv[0])):
                new = collection.add()
                new.frame = int(frame)
                new.matrix = matrix
        else:
            setattr(pg, field.name, value)


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
    job = _read(recipe, schema.Job)
    job.work_dir = str(Path(bpy.path.abspath(job.work_dir)) if job.work_dir else default_work_dir())
    for plate in (job.source, job.reference):
        if plate.path:
            plate.path = bpy.path.abspath(plate.path)
    for name in ("dataset_dir", "model_path"):
        if getattr(job, name):
            setattr(job, name, bpy.path.abspath(getattr(job, name)))
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


def recipe_as_json(recipe: Any) -> str:
    return json.dumps(schema.job_to_dict(recipe_to_job(recipe)), indent=2)
