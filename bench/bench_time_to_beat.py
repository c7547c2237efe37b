"""Time to beat the 3D-LUT baseline on the sample shot's held-out pairs.

    .venv/bin/python bench/bench_time_to_beat.py                       # CPU: 640x360, 2 minutes
    python3 bench/bench_time_to_beat.py --device cuda --size 2048x1556  # a GPU: 60 s of training
    ... --sample-dir DIR    # reuse (or generate into) a sample folder
    ... --unet              # also train a small UNet for comparison

Builds the sample shot's chroma dataset the way bench_dataset.py does (true warps, a crop
inside the letterbox, every 4th pair held out), fits the 17^3 3D-LUT baseline on the training
pairs and scores it on the held-out pairs: PSNR on the channels the model predicts (Cb and Cr),
all held-out pixels pooled, against the dataset's ground truth (Source Y + aligned Reference
CbCr). Then trains the position-aware small bilateral model with `ml.neural.train.train` (the real
loop: its validation runs every `--validate-every` steps on the same held-out pairs with the
same pooling) and records the wall-clock seconds, counted from the `train()` call (dataset
load to the device and model build included), until held-out PSNR first exceeds the
baseline and the baseline + 3 dB. Training stops at `--max-seconds` or when its step plan ends.

Needs numpy, OpenImageIO, PyOpenColorIO, torch and safetensors; scikit-image only to generate
the sample (a carried `--sample-dir` needs none). No bpy.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_dataset import cpu_name, ensure_sample, sample_job  # noqa: E402

from ml.baseline import apply_baseline, fit_from_dataset  # noqa: E402
from ml.dataset import export_dataset  # noqa: E402
from ml.dataset_io import Dataset, load_dataset  # noqa: E402
from ml.errors import Cancelled  # noqa: E402
from ml.events import Reporter  # noqa: E402
from ml.job import Job  # noqa: E402
from ml.metrics import branch_channels  # noqa: E402
from ml.neural.predict import resolve_device  # noqa: E402
from ml.neural.train import train  # noqa: E402

GOAL_DB = 3.0
NEVER = 10 ** 9  # checkpoint/preview interval that never comes due during the timed run


def pooled_psnr(pairs: list[tuple[np.ndarray, np.ndarray]], branch: str) -> float:
    """PSNR over every pixel of every (prediction, truth) pair on the branch's channels,
    pooled like the trainer's validation (one MSE over all pixels, then PSNR)."""
    total, count = 0.0, 0
    for prediction, truth in pairs:
        diff = branch_channels(prediction, branch).astype(np.float64) - branch_channels(truth, branch)
        total += float(np.sum(diff ** 2))
        count += diff.size
    return float(10.0 * np.log10(count / total))


class _ValidationClock(Reporter):
    """Keeps each held-out validation (step, seconds since `start`, PSNR); prints nothing."""

    def __init__(self, start: float):
        super().__init__(io.StringIO())
        self.start = start
        self.points: list[tuple[int, float, float]] = []

    def emit(self, event: dict) -> None:
        if event.get("type") == "metric" and event.get("name") == "val_psnr":
            # A reference-guided model takes the targets' own Reference where it covers: its score from
            # the Source alone (the fallback) is the one a global grade competes with.
            value = float(event.get("fallback_psnr", event["value"]))
            self.points.append((int(event["step"]), time.perf_counter() - self.start, value))
        elif event.get("type") == "message" and event.get("level") != "info":
            print(f"  trainer: {event['text']}", file=sys.stderr)  # e.g. a batch halved for GPU memory


@dataclass
class Race:
    label: str
    steps_planned: int
    steps_done: int = 0
    seconds: float = 0.0
    points: list[tuple[int, float, float]] = field(default_factory=list)

    def first_above(self, level: float) -> tuple[int, float] | None:
        return next(((step, t) for step, t, value in self.points if value > level), None)


def race(job_dir: Path, dataset_dir: Path, kind: str, settings: dict, max_seconds: float, shot: Job) -> Race:
    """Train one model until the step plan ends or `max_seconds` pass; every validation timed. `shot`
    is the job the dataset was exported from (training checks the dataset against its recipe)."""
    job = dataclasses.replace(shot, name="time_to_beat", work_dir=str(job_dir / kind),
                              training=dataclasses.replace(shot.training, model=kind, **settings))
    start = time.perf_counter()
    clock = _ValidationClock(start)

    result = Race(f"{settings['size']} {kind}", settings["steps"])

    def stop_at_limit(step: int) -> None:
        result.steps_done = step
        if time.perf_counter() - start > max_seconds:
            raise Cancelled(f"time limit at step {step}")

    try:
        train(job, clock, dataset_dir=dataset_dir, out_dir=job_dir / kind / "train", resume=False,
              after_step=stop_at_limit)
    except Cancelled:
        pass  # the time limit: the validations so far are the result
    result.seconds = time.perf_counter() - start
    result.points = clock.points
    return result


def _hit(hit: tuple[int, float] | None) -> str:
    return f"{hit[1]:.1f} (step {hit[0]})" if hit else "not reached"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA, bf16 autocast)"
    return f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads (fp32)"


def run(size: tuple[int, int] = (640, 360), frames: int = 24, sample_dir: str | None = None, device_name: str = "auto",
        max_seconds: float | None = None, steps: int | None = None, validate_every: int | None = None,
        unet: bool = False, scratch: str | None = None, crop: int | None = None, batch: int | None = None) -> str:
    """Run the race(s); returns the markdown section."""
    device = resolve_device(device_name)
    gpu = device.type == "cuda"
    max_seconds = max_seconds or (60.0 if gpu else 120.0)
    settings = {"size": "small", "position": True, "device": device.type,
                "crop_size": crop or (256 if gpu else 128), "batch": batch or (16 if gpu else 8),
                "steps": steps or (6000 if gpu else 2500), "validate_every": validate_every or (100 if gpu else 25),
                "checkpoint_every": NEVER, "preview_every": NEVER}
    width, height = size
    root = Path(tempfile.mkdtemp(prefix="bench_ttb_", dir=scratch))
    try:
        sample = Path(sample_dir) if sample_dir else root / "sample"
        generate_s = ensure_sample(sample, frames, width, height)
        job = sample_job(sample, root / "work", holdout_every=4)
        start = time.perf_counter()
        export_dataset(job, out_dir=root / "dataset")
        export_s = time.perf_counter() - start
        dataset: Dataset = load_dataset(root / "dataset")
        start = time.perf_counter()
        fit = fit_from_dataset(dataset, kind="lut", lut_size=17)
        fit_s = time.perf_counter() - start
        holdout = dataset.holdout_pairs
        baseline_db = pooled_psnr([(apply_baseline(p.input, fit), p.target) for p in holdout], "chroma")
        source_db = pooled_psnr([(p.input, p.target) for p in holdout], "chroma")
        print(f"  baseline {baseline_db:.2f} dB, source {source_db:.2f} dB; fit {fit_s:.1f} s", file=sys.stderr)

        start = time.perf_counter()
        torch.zeros(1, device=device).sum().item()  # CUDA context: paid once per process, not per race
        init_s = time.perf_counter() - start
        races = []
        for kind in ["bilateral"] + (["unet"] if unet else []):
            races.append(race(root, root / "dataset", kind, settings, max_seconds, job))
            print(f"  {kind}: {races[-1].points[-1:]} after {races[-1].seconds:.1f} s", file=sys.stderr)

        crop_w, crop_h = dataset.pairs[0].input.shape[1], dataset.pairs[0].input.shape[0]
        lines = [f"### Time to beat the 3D-LUT baseline, sample shot at {width}x{height}", "",
                 f"Device: {_device_name(device)}, torch {torch.__version__}, {os.cpu_count()} host cores. "
                 f"Sample shot: {frames} frames ({'reused' if not generate_s else f'generated in {generate_s:.0f} s'}"
                 f"), {len(dataset.pairs)} pairs cropped to {crop_w}x{crop_h}, {len(holdout)} held out "
                 f"(every 4th); dataset export {export_s:.1f} s, 17^3 LUT fit {fit_s:.1f} s, device start "
                 f"{init_s:.1f} s (none counted below). "
                 f"Training: batch {settings['batch']} x {settings['crop_size']}^2 crops, position channels on, "
                 f"{settings['steps']} planned steps (warm-up + cosine), validation every "
                 f"{settings['validate_every']} steps (its time counts), limit {max_seconds:.0f} s.", "",
                 "PSNR on Cb,Cr of the held-out pairs against the ground truth (Source Y + aligned Reference CbCr), "
                 "all pixels pooled; a reference-guided model (the default) is scored from the Source alone, as "
                 "the baseline is (with its guide it takes these targets' own Reference). Seconds count from the "
                 "`train()` call: dataset load, the starting grade's fit, model build and the validations are "
                 "included; step 0 is the starting grade.", "",
                 "| model | Source dB | 3D-LUT baseline dB | model dB at stop | best dB | steps | s trained | "
                 "s to beat baseline | s to baseline +3 dB |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in races:
            last = r.points[-1][2] if r.points else float("nan")
            best = max((v for _, _, v in r.points), default=float("nan"))
            beat, goal = r.first_above(baseline_db), r.first_above(baseline_db + GOAL_DB)
            lines.append(f"| {r.label} | {source_db:.2f} | {baseline_db:.2f} | {last:.2f} | {best:.2f} | "
                         f"{r.steps_done}/{r.steps_planned} | {r.seconds:.1f} | {_hit(beat)} | {_hit(goal)} |")
        lines.append("")
        for r in races:  # the curve, so a model that loses ground after its start shows it
            shown = r.points[::max(1, len(r.points) // 10)]
            lines.append(f"- {r.label}, dB by step: " + ", ".join(f"{step}: {value:.2f}" for step, _, value in shown)
                         + ".")
        goal_met = any((hit := r.first_above(baseline_db + GOAL_DB)) and hit[1] <= 60.0 for r in races)
        lines += ["", f"Goal (baseline + {GOAL_DB:.0f} dB within 60 s of training): "
                  f"{'met' if goal_met else 'not met'} on this device at this size."]
        return "\n".join(lines) + "\n"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu", "mps"])
    parser.add_argument("--size", help="sample Source WxH (default 640x360 on the CPU, 2048x1556 on a GPU)")
    parser.add_argument("--frames", type=int, default=24, help="sample frames (24: the sample shot)")
    parser.add_argument("--sample-dir", help="reuse (or generate into) this sample folder")
    parser.add_argument("--max-seconds", type=float, help="training time limit (default 120 CPU, 60 GPU)")
    parser.add_argument("--steps", type=int, help="planned steps (default 2500 CPU, 6000 GPU)")
    parser.add_argument("--validate-every", type=int, help="steps between validations (default 25 CPU, 100 GPU)")
    parser.add_argument("--crop", type=int, help="training crop (default 128 CPU, 256 GPU)")
    parser.add_argument("--batch", type=int, help="batch (default 8 CPU, 16 GPU)")
    parser.add_argument("--unet", action="store_true", help="also race a small UNet")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    parser.add_argument("--scratch", help="folder for the temporary files (default: the system temp)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    size = args.size or ("2048x1556" if device.type == "cuda" else "640x360")
    width, height = (int(v) for v in size.lower().split("x"))
    print(run((width, height), args.frames, args.sample_dir, args.device, args.max_seconds, args.steps,
              args.validate_every, args.unet, args.scratch, args.crop, args.batch))


if __name__ == "__main__":
    main()
