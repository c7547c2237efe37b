"""`balance`: estimate the Source's neutral pre-balance (out = in * gain + offset per channel)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..balance import apply_balance, cast_estimate, estimate_balance
from ..ingest import plate_frames, read_plate_frame
from ..job import save_job

HELP = "estimate the Source's neutral pre-balance from a sample of frames (--write stores it in job.json)"
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--frames", type=int, default=12, help="how many Source frames to sample (evenly spaced)")
    parser.add_argument("--low", type=float, default=0.5, help="black-point percentile")
    parser.add_argument("--high", type=float, default=99.5, help="white-point percentile")
    parser.add_argument("--write", action="store_true", help="store the balance (enabled) in job.json, atomically")


def sample_frames(frames: list[int], count: int) -> list[int]:
    """`count` evenly spaced frames including the first and last."""
    if count >= len(frames):
        return list(frames)
    picks = np.linspace(0, len(frames) - 1, max(count, 1)).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def run(args, job, reporter) -> None:
    frames = sample_frames(plate_frames(job.source), args.frames)
    images = []
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="balance") as pool:
        for done, image in enumerate(pool.map(lambda f: read_plate_frame(job.source, f), frames), start=1):
            images.append(image)
            reporter.progress(done, len(frames), "balance", f"source {frames[done - 1]}")
    balance = estimate_balance(images, args.low, args.high)
    before = cast_estimate(images)
    after = cast_estimate([apply_balance(image, balance) for image in images])
    reporter.metric("cast_before", max(abs(c) for c in before))
    reporter.metric("cast_after", max(abs(c) for c in after))
    if args.write:
        job.balance = balance
        save_job(job, args.job)
        reporter.message(f"Balance written to {args.job}.")
    reporter.result(balance=dataclasses.asdict(balance), frames=frames, cast_before=before, cast_after=after,
                    written=bool(args.write))
