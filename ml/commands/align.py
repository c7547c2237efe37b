"""`align`: solve the Reference→Source warps, score each pair, propose the shared crop.

Writes work_dir/align/align.json (atomically) and reports the same payload as the result:
  solves            {str(source frame): 9 floats}, plus "global" (the shot's matrix) in global
                    mode; failed frames are left out so consumers fall back to global/conform
  frames            {str(frame): {confidence, status, iterations, message}}
  pairs             [{source_frame, reference_frame, align_score (px), misaligned, matrix_from}]
  crop              proposed shared crop (job.Crop fields, lower-left origin)
  edge_warnings     [text]: empty/smeared borders inside the crop in use (job.crop if enabled,
                    else the proposal)
  solves_sha256     digest of `solves` (ml.alignment_apply.solves_digest): `dataset` refuses while
                    these solves are not the job's (solved but never applied)

--apply then writes the solves, pair scores and crop proposal into job.json (atomically), by the
same rules as the add-on's Solve Alignment (ml.alignment_apply.apply_alignment_result).
"""

from __future__ import annotations

import json

from ..align import MODELS
from ..align_stage import align_shot
from ..alignment_apply import ALIGN_FILE, apply_alignment_result
from ..imageio import atomic_path
from ..job import Job, save_job

HELP = "align the Reference to the Source (auto solve), score pairs, propose the shared crop"
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--frames", default="", help="Source frame range A-B (default: the accepted pairs, "
                        "or the whole Source when there are none)")
    parser.add_argument("--model", choices=MODELS, default=None, help="motion model (default: job.alignment.model)")
    parser.add_argument("--mode", choices=["global", "per_frame"], default=None,
                        help="one matrix for the shot, or per-frame gate-weave tracking (default: job.alignment.mode)")
    parser.add_argument("--apply", action="store_true",
                        help="write the solves, pair scores and proposed crop (unless job.crop is enabled) "
                             "into job.json, as the add-on's Solve Alignment does")


def run(args, job: Job, reporter) -> None:
    payload = align_shot(job, reporter, args.frames, args.model, args.mode)
    out = job.work_path(*ALIGN_FILE)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
    # align.json first, job.json second: if anything stops in between, `dataset` sees solves that
    # were never applied and says so, instead of building on the old ones.
    if args.apply:
        applied = apply_alignment_result(job, payload)
        save_job(applied, args.job)
        crop_note = "the proposed crop" if applied.crop != job.crop else "the job's own crop kept"
        reporter.message(f"{len(payload['solves'])} warp(s) and pair scores written to {args.job}; {crop_note}.")
    reporter.result(path=str(out), applied=bool(args.apply), **payload)
