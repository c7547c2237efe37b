"""`infer`: run the trained model over the full Source and write display, archival and review frames."""

from __future__ import annotations

from ..errors import FilmRecoveryError
from . import require_torch

HELP = ("run the trained model on every Source frame and write display EXRs, archival ACES2065-1 EXRs and "
        "review PNGs to work_dir/infer/ (frames already written by this model are skipped)")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--frames", default="", help="Source frames A-B (default: the whole Source range)")
    parser.add_argument("--chunk", default="", help="K/N: the K-th of N equal chunks of the frames (farm splits)")
    parser.add_argument("--model", default="", help="model .safetensors (default: job.model_path, else "
                        "work_dir/train/model_best.safetensors)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu", "mps"], default="auto")
    parser.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                        help="model precision (auto: bf16 on CUDA, fp32 elsewhere)")
    parser.add_argument("--tile", type=int, default=0, help="process frames in tiles of N px with feathered "
                        "overlaps (default: whole frames; tiles are used automatically when the GPU runs out of memory)")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap in px")
    parser.add_argument("--batch", type=int, default=0, help="frames per model call (default: by frame size on CUDA)")
    parser.add_argument("--archival", choices=["lut", "ocio"], default="lut",
                        help="inverse output transform for the ACES2065-1 files: a baked 129^3 LUT on the device "
                             "(default, fast) or OCIO on the CPU (exact, slow)")
    parser.add_argument("--encode-workers", type=int, default=0, help="EXR/PNG encode threads (default: 3/4 of the cores)")
    parser.add_argument("--decode-workers", type=int, default=0, help="Source decode threads (default: 1/4 of the cores)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA; long shots)")
    parser.add_argument("--overwrite", action="store_true", help="write every frame again, even current ones")


def run(args, job, reporter) -> None:
    require_torch("infer")
    from ..neural.infer import InferOptions, run_inference, select_frames

    for name in ("tile", "batch", "encode_workers", "decode_workers", "overlap"):
        if getattr(args, name) < 0:
            raise FilmRecoveryError("must be 0 or more.", where=f"--{name.replace('_', '-')}")
    options = InferOptions(model_path=args.model, frames=select_frames(job, args.frames, args.chunk),
                           device=args.device, dtype=args.dtype, tile=args.tile, overlap=args.overlap,
                           overwrite=args.overwrite, batch=args.batch, decode_workers=args.decode_workers,
                           encode_workers=args.encode_workers, archival=args.archival, compile=args.compile)
    result = run_inference(job, reporter, options)
    for stage, numbers in result.stages.items():
        reporter.metric(f"infer_{stage}_ms_per_frame", numbers["ms_per_frame"])
    if result.written:
        reporter.metric("infer_fps", result.fps)
    reporter.result(**result.as_dict())
