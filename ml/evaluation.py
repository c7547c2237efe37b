"""The evaluation of Source, baseline and model side by side: on the dataset's held-out pairs, on
truth frames, and over time (`ml.metrics` holds the metrics themselves). What `ml evaluate`, the
report, `ml score` and the benchmarks use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .colour import rgb_to_ycbcr
from .errors import FilmRecoveryError, InputImageError
from .imageio import read_image
from .metrics import ImageScores, branch_error_map, percentile_from_histogram, score_image, temporal_stability
from .primitives import downscale, luma, window_sums

METHODS = ("source", "baseline", "model")

@dataclass
class Comparison:
    """One evaluated image: scores per method, and the pictures the report shows."""

    name: str
    frame: int
    scores: dict[str, ImageScores]
    images: dict[str, np.ndarray]   # downscaled: source, baseline, model (if any), reference
    errors: dict[str, np.ndarray]   # downscaled branch error maps of baseline and model vs reference
    crops: dict[str, np.ndarray] = field(default_factory=dict)  # 1:1 detail crops, same keys as images
    crop_origin: tuple[int, int] = (0, 0)  # (row, column) of the crops in the evaluated image


DETAIL_CROP = 160  # px: the 1:1 crops the report and the Review panel show


def detail_window(reference: np.ndarray, size: int = DETAIL_CROP) -> tuple[slice, slice]:
    """The size x size window (clipped to the image) where the reference's luma has the most
    edge and texture energy: where sharpening, or its absence, shows at 1:1."""
    height, width = reference.shape[:2]
    h, w = min(size, height), min(size, width)
    y = luma(reference).astype(np.float64)
    energy = np.zeros_like(y)
    energy[:, 1:] += np.abs(np.diff(y, axis=1))
    energy[1:, :] += np.abs(np.diff(y, axis=0))
    sums = window_sums(energy, h, w)
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return slice(int(top), int(top) + h), slice(int(left), int(left) + w)


def compare(name: str, frame: int, source: np.ndarray, baseline: np.ndarray, model: np.ndarray | None,
            reference: np.ndarray, branch: str, thumbnail_width: int = 480) -> Comparison:
    outputs = {"source": source, "baseline": baseline}
    if model is not None:
        outputs["model"] = model
    scores = {method: score_image(image, reference, branch) for method, image in outputs.items()}
    images = {method: downscale(image, max_width=thumbnail_width) for method, image in outputs.items()}
    images["reference"] = downscale(reference, max_width=thumbnail_width)
    errors = {method: downscale(branch_error_map(outputs[method], reference, branch)[..., None], max_width=thumbnail_width)[..., 0]
              for method in ("baseline", "model") if method in outputs}
    window = detail_window(reference)
    crops = {method: np.ascontiguousarray(image[window]) for method, image in {**outputs, "reference": reference}.items()}
    return Comparison(name, frame, scores, images, errors, crops, (window[0].start, window[1].start))


def summarise(comparisons: list[Comparison]) -> dict[str, dict[str, float]]:
    """Per method: mean PSNR / SSIM / CIEDE2000 mean over the images (the images count equally),
    and the 95th percentile of CIEDE2000 over all their pixels pooled."""
    table: dict[str, dict[str, float]] = {}
    for method in METHODS:
        scored = [c.scores[method] for c in comparisons if method in c.scores]
        if not scored:
            continue
        table[method] = {
            "psnr": float(np.mean([s.psnr for s in scored])),
            "delta_e_mean": float(np.mean([s.delta_e_mean for s in scored])),
            "delta_e_p95": percentile_from_histogram(sum(s.delta_e_histogram for s in scored), 95.0),
            "ssim": float(np.mean([s.ssim for s in scored])),
            "images": len(scored)}
    return table


def verdict(table: dict[str, dict[str, float]], branch: str) -> tuple[bool, str]:
    """Does the model beat the baseline? It must win on PSNR of the branch channels and on the
    branch's perceptual measure (CIEDE2000 mean for chroma, luma SSIM for spatial)."""
    if "model" not in table:
        return False, "No model outputs were found for the evaluated frames, so nothing beats the baseline yet."
    model, base = table["model"], table["baseline"]
    channel = "CbCr" if branch == "chroma" else "Y"
    psnr_win = model["psnr"] > base["psnr"]
    if branch == "chroma":
        second_win = model["delta_e_mean"] < base["delta_e_mean"]
        second = f"CIEDE2000 mean {model['delta_e_mean']:.2f} vs {base['delta_e_mean']:.2f}"
    else:
        second_win = model["ssim"] > base["ssim"]
        second = f"SSIM {model['ssim']:.4f} vs {base['ssim']:.4f}"
    detail = f"PSNR {channel} {model['psnr']:.2f} vs {base['psnr']:.2f} dB, {second} (model vs baseline)"
    if psnr_win and second_win:
        return True, f"The model beats the baseline: {detail}."
    return False, f"The model does NOT beat the baseline: {detail}."


def crop_box(crop, height: int, width: int, frame: int) -> tuple[slice, slice]:
    """Rows and columns of the job's crop in effect at `frame` (the whole frame when it is off)."""
    from .crop import crop_at_frame, crop_to_slices

    return crop_to_slices(crop_at_frame(crop, frame), height, width)


def branch_truth(source: np.ndarray, clean: np.ndarray, branch: str) -> np.ndarray:
    """The ideal output of a branch, built like the dataset targets with the clean frame in
    place of the Reference: chroma -> Source Y + clean CbCr; spatial -> clean Y + Source CbCr."""
    from .colour import ycbcr_to_rgb

    source_ycc, clean_ycc = rgb_to_ycbcr(source), rgb_to_ycbcr(clean)
    keep = source_ycc.copy()
    if branch == "chroma":
        keep[..., 1:] = clean_ycc[..., 1:]
    else:
        keep[..., :1] = clean_ycc[..., :1]
    return ycbcr_to_rgb(keep).astype(np.float32)


def model_frame_path(model_dir: str | os.PathLike, name: str, frame: int) -> Path:
    return Path(model_dir) / f"{name}.{frame:04d}.exr"


def fit_to(image: np.ndarray, shape: tuple[int, ...], box: tuple[slice, slice] | None, where: str) -> np.ndarray:
    """A full-frame output cut to the evaluated crop; an output already that size passes."""
    if image.shape == shape:
        return image
    cropped = image if box is None else image[box]
    if cropped.shape != shape:
        raise InputImageError(f"is {image.shape[1]}x{image.shape[0]}, but the evaluated image is "
                              f"{shape[1]}x{shape[0]} and the job's crop does not relate them.", where=where,
                              fix="Run inference again with this job (same crop), or pass --model-dir.")
    return cropped


def longest_run(frames: Iterable[int], limit: int) -> list[int]:
    """The longest run of consecutive frames (the first such run), cut to `limit` frames."""
    ordered = sorted(set(frames))
    best: list[int] = []
    run: list[int] = []
    for frame in ordered:
        run = run + [frame] if run and frame == run[-1] + 1 else [frame]
        if len(run) > len(best):
            best = run
    return best[:limit]


@dataclass
class EvaluationSet:
    """The comparisons made on one set of images (held-out pairs, or truth frames)."""

    key: str                 # "holdout", "training" (no pairs held out) or "truth"
    label: str
    comparisons: list[Comparison]
    table: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)
    independent: bool = True  # False: the model's outputs saw the targets' own Reference (a guided model)


def _finish_set(key: str, label: str, comparisons: list[Comparison], notes: list[str]) -> EvaluationSet:
    with_model = [c for c in comparisons if "model" in c.scores]
    if with_model and len(with_model) < len(comparisons):
        notes.append(f"Model output exists for {len(with_model)} of {len(comparisons)} images; "
                     "the table compares all methods on those only.")
    return EvaluationSet(key, label, comparisons, summarise(with_model or comparisons), notes)


def evaluate_pairs(job, fit, dataset, model_dir: str | os.PathLike, thumbnail_width: int = 480,
                   progress: Callable[[int, int], None] | None = None) -> EvaluationSet:
    """Source, baseline and model against the target of each held-out pair (all pairs, flagged,
    when none is held out). Model outputs are full frames cut to the dataset's crop."""
    import json

    from .baseline import apply_baseline

    folder = Path(dataset.folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    frames = {(folder / p["input"]).resolve(): int(p["source_frame"]) for p in manifest["pairs"]}
    pairs, key, label, notes = dataset.holdout_pairs, "holdout", "Held-out pairs", []
    if not pairs:
        pairs, key, label = dataset.pairs, "training", "Training pairs (none held out)"
        notes.append("No pair is held out, so these numbers are measured on the pairs the model and the "
                     "baseline were fitted on: they flatter both. Hold out a pair or two for an honest test.")
    predict, problem = source_only_predictor(job)
    if problem:
        notes.append(problem)
    alone: list = []
    comparisons = []
    for done, pair in enumerate(pairs, start=1):
        frame = frames[Path(pair.input_path).resolve()]
        model_path = model_frame_path(model_dir, job.name, frame)
        model = None
        if model_path.exists():
            full = read_image(str(model_path))
            model = fit_to(full, pair.input.shape, crop_box(job.crop, *full.shape[:2], frame), str(model_path))
        if predict is not None:
            alone.append(score_image(predict(pair), pair.target, dataset.branch))
        comparisons.append(compare(pair.name, frame, pair.input, apply_baseline(pair.input, fit), model,
                                   pair.target, dataset.branch, thumbnail_width))
        if progress:
            progress(done, len(pairs))
    if alone:
        psnr = float(np.mean([a.psnr for a in alone]))
        delta_e = float(np.mean([a.delta_e_mean for a in alone]))
        notes.append(f"The model is reference-guided: on each pair it takes that frame's own Reference channels, "
                     f"which are also the pair's target, so the model's numbers here are not an independent test "
                     f"(the truth frames are, where a sample has them). From the Source alone (what it gives "
                     f"where the Reference is missing) it scores {psnr:.2f} dB, CIEDE2000 {delta_e:.2f} on these "
                     f"pairs.")
    finished = _finish_set(key, label, comparisons, notes)
    finished.independent = not alone and not problem
    return finished


def source_only_predictor(job) -> tuple[Callable[[Any], np.ndarray] | None, str]:
    """For a reference-guided trained model (the job's, as `infer` resolves it): a function giving its
    prediction for a dataset pair from the Source alone (`shot_score.predict_pair`), and "". None for a
    Source-only model or when nothing is trained (with ""), or for a model file that is there but does
    not load (with a note naming it: the held-out numbers may then not be an independent test)."""
    from .errors import FilmRecoveryError

    try:
        from .neural import checkpoint as ckpt
        from .neural.infer import resolve_model_path
        from .neural.predict import resolve_device
        from .neural.shot_score import predict_pair

        path = resolve_model_path(job)
    except (FilmRecoveryError, ImportError):
        return None, ""
    try:
        device = resolve_device("auto")
        model, metadata = ckpt.load_model(path, device)
    except (FilmRecoveryError, OSError) as exc:
        return None, (f"The trained model {path} did not load ({exc}), so its score from the Source alone is "
                      f"missing; if it is reference-guided, its numbers on these pairs are not an independent "
                      f"test. Train again or pass the right model.")
    if not model.config.guided:
        return None, ""
    return (lambda pair: predict_pair(model, metadata, pair, device, job.output.grain)), ""


def sample_truth_grade(truth_dir: str | os.PathLike) -> dict | None:
    """The sample shot's Reference grade when `truth_dir` holds its truth.json, else None:
    the ideal recovery has the graded colour of the clean frame, not the clean colour."""
    import json

    path = Path(truth_dir) / "truth.json"
    if not path.exists():
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return truth.get("reference_grade") if truth.get("schema") == "film_recovery.sample_truth" else None


def truth_frames(truth_dir: str | os.PathLike) -> list[int]:
    """Frame numbers of truth_dir/clean.####.exr."""
    frames = []
    for path in Path(truth_dir).glob("clean.*.exr"):
        number = path.name[len("clean."):-len(".exr")]
        if number.isdigit():
            frames.append(int(number))
    return sorted(frames)


def evenly_spaced(frames: list[int], count: int) -> list[int]:
    if len(frames) <= count:
        return list(frames)
    return [frames[int(round(i))] for i in np.linspace(0, len(frames) - 1, count)]


def evaluate_truth(job, fit, truth_dir: str | os.PathLike, model_dir: str | os.PathLike,
                   read_source: Callable[[int], np.ndarray], max_frames: int = 12, thumbnail_width: int = 480,
                   progress: Callable[[int, int], None] | None = None) -> EvaluationSet:
    """Source, baseline and model against clean truth frames (truth_dir/clean.####.exr, Source
    frame numbers, Source resolution), inside the job's crop. The truth for a branch keeps
    what the branch does not predict from the Source (see `branch_truth`)."""
    from .baseline import apply_baseline

    available = [f for f in truth_frames(truth_dir) if job.source.first_frame <= f <= job.source.last_frame]
    if not available:
        raise FilmRecoveryError("no clean.####.exr frames inside the Source frame range.", where=str(truth_dir),
                                fix="Point --truth at a folder of clean frames numbered like the Source.")
    with_model = [f for f in available if model_frame_path(model_dir, job.name, f).exists()]
    frames = evenly_spaced(with_model or available, max_frames)
    grade = sample_truth_grade(truth_dir)
    notes = []
    if grade is not None:
        from .sample import apply_reference_grade

        notes.append("Sample shot: the truth is the clean frame in the Reference's grade "
                     "(ml.sample.apply_reference_grade), the colour an ideal recovery has.")
    notes.append(f"Truth for the {job.branch} branch: "
                 + ("Source Y + clean CbCr." if job.branch == "chroma" else "clean Y + Source CbCr."))
    comparisons = []
    for done, frame in enumerate(frames, start=1):
        source_full = read_source(frame)
        box = crop_box(job.crop, *source_full.shape[:2], frame)
        source = source_full[box]
        clean_path = Path(truth_dir) / f"clean.{frame:04d}.exr"
        clean = fit_to(read_image(str(clean_path)), source_full.shape, None, str(clean_path))[box]
        if grade is not None:
            clean = apply_reference_grade(clean, grade)
        model_path = model_frame_path(model_dir, job.name, frame)
        model = fit_to(read_image(str(model_path)), source.shape, box, str(model_path)) if model_path.exists() else None
        comparisons.append(compare(f"frame {frame}", frame, source, apply_baseline(source, fit), model,
                                   branch_truth(source, clean, job.branch), job.branch, thumbnail_width))
        if progress:
            progress(done, len(frames))
    return _finish_set("truth", "Truth frames", comparisons, notes)


def evaluate_temporal(job, fit, model_dir: str | os.PathLike, read_source: Callable[[int], np.ndarray],
                      max_frames: int = 48, threshold: float = 0.01,
                      progress: Callable[[int, int], None] | None = None) -> dict | None:
    """Temporal stability of Source, baseline and model over the longest run of consecutive
    frames that have model output (None when there is no run of two frames)."""
    from .baseline import apply_baseline

    inferred = [f for f in range(job.source.first_frame, job.source.last_frame + 1)
                if model_frame_path(model_dir, job.name, f).exists()]
    frames = longest_run(inferred, max_frames)
    if len(frames) < 2:
        return None
    cache: dict[int, np.ndarray] = {}

    def source(frame: int) -> np.ndarray:
        if frame not in cache:  # the baseline reader needs the same frame again
            cache.clear()
            cache[frame] = read_source(frame)
        return cache[frame]

    readers = {"source": source, "baseline": lambda f: apply_baseline(source(f), fit),
               "model": lambda f: fit_to(read_image(str(model_frame_path(model_dir, job.name, f))),
                                         source(f).shape, None, str(model_frame_path(model_dir, job.name, f)))}
    return temporal_stability(frames, readers, threshold, progress)


def fitted_baseline(job, dataset, path: Path, reporter):
    """The baseline fit at `path` when it was fitted on this dataset, else a 17^3 LUT fitted now (saved)."""
    from .baseline import fit_from_dataset, load_fit, save_fit

    if path.exists():
        fit = load_fit(path)
        if fit.settings.get("dataset_hash") == dataset.manifest_hash:
            return fit
        reporter.message(f"{path} was fitted on another dataset; fitting the baseline again.", "warning")
    else:
        reporter.message("No baseline fit yet; fitting a 17^3 LUT on the training pairs.")
    fit = fit_from_dataset(dataset, seed=job.training.seed)
    save_fit(fit, path)
    return fit


@dataclass(frozen=True)
class EvaluateOptions:
    """The `evaluate` stage's settings (the command's flags)."""
    truth: str = ""               # a sample's truth folder: score against the undamaged frames too
    model_dir: str = ""           # the model's display frames (default work_dir/infer/display)
    baseline_fit: str = ""        # the baseline's fit.json (default work_dir/baseline/fit.json)
    truth_frames: int = 12
    temporal_frames: int = 48     # at most this many consecutive inferred frames for temporal stability
    static_threshold: float = 0.01  # Source luma change below which a pixel counts as static
    run_id: str = ""              # report folder name (default: a timestamp)


def evaluate_job(job, reporter, options: EvaluateOptions | None = None) -> dict[str, Any]:
    """The whole `evaluate` stage: Source, baseline and model on the held-out pairs (and the truth
    frames when `truth` names them), temporal stability, and the HTML + JSON report under
    work_dir/report/<run id>/. Metrics, previews and warnings go to `reporter`; returns the result."""
    import json

    from .baseline import dataset_folder
    from .dataset_io import load_dataset
    from .ingest import source_frame
    from .report import finite_json, new_run_id, read_training_log, write_report

    options = options or EvaluateOptions()
    truth = options.truth
    dataset = load_dataset(dataset_folder(job))
    fit = fitted_baseline(job, dataset, Path(options.baseline_fit or job.work_path("baseline", "fit.json")), reporter)
    frames_dir = Path(options.model_dir) if options.model_dir else job.work_path("infer", "display")

    def read_source(frame: int):
        return source_frame(job, frame)

    sets = [evaluate_pairs(job, fit, dataset, frames_dir,
                           progress=lambda done, total: reporter.progress(done, total, "evaluate pairs"))]
    if truth:
        sets.append(evaluate_truth(job, fit, truth, frames_dir, read_source, options.truth_frames,
                                   progress=lambda done, total: reporter.progress(done, total, "evaluate truth")))
    temporal = evaluate_temporal(job, fit, frames_dir, read_source, options.temporal_frames, options.static_threshold,
                                 progress=lambda done, total: reporter.progress(done, total, "temporal"))
    primary = sets[-1]  # the truth, when given, is the better judge than the pairs' targets
    beat, text = verdict(primary.table, job.branch)
    if not primary.independent:
        text += (" On held-out pairs a reference-guided model takes the targets' own Reference channels: not an "
                 "independent test (the report's note on these pairs gives its score from the Source alone, or says "
                 "why it could not).")
    for method, scores in primary.table.items():
        for name in ("psnr", "delta_e_mean", "delta_e_p95", "ssim"):
            reporter.metric(f"{method}_{name}", scores[name], set=primary.key)
    if temporal:
        for name, value in temporal["chroma_change"].items():
            reporter.metric(f"{name}_temporal_chroma_change", value)
    if not beat:
        reporter.message(text, "warning")

    report_root = job.work_path("report")
    run_dir = report_root / (options.run_id or new_run_id(report_root))
    settings = {"truth": truth, "model_dir": str(frames_dir), "baseline_fit": fit.fit_id,
                "truth_frames": options.truth_frames, "temporal_frames": options.temporal_frames,
                "static_threshold": options.static_threshold}
    baseline = {"kind": fit.kind, "domain": fit.domain, "fit_id": fit.fit_id, **fit.settings, **fit.stats}
    guide_file = frames_dir.parent / "guide.json"
    guide = json.loads(guide_file.read_text())["summary"] if guide_file.exists() else None
    report = write_report(run_dir, job=job, sets=sets, beat_baseline=beat, verdict=text, temporal=temporal,
                          baseline=baseline, training_log=read_training_log(job.work_path("train", "log.jsonl")),
                          options=settings, guide=guide)
    index = run_dir / "index.html"
    # The Review panel shows the first evaluated image's 1:1 crops and luma difference.
    items = next((s["items"] for s in report["sets"] if s["key"] == primary.key), [])
    for kind in ("detail", "luma_difference"):
        if items and items[0].get(kind):
            reporter.preview(str(run_dir / items[0][kind]), kind)
    reporter.preview(str(index), "report")
    headline = {method: {k: primary.table[method][k] for k in ("psnr", "delta_e_mean", "delta_e_p95", "ssim")}
                for method in primary.table}
    return {"report": str(index), "report_json": str(run_dir / "report.json"), "run_id": run_dir.name,
            "evaluated_on": primary.key, "beat_baseline": beat, "verdict": text, "headline": finite_json(headline),
            "temporal": finite_json(temporal["chroma_change"]) if temporal else None}
