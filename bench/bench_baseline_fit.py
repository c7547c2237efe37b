"""Which global grade is the strongest baseline? Variants of the 3D-LUT fit, scored on truth.

For each finished field-corpus work folder (bench/field.py), fit the baseline variants on that
shot's dataset (training pairs) and score them like the field table does: PSNR-CbCr and mean
CIEDE2000 against truth on Source frames that were not training pairs.

    python bench/bench_baseline_fit.py WORK_DIR [WORK_DIR ...]    # e.g. /tmp/field/work/grey_edge/cli
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.baseline import apply_baseline, collect_samples, fit_baseline, fit_from_dataset  # noqa: E402
from ml.dataset_io import load_dataset  # noqa: E402
from ml.evaluation import branch_truth, crop_box, evenly_spaced, sample_truth_grade  # noqa: E402
from ml.imageio import frame_path, read_image  # noqa: E402
from ml.ingest import source_frame  # noqa: E402
from ml.job import load_job  # noqa: E402
from ml.metrics import score_image  # noqa: E402
from ml.sample import apply_reference_grade  # noqa: E402

# name -> (fit keyword arguments, drop target pixels the dataset's 0..1 clamp touched). Without
# "band_sigma" the fit is pixel by pixel (`fit_baseline` on sampled colours); with it, the dataset's
# fit (`fit_from_dataset`: None = its default, `dataset_band_sigma`).
VARIANTS: dict[str, tuple[dict, bool]] = {
    "lut17 display s1e-5, band against SD or block-coded References (the default)":
        ({"smoothness": 1e-5, "band_sigma": None}, False),
    "lut17 display s1e-5, band 2 px": ({"smoothness": 1e-5, "band_sigma": 2.0}, False),
    "lut17 display s1e-5, band 4 px": ({"smoothness": 1e-5, "band_sigma": 4.0}, False),
    "lut17 display s1e-4 (the earlier default)": ({"smoothness": 1e-4}, False),
    "lut17 display s1e-4, clamped out": ({"smoothness": 1e-4}, True),
    "lut17 display s1e-3, clamped out": ({"smoothness": 1e-3}, True),
    "lut17 display s1e-2, clamped out": ({"smoothness": 1e-2}, True),
    "lut17 display s1e-5, pixel by pixel (the default until the band)": ({"smoothness": 1e-5}, False),
    "lut17 display s1e-5, clamped out": ({"smoothness": 1e-5}, True),
    "lut17 display s1e-6, clamped out": ({"smoothness": 1e-6}, True),
    "lut17 display s1e-7, clamped out": ({"smoothness": 1e-7}, True),
    "lut33 display s1e-6, clamped out": ({"smoothness": 1e-6, "lut_size": 33}, True),
    "lut17 log s1e-3, clamped out": ({"smoothness": 1e-3, "domain": "log"}, True),
    "lut33 display s1e-3, clamped out": ({"smoothness": 1e-3, "lut_size": 33}, True),
    "affine": ({"kind": "affine"}, True),
    "rootpoly": ({"kind": "rootpoly"}, True),
}


def unclamped(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.all((targets > 1e-4) & (targets < 1.0 - 1e-4), axis=-1)
    return inputs[keep], targets[keep]


def score_variants(work: Path) -> dict[str, dict[str, float]]:
    job = load_job(work / "job.json")
    truth_dir = work.parent.parent.parent / "shots" / work.parent.name  # bench/field.py's layout
    truth = json.loads((truth_dir / "truth" / "truth.json").read_text())
    dataset = load_dataset(job.dataset_dir or work / "dataset")
    inputs, targets = collect_samples(((p.input, p.target) for p in dataset.training_pairs), 2_000_000, 0)
    training = {p.source_frame for p in job.pairs if p.accepted and not p.holdout}
    frames = evenly_spaced([f for f in range(truth["first_frame"], truth["last_frame"] + 1) if f not in training], 4)
    grade = sample_truth_grade(str(truth_dir / "truth"))
    cases = []
    for frame in frames:
        full = source_frame(job, frame)
        box = crop_box(job.crop, *full.shape[:2], frame)
        clean = read_image(frame_path(str(truth_dir / "truth" / "clean.####.exr"), frame))[box]
        if grade is not None:
            clean = apply_reference_grade(clean, grade)
        cases.append((full[box], branch_truth(full[box], clean, job.branch)))
    results = {}
    for name, (options, drop_clamped) in VARIANTS.items():
        fit_in, fit_out = unclamped(inputs, targets) if drop_clamped else (inputs, targets)
        kind, domain = options.get("kind", "lut"), options.get("domain", "display")
        started = time.perf_counter()
        if "band_sigma" in options:
            fit = fit_from_dataset(dataset, kind, domain, options.get("lut_size", 17), options["smoothness"],
                                   band_sigma=options["band_sigma"])
        else:
            fit = fit_baseline(fit_in, fit_out, kind, domain, options.get("lut_size", 17),
                               options.get("smoothness", 1e-4))
        seconds = time.perf_counter() - started
        scores = [score_image(apply_baseline(source, fit), target, job.branch) for source, target in cases]
        results[name] = {"psnr": float(np.mean([s.psnr for s in scores])),
                         "delta_e_mean": float(np.mean([s.delta_e_mean for s in scores])), "seconds": seconds}
    return results


SECTION_TITLE = "## Baseline: which global grade is strongest"
RESULTS_MD = ROOT / "bench" / "results" / "baseline_fit.md"


def markdown(table: dict[str, dict[str, dict[str, float]]], timing_2k: str = "") -> str:
    kinds = list(table)
    lines = [SECTION_TITLE, "",
             "`bench/bench_baseline_fit.py` fitted each variant on a field shot's own training pairs (the dataset "
             "the project exports: pre-balanced Source crops, targets clamped to 0..1) and scored it like the "
             "field table: `PSNR-CbCr dB / mean CIEDE2000` against truth on up to 4 Source frames that were not "
             "training pairs. *Clamped out* drops target pixels the dataset's 0..1 safety clamp touched. The "
             "default is the smoothed 17-node LUT in the display domain with smoothness 1e-5 (was 1e-4), matched "
             "on colour coarser than the Reference resolves: *band* blurs both sides by a Gaussian before "
             "comparing (`ml.baseline.fit_lut_band`); the default does so only against an SD Reference (the "
             "pairs' warp scale, 1.5 Source px per Reference px or more, twice that for 4:2:0 chroma) or a "
             "block-coded one (its blocks), "
             "and fits pixel by pixel otherwise; the other rows fit pixel by pixel.",
             "", "| variant | " + " | ".join(kinds) + " | mean | fit s (mean) |", "|---|" + "---|" * (len(kinds) + 2)]
    for name in VARIANTS:
        cells = [table[k][name] for k in kinds]
        mean_psnr = np.mean([c["psnr"] for c in cells])
        mean_de = np.mean([c["delta_e_mean"] for c in cells])
        seconds = np.mean([c["seconds"] for c in cells])
        lines.append(f"| {name} | " + " | ".join(f"{c['psnr']:.2f} / {c['delta_e_mean']:.2f}" for c in cells)
                     + f" | {mean_psnr:.2f} / {mean_de:.2f} | {seconds:.1f} |")
    if timing_2k:
        lines += ["", timing_2k]
    return "\n".join(lines)


def time_at_2k(pairs: int = 12) -> str:
    """One sentence: the pixel-by-pixel and the band-limited fit on 2K training pairs (a photo, graded,
    its chroma softened like an SD Reference's), timed on this machine."""
    import platform

    from skimage import data, transform

    from ml.baseline import BAND_PIXELS, band_windows, fit_lut, fit_lut_band
    from ml.colour import rgb_to_ycbcr, ycbcr_to_rgb
    from ml.primitives import gaussian_blur

    class _Pair:  # a graded target whose chroma is as soft as an SD Reference's (6.4 px at 2K)
        def __init__(self, image: np.ndarray):
            self.input = image
            graded = rgb_to_ycbcr(np.clip(image ** 1.2 * np.array([1.05, 1.0, 0.92], np.float32), 0, 1))
            graded[..., 1:] = gaussian_blur(graded[..., 1:], 6.4)
            self.target = np.clip(ycbcr_to_rgb(graded), 0, 1).astype(np.float32)
            self.coverage = None

    photo = transform.resize(data.astronaut().astype(np.float32) / 255.0, (1556, 2048), anti_aliasing=False)
    items = [_Pair(np.roll(photo, 97 * k, axis=1).astype(np.float32)) for k in range(pairs)]
    inputs, targets = collect_samples(((p.input, p.target) for p in items), 2_000_000, 0)
    started = time.perf_counter()
    plain, _ = fit_lut(inputs, targets, 17)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    _, solver = fit_lut_band(band_windows(items, BAND_PIXELS, 0, "display"), 6.4, 17, initial=plain)
    band_s = time.perf_counter() - started
    return (f"At 2K ({pairs} pairs of 2048x1556, {platform.machine()}, this machine's 2 cores): the pixel-by-pixel "
            f"fit on 2,000,000 sampled colours took {plain_s:.1f} s; the band-limited fit on top of it "
            f"({BAND_PIXELS:,} px in seeded windows, sigma 6.4 px, {solver['iterations']} conjugate-gradient "
            f"iterations) {band_s:.1f} s more.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", nargs="+", help="finished field work folders (…/work/<kind>/cli)")
    parser.add_argument("--write-docs", action="store_true",
                        help="store the table in bench/results/baseline_fit.md and docs/benchmarks.md")
    args = parser.parse_args(argv)
    table = {Path(work).parent.name: score_variants(Path(work)) for work in args.work}
    section = markdown(table, time_at_2k())
    print(section)
    if args.write_docs:
        sys.path.insert(0, str(ROOT / "bench"))
        from field import DOCS, replace_section

        RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_MD.write_text(section + "\n")
        DOCS.write_text(replace_section(DOCS.read_text(), section, SECTION_TITLE))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
