"""Per-shot scores of a unit's model: what decides a shot-level fallback (`ml.plan.decide_fallbacks`).

For every shot of the unit's dataset (the manifest records each pair's shot), on that shot's
held-out pairs (the frames training never optimised on):

- model     the unit's model on the pair's input (the same prediction training validates with: the
            pair's place in its Source frame goes in as the position channels). A reference-guided
            model is scored without its guide, on its Source-only prediction: where the Reference
            covers, every shot gets the Reference's channels alike, so what tells shots apart is
            what the model predicts by itself
- baseline  the MatchGrade-style 3D LUT `ml baseline` fits (`ml.baseline.fit_from_dataset`: 17^3,
            display domain) on the unit's training pairs (`baseline="unit"`, the default), or on *this
            shot's* training pairs alone (`baseline="shot"`: what grading the shot by itself gives, a
            stricter bar)
- source    the untouched input

each against the pair's target, with `ml.metrics.score_image` (PSNR of the branch channels,
CIEDE2000 mean and 95th percentile, luma SSIM) averaged over the shot's held-out pairs
(`ml.evaluation.summarise`). A shot with no held-out pair, or no training pair to fit its baseline
on, is reported unscored. Needs torch (the model); the engine's other modules do not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FilmRecoveryError


def predict_pair(model, metadata: dict[str, Any], pair, device, grain: str = "clean") -> np.ndarray:
    """The model's prediction for a dataset pair's input from the Source alone (no Reference guide),
    each pixel placed in its frame, with job.output.grain applied as `infer` applies it; float32 RGB."""
    import torch

    from .models import frame_coords, rgb_to_ycbcr, ycbcr_to_rgb
    from .predict import apply_grain_choice, check_metadata, predict_ycbcr

    check_metadata(metadata)
    rgb = torch.from_numpy(np.ascontiguousarray(pair.input.transpose(2, 0, 1)))[None].to(device)
    coords = None
    if model.config.position:
        coords = frame_coords(rgb.shape[2], rgb.shape[3], pair.origin, pair.frame_size, device=device)
    with torch.inference_mode():
        source = rgb_to_ycbcr(rgb)
        out = predict_ycbcr(model, source, None, tile=1024, coords=coords)
        out = apply_grain_choice(out, source, grain, model.config.predicted_channels)
    return ycbcr_to_rgb(out)[0].permute(1, 2, 0).float().cpu().numpy()


def score_shots(dataset_dir: str | os.PathLike, model_path: str | os.PathLike, branch: str,
                device: str = "cpu", progress=None, baseline: str = "unit", grain: str = "clean") -> dict[str, Any]:
    """Numbers per shot (see the module docstring), keyed by shot name."""
    from ..baseline import apply_baseline, collect_samples, fit_baseline, fit_from_dataset
    from ..dataset_io import load_dataset
    from ..evaluation import compare, summarise
    from . import checkpoint as ckpt
    from .predict import resolve_device

    dataset = load_dataset(dataset_dir)
    if dataset.branch != branch:
        raise FilmRecoveryError(f"the dataset is {dataset.branch}, the job {branch}.", where=str(dataset_dir),
                                fix="Export the unit's dataset again (`python -m ml dataset unit/job.json`).")
    model_path = Path(model_path)
    if not model_path.exists():
        raise FilmRecoveryError("the unit's model does not exist.", where=str(model_path),
                                fix="Train the unit first (`python -m ml train unit/job.json --out unit/train`).")
    torch_device = resolve_device(device)
    model, metadata = ckpt.load_model(model_path, torch_device)
    if metadata.get("dataset_hash") != dataset.manifest_hash:
        raise FilmRecoveryError("the model was trained on another export of this unit's dataset.",
                                where=str(model_path), fix="Train the unit again on its current dataset.")
    if baseline not in ("unit", "shot"):
        raise FilmRecoveryError(f"unknown baseline {baseline!r}.", where="--baseline", fix="Use unit or shot.")
    unit_fit = fit_from_dataset(dataset, seed=0) if baseline == "unit" else None
    shot_of = {entry["name"]: str(entry.get("shot", "")) for entry in dataset.manifest["pairs"]}
    shots: dict[str, list] = {}
    for pair in dataset.pairs:
        shots.setdefault(shot_of.get(pair.name, ""), []).append(pair)
    out: dict[str, Any] = {}
    total = sum(1 for p in dataset.pairs if p.holdout)
    done = 0
    for shot, pairs in sorted(shots.items(), key=lambda item: (len(item[0]), item[0])):
        held = [p for p in pairs if p.holdout]
        training = [p for p in pairs if not p.holdout]
        if not held or not training:
            out[shot] = {"scored": False, "held_out": len(held), "training_pairs": len(training),
                         "why": "no held-out pair" if not held else "no training pair to fit its baseline on"}
            continue
        if unit_fit is not None:
            fit = unit_fit
        else:
            inputs, targets = collect_samples(((p.input, p.target) for p in training), seed=0)
            fit = fit_baseline(inputs, targets, "lut", "display", 17)
        comparisons = []
        for pair in held:
            comparisons.append(compare(pair.name, 0, pair.input, apply_baseline(pair.input, fit),
                                       predict_pair(model, metadata, pair, torch_device, grain), pair.target, branch,
                                       thumbnail_width=64))
            done += 1
            if progress:
                progress(done, total)
        table = summarise(comparisons)
        out[shot] = {"scored": True, "held_out": len(held), "training_pairs": len(training),
                     "frames": [int(entry["source_frame"]) for entry in dataset.manifest["pairs"]
                                if entry["name"] in {p.name for p in held}],
                     **{method: {k: float(v) for k, v in scores.items()} for method, scores in table.items()}}
    return {"schema": "film_recovery.shot_scores", "version": 1, "branch": branch,
            "model": str(model_path), "model_step": int(metadata.get("step", 0)),
            "model_hash": str((metadata.get("weights") or {}).get("sha256", "")),
            "dataset_hash": dataset.manifest_hash, "baseline": f"lut 17^3 display, fitted on the {baseline}'s training pairs",
            "baseline_scope": baseline, "shots": out}
