"""`train`: train the job's recovery model on its exported dataset (resumes by default).

Multi-GPU: `torchrun --nproc_per_node N -m ml train job.json` trains data-parallel."""

from __future__ import annotations

import dataclasses
import os

from ..errors import FilmRecoveryError
from . import require_torch

HELP = "train the recovery model on the exported dataset (resumes from the last checkpoint)"
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--steps", type=int, help="train to this many steps (overrides training.steps/epochs)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over: remove earlier checkpoints instead of resuming from them")
    parser.add_argument("--out", help="output folder (default: <work_dir>/train)")
    parser.add_argument("--dataset", help="dataset folder (default: job.dataset_dir or <work_dir>/dataset)")


def run(args, job, reporter) -> None:
    require_torch("train")
    from ..neural.train import train

    if args.steps is not None:
        if args.steps < 1:
            raise FilmRecoveryError("--steps must be at least 1.", where="--steps")
        job = dataclasses.replace(job, training=dataclasses.replace(job.training, steps=args.steps, epochs=0))
    result = train(job, reporter, dataset_dir=args.dataset, out_dir=args.out, resume=not args.no_resume)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 speaks
        reporter.result(**result.as_dict())
