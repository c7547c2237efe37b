"""The scene recipe: one PointerProperty on the Scene (`scene.film_recovery`).

The PropertyGroups are generated from the engine's job schema (ml/job.py), so the recipe that
saves with the .blend and the job.json the engine reads can never drift apart. Extra UI state
(job progress, QC checklist, last results) lives beside the schema fields and is not exported.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

import bpy

from ..ml import job as schema

# Field help shown as tooltips; fields not listed get their name as label.
FIELD_HELP: dict[str, str] = {
    "work_dir": "Folder for datasets, checkpoints, renders and reports (default: beside the .blend)",
    "branch": "Chroma: learn Reference colour (Source Y + Reference CbCr). "
              "Spatial: learn Reference detail (Reference Y + Source CbCr)",
    "path": "Image sequence pattern (#### or %04d) or movie file",
    "ingest": "Display-referred export (Rec.709 2.4 ODT, 0-1) or ACES2065-1 master "
              "(taken through the ACES 1.3 Rec.709 output transform)",
    "roi": "Central fraction of the frame used to solve alignment (conservative ROI)",
    "holdout": "Keep this pair out of training and use it for validation",
    "align_score": "Structural misalignment after alignment (lower is better; -1 = not measured)",
    "compression": "Output EXR compression. PIZ: lossless, smallest and fastest on grainy film. "
                   "ZIP: lossless, smallest on clean flat pictures. DWAA: lossy, archive only "
                   "(the display frames stay lossless)",
}


class FILMREC_PG_FrameRef(bpy.types.PropertyGroup):
    frame: bpy.props.IntProperty(name="Frame")


class FILMREC_PG_FrameMatrix(bpy.types.PropertyGroup):
    """One 3x3 warp (Reference px -> Source px), row-major, for one Source frame ("global": every frame)."""

    key: bpy.props.StringProperty(name="Frame")
    matrix: bpy.props.FloatVectorProperty(name="Matrix", size=9,
                                          default=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    # The same 9 numbers at full precision (JSON): Blender's float properties are 32-bit, and a warp
    # rounded to float32 moves the target by a few thousandths, so the add-on's dataset would not be
    # the CLI's. Used while it agrees with `matrix` (see addon.recipe.matrix_values).
    exact: bpy.props.StringProperty(name="Matrix (full precision)", default="", options={"HIDDEN"})


def _limits(meta: Any, kind: type) -> dict[str, Any]:
    """The schema field's range (ml/job.py) as the property's hard limits, so the UI cannot hold a
    value the engine refuses."""
    limits = {}
    for key, bound in (("min", meta.get("low")), ("max", meta.get("high"))):
        if bound is not None:
            limits[key] = kind(bound)
    return limits


def _bpy_property(cls_name: str, name: str, tp: Any, default: Any, meta: Any) -> Any:
    """A bpy property for one dataclass field, by its type hint and range."""
    options: dict[str, Any] = {"name": name.replace("_", " ").title(), "description": FIELD_HELP.get(name, "")}
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return bpy.props.PointerProperty(type=_GENERATED[tp.__name__], **options)
    if origin is Literal:
        items = [(value, value.replace("_", " ").title(), "") for value in typing.get_args(tp)]
        return bpy.props.EnumProperty(items=items, default=default, **options)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(item_tp, type) and dataclasses.is_dataclass(item_tp):
            return bpy.props.CollectionProperty(type=_GENERATED[item_tp.__name__], **options)
        if item_tp is int:
            return bpy.props.CollectionProperty(type=FILMREC_PG_FrameRef, **options)
        if item_tp is float:
            return bpy.props.FloatVectorProperty(size=len(default), default=default, **_limits(meta, float),
                                                 **options)
    if origin is dict:
        return bpy.props.CollectionProperty(type=FILMREC_PG_FrameMatrix, **options)
    if tp is bool:
        return bpy.props.BoolProperty(default=default, **options)
    if tp is int:
        return bpy.props.IntProperty(default=default, **_limits(meta, int), **options)
    if tp is float:
        return bpy.props.FloatProperty(default=default, **_limits(meta, float), **options)
    if tp is str:
        subtype: Literal["DIR_PATH", "FILE_PATH", "NONE"] = (
            "DIR_PATH" if name.endswith("_dir")
            else "FILE_PATH" if name in ("path", "model_path", "init_weights") else "NONE")
        return bpy.props.StringProperty(default=default, subtype=subtype, **options)
    raise TypeError(f"{cls_name}.{name}: no bpy property for {tp!r}")


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


_GENERATED: dict[str, type] = {}


def _generate(cls: type, extra: dict[str, Any] | None = None) -> type:
    hints = typing.get_type_hints(cls)
    annotations = {}
    for field in dataclasses.fields(cls):
        if field.name in ("schema", "schema_version"):
            continue  # fixed by the serialiser, not user state
        annotations[field.name] = _bpy_property(cls.__name__, field.name, hints[field.name], _field_default(field),
                                                field.metadata)
    annotations.update(extra or {})
    generated = type(f"FILMREC_PG_{cls.__name__}", (bpy.types.PropertyGroup,),
                     {"__annotations__": annotations, "__doc__": cls.__doc__})
    _GENERATED[cls.__name__] = generated
    return generated


class FILMREC_PG_Check(bpy.types.PropertyGroup):
    """One QC checklist line."""

    check: bpy.props.StringProperty(name="Check")
    status: bpy.props.EnumProperty(items=[("pass", "Pass", ""), ("warn", "Warn", ""), ("fail", "Fail", "")])
    message: bpy.props.StringProperty(name="Message")


class FILMREC_PG_JobState(bpy.types.PropertyGroup):
    """What the running or last engine job reported (UI only, not exported)."""

    running: bpy.props.BoolProperty(name="Running")
    command: bpy.props.StringProperty(name="Command")
    stage: bpy.props.StringProperty(name="Stage")
    progress: bpy.props.FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    message: bpy.props.StringProperty(name="Message")
    events_seen: bpy.props.IntProperty(name="Events")
    last_error: bpy.props.StringProperty(name="Last error")
    last_result: bpy.props.StringProperty(name="Last result (JSON)")
    exit_code: bpy.props.IntProperty(name="Exit code", default=-1)
    preview_path: bpy.props.StringProperty(name="Preview", subtype="FILE_PATH")
    metrics: bpy.props.StringProperty(name="Last metrics (JSON)")


class FILMREC_PG_Farm(bpy.types.PropertyGroup):
    """Film scale (Farm panel): plan settings, where the farm runs, Flamenco (UI only, not exported)."""

    plan_path: bpy.props.StringProperty(name="Plan", subtype="FILE_PATH",
                                        description="plan.json written by Plan Reel (python -m ml plan)")
    scope: bpy.props.EnumProperty(
        name="Training unit", description="One model per sequence, per scene or per shot",
        items=[("sequence", "Sequence", "One model for every shot (24-64+ pairs)"),
               ("scene", "Scene", "One model per run of alike shots (12-24 pairs each)"),
               ("shot", "Shot", "One model per shot (4-9 pairs each)")], default="sequence")
    min_gain: bpy.props.FloatProperty(
        name="Min gain (dB)", default=0.0, min=-20.0, max=20.0,
        description="A shot gets its own model when its unit's model gains less than this over the baseline "
                    "on the shot's held-out pairs (0: when it loses)")
    use_min_psnr: bpy.props.BoolProperty(name="Use PSNR threshold", default=False)
    min_psnr: bpy.props.FloatProperty(name="Min PSNR (dB)", default=30.0, min=0.0, max=100.0,
                                      description="A shot whose model scores below this gets its own model")
    use_max_drop: bpy.props.BoolProperty(name="Use median rule", default=True)
    max_drop: bpy.props.FloatProperty(
        name="Max drop (dB)", default=3.0, min=0.0, max=50.0,
        description="A shot gets its own model when its unit's model scores this far below the unit's median shot")
    baseline: bpy.props.EnumProperty(
        name="Baseline", items=[("unit", "Unit LUT", "The 3D LUT fitted on the unit's training pairs"),
                                ("shot", "Shot LUT", "A 3D LUT fitted on the shot's own training pairs (stricter)")],
        default="unit")
    chunk_frames: bpy.props.IntProperty(name="Frames per task", default=48, min=1, max=100000)
    where: bpy.props.EnumProperty(
        name="Run on", items=[("local", "Local", "An embedded Dask cluster on this machine"),
                              ("scheduler", "Dask Cluster", "A running Dask scheduler"),
                              ("serial", "Serial", "One task after another, no Dask")], default="local")
    workers: bpy.props.IntProperty(name="Workers", default=2, min=1, max=256)
    scheduler: bpy.props.StringProperty(name="Scheduler", default="", description="e.g. tcp://farm-head:8786")
    threads: bpy.props.IntProperty(name="Threads per task", default=0, min=0, max=256,
                                   description="CPU threads per task (0: the engine's own choice)")
    retries: bpy.props.IntProperty(name="Retries", default=2, min=0, max=20)
    manager_url: bpy.props.StringProperty(name="Manager URL", default="http://localhost:8080")
    flamenco_python: bpy.props.StringProperty(name="Worker Python", default="python3",
                                              description="Python with torch on the Flamenco workers")
    flamenco_engine_root: bpy.props.StringProperty(
        name="Engine folder", subtype="DIR_PATH", default="",
        description="Where the workers see this extension's folder (empty: this machine's path)")
    flamenco_priority: bpy.props.IntProperty(name="Priority", default=50, min=0, max=100)
    last_submission: bpy.props.StringProperty(name="Last submission", default="")


def _build_classes() -> list[type]:
    _GENERATED.clear()
    order = [schema.Plate, schema.Conform, schema.Balance, schema.Cleanup, schema.Pair,
             schema.Alignment, schema.CropKey, schema.Crop, schema.Training, schema.Output]
    classes = [_generate(cls) for cls in order]
    recipe = _generate(schema.Job, extra={
        "pairs_index": bpy.props.IntProperty(name="Active pair"),
        "pair_scope": bpy.props.EnumProperty(
            name="Scope", description="How much footage the pairs must teach (the guide's pair counts)",
            items=[("shot", "Shot (4-9)", "One shot: 4 to 9 pairs"),
                   ("scene", "Scene (12-24)", "One scene: 12 to 24 pairs"),
                   ("sequence", "Sequence (24-64+)", "A sequence: 24 to 64 or more pairs")],
            default="shot"),
        "crop_bypass": bpy.props.BoolProperty(
            name="Bypass crop", description="Show the full frame while solving; the crop is applied last"),
        "compositor_view": bpy.props.StringProperty(name="Compositor view", default="ground_truth"),
        "align_warnings": bpy.props.StringProperty(name="Edge warnings", default=""),
        "truth_dir": bpy.props.StringProperty(
            name="Truth folder", subtype="DIR_PATH",
            description="Clean frames (clean.####.exr) to score against, as the sample shot has"),
        "baseline_cube": bpy.props.StringProperty(name="Baseline .cube", subtype="FILE_PATH"),
        "report_path": bpy.props.StringProperty(name="Report", subtype="FILE_PATH"),
        "report_verdict": bpy.props.StringProperty(name="Verdict"),
        "beat_baseline": bpy.props.BoolProperty(name="Beat the baseline"),
        "infer_display": bpy.props.StringProperty(name="Recovered frames", subtype="FILE_PATH"),
        "manual_offset": bpy.props.FloatVectorProperty(
            name="Offset", size=2, description="Manual nudge of the Reference in Source pixels (y up)"),
        "manual_angle": bpy.props.FloatProperty(name="Angle", description="Manual turn in degrees (counter-clockwise)"),
        "manual_scale": bpy.props.FloatProperty(name="Scale", default=1.0, min=0.5, max=2.0),
        "shots_json": bpy.props.StringProperty(name="Shots (JSON)", default="[]"),
        "reference_offset": bpy.props.IntProperty(
            name="Reference offset", description="Reference frame = Source frame + this (temporal match)"),
        "qc_checks": bpy.props.CollectionProperty(type=FILMREC_PG_Check),
        "qc_status": bpy.props.StringProperty(name="QC status", default=""),
        "job_state": bpy.props.PointerProperty(type=FILMREC_PG_JobState),
        "farm": bpy.props.PointerProperty(type=FILMREC_PG_Farm),
    })
    return [FILMREC_PG_FrameRef, FILMREC_PG_FrameMatrix, FILMREC_PG_Check, FILMREC_PG_JobState, FILMREC_PG_Farm,
            *classes, recipe]


_registered: list[type] = []


def recipe_of(scene: bpy.types.Scene | None) -> Any:
    """The scene's recipe, `scene.film_recovery`. Its PropertyGroup is generated at register time, so no
    stub knows its fields: it is typed Any here, in one place, rather than ignored at every use."""
    owner: Any = scene
    return owner.film_recovery


def register() -> None:
    _registered[:] = _build_classes()
    for cls in _registered:
        bpy.utils.register_class(cls)
    # The stubs know Blender's own Scene properties only: this one is added here, at run time.
    bpy.types.Scene.film_recovery = bpy.props.PointerProperty(type=_GENERATED["Job"])  # type: ignore[attr-defined]


def unregister() -> None:
    del bpy.types.Scene.film_recovery  # type: ignore[attr-defined]
    for cls in reversed(_registered):
        bpy.utils.unregister_class(cls)
    _registered.clear()
    _GENERATED.clear()
