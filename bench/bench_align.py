"""Alignment at 2K: solve time per frame and accuracy, ours (numpy ECC) vs OpenCV's pyramid ECC.

    .venv/bin/python bench/bench_align.py [--images astronaut coffee] [--repeat 1]

Synthetic pairs: a 2048x1556 faded Source (magenta cast, lifted blacks, flat contrast, grain)
and a graded Reference (gamma, warm cast) cut from one upscaled photograph with a known warp per
motion model (offsets of ~20 px). Error = mean distance in Source pixels between where the solved
and the true matrix put the Reference's four corners (extrapolated from the ROI for ours).
OpenCV runs on luma of the whole frame, 4 pyramid levels, gaussFiltSize 5. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml import align, warp  # noqa: E402
from ml.primitives import luma  # noqa: E402

SHAPE = (1556, 2048)
CENTRE = (1024, 778)
TRUTH = {
    "translation": warp.translation(23.3, -14.6),
    "similarity": warp.similarity(1.02, 1.0, 20.2, -13.1, CENTRE),
    "affine": warp.translation(*CENTRE) @ np.array([[1.015, 0.012, 18.1], [-0.01, 0.99, -11.7], [0, 0, 1.0]])
    @ warp.translation(-CENTRE[0], -CENTRE[1]),
    "perspective": warp.translation(*CENTRE) @ np.array([[1.015, 0.012, 18.1], [-0.01, 0.99, -11.7],
                                                         [1.2e-5, -8e-6, 1.0]]) @ warp.translation(-CENTRE[0], -CENTRE[1]),
}


def make_pair(name: str, m_true: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    img = getattr(skimage.data, name)().astype(np.float32) / 255.0
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    base = resize(img, (2000, 2600), order=1).astype(np.float32)
    cut = warp.translation(-276, -222)
    rng = np.random.default_rng(seed)
    reference = warp.warp_to_source(base, cut, SHAPE)
    source = warp.warp_to_source(base, m_true @ cut, SHAPE)
    source = source * np.array([0.9, 0.55, 0.8], np.float32) + np.array([0.12, 0.08, 0.1], np.float32)
    source = np.clip(0.35 + 0.6 * (source - 0.35) + rng.normal(0, 0.015, source.shape).astype(np.float32), 0, 1)
    reference = np.clip(reference ** 0.7 * np.array([1.1, 1.0, 0.8], np.float32) + 0.02, 0, 1)
    return source, reference


def corner_error(m_est: np.ndarray, m_true: np.ndarray) -> float:
    h, w = SHAPE
    cx, cy = np.array([0, w - 1, w - 1, 0.0]), np.array([0, 0, h - 1, h - 1.0])
    a = np.stack(warp.apply_matrix(m_est, cx, cy), 1)
    b = np.stack(warp.apply_matrix(m_true, cx, cy), 1)
    return float(np.hypot(*(a - b).T).mean())


def opencv_ecc(source: np.ndarray, reference: np.ndarray, model: str, levels: int = 4) -> np.ndarray:
    motion = {"translation": cv2.MOTION_TRANSLATION, "similarity": cv2.MOTION_AFFINE,
              "affine": cv2.MOTION_AFFINE, "perspective": cv2.MOTION_HOMOGRAPHY}[model]
    src_pyr, ref_pyr = [luma(source)], [luma(reference)]
    for _ in range(levels - 1):
        src_pyr.append(cv2.pyrDown(src_pyr[-1]))
        ref_pyr.append(cv2.pyrDown(ref_pyr[-1]))
    w = np.eye(3, dtype=np.float32)
    for lv in range(levels - 1, -1, -1):
        start = w if motion == cv2.MOTION_HOMOGRAPHY else w[:2].copy()
        _, solved = cv2.findTransformECC(src_pyr[lv], ref_pyr[lv], start, motion,
                                         (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6), None, 5)
        w = np.eye(3, dtype=np.float32)
        w[:solved.shape[0]] = solved
        if lv:
            w = (warp.scaling(2) @ w @ warp.scaling(0.5)).astype(np.float32)
    return np.linalg.inv(w.astype(np.float64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["astronaut", "coffee"])
    parser.add_argument("--repeat", type=int, default=1, help="timed solves per case (best is kept)")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    ref = np.random.default_rng(0).random((*SHAPE, 3), dtype=np.float32)
    m = warp.similarity(1.01, 0.5, 3.3, -2.2, CENTRE)
    t = time.perf_counter()
    warp.warp_to_source(ref, m, SHAPE)
    warp_s = time.perf_counter() - t

    rows = []
    for model, m_true in TRUTH.items():
        ours_t, ours_e, cv_t, cv_e, conf = [], [], [], [], []
        for i, name in enumerate(args.images):
            source, reference = make_pair(name, m_true, seed=i)
            best = float("inf")
            for _ in range(args.repeat):
                t = time.perf_counter()
                solve = align.solve_alignment(source, reference, model)
                best = min(best, time.perf_counter() - t)
            ours_t.append(best)
            ours_e.append(corner_error(solve.matrix, m_true) if solve.usable else float("nan"))
            conf.append(solve.confidence)
            t = time.perf_counter()
            try:
                cv_e.append(corner_error(opencv_ecc(source, reference, model), m_true))
            except cv2.error:
                cv_e.append(float("nan"))
            cv_t.append(time.perf_counter() - t)
        rows.append((model, np.mean(ours_t), np.mean(ours_e), np.mean(conf), np.mean(cv_t), np.mean(cv_e)))
        print(f"  {model}: done", file=sys.stderr)

    print(f"Alignment at 2K ({SHAPE[1]}x{SHAPE[0]}), images: {', '.join(args.images)}; "
          f"one warp_to_source of a 2K RGB frame: {warp_s:.2f} s\n")
    print("| model | ours s/frame | ours corner error px | ours confidence | OpenCV ECC s/frame | OpenCV corner error px |")
    print("|---|---|---|---|---|---|")
    for model, ot, oe, c, ct, ce in rows:
        print(f"| {model} | {ot:.2f} | {oe:.3f} | {c:.2f} | {ct:.2f} | {ce:.3f} |")


if __name__ == "__main__":
    main()
