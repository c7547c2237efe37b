"""Clean-up primitives at 2K: before (numpy) and after (OpenCV on the host, torch for the device degrain).

    .venv/bin/python bench/bench_primitives.py [--write-docs]

On one 2048x1556 RGB frame: the 5x5 median (Reference clean-up), a sigma-1.5 Gaussian, and the
training degrain that inference applies to every frame when the model was trained on degrained
input (strength 1.5: luma sigma 1.5, chroma sigma 3): `cleanup.degrain` on the host (numpy, as
inference ran it before) against `models.degrain_ycbcr` (torch on this CPU; on a GPU it runs
with the rest of the frame's device work). Median of three runs each, same process, same frame;
the largest difference between the two paths is printed beside each row.
Writes bench/results/primitives.md (carried into docs/benchmarks.md by bench/run_all.py);
`--write-docs` also replaces the section in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ml.cleanup import degrain  # noqa: E402
from ml.colour import rgb_to_ycbcr  # noqa: E402
from ml.neural.models import degrain_ycbcr  # noqa: E402
from ml.primitives import gaussian_blur, median_filter  # noqa: E402

TITLE = "## Clean-up primitives at 2K: numpy against OpenCV and the device"
RESULTS = ROOT / "bench" / "results" / "primitives.md"


def _time(fn, repeats: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def run() -> str:
    from skimage import data, transform

    torch.set_num_threads(2)
    frame = transform.resize(data.astronaut(), (1556, 2048), anti_aliasing=True).astype(np.float32)
    frame = np.clip(frame + np.random.default_rng(0).normal(0, 0.03, frame.shape), 0, 1).astype(np.float32)
    rows = []
    before, plain = _time(lambda: median_filter(frame, 5, use_opencv=False), repeats=1)
    after, fast = _time(lambda: median_filter(frame, 5))
    rows.append(("median 5x5 (Reference clean-up)", "numpy", before, "OpenCV", after, np.abs(fast - plain).max()))
    before, plain = _time(lambda: gaussian_blur(frame, 1.5, use_opencv=False))
    after, fast = _time(lambda: gaussian_blur(frame, 1.5))
    rows.append(("Gaussian, sigma 1.5", "numpy", before, "OpenCV", after, np.abs(fast - plain).max()))
    # The degrain as inference ran it before: numpy on the host (OpenCV off), RGB in and out.
    before, plain = _time(lambda: rgb_to_ycbcr(degrain(frame, 1.5, use_opencv=False)))
    tensor = torch.from_numpy(rgb_to_ycbcr(frame)).permute(2, 0, 1)[None].contiguous()
    after, fast = _time(lambda: degrain_ycbcr(tensor, 1.5))
    difference = np.abs(fast[0].permute(1, 2, 0).numpy() - plain).max()
    rows.append(("training degrain, strength 1.5 (per inference frame)", "numpy (host)", before,
                 "torch (device path, here the CPU)", after, difference))
    lines = [TITLE, "",
             f"`python bench/bench_primitives.py` on this machine ({platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores; torch {torch.__version__}, 2 threads). One 2048x1556 RGB frame; median of "
             "three runs (one for the numpy median). Before: what the engine ran until now; after: what it runs "
             "where the library is importable (Blender's own Python keeps the numpy path).", "",
             "| primitive | before | s | after | s | speed-up | largest difference |",
             "|---|---|---|---|---|---|---|"]
    for name, b_name, b, a_name, a, diff in rows:
        lines.append(f"| {name} | {b_name} | {b:.3f} | {a_name} | {a:.3f} | {b / a:.1f}x | {diff:.1e} |")
    lines += ["", "On a GPU the degrain is part of the frame's device work (no host copy, no host CPU); this "
              "table measures only the arithmetic on this CPU."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    text = run()
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    if args.write_docs:
        import field

        docs = ROOT / "docs" / "benchmarks.md"
        docs.write_text(field.replace_section(docs.read_text(), text, TITLE))


if __name__ == "__main__":
    main()
