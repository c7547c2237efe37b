"""Training and inference speed of every model size on this machine's device.

Runs the trainer's real optimisation step (crop sampling, autocast, AdamW) on a synthetic
in-memory dataset and prints a markdown table: steps/s, crops/s, training megapixels/s and
full-frame inference frames/s.

    python bench/bench_train.py --quick            # CPU-sized: small crops, few steps
    python bench/bench_train.py --batch 16 --crop 256 --frame 4096x2160   # a GPU run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.dataset_io import Dataset, DatasetPair  # noqa: E402
from ml.job import Job, Training  # noqa: E402
from ml.neural.models import parameter_count, rgb_to_ycbcr  # noqa: E402
from ml.neural.predict import predict_ycbcr  # noqa: E402
from ml.neural.train import _Distributed, _SilentReporter, _Trainer  # noqa: E402


def _synthetic_dataset(size: int, pairs: int = 4) -> Dataset:
    rng = np.random.default_rng(0)
    items = []
    for i in range(pairs):
        coarse = rng.random((size // 16, size // 16, 3), dtype=np.float32)
        clean = np.kron(coarse, np.ones((16, 16, 1), np.float32))
        clean = np.ascontiguousarray(clean + 0.05 * rng.random(clean.shape, dtype=np.float32))
        faded = 0.5 * clean + 0.25
        items.append(DatasetPair(f"p{i}", Path(f"p{i}.exr"), Path(f"t{i}.exr"), i == pairs - 1, faded, clean))
    return Dataset(Path("."), "chroma", items, "bench")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(kind: str, size: str, device: torch.device, dataset: Dataset, batch: int, crop: int, steps: int,
              warmup: int, frame: tuple[int, int] | None, out_dir: Path) -> dict:
    job = Job(work_dir=str(out_dir), training=Training(model=kind, size=size, steps=steps + warmup, batch=batch,
                                                       crop_size=crop, device=device.type))
    trainer = _Trainer(job, _SilentReporter(), dataset, out_dir, _Distributed(), device)
    for step in range(warmup):
        trainer.step(step, trainer.model)
    _sync(device)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        loss = trainer.step(step, trainer.model)
    float(loss)
    _sync(device)
    rate = steps / (time.perf_counter() - start)
    row = {"model": kind, "size": size, "params": parameter_count(trainer.model), "batch": trainer.batch,
           "crop": trainer.crop, "steps_per_s": rate, "crops_per_s": rate * trainer.batch,
           "train_mp_s": rate * trainer.batch * trainer.crop ** 2 / 1e6}
    if frame:
        width, height = frame
        model = trainer.model.eval()
        source = rgb_to_ycbcr(torch.rand(1, 3, height, width, device=device))
        predict_ycbcr(model, source, trainer.amp)
        _sync(device)
        start, count = time.perf_counter(), 0
        while count < 3 or time.perf_counter() - start < 1.0:
            predict_ycbcr(model, source, trainer.amp)
            count += 1
            _sync(device)
        row["infer_fps"] = count / (time.perf_counter() - start)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny/small models, 64 px crops, a few steps")
    parser.add_argument("--kinds", default="unet,bilateral")
    parser.add_argument("--sizes", help="default tiny,small,medium,large (--quick: tiny,small)")
    parser.add_argument("--batch", type=int, help="default 16 (--quick: 4)")
    parser.add_argument("--crop", type=int, help="default 256 (--quick: 64)")
    parser.add_argument("--steps", type=int, help="timed steps, default 50 (--quick: 20)")
    parser.add_argument("--warmup", type=int, help="untimed steps first, default 10 (--quick: 5)")
    parser.add_argument("--frame", help="inference frame size WxH, default 2048x1556 (--quick: 512x384); "
                                        "'none' skips inference")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = (("tiny,small", 4, 64, 20, 5, "512x384") if args.quick
                else ("tiny,small,medium,large", 16, 256, 50, 10, "2048x1556"))
    for name, value in zip(("sizes", "batch", "crop", "steps", "warmup", "frame"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    from ml.neural.predict import resolve_device

    device = resolve_device(args.device)
    frame = tuple(int(v) for v in args.frame.lower().split("x")) if args.frame != "none" else None
    dataset = _synthetic_dataset(max(args.crop * 2, 256))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"Device: {name}, torch {torch.__version__}, {'bf16' if device.type == 'cuda' else 'fp32'}\n")
    columns = ["model", "size", "params", "batch", "crop", "steps/s", "crops/s", "train MP/s"]
    if frame:
        columns.append(f"infer fps {frame[0]}x{frame[1]}")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            for size in args.sizes.split(","):
                r = bench_one(kind, size, device, dataset, args.batch, args.crop, args.steps, args.warmup, frame,
                              Path(tmp))
                cells = [r["model"], r["size"], f"{r['params'] / 1e6:.2f}M", r["batch"], r["crop"],
                         f"{r['steps_per_s']:.2f}", f"{r['crops_per_s']:.1f}", f"{r['train_mp_s']:.2f}"]
                if frame:
                    cells.append(f"{r['infer_fps']:.2f}")
                print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
