"""What a soft Reference's colour allows, per chroma kind of a field run (`bench/field.py --out DIR`).

Two measurements against the shot's truth, beside the field table's own numbers:
- **The Reference's colour by scale**: the correlation of the Reference's CbCr (on its true warp,
  inside its coverage) with the truth's, octave by octave (differences of Gaussians, Source px),
  and its amplitude against the truth's. 1 and 1: the Reference has the picture's colour at that
  scale; low: coding error, softness or a different picture there.
- **The band truth grade**: the baseline's 3D LUT fitted as the shot's baseline was (pixel by pixel,
  then matched on colour coarser than the dataset's band, `baseline.dataset_band_sigma`) but to the
  truth of the training frames instead of their Reference: what a Reference exactly as soft as this
  one, without coding errors, grade or misalignment, lets the baseline's fit learn. With no band
  (a Reference near the Source's resolution) it is the field table's Truth grade.
- **How fine the picture's colour is**: the truth with its CbCr blurred by 1 px, scored against itself;
  and the colour that follows the Source's luma finer than the guide's detail limit (the CbCr-on-luma
  slope of the two's high-pass, over the frame) in the truth and in the model's output.
Scored against truth on the field table's held-out frames (`PSNR-CbCr dB / mean CIEDE2000`).

    .venv/bin/python bench/field.py --out /tmp/field --doors cli --steps 200 --lean
    .venv/bin/python bench/bench_reference_limits.py --field /tmp/field [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import field  # noqa: E402

TITLE = "## Field corpus: what the Reference's colour allows"
RESULTS_MD = ROOT / "bench" / "results" / "reference_limits.md"
OCTAVES = ((1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0))
OCTAVE_FRAMES = 3  # the octaves change little from frame to frame


def _inside_blur(plane: np.ndarray, cover: np.ndarray, sigma: float) -> np.ndarray:
    from ml.primitives import gaussian_blur

    weight = np.maximum(gaussian_blur(cover, sigma), 1e-3)
    return gaussian_blur(plane * cover[..., None], sigma) / weight[..., None]


def octave_agreement(job, shot: dict, truth: dict) -> list[dict[str, float]]:
    """Per octave of OCTAVES: the Reference's CbCr against the truth's (correlation, amplitude), over
    the covered pixels away from the coverage's edge of OCTAVE_FRAMES frames that have a partner."""
    from ml.colour import rgb_to_ycbcr
    from ml.evaluation import evenly_spaced, sample_truth_grade
    from ml.ingest import reference_frame
    from ml.primitives import gaussian_blur
    from ml.warp import as_matrix, valid_mask, warp_to_source

    grade = sample_truth_grade(shot["truth_path"])
    partners = {p["source_frame"]: p["reference_frame"] for p in truth["pairs"]}
    matrices = {entry["frame"]: as_matrix(entry["M"]) for entry in truth["reference_frames"]}
    sums = np.zeros((len(OCTAVES), 3))  # reference x truth, reference^2, truth^2
    for frame in evenly_spaced(sorted(f for f, partner in partners.items() if partner is not None), OCTAVE_FRAMES):
        full, target, box = field._truth_target(job, shot, grade, frame)
        reference = reference_frame(job, partners[frame], cleaned=False)
        aligned = warp_to_source(reference, matrices[partners[frame]], full.shape)[box]
        cover = valid_mask(matrices[partners[frame]], reference.shape, full.shape)[box].astype(np.float32)
        cover = (gaussian_blur(cover, OCTAVES[-1][1]) > 0.99).astype(np.float32)
        if cover.sum() < 1024:
            continue
        ref_cc, true_cc = rgb_to_ycbcr(aligned)[..., 1:], rgb_to_ycbcr(target)[..., 1:]
        for i, (fine, coarse) in enumerate(OCTAVES):
            r = (_inside_blur(ref_cc, cover, fine) - _inside_blur(ref_cc, cover, coarse))[cover > 0]
            t = (_inside_blur(true_cc, cover, fine) - _inside_blur(true_cc, cover, coarse))[cover > 0]
            sums[i] += ((r * t).sum(), (r * r).sum(), (t * t).sum())
    return [{"correlation": float(rt / np.sqrt(rr * tt)), "amplitude": float(np.sqrt(rr / tt))}
            if rr > 0 and tt > 0 else {"correlation": float("nan"), "amplitude": float("nan")} for rt, rr, tt in sums]


def fine_colour_slope(image: np.ndarray, source: np.ndarray, sigma: float) -> float:
    """|d CbCr / d luma| of `image`'s colour against `source`'s luma, both finer than `sigma` px."""
    from ml.colour import rgb_to_ycbcr
    from ml.primitives import gaussian_blur

    luma = rgb_to_ycbcr(source)[..., 0]
    luma = (luma - gaussian_blur(luma, sigma)).ravel()
    chroma = rgb_to_ycbcr(image)[..., 1:]
    chroma = (chroma - gaussian_blur(chroma, sigma)).reshape(-1, 2)
    return float(np.linalg.norm(luma @ chroma / max(float(luma @ luma), 1e-12)))


def band_truth_grade(job, shot: dict, training: list[int], sigma: float):
    """The baseline's LUT fitted to the truth of `training` frames as the shot's baseline was fitted
    to their Reference: pixel by pixel, then (sigma > 0) on colour coarser than `sigma` px."""
    from ml.baseline import (
        BAND_PIXELS,
        DEFAULT_SMOOTHNESS,
        BaselineFit,
        band_windows,
        collect_samples,
        fit_baseline,
        fit_lut_band,
    )
    from ml.evaluation import sample_truth_grade

    grade = sample_truth_grade(shot["truth_path"])
    pairs = []
    for frame in training:
        full, target, box = field._truth_target(job, shot, grade, frame)
        pairs.append(SimpleNamespace(input=full[box], target=target, coverage=None))
    pixel = fit_baseline(*collect_samples(((p.input, p.target) for p in pairs), seed=0))
    if sigma <= 0:
        return pixel
    params, _ = fit_lut_band(band_windows(pairs, BAND_PIXELS, 0, "display"), sigma, pixel.params.shape[0],
                             DEFAULT_SMOOTHNESS, initial=pixel.params)
    return BaselineFit("lut", "display", params, dict(pixel.settings), {})


def measure(field_dir: Path, kinds: list[str] | None = None, log=print) -> list[dict]:
    """Per completed chroma kind of the run's CLI door: the octaves, the band, the band truth grade's
    scores and the field table's own."""
    from ml.baseline import apply_baseline, dataset_band_sigma
    from ml.colour import rgb_to_ycbcr, ycbcr_to_rgb
    from ml.dataset_io import load_dataset
    from ml.evaluation import fit_to, model_frame_path, sample_truth_grade
    from ml.guide import GuidePlanner, detail_sigma
    from ml.imageio import read_image
    from ml.metrics import score_image
    from ml.primitives import gaussian_blur

    result = json.loads((field_dir / "field.json").read_text())
    rows = []
    for shot_entry in result["shots"]:
        run = shot_entry["doors"].get("cli")
        if (shot_entry["branch"] != "chroma" or not run or not run["completed"] or not run.get("quality")
                or (kinds and shot_entry["kind"] not in kinds)):
            continue
        start = time.perf_counter()
        kind, work = shot_entry["kind"], field_dir / "work" / shot_entry["kind"] / "cli"
        shot = field.field_corpus.load_shot(str(field_dir / "shots" / kind))
        truth = json.loads((Path(shot["truth_path"]) / "truth.json").read_text())
        job = field._load_job(work)
        training = sorted(p.source_frame for p in job.pairs if p.accepted and not p.holdout)
        sigma = dataset_band_sigma(load_dataset(str(work / "dataset")))
        graded = band_truth_grade(job, shot, training, sigma)
        grade, frames = sample_truth_grade(shot["truth_path"]), run["quality"]["frames"]
        planner = GuidePlanner(job)
        limits = [detail_sigma(np.asarray(entry["matrix"], dtype=float).reshape(3, 3), planner.blocky,
                               planner.half_chroma)
                  for entry in json.loads((work / "dataset" / "manifest.json").read_text())["pairs"] if entry.get("matrix")]
        limit = float(np.median(limits)) if limits else 0.0
        scores, blurred, slopes = [], [], []
        for frame in frames:
            full, target, box = field._truth_target(job, shot, grade, frame)
            s = score_image(apply_baseline(full[box], graded), target, "chroma")
            scores.append((s.psnr, s.delta_e_mean))
            soft = rgb_to_ycbcr(target)
            soft[..., 1:] = gaussian_blur(soft[..., 1:], 1.0)
            blurred.append(score_image(ycbcr_to_rgb(soft), target, "chroma").delta_e_mean)
            model_path = model_frame_path(work / "infer" / "display", job.name, frame)
            if limit > 0 and model_path.exists():
                model = fit_to(read_image(str(model_path)), full[box].shape, box, str(model_path))
                slopes.append((fine_colour_slope(target, full[box], limit), fine_colour_slope(model, full[box], limit)))
        rows.append({"kind": kind, "reference_size": shot_entry["reference_size"], "band_sigma": sigma,
                     "detail_sigma": limit, "truth_blurred_1px": float(np.mean(blurred)),
                     "fine_slope": [float(v) for v in np.mean(slopes, axis=0)] if slopes else None,
                     "octaves": octave_agreement(job, shot, truth),
                     "band_truth_grade": {"psnr": float(np.mean([s[0] for s in scores])),
                                          "delta_e_mean": float(np.mean([s[1] for s in scores]))},
                     "field": run["quality"]["methods"]})
        log(f"[{kind}] band {sigma:.1f} px: band truth grade {_cell(rows[-1]['band_truth_grade'])} "
            f"({time.perf_counter() - start:.0f} s)")
    return rows


def _cell(scores: dict | None) -> str:
    return "–" if not scores else f"{scores['psnr']:.1f} / {scores['delta_e_mean']:.2f}"


def _slopes(slopes: list[float] | None) -> str:
    return "–" if not slopes else f"{slopes[0]:.2f} / {slopes[1]:.2f}"


def _octave(agreement: dict[str, float]) -> str:
    return "–" if np.isnan(agreement["correlation"]) else f"{agreement['correlation']:.2f} ({agreement['amplitude']:.2f})"


def markdown(field_dir: Path, rows: list[dict]) -> str:
    result = json.loads((field_dir / "field.json").read_text())
    octaves = " | ".join(f"{fine:g}-{coarse:g} px" for fine, coarse in OCTAVES)
    lines = [TITLE, "",
             f"`bench/bench_reference_limits.py` measured the chroma kinds of the field run of {result['date']} "
             f"({result['size']} size, CLI door; this machine, {time.strftime('%Y-%m-%d')}). *Reference against truth*: "
             "per octave of Source px, the correlation of the Reference's CbCr (true warp, inside its coverage) with "
             "the truth's, and in brackets its amplitude against the truth's. *Band truth grade*: the baseline's 3D LUT "
             "fitted as the shot's baseline is (pixel by pixel, then matched on colour coarser than the band) but to "
             "the truth of the training frames: what a Reference exactly as soft as this one, with no coding error, "
             "grade or misalignment, lets the baseline's fit learn; with no band it is the field table's truth grade. "
             "Cells `PSNR-CbCr dB / mean CIEDE2000` against truth on the field table's held-out frames; Truth grade, "
             "Baseline and Model are the field table's. *Truth, 1 px blur*: the truth's CbCr blurred by 1 px, its "
             "mean CIEDE2000 against itself (how much of the picture's colour is at the pixel scale). *Fine colour "
             "slope*: |d CbCr / d luma| of the colour finer than the detail limit against the Source's luma there, "
             "truth / model.", "",
             f"| kind | Reference | detail limit px | band px | {octaves} | Truth, 1 px blur | fine colour slope | "
             "Truth grade | Band truth grade | Baseline | Model |",
             "|---|---|---|---|" + "---|" * len(OCTAVES) + "---|---|---|---|---|---|"]
    for row in rows:
        methods = row["field"]
        lines.append(f"| {row['kind']} | {row['reference_size'][0]}x{row['reference_size'][1]} | "
                     f"{row['detail_sigma']:.1f} | {row['band_sigma']:.1f} | "
                     + " | ".join(_octave(o) for o in row["octaves"])
                     + f" | {row['truth_blurred_1px']:.2f} | {_slopes(row['fine_slope'])}"
                     + f" | {_cell(methods.get('truth_grade'))} | {_cell(row['band_truth_grade'])} | "
                     f"{_cell(methods.get('baseline'))} | {_cell(methods.get('model'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", required=True, help="a bench/field.py --out folder (CLI door run)")
    parser.add_argument("--kinds", default="", help="comma-separated (default: every completed chroma kind)")
    parser.add_argument("--write-docs", action="store_true", help=f"store the section ({TITLE}) in docs/benchmarks.md")
    args = parser.parse_args(argv)
    field_dir = Path(args.field).resolve()
    rows = measure(field_dir, [k for k in args.kinds.split(",") if k] or None,
                   log=lambda text: print(text, file=sys.stderr, flush=True))
    section = markdown(field_dir, rows)
    print(section)
    if args.write_docs:
        field.store_section(section, RESULTS_MD, TITLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
