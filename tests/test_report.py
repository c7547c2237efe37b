"""The evaluation report: every section present, every image on disk, the banner when the
model loses; and `python -m ml evaluate` end to end on a small synthetic shot."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_baseline import fade, photo, run_cli, write_synthetic_shot

from ml import evaluation as ev
from ml import report as rp
from ml.imageio import read_image, write_exr
from ml.job import Crop, load_job


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings: list[str] = []
        self.images: list[str] = []
        self.classes: list[str] = []
        self.svgs = 0
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
            self.headings.append("")
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "svg":
            self.svgs += 1
        self.classes += (attrs.get("class") or "").split()

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, text):
        if self._in_h2:
            self.headings[-1] += text


def parse_report(index: Path) -> PageParser:
    parser = PageParser()
    parser.feed(index.read_text(encoding="utf-8"))
    for src in parser.images:
        assert not src.startswith(("/", "http")), src  # relative links or inline images only
        assert src.startswith("data:image/png;base64,") or (index.parent / src).is_file(), src
    assert parser.headings == list(rp.SECTIONS)
    return parser


def strict_json(path: Path) -> dict:
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_loss_curve_svg_draws_loss_and_validation_psnr():
    entries = [{"step": s, "loss": 0.1 / (1 + s), "val_psnr": 20 + s / 10 if s % 20 == 0 else float("nan")}
               for s in range(0, 200, 5)]
    svg = rp.loss_curve_svg(entries)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    assert "validation PSNR" in svg
    assert "<svg" not in rp.loss_curve_svg([])


def test_training_log_skips_lines_that_are_not_entries(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 0.5}\nnot json\n{"event": "start"}\n{"step": 2, "loss": 0.4}\n')
    assert [e["step"] for e in rp.read_training_log(log)] == [1, 2]
    assert rp.read_training_log(tmp_path / "missing.jsonl") == []


def test_heat_colours_run_dark_to_bright():
    colours = rp.heat_colours(np.array([[0.0, 0.025, 0.05, 1.0]]), 0.05)
    brightness = colours.sum(axis=-1)[0]
    assert np.all(np.diff(brightness) >= 0) and brightness[0] < 0.05 and brightness[-1] > 2.5


def synthetic_set(model_quality: str | None) -> ev.EvaluationSet:
    clean = photo("rocket", (64, 96))
    source = fade(clean)
    baseline = 0.5 * (source + clean)
    model = {"good": clean, "bad": source, None: None}[model_quality]
    comparison = ev.compare("pair_1003", 1003, source, baseline, model, clean, "chroma", 48)
    return ev.EvaluationSet("holdout", "Held-out pairs", [comparison], ev.summarise([comparison]))


@pytest.mark.parametrize("model_quality", ["good", "bad", None])
def test_report_has_every_section_and_flags_a_losing_model(tmp_path, model_quality):
    job = load_job(write_synthetic_shot(tmp_path, [1001, 1002], holdout={1002}))
    evaluation = synthetic_set(model_quality)
    beat, text = ev.verdict(evaluation.table, "chroma")
    assert beat == (model_quality == "good")
    out = tmp_path / "report" / "run"
    report = rp.write_report(out, job=job, sets=[evaluation], beat_baseline=beat, verdict=text, temporal=None,
                             baseline={"kind": "lut", "domain": "display", "fit_rmse": 0.01},
                             training_log=[{"step": 1, "loss": 0.3}, {"step": 2, "loss": 0.2}], options={})
    page = parse_report(out / "index.html")
    assert ("lose" in page.classes) == (not beat) and ("win" in page.classes) == beat
    # contact sheet, heat map, 1:1 detail crops, 1:1 luma difference, the A/B wipe's two inline images
    assert page.svgs == 1 and len(page.images) == 6
    assert strict_json(out / "report.json")["beat_baseline"] == beat == report["beat_baseline"]
    sheet = read_image(str(out / report["sets"][0]["items"][0]["contact_sheet"]))
    panels = 4 if model_quality else 3
    assert sheet.shape[1] > panels * 48  # Source | baseline | (model |) Reference side by side


def test_evaluate_command_end_to_end_flags_a_model_that_loses(tmp_path):
    frames = list(range(1001, 1007))
    crop = Crop(enabled=True, x=10, y=8, width=100, height=70)
    job_path = write_synthetic_shot(tmp_path, frames, holdout={1003, 1006}, crop=crop)
    job = load_job(job_path)
    infer = tmp_path / "work" / "infer" / "display"
    for frame in frames:  # a "model" that returns the faded Source: worse than any fitted grade
        write_exr(infer / f"shot.{frame:04d}.exr", read_image(str(tmp_path / "plates" / f"source.{frame:04d}.exr")))
    log = Path(job.work_dir) / "train" / "log.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("\n".join(json.dumps({"step": s, "loss": 1.0 / (s + 1), "val_psnr": 25 + s / 50})
                             for s in range(0, 100, 10)))

    code, events = run_cli(["evaluate", str(job_path), "--truth", str(tmp_path / "truth"), "--run-id", "lose"])
    assert code == 0, events[-1]
    result = events[-1]
    assert result["beat_baseline"] is False and "NOT" in result["verdict"] and result["evaluated_on"] == "truth"
    assert result["headline"]["baseline"]["delta_e_mean"] < result["headline"]["model"]["delta_e_mean"]
    assert any(e["type"] == "preview" and e["kind"] == "report" for e in events)
    index = Path(result["report"])
    assert index == tmp_path / "work" / "report" / "lose" / "index.html"
    page = parse_report(index)
    assert "lose" in page.classes and page.svgs == 1
    report = strict_json(index.parent / "report.json")
    assert [s["key"] for s in report["sets"]] == ["holdout", "truth"]
    assert [item["frame"] for item in report["sets"][0]["items"]] == [1003, 1006]
    assert report["temporal"]["frame_pairs"] == 5
    assert report["training"]["last_step"] == 90
    items = 2 + len(report["sets"][1]["items"])  # per item: sheet, heat map, 1:1 detail, luma difference
    assert len(page.images) == 4 * items + 2 * min(rp.WIPE_ITEMS, items)  # + each A/B wipe's two images
    assert (tmp_path / "work" / "baseline" / "fit.json").exists()  # fitted on demand


def test_evaluate_names_a_trained_model_that_does_not_load(tmp_path):
    """A model file that is there but damaged does not quietly drop the Source-only score: the
    held-out set's note names the file, and the verdict does not call the pairs an independent test."""
    frames = list(range(1001, 1005))
    job_path = write_synthetic_shot(tmp_path, frames, holdout={1004})
    infer = tmp_path / "work" / "infer" / "display"
    for frame in frames:
        write_exr(infer / f"shot.{frame:04d}.exr", read_image(str(tmp_path / "plates" / f"source.{frame:04d}.exr")))
    damaged = tmp_path / "work" / "train" / "model_best.safetensors"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a model")
    code, events = run_cli(["evaluate", str(job_path), "--run-id", "damaged"])
    assert code == 0, events[-1]
    assert "not an independent test" in events[-1]["verdict"]
    report = strict_json(Path(events[-1]["report"]).parent / "report.json")
    notes = " ".join(report["sets"][0]["notes"])
    assert "did not load" in notes and str(damaged) in notes


def test_evaluate_command_reports_a_model_that_beats_the_baseline(tmp_path):
    frames = list(range(1001, 1005))
    job_path = write_synthetic_shot(tmp_path, frames, holdout={1004})
    infer = tmp_path / "work" / "infer" / "display"
    for frame in frames:  # a near-perfect chroma model: Source luma, clean colour
        source = read_image(str(tmp_path / "plates" / f"source.{frame:04d}.exr"))
        clean = read_image(str(tmp_path / "truth" / f"clean.{frame:04d}.exr"))
        write_exr(infer / f"shot.{frame:04d}.exr", ev.branch_truth(source, clean, "chroma"))
    code, events = run_cli(["evaluate", str(job_path), "--run-id", "win"])
    assert code == 0, events[-1]
    result = events[-1]
    assert result["beat_baseline"] is True and result["evaluated_on"] == "holdout"
    page = parse_report(Path(result["report"]))
    assert "win" in page.classes and "lose" not in page.classes
    assert page.svgs == 0  # no training log: the section says so instead of drawing
