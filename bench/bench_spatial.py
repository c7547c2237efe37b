"""Spatial recovery on the spatial sample shot: how much of the Reference's detail the model recovers.

    .venv/bin/python bench/bench_spatial.py                      # CPU: 256x144, the default schedule
    .venv/bin/python bench/bench_spatial.py --grid               # the measurements behind the defaults
    python3 bench/bench_spatial.py --device cuda --size 2048x1080 # a GPU: the 2K figure

Generates the spatial sample (`ml sample --branch spatial`: a soft, grainy Source; a sharper
Reference in its own grade), builds the spatial dataset with the true warps and a crop inside the
letterbox (every 4th pair held out), fits the 17^3 3D-LUT baseline on the training pairs and
trains with `ml.neural.train.train` (the real loop). Then, on the held-out frames against the truth
(the clean frame's luma in the Reference's grade, the Source's CbCr):

- luma PSNR and SSIM of the Source, the baseline, the model and the Reference's own luma (the
  aligned Reference, what the dataset's target holds);
- the share of the luma gap between the baseline and the Reference that the model closes;
- validation at the end of the schedule against its first quarter (it must not get worse).

Every run also trains the default without the Reference at inference (`reference_guided` off, a
Source-only model). `--grid` trains the variants the spatial defaults were chosen from (UNet size,
gradient loss, crop, augmentation, position input, learning rate).
Prints a markdown section (bench/run_all.py puts it into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from bench_dataset import cpu_name, default_crop  # noqa: E402

from ml.baseline import apply_baseline, fit_from_dataset  # noqa: E402
from ml.dataset import export_dataset  # noqa: E402
from ml.dataset_io import DatasetPair, load_dataset  # noqa: E402
from ml.evaluation import crop_box  # noqa: E402
from ml.events import Reporter  # noqa: E402
from ml.imageio import frame_path, read_image  # noqa: E402
from ml.job import Job, Pair, Plate, Training  # noqa: E402
from ml.metrics import psnr, ssim  # noqa: E402
from ml.primitives import luma  # noqa: E402
from ml.sample import INFO_FILE, TRUTH_FILE, apply_reference_grade, generate_sample  # noqa: E402

NEVER = 10 ** 9


class _Validations(Reporter):
    """Keeps the trainer's validations (step, PSNR); prints nothing."""

    def __init__(self):
        super().__init__(io.StringIO())
        self.points: list[tuple[int, float]] = []

    def emit(self, event: dict) -> None:
        if event.get("type") == "metric" and event.get("name") == "val_psnr":
            self.points.append((int(event["step"]), float(event["value"])))


def spatial_job(sample_dir: Path, work_dir: Path, holdout_every: int = 4) -> Job:
    """A spatial job on the spatial sample: pairs from truth.json, the true warps, a crop."""
    info = json.loads((sample_dir / INFO_FILE).read_text())
    truth = json.loads((sample_dir / TRUTH_FILE).read_text())
    warps = {r["frame"]: r["M"] for r in truth["reference_frames"]}
    pairs = [Pair(source_frame=p["source_frame"], reference_frame=p["reference_frame"], shot=p["shot"])
             for p in truth["pairs"] if p["reference_frame"] is not None]
    width, height = info["source_size"]
    job = Job(name="spatial", work_dir=str(work_dir), branch="spatial",
              source=Plate(path=info["source_pattern"], first_frame=info["first_frame"], last_frame=info["last_frame"]),
              reference=Plate(path=info["reference_pattern"], first_frame=info["first_frame"],
                              last_frame=info["last_frame"]),
              pairs=pairs, crop=default_crop(width, height))
    job.alignment.mode = "per_frame"
    job.alignment.solves = {str(p.source_frame): warps[p.reference_frame] for p in pairs}
    job.training.holdout_every = holdout_every
    return job


@dataclass
class Shot:
    sample_dir: Path
    job: Job
    dataset_dir: Path
    truth: dict[str, np.ndarray]  # held-out pair name -> truth luma (clean, in the Reference's grade)
    frames: dict[str, int]


def build_shot(root: Path, width: int, height: int, frames: int = 24, seed: int = 0) -> Shot:
    sample_dir = root / "sample"
    generate_sample(sample_dir, seed=seed, frames=frames, width=width, height=height, branch="spatial")
    job = spatial_job(sample_dir, root / "work")
    dataset_dir = root / "dataset"
    export_dataset(job, out_dir=dataset_dir)
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    truth_json = json.loads((sample_dir / TRUTH_FILE).read_text())
    info = json.loads((sample_dir / INFO_FILE).read_text())
    truth, numbers = {}, {}
    for entry in manifest["pairs"]:
        if not entry.get("holdout"):
            continue
        frame = int(entry["source_frame"])
        clean = read_image(frame_path(info["clean_pattern"], frame))
        box = crop_box(job.crop, *clean.shape[:2], frame)
        graded = apply_reference_grade(clean[box], truth_json["reference_grade"])
        name = entry.get("name") or Path(entry["input"]).stem
        truth[name], numbers[name] = luma(graded), frame
    return Shot(sample_dir, job, dataset_dir, truth, numbers)


def score(images: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> tuple[float, float]:
    """(luma PSNR with every held-out pixel pooled, mean luma SSIM) of name -> RGB against the truth."""
    squared, count, ssims = 0.0, 0, []
    for name, image in images.items():
        y = luma(image)
        squared += float(np.sum((y.astype(np.float64) - truth[name]) ** 2))
        count += y.size
        ssims.append(ssim(y, truth[name]))
    return psnr(np.zeros(1), np.full(1, np.sqrt(squared / count))), float(np.mean(ssims))


def predict_pairs(model_path: Path, pairs: list[DatasetPair], grain: str = "clean") -> dict[str, np.ndarray]:
    """The trained model on each held-out pair's input, placed in its frame as in training (a
    reference-guided model also gets the pair's aligned Reference and coverage, as at inference)."""
    from ml.neural import checkpoint as ckpt
    from ml.neural.models import frame_coords, guide_tensor, rgb_to_ycbcr, ycbcr_to_rgb
    from ml.neural.predict import apply_grain_choice, predict_ycbcr

    model, _ = ckpt.load_model(model_path, "cpu")
    out = {}
    for pair in pairs:
        rgb = torch.from_numpy(np.ascontiguousarray(pair.input)).permute(2, 0, 1)[None]
        source = rgb_to_ycbcr(rgb)
        h, w = source.shape[-2:]
        coords = frame_coords(h, w, pair.origin, pair.frame_size)
        guide = None
        if model.config.guided and pair.guide is not None and pair.coverage is not None:
            guide = guide_tensor(torch.from_numpy(np.ascontiguousarray(pair.guide)).permute(2, 0, 1)[None],
                                 torch.from_numpy(np.ascontiguousarray(pair.coverage))[None, None])
        result = predict_ycbcr(model, source, coords=coords, guide=guide)
        result = apply_grain_choice(result, source, grain, model.config.predicted_channels)
        out[pair.name] = ycbcr_to_rgb(result)[0].permute(1, 2, 0).numpy()
    return out


@dataclass
class Run:
    label: str
    settings: dict
    seconds: float = 0.0
    steps: int = 0
    psnr: float = float("nan")
    ssim: float = float("nan")
    validations: list[tuple[int, float]] = field(default_factory=list)

    def quarter_vs_end(self) -> tuple[float, float]:
        """Validation PSNR nearest the first quarter of the schedule, and at its end."""
        if not self.validations:
            return float("nan"), float("nan")
        quarter = min(self.validations, key=lambda p: abs(p[0] - self.steps / 4))
        return quarter[1], self.validations[-1][1]


def train_run(shot: Shot, root: Path, label: str, settings: dict, device: str = "cpu") -> Run:
    from ml.neural.train import train

    t = {"checkpoint_every": NEVER, "preview_every": NEVER, "device": device, **settings}
    job = dataclasses.replace(shot.job, work_dir=str(root / label), training=Training(**t, holdout_every=4))
    reporter = _Validations()
    start = time.perf_counter()
    result = train(job, reporter, dataset_dir=shot.dataset_dir, out_dir=root / label / "train", resume=False)
    run = Run(label, settings, time.perf_counter() - start, result.steps, validations=reporter.points)
    dataset = load_dataset(shot.dataset_dir)
    # The final model: the schedule's end is what the defaults promise (the best one is kept too).
    images = predict_pairs(Path(result.final_model), dataset.holdout_pairs)
    run.psnr, run.ssim = score(images, shot.truth)
    return run


def reference_points(shot: Shot) -> dict[str, tuple[float, float]]:
    """Source, baseline and the Reference's own luma against the truth on the held-out frames."""
    dataset = load_dataset(shot.dataset_dir)
    fit = fit_from_dataset(dataset, kind="lut", lut_size=17)
    holdout = dataset.holdout_pairs
    return {"Source": score({p.name: p.input for p in holdout}, shot.truth),
            "3D-LUT baseline": score({p.name: apply_baseline(p.input, fit) for p in holdout}, shot.truth),
            "Reference (aligned)": score({p.name: p.target for p in holdout}, shot.truth)}


def source_only(default: dict) -> list[tuple[str, dict]]:
    """The default without the Reference at inference: what a Source-only model gives."""
    return [("Source-only (reference_guided off)", {**default, "reference_guided": False})]


# What `--grid` compares against the default (each row changes one thing).
def grid_settings(default: dict) -> list[tuple[str, dict]]:
    return [("default", default), *source_only(default),
            ("no gradient loss", {**default, "gradient_loss": 0.0}),
            ("no augmentation", {**default, "augment": False}),
            ("position on", {**default, "position": True}),
            ("tiny UNet", {**default, "size": "tiny"}),
            ("learning rate 1e-3", {**default, "learning_rate": 1e-3})]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA, bf16 autocast)"
    return f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads (fp32)"


def run(size: tuple[int, int] = (256, 144), grid: bool = False, device: str = "cpu", steps: int | None = None,
        scratch: str | None = None, only: list[str] | None = None) -> str:
    from ml.job import spatial_training_defaults

    width, height = size
    default = spatial_training_defaults()
    default["validate_every"] = max(default["steps"] // 8, 1)
    if steps:
        default["steps"] = steps
        default["validate_every"] = max(steps // 8, 1)
    root = Path(tempfile.mkdtemp(prefix="bench_spatial_", dir=scratch))
    try:
        start = time.perf_counter()
        shot = build_shot(root, width, height)
        prepare_s = time.perf_counter() - start
        points = reference_points(shot)
        runs = []
        variants = grid_settings(default) if grid else [("default", default), *source_only(default)]
        if only:
            variants = [v for v in variants if v[0] == "default" or v[0] in only]
        for label, settings in variants:
            runs.append(train_run(shot, root, label.replace(" ", "_").replace("'", ""), settings, device))
            runs[-1].label = label
            print(f"  {label}: {runs[-1].psnr:.2f} dB, SSIM {runs[-1].ssim:.4f}, {runs[-1].seconds:.0f} s",
                  file=sys.stderr, flush=True)
        dataset = load_dataset(shot.dataset_dir)
        crop_w, crop_h = dataset.pairs[0].input.shape[1], dataset.pairs[0].input.shape[0]
        base_psnr, ref_psnr = points["3D-LUT baseline"][0], points["Reference (aligned)"][0]
        d = runs[0]
        lines = [f"### Spatial recovery, spatial sample shot at {width}x{height}", "",
                 f"Device: {_device_name(torch.device(device))}, torch {torch.__version__}, {os.cpu_count()} "
                 f"host cores. The spatial sample (`python -m ml sample --branch spatial`): 24 frames, "
                 f"{len(dataset.pairs)} pairs cropped to {crop_w}x{crop_h}, {len(dataset.holdout_pairs)} held out "
                 f"(every 4th); sample, dataset export {prepare_s:.0f} s. Training: the spatial defaults "
                 f"(`ml.job.spatial_training_defaults`): {d.settings['size']} {d.settings['model']}, "
                 f"{d.settings['steps']} steps of batch {d.settings['batch']} x {d.settings['crop_size']}^2, "
                 f"learning rate {d.settings['learning_rate']:g}, Charbonnier + {d.settings['gradient_loss']:g} x "
                 f"gradient L1, augmentation {'on' if d.settings['augment'] else 'off'}, position "
                 f"{'on' if d.settings['position'] else 'off'}; scored is the final model, grain choice `clean`.", "",
                 "Luma PSNR (all held-out pixels pooled) and mean luma SSIM against the truth (the clean frame's "
                 "luma in the Reference's grade). Gap closed = (model - baseline) / (Reference - baseline), in dB.", "",
                 "| | luma PSNR dB | SSIM | train s | gap closed | validation at 1/4 -> end (dB) |",
                 "|---|---|---|---|---|---|"]
        for name, (p, s) in points.items():
            lines.append(f"| {name} | {p:.2f} | {s:.4f} | | | |")
        for r in runs:
            gap = (r.psnr - base_psnr) / (ref_psnr - base_psnr) if ref_psnr > base_psnr else float("nan")
            quarter, end = r.quarter_vs_end()
            lines.append(f"| model: {r.label} | {r.psnr:.2f} | {r.ssim:.4f} | {r.seconds:.0f} | {gap * 100:.0f} % | "
                         f"{quarter:.2f} -> {end:.2f} |")
        gap = (d.psnr - base_psnr) / (ref_psnr - base_psnr) if ref_psnr > base_psnr else float("nan")
        quarter, end = d.quarter_vs_end()
        met = (gap >= 0.5 and d.ssim > points["3D-LUT baseline"][1] and d.ssim > points["Source"][1])
        lines += ["", f"Goal (the default closes at least half the gap, with higher SSIM than the baseline and the "
                  f"Source): {'met' if met else 'NOT met'} ({gap * 100:.0f} %). Validation at the end "
                  f"{'is not worse than' if end >= quarter else 'is WORSE than'} at the first quarter "
                  f"({quarter:.2f} -> {end:.2f} dB, against the dataset target)."]
        return "\n".join(lines) + "\n"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x144", help="spatial sample WxH (default 256x144)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--grid", action="store_true", help="also train the variants the defaults were chosen from")
    parser.add_argument("--steps", type=int, help="override the default schedule's steps")
    parser.add_argument("--only", default="", help="with --grid: comma-separated variant labels to train "
                        "(besides the default), e.g. 'tiny UNet,position on'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scratch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    only = [label.strip() for label in args.only.split(",") if label.strip()]
    print(run((width, height), args.grid, args.device, args.steps, args.scratch, only or None))


if __name__ == "__main__":
    main()
