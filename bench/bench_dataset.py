"""Dataset export at 2K: the threaded `export_dataset` against a naive single-threaded loop.

    .venv/bin/python bench/bench_dataset.py                      # 64 pairs of 2048x1556 (66 frames)
    .venv/bin/python bench/bench_dataset.py --pairs 16           # scaled down (18 frames generated)
    .venv/bin/python bench/bench_dataset.py --sample-dir DIR     # reuse a generated sample

The frames come from the built-in sample shot (`ml.sample.generate_sample`), one distinct
Source/Reference frame per pair: `pairs + 2` frames are generated because the last two Source
frames of shot B have no Reference partner. Each pair is warped with the sample's true matrix
(as if alignment were solved perfectly) and cut by one crop inside the letterbox.

Measured, on the same pairs in the same run:
- export: `ml.dataset.export_dataset` end to end (ingest, warp, recombine, validation,
  half-EXR writes, read-back check of the unchanged channels, SHA-256 of four files per pair,
  manifest), with its worker threads;
- export, one worker: the same call with its thread pool held to one worker (same work);
- naive: `make_pair_images` + two `write_exr` calls per pair in a plain Python loop, without
  the validation, read-back check and checksums.
OpenImageIO may use its own threads for EXR compression in all three.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ml.dataset  # noqa: E402
from ml.dataset import export_dataset, make_pair_images  # noqa: E402
from ml.imageio import write_exr  # noqa: E402
from ml.job import Crop, Job, Pair, Plate  # noqa: E402
from ml.sample import INFO_FILE, TRUTH_FILE, generate_sample  # noqa: E402

UNPAIRED_TAIL = 2  # shot B's last Source frames whose Reference partner lies past the end


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ensure_sample(sample_dir: Path, frames: int, width: int, height: int) -> float:
    """Generate the sample unless `sample_dir` already holds one of this size with enough
    frames; returns the generation time in seconds (0 when reused)."""
    info_path = sample_dir / INFO_FILE
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if (tuple(info["source_size"]) == (width, height)
                and info["last_frame"] - info["first_frame"] + 1 >= frames):
            return 0.0
    start = time.perf_counter()
    generate_sample(sample_dir, frames=frames, width=width, height=height)
    return time.perf_counter() - start


def default_crop(width: int, height: int) -> Crop:
    """A crop inside the sample's letterbox, rotation, shift and weave at any size (the same
    proportions as tests/test_dataset.py), in multiples of 16 pixels."""
    x, y = round(0.05 * width), round(0.155 * height)
    return Crop(enabled=True, x=x, y=y, width=int(0.9 * width) // 16 * 16, height=int(0.69 * height) // 16 * 16)


def sample_job(sample_dir: Path, work_dir: Path, pairs: int | None = None, holdout_every: int = 0) -> Job:
    """A chroma job on the sample: pairs from truth.json, the true warps as solves, the crop."""
    info = json.loads((sample_dir / INFO_FILE).read_text())
    truth = json.loads((sample_dir / TRUTH_FILE).read_text())
    warps = {r["frame"]: r["M"] for r in truth["reference_frames"]}
    chosen = [Pair(source_frame=p["source_frame"], reference_frame=p["reference_frame"], shot=p["shot"])
              for p in truth["pairs"] if p["reference_frame"] is not None]
    chosen = chosen[:pairs] if pairs else chosen
    width, height = info["source_size"]
    job = Job(name="bench", work_dir=str(work_dir), branch="chroma",
              source=Plate(path=info["source_pattern"], first_frame=info["first_frame"], last_frame=info["last_frame"]),
              reference=Plate(path=info["reference_pattern"], first_frame=info["first_frame"],
                              last_frame=info["last_frame"]),
              pairs=chosen, crop=default_crop(width, height))
    job.alignment.mode = "per_frame"
    job.alignment.solves = {str(p.source_frame): warps[p.reference_frame] for p in chosen}
    job.training.holdout_every = holdout_every
    return job


class _OneWorker(ThreadPoolExecutor):
    def __init__(self, max_workers: int | None = None, **kwargs):  # noqa: ARG002 - held to one
        super().__init__(max_workers=1, **kwargs)


def naive_export(job: Job, out_dir: Path) -> None:
    for pair in job.pairs:
        images = make_pair_images(job, pair)
        name = f"pair_{pair.source_frame:06d}"
        write_exr(out_dir / "input" / f"{name}.exr", images.input)
        write_exr(out_dir / "target" / f"{name}.exr", images.target)


def run(pairs: int = 64, width: int = 2048, height: int = 1556, frames: int | None = None,
        sample_dir: str | None = None, scratch: str | None = None, naive: bool = True) -> str:
    """Generate (or reuse) the sample, time the exports; returns the markdown section."""
    frames = frames or pairs + UNPAIRED_TAIL
    root = Path(tempfile.mkdtemp(prefix="bench_dataset_", dir=scratch))
    try:
        sample = Path(sample_dir) if sample_dir else root / "sample"
        generate_s = ensure_sample(sample, frames, width, height)
        job = sample_job(sample, root / "work", pairs)
        count = len(job.pairs)
        crop = job.crop
        make_pair_images(job, job.pairs[0])  # untimed: OCIO set-up, first allocations
        rows = []
        start = time.perf_counter()
        export_dataset(job, out_dir=root / "export")
        rows.append(("`export_dataset` (threaded, full checks)", time.perf_counter() - start))
        print(f"  export: {rows[-1][1]:.1f} s", file=sys.stderr)
        shutil.rmtree(root / "export")  # keeps the scratch disk to one export at a time
        with mock.patch.object(ml.dataset, "ThreadPoolExecutor", _OneWorker):
            start = time.perf_counter()
            export_dataset(job, out_dir=root / "export_one")
            rows.append(("`export_dataset`, one worker thread (same work)", time.perf_counter() - start))
        print(f"  export, one worker: {rows[-1][1]:.1f} s", file=sys.stderr)
        shutil.rmtree(root / "export_one")
        if naive:
            start = time.perf_counter()
            naive_export(job, root / "naive")
            rows.append(("naive loop (`make_pair_images` + 2 x `write_exr`, one thread)",
                         time.perf_counter() - start))
            print(f"  naive: {rows[-1][1]:.1f} s", file=sys.stderr)
        lines = [f"### Dataset export, {count} pairs of {width}x{height}",
                 "",
                 f"{cpu_name()}, {os.cpu_count()} cores. {count} distinct Source/Reference frame pairs of the "
                 f"sample shot ({frames} frames, "
                 + (f"generated in {generate_s:.0f} s, not counted" if generate_s else "reused") + "), true warps, crop "
                 f"{crop.width}x{crop.height} at ({crop.x}, {crop.y}); each pair writes a half-EXR input and target.",
                 "",
                 "| path | total s | pairs/s | ms/pair | speed vs one worker |",
                 "|---|---|---|---|---|"]
        one_worker = rows[1][1]
        for label, seconds in rows:
            lines.append(f"| {label} | {seconds:.1f} | {count / seconds:.2f} | {1000 * seconds / count:.0f} | "
                         f"{one_worker / seconds:.2f}x |")
        lines += ["", "The export's thread pool runs pairs in parallel; the one-worker row does the same work "
                  "one pair at a time, the naive loop less (no validation, read-back check or checksums)."]
        return "\n".join(lines) + "\n"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--frames", type=int, help="frames to generate (default: pairs + 2, one per pair)")
    parser.add_argument("--size", default="2048x1556", help="Source WxH")
    parser.add_argument("--sample-dir", help="reuse (or generate into) this sample folder")
    parser.add_argument("--scratch", help="folder for the temporary outputs (default: the system temp)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive single-threaded loop")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(run(args.pairs, width, height, args.frames, args.sample_dir, args.scratch, not args.no_naive))


if __name__ == "__main__":
    main()
