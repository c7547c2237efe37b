"""Host CPU per frame of inference (decode + encode) and the frames/s ceiling it sets on N cores.

On a GPU machine the model takes a few ms per frame; what bounds the pipeline is the host's CPU
time per frame: reading the Source EXR and writing the archival EXR. This measures that time
with the pipeline's own functions, one frame at a time on one thread (OpenEXR's own threads
off), so CPU seconds per frame are exact, and divides the cores by it: the ceiling, assuming
the stages spread over the cores perfectly (a real run stays below it).

Baselines in the same run: the previous host path (OpenImageIO decode to a float32 frame, the
pre-balance on the host; OpenImageIO encode) against the current one (OpenEXR decode of the half
frame as stored, the device widens it and applies the pre-balance; OpenEXR encode).

    python bench/bench_host.py                       # 2048x1556 and 4096x2160, 6 frames each
    python bench/bench_host.py --cores 16            # ceiling for a 16-core GPU host
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COMPRESSIONS = ("zip", "piz")


def _write_with_oiio(path: Path, half: np.ndarray, compression: str, attributes: dict) -> None:
    """The previous writer (OpenImageIO), kept here as the baseline."""
    import OpenImageIO as oiio

    spec = oiio.ImageSpec(half.shape[1], half.shape[0], 3, oiio.HALF)
    spec.channelnames = ("R", "G", "B")
    spec.attribute("compression", compression)
    for key, value in attributes.items():
        if isinstance(value, tuple):
            spec.attribute(key, oiio.TypeDesc(f"float[{len(value)}]"), value)
        else:
            spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(path))
    out.open(str(path), spec)
    out.write_image(half)
    out.close()


def measure(width: int, height: int, frames: int, folder: Path) -> dict[str, float]:
    """CPU ms per frame of each host step, in this process (its malloc setting as it is)."""
    import OpenImageIO as oiio
    import torch

    from bench.bench_infer import _picture
    from ml.imageio import _read_with_oiio, write_exr
    from ml.ingest import plate_frame_path, read_plate_frame
    from ml.job import Balance, Job, Plate
    from ml.writers import ARCHIVAL_HEADER

    oiio.attribute("exr_threads", 1)  # all of the work on this thread: CPU time is attributable
    for i in range(frames):  # distinct frames, so no cache helps the reads
        grain = np.random.default_rng(i).normal(0.0, 0.01, (height, width, 3)).astype(np.float32)
        write_exr(folder / f"source.{1001 + i:04d}.exr", _picture(width, height, i) + grain)
    job = Job(source=Plate(str(folder / "source.####.exr"), 1001, 1000 + frames),
              balance=Balance(enabled=True, gain=[1.05, 0.97, 1.01], offset=[0.01, 0.0, -0.01]))
    gain, offset = (np.asarray(v, dtype=np.float32) for v in (job.balance.gain, job.balance.offset))
    result: dict[str, float] = {}

    def per_frame(step) -> float:
        step(1001)  # first touch of the libraries and buffers, not counted
        start = time.process_time()
        for frame in range(1001, 1001 + frames):
            step(frame)
        return 1e3 * (time.process_time() - start) / frames

    # Before: OpenImageIO decode, float32 frame, pre-balance on the host, float32 tensor.
    result["decode_before"] = per_frame(lambda f: torch.from_numpy(
        np.asarray(_read_with_oiio(plate_frame_path(job.source, f)), dtype=np.float32) * gain + offset))
    # Now: the frame as stored (OpenEXR, half); the device widens it and applies the pre-balance.
    result["decode_now"] = per_frame(lambda f: torch.from_numpy(read_plate_frame(job.source, f, keep_half=True)))
    half = read_plate_frame(job.source, 1001, keep_half=True)
    for compression in COMPRESSIONS:
        out = folder / f"out_{compression}.exr"
        result[f"encode_{compression}_before"] = per_frame(
            lambda f, c=compression, o=out: _write_with_oiio(o, half, c, ARCHIVAL_HEADER))
        result[f"encode_{compression}_now"] = per_frame(
            lambda f, c=compression, o=out: write_exr(o, half, c, ARCHIVAL_HEADER))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048x1556,4096x2160")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--cores", type=int, default=16, help="cores of the host to project the ceiling for")
    parser.add_argument("--scratch", default="/dev/shm" if Path("/dev/shm").is_dir() else "",
                        help="where frames are written (default /dev/shm: the disk out of the measure)")
    args = parser.parse_args()
    import platform

    cpu = platform.processor() or platform.machine()
    print(f"# Host CPU per frame of inference ({os.cpu_count()} cores here, {cpu}; ceiling for {args.cores} cores)\n")
    print(f"{args.frames} frames per cell (photograph + grain, half ZIP Source EXR, pre-balance on), one thread, "
          "CPU ms per frame (the whole process: user + system); encode = the archival ACES EXR. "
          "Ceiling = cores x 1000 / (decode + encode) frames/s.\n")
    header = ["size", "decode before", "decode now", *(f"encode {c} before / now" for c in COMPRESSIONS),
              *(f"ceiling {c}: before -> now" for c in COMPRESSIONS)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench_host_", dir=args.scratch or None) as scratch:
            row = measure(width, height, args.frames, Path(scratch))

        def ceiling(when: str, compression: str, r=row) -> float:
            return args.cores * 1e3 / (r[f"decode_{when}"] + r[f"encode_{compression}_{when}"])

        cells = [f"{width}x{height}", f"{row['decode_before']:.0f}", f"{row['decode_now']:.0f}",
                 *(f"{row[f'encode_{c}_before']:.0f} / {row[f'encode_{c}_now']:.0f}" for c in COMPRESSIONS),
                 *(f"{ceiling('before', c):.0f} -> {ceiling('now', c):.0f}" for c in COMPRESSIONS)]
        print("| " + " | ".join(cells) + " |", flush=True)
        print(f"  ({time.perf_counter() - start:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
