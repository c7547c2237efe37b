"""Farm panel support: the plan file read for drawing (cached by modification time), the engine
arguments of the farm buttons, and the Flamenco submission. Plain logic; the operators stay thin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bpy

from ..ml.errors import FilmRecoveryError
from ..ml.farm import flamenco_submission, submit_to_flamenco
from ..ml.plan import Plan, load_plan

_cache: dict[str, tuple[float, Plan | None, str]] = {}


def plan_path(fr) -> str:
    return bpy.path.abspath(fr.farm.plan_path) if fr.farm.plan_path else ""


def cached_plan(path: str) -> tuple[Plan | None, str]:
    """(plan, "") or (None, why): read again only when the file changed (panels draw often)."""
    if not path:
        return None, "No plan yet: press Plan Reel."
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None, f"No plan at {path}."
    hit = _cache.get(path)
    if hit is None or hit[0] != mtime:
        try:
            hit = (mtime, load_plan(path), "")
        except FilmRecoveryError as exc:
            hit = (mtime, None, exc.describe())
        _cache[path] = hit
    return hit[1], hit[2]


def plan_arguments(farm) -> list[str]:
    args = ["--scope", farm.scope, "--min-gain", f"{farm.min_gain:g}", "--chunk-frames", str(farm.chunk_frames),
            "--baseline", farm.baseline]
    if farm.use_min_psnr:
        args += ["--min-psnr", f"{farm.min_psnr:g}"]
    args += ["--max-drop", f"{farm.max_drop:g}"] if farm.use_max_drop else ["--no-max-drop"]
    return args


def farm_arguments(farm, path: str, unit: str = "") -> list[str]:
    """`python -m ml farm` arguments for the panel's settings (one unit, or the whole plan)."""
    args = [path, "--retries", str(farm.retries)]
    if farm.threads:
        args += ["--threads", str(farm.threads)]
    if farm.where == "scheduler":
        if not farm.scheduler.strip():
            raise FilmRecoveryError("no scheduler address.", where="Farm > Scheduler",
                                    fix="Give the Dask scheduler's address, e.g. tcp://farm-head:8786.")
        args += ["--scheduler", farm.scheduler.strip()]
    elif farm.where == "serial":
        args += ["--serial"]
    else:
        args += ["--local", str(farm.workers)]
    if unit:
        args += ["--unit", unit]
    return args


def submit(fr) -> dict[str, Any]:
    """Build the plan's Flamenco job and POST it to the Manager; returns the Manager's answer."""
    path = plan_path(fr)
    if not path or not Path(path).exists():
        raise FilmRecoveryError("no plan to submit.", where="Farm > Plan", fix="Press Plan Reel first.")
    farm = fr.farm
    submission = flamenco_submission(path, python=farm.flamenco_python or "python3",
                                     engine_root=farm.flamenco_engine_root, priority=farm.flamenco_priority)
    return submit_to_flamenco(farm.manager_url.strip(), submission)
