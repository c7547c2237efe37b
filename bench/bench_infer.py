"""End-to-end inference throughput: Source EXR decode -> model -> archival + display EXR encode.

Runs the real `ml.neural.infer.run_inference` pipeline (decode threads, the device, the LUT archival
transform, encode threads) over a generated Source plate and prints a markdown table of frames/s
with the per-stage breakdown. Needs numpy, OpenImageIO, PyOpenColorIO, torch and safetensors
only (no bpy); scikit-image, when present, gives photographic frames, else smooth noise.

    python bench/bench_infer.py --quick                          # this CPU: tiny frames, few of them
    python bench/bench_infer.py --device cuda --frames 96 --sizes 2048x1556,4096x2160 \
        --model-kind unet,bilateral --out /dev/shm/bench          # a GPU box

Decode and encode run in parallel threads: their ms/frame are thread-milliseconds (CPU work per
frame), not wall time. The model/preprocess/colour columns are device time per frame.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.events import Reporter  # noqa: E402
from ml.imageio import write_exr  # noqa: E402
from ml.job import Job, Output, Plate  # noqa: E402
from ml.neural.checkpoint import save_model  # noqa: E402
from ml.neural.infer import STAGES, InferOptions, run_inference  # noqa: E402
from ml.neural.models import build_model, model_config, parameter_count  # noqa: E402
from ml.neural.predict import resolve_device  # noqa: E402

DISTINCT_FRAMES = 4  # distinct pictures; the rest of the plate are hard links to them


def _picture(width: int, height: int, seed: int) -> np.ndarray:
    """A photograph tiled and shifted to the size (scikit-image), else smooth coloured noise."""
    rng = np.random.default_rng(seed)
    try:
        from skimage import data

        photo = getattr(data, ("astronaut", "coffee", "chelsea", "rocket")[seed % 4])().astype(np.float32) / 255.0
        reps = (height // photo.shape[0] + 2, width // photo.shape[1] + 2, 1)
        tiled = np.tile(photo, reps)
        y, x = rng.integers(photo.shape[0]), rng.integers(photo.shape[1])
        image = tiled[y:y + height, x:x + width]
    except ImportError:
        coarse = rng.random((height // 64 + 2, width // 64 + 2, 3), dtype=np.float32)
        image = np.kron(coarse, np.ones((64, 64, 1), np.float32))[:height, :width]
        image = image + 0.03 * rng.standard_normal(image.shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(image * 0.8 + 0.1, 0.0, 1.0), dtype=np.float32)


def make_plate(folder: Path, width: int, height: int, frames: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        path = folder / f"source.{1001 + i:04d}.exr"
        if i < DISTINCT_FRAMES:
            write_exr(path, _picture(width, height, i))
        else:
            os.link(folder / f"source.{1001 + i % DISTINCT_FRAMES:04d}.exr", path)
    return folder / "source.####.exr"


def make_model(folder: Path, kind: str, size: str) -> tuple[Path, int]:
    torch.manual_seed(0)
    model = build_model(model_config(kind, size, "chroma"))
    path = save_model(folder / f"{kind}_{size}.safetensors", model,
                      {"branch": "chroma", "colour": {"ycbcr": "bt709-full"}, "step": 0,
                       "recipe_hash": "bench", "dataset_hash": "bench"})
    return path, parameter_count(model)


def run_case(root: Path, plate: Path, model: Path, frames: int, warmup: int, args, review: bool,
             grain: str = "clean") -> dict:
    job = Job(name="bench", work_dir=str(root / "work"), source=Plate(str(plate), 1001, 1000 + frames),
              model_path=str(model),
              output=Output(display_exr=not args.no_display, aces_exr=True, compression=args.compression,
                            review="png" if review else "none", overwrite=True, grain=grain))
    options = InferOptions(device=args.device, dtype=args.dtype, batch=args.batch, compile=args.compile,
                           decode_workers=args.decode_workers, encode_workers=args.encode_workers,
                           archival=args.archival, overwrite=True)
    if warmup:  # cuDNN autotuning, torch.compile, the LUT bake and first allocations happen here
        options.frames = list(range(1001, 1001 + warmup))
        run_inference(job, Reporter(io.StringIO()), options)
    options.frames = list(range(1001, 1001 + frames))
    result = run_inference(job, Reporter(io.StringIO()), options)
    shutil.rmtree(root / "work", ignore_errors=True)
    return {"fps": result.fps, "seconds": result.seconds, "precision": result.precision, "device": result.device,
            "stages": result.stages, "notes": result.notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu", "mps"])
    parser.add_argument("--frames", type=int, default=48, help="frames per measured run")
    parser.add_argument("--warmup", type=int, default=8, help="frames run first and not measured")
    parser.add_argument("--sizes", default="2048x1556,4096x2160", help="comma-separated WxH")
    parser.add_argument("--model-kind", default="unet,bilateral", help="unet, bilateral or both (comma-separated)")
    parser.add_argument("--model-size", default="small", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--archival", default="lut", choices=["lut", "ocio"])
    parser.add_argument("--compression", default="zip", choices=["zip", "piz", "dwaa"])
    parser.add_argument("--no-display", action="store_true", help="archival EXR only")
    parser.add_argument("--review", action="store_true", help="also write review PNGs")
    parser.add_argument("--grain", default="clean,keep_source",
                        help="output.grain choices, a row each (clean reduces the colour grain: its cost is in colour)")
    parser.add_argument("--decode-workers", type=int, default=0)
    parser.add_argument("--encode-workers", type=int, default=0)
    parser.add_argument("--out", default="", help="scratch folder (default: a temp folder; /dev/shm takes the disk out)")
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 512x389 and 1024x540, 6 frames")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.frames, args.warmup = "512x389,1024x540", 6, 2
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    kinds = [k.strip() for k in args.model_kind.split(",") if k.strip()]
    grains = [g.strip() for g in args.grain.split(",") if g.strip()]
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} ({os.cpu_count()} cores)"
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench_infer_", dir=args.out or None))
    print(f"# Inference end to end on {name}, torch {torch.__version__}, {os.cpu_count()} host cores\n")
    print(f"{args.frames} measured frames per row after {args.warmup} warm-up frames; outputs: archival ACES "
          f"EXR ({args.compression}, {args.archival}){'' if args.no_display else ' + display EXR'}"
          f"{' + review PNG' if args.review else ''}; scratch {root}.\n")
    header = ["size", "model", "grain", "params", "precision", "fps", *(f"{s} ms/frame" for s in STAGES)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    try:
        for width, height in sizes:
            plate = make_plate(root / f"plate_{width}x{height}", width, height, args.frames)
            for kind, grain in ((k, g) for k in kinds for g in grains):
                model, params = make_model(root, kind, args.model_size)
                start = time.perf_counter()
                row = run_case(root, plate, model, args.frames, args.warmup, args, args.review, grain)
                stages = row["stages"]
                cells = [f"{width}x{height}", f"{args.model_size} {kind}", grain, f"{params / 1e6:.2f} M",
                         row["precision"], f"{row['fps']:.2f}", *(f"{stages[s]['ms_per_frame']:.1f}" for s in STAGES)]
                print("| " + " | ".join(cells) + " |", flush=True)
                for note in row["notes"]:
                    print(f"  note: {note}", file=sys.stderr)
                print(f"  ({time.perf_counter() - start:.1f} s for the row)", file=sys.stderr)
            shutil.rmtree(root / f"plate_{width}x{height}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\ndecode/encode: thread-ms per frame (parallel threads); preprocess/model/colour: device ms per frame.")


if __name__ == "__main__":
    main()
