"""`score`: a unit's model per shot on that shot's held-out pairs, against a baseline graded for that
shot alone (what decides the plan's shot-level fallbacks; see ml/neural/shot_score.py)."""

from __future__ import annotations

import json
from pathlib import Path

from . import require_torch

HELP = ("score the job's model per shot on each shot's held-out pairs against the 3D-LUT baseline (fitted on "
        "the unit's or the shot's training pairs; PSNR, CIEDE2000, SSIM); writes the JSON the farm decides "
        "shot fallbacks with")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="", help="scores file (default <dataset>/../scores.json)")
    parser.add_argument("--model", default="", help="model (default job.model_path)")
    parser.add_argument("--baseline", choices=["unit", "shot"], default="unit",
                        help="the baseline to beat: the 3D LUT fitted on the unit's training pairs (default, what "
                             "`ml baseline` fits) or on each shot's own training pairs (stricter)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu", "mps"], default="cpu",
                        help="device for the held-out predictions (default cpu: a few small images)")


def run(args, job, reporter) -> None:
    require_torch("score")
    from ..errors import FilmRecoveryError
    from ..imageio import atomic_path
    from ..neural.shot_score import score_shots

    dataset = Path(job.dataset_dir) if job.dataset_dir else job.work_path("dataset")
    model = args.model or job.model_path
    if not model:
        raise FilmRecoveryError("no model to score.", where="job.model_path",
                                fix="Set job.model_path or pass --model PATH.")
    scores = score_shots(dataset, model, job.branch, args.device,
                         progress=lambda done, total: reporter.progress(done, total, "score"), baseline=args.baseline,
                         grain=job.output.grain)
    out = Path(args.out) if args.out else dataset.parent / "scores.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
    for shot, numbers in scores["shots"].items():
        if numbers["scored"]:
            reporter.metric("shot_model_psnr", numbers["model"]["psnr"], shot=shot,
                            baseline=numbers["baseline"]["psnr"], source=numbers["source"]["psnr"])
    reporter.result(scores=str(out), shots=scores["shots"], model=scores["model"])
