"""The evaluation report: one self-contained HTML page plus report.json per run.

work_dir/report/<run-id>/index.html, report.json and images/*.png (relative links). Sections:
verdict banner, metrics tables, contact sheets (Source | baseline | model | Reference per
image), difference heat maps, temporal stability, the training loss curve (inline SVG, from
work_dir/train/log.jsonl) and the settings that produced the run. A model that does not beat
the baseline gets a plain red banner at the top.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import math
import os
from pathlib import Path

import numpy as np

from .evaluation import METHODS, EvaluationSet
from .guide import detail_sentence
from .imageio import atomic_path, write_png
from .primitives import nice_ticks

REPORT_SCHEMA = "film_recovery.report"
SECTIONS = ("Verdict", "Metrics", "Contact sheets", "Detail at 1:1", "Difference heat maps", "Reference guide",
            "Temporal stability", "Training loss", "Settings")
COLUMN_LABELS = {"source": "Source", "baseline": "Baseline", "model": "Model", "reference": "Reference (ground truth)"}
HEAT_SCALE = {"chroma": 0.05, "spatial": 0.1}  # error (YCbCr units) drawn at the top of the colour map
LUMA_DIFFERENCE_SCALE = 0.1  # |ΔY| drawn at the top of the colour map in the 1:1 luma difference
WIPE_ITEMS = 3  # A/B wipes in the page (each carries its 1:1 crops inline, so the page stays self-contained)

# A perceptually ordered dark-to-bright map (inferno-like control points).
_HEAT_STOPS = np.array([[0.0, 0.0, 0.015], [0.34, 0.06, 0.43], [0.73, 0.21, 0.33], [0.98, 0.55, 0.04],
                        [0.99, 1.0, 0.64]], dtype=np.float32)


def heat_colours(values: np.ndarray, scale: float) -> np.ndarray:
    """Map non-negative errors (H, W) to RGB (H, W, 3): black at 0, pale yellow at >= scale."""
    position = np.clip(np.asarray(values, np.float32) / scale, 0.0, 1.0) * (len(_HEAT_STOPS) - 1)
    low = np.minimum(np.floor(position).astype(np.int64), len(_HEAT_STOPS) - 2)
    frac = (position - low)[..., None]
    return (_HEAT_STOPS[low] * (1.0 - frac) + _HEAT_STOPS[low + 1] * frac).astype(np.float32)


def new_run_id(report_root: str | os.PathLike) -> str:
    """A timestamp id, suffixed if a run of the same second already exists."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id, suffix = stamp, 2
    while (Path(report_root) / run_id).exists():
        run_id, suffix = f"{stamp}-{suffix}", suffix + 1
    return run_id


# --------------------------------------------------------------------------- training log

def read_training_log(path: str | os.PathLike) -> list[dict]:
    """Lines of the training log that are JSON objects with a step (others are skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("step"), (int, float)):
            entries.append(entry)
    return entries


def _finite_series(entries: list[dict], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for entry in entries:
        value = entry.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(float(entry["step"]))
            values.append(float(value))
    return steps, values


def loss_curve_svg(entries: list[dict], width: int = 720, height: int = 280) -> str:
    """Training loss (log scale, left axis, orange) and validation PSNR (right axis, blue)."""
    loss_steps, losses = _finite_series(entries, "loss")
    pairs = [(s, v) for s, v in zip(loss_steps, losses, strict=True) if v > 0]
    psnr_steps, psnrs = _finite_series(entries, "val_psnr")
    if not pairs and not psnrs:
        return '<p class="note">No training log (work_dir/train/log.jsonl) to draw.</p>'
    left, right, top, bottom = 64, 64, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    all_steps = [s for s, _ in pairs] + psnr_steps
    x_low, x_high = min(all_steps), max(all_steps)
    x_high = x_high if x_high > x_low else x_low + 1

    def x_of(step: float) -> float:
        return left + (step - x_low) / (x_high - x_low) * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="loss" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="training loss curve">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#1c1c1f" stroke="#777"/>']
    for tick in nice_ticks(x_low, x_high):
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#999"/>'
                     f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">step</text>')
    if pairs:
        logs = [math.log10(v) for _, v in pairs]
        y_low, y_high = math.floor(min(logs)), math.ceil(max(logs))
        y_high = y_high if y_high > y_low else y_low + 1

        def y_loss(value: float) -> float:
            return top + (y_high - math.log10(value)) / (y_high - y_low) * plot_h

        for exponent in range(y_low, y_high + 1):
            y = top + (y_high - exponent) / (y_high - y_low) * plot_h
            parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#333"/>'
                         f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#f90">1e{exponent}</text>')
        points = " ".join(f"{x_of(s):.1f},{y_loss(v):.1f}" for s, v in pairs)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#f90" stroke-width="1.5"/>'
                     f'<text x="{left + 4}" y="{top + 14}" fill="#f90">training loss (log)</text>')
    if psnrs:
        p_low, p_high = math.floor(min(psnrs)), math.ceil(max(psnrs))
        p_high = p_high if p_high > p_low else p_low + 1

        def y_psnr(value: float) -> float:
            return top + (p_high - value) / (p_high - p_low) * plot_h

        for tick in nice_ticks(p_low, p_high, 4):
            parts.append(f'<text x="{left + plot_w + 6}" y="{y_psnr(tick) + 4:.1f}" fill="#4cf">{tick:g}</text>')
        points = " ".join(f"{x_of(s):.1f},{y_psnr(v):.1f}" for s, v in zip(psnr_steps, psnrs, strict=True))
        parts.append(f'<polyline points="{points}" fill="none" stroke="#4cf" stroke-width="1.5"/>'
                     f'<text x="{left + plot_w - 4}" y="{top + 14}" text-anchor="end" fill="#4cf">'
                     f'validation PSNR (dB)</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- the page

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;background:#111;color:#ddd;margin:24px;max-width:1500px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #333}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #333;padding:4px 10px;text-align:right}
th{background:#1d1d22}td:first-child,th:first-child{text-align:left}
.banner{padding:14px 18px;font-size:17px;font-weight:600;border-radius:4px}
.lose{background:#7a1010;color:#fff}.win{background:#135c24;color:#fff}
.best{color:#7f7}.note{color:#aaa}figure{margin:10px 0}img{max-width:100%;image-rendering:auto}
svg text{font:11px system-ui,sans-serif;fill:#bbb}pre{background:#1a1a1a;padding:10px;overflow:auto}
img.px{max-width:none;image-rendering:pixelated}
.wipe{margin:12px 0}.wipe-stage{position:relative;display:inline-block;cursor:ew-resize;line-height:0}
.wipe-stage img{max-width:none;image-rendering:pixelated;display:block}
.wipe-stage img.wipe-b{position:absolute;left:0;top:0}
.wipe-line{position:absolute;top:0;bottom:0;width:1px;background:#fff;pointer-events:none}
.wipe-controls{margin:4px 0}.wipe-controls input[type=range]{width:320px;vertical-align:middle}
"""

# The A/B wipe: B drawn over A and clipped to the right of the slider; drag on the picture or move
# the slider. `#wipe=N` in the address puts the first wipe at the top of the page, at N %.
_WIPE_SCRIPT = """
(function(){
  function setup(root){
    var a=root.querySelector('select.wipe-a'), b=root.querySelector('select.wipe-b'),
        imgA=root.querySelector('img.wipe-a'), imgB=root.querySelector('img.wipe-b'),
        pos=root.querySelector('.wipe-pos'), line=root.querySelector('.wipe-line'),
        stage=root.querySelector('.wipe-stage');
    function pick(){ imgA.src=a.options[a.selectedIndex].getAttribute('data-src');
                     imgB.src=b.options[b.selectedIndex].getAttribute('data-src'); }
    function move(){ var v=Number(pos.value); imgB.style.clipPath='inset(0 0 0 '+v+'%)'; line.style.left=v+'%'; }
    a.addEventListener('change',pick); b.addEventListener('change',pick); pos.addEventListener('input',move);
    function drag(e){ if(e.buttons!==1&&e.type!=='pointerdown')return; var r=stage.getBoundingClientRect();
      pos.value=Math.max(0,Math.min(100,100*(e.clientX-r.left)/r.width)); move(); }
    stage.addEventListener('pointerdown',drag); stage.addEventListener('pointermove',drag);
    return {pos:pos,move:move,root:root};
  }
  var wipes=[].map.call(document.querySelectorAll('div.wipe'),setup);
  var m=/wipe=([0-9.]+)/.exec(location.hash);
  // A link to the wipe: it moves to the top of the page (a screenshot or a bookmark shows it first).
  if(m&&wipes.length){ wipes[0].pos.value=m[1]; wipes[0].move();
    document.body.insertBefore(wipes[0].root, document.body.firstChild); }
})();
"""


def _format(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _metrics_table(evaluation: EvaluationSet, branch: str) -> str:
    channel = "CbCr" if branch == "chroma" else "Y"
    columns = [("psnr", f"PSNR {channel} (dB) ↑", 2, max), ("delta_e_mean", "ΔE2000 mean ↓", 2, min),
               ("delta_e_p95", "ΔE2000 95th pct ↓", 2, min), ("ssim", "SSIM luma ↑", 4, max)]
    methods = [m for m in METHODS if m in evaluation.table]
    best = {key: pick(evaluation.table[m][key] for m in methods) for key, _, _, pick in columns}
    rows = ["<tr><th>Method</th>" + "".join(f"<th>{html.escape(title)}</th>" for _, title, _, _ in columns)
            + "<th>images</th></tr>"]
    for method in methods:
        scores = evaluation.table[method]
        cells = "".join(f'<td class="{"best" if scores[key] == best[key] else ""}">{_format(scores[key], digits)}</td>'
                        for key, _, digits, _ in columns)
        rows.append(f"<tr><td>{COLUMN_LABELS[method]}</td>{cells}<td>{int(scores['images'])}</td></tr>")
    notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in evaluation.notes)
    return f"<h3>{html.escape(evaluation.label)}</h3><table>{''.join(rows)}</table>{notes}"


def _guide_section(guide: dict | None) -> str:
    """How much of the inferred run a reference-guided model took from the aligned Reference."""
    if not guide:
        return "<p class='note'>The model is not reference-guided (or inference has not run).</p>"
    frames, alone = guide.get("frames", 0), guide.get("unguided_frames", [])
    text = (f"<p>The aligned Reference guided {frames - len(alone)} of {frames} inferred frames, covering "
            f"{100 * guide.get('mean_coverage', 0):.1f} % of their pixels on average; elsewhere the model "
            "predicted from the Source alone.</p>")
    detail = detail_sentence(guide)
    if detail:
        text += f"<p>{html.escape(detail[0].upper() + detail[1:], quote=False)}.</p>"
    if alone:
        text += f"<p class='note'>From the Source alone: frames {html.escape(', '.join(map(str, alone[:40])))}.</p>"
    notes = list((guide.get("notes") or {}).items())[:8]
    if notes:
        text += "<ul>" + "".join(f"<li>frame {html.escape(f)}: {html.escape(n)}</li>" for f, n in notes) + "</ul>"
    return text


def _temporal_section(temporal: dict | None) -> str:
    if not temporal:
        return ('<p class="note">No run of two or more consecutive inferred frames '
                '(work_dir/infer/display) to measure.</p>')
    change = temporal["chroma_change"]
    rows = "".join(f"<tr><td>{COLUMN_LABELS[name]}</td><td>{_format(value * 1000.0, 3)}</td></tr>"
                   for name, value in change.items())
    return (f"<p>Mean frame-to-frame change of (Cb, Cr) in static areas (×1000, lower is steadier), frames "
            f"{temporal['first_frame']}–{temporal['last_frame']}, {temporal['frame_pairs']} frame pairs, "
            f"{temporal['static_fraction'] * 100:.0f}% of pixels static (Source luma change &lt; "
            f"{temporal['threshold']}).</p><table><tr><th>Sequence</th><th>chroma change ×1000</th></tr>"
            f"{rows}</table>")


def _write_images(out_dir: Path, sets: list[EvaluationSet], branch: str) -> dict[tuple[str, int], dict[str, str]]:
    """Contact sheets and heat maps as PNGs; returns relative paths per (set key, item index)."""
    from .plots import contact_sheet

    links: dict[tuple[str, int], dict[str, str]] = {}
    for evaluation in sets:
        for index, item in enumerate(evaluation.comparisons):
            stem = f"images/{evaluation.key}_{index:02d}"
            columns = [item.images[c] for c in ("source", "baseline", "model", "reference") if c in item.images]
            write_png(out_dir / f"{stem}_sheet.png", contact_sheet([columns]))
            heat = [heat_colours(item.errors[m], HEAT_SCALE[branch]) for m in ("baseline", "model") if m in item.errors]
            write_png(out_dir / f"{stem}_heat.png", contact_sheet([heat]))
            links[(evaluation.key, index)] = {"contact_sheet": f"{stem}_sheet.png", "heat_map": f"{stem}_heat.png",
                                              **_write_detail(out_dir, stem, item)}
    return links


def luma_difference(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|Y(image) - Y(reference)| per pixel (BT.709 luma), the detail a method gets wrong."""
    from .primitives import luma

    return np.abs(luma(image) - luma(reference))


def _write_detail(out_dir: Path, stem: str, item) -> dict:
    """The 1:1 crops side by side, one PNG per crop (the A/B wipe), and the 1:1 luma difference
    against the Reference (baseline | model) of one comparison."""
    from .plots import contact_sheet

    if not item.crops:
        return {}
    order = [c for c in ("source", "baseline", "model", "reference") if c in item.crops]
    write_png(out_dir / f"{stem}_detail.png", contact_sheet([[item.crops[c] for c in order]]))
    links: dict = {"detail": f"{stem}_detail.png", "crops": {}}
    for name in order:
        links["crops"][name] = f"{stem}_crop_{name}.png"
        write_png(out_dir / links["crops"][name], item.crops[name])
    differences = [heat_colours(luma_difference(item.crops[m], item.crops["reference"]), LUMA_DIFFERENCE_SCALE)
                   for m in ("baseline", "model") if m in item.crops]
    write_png(out_dir / f"{stem}_luma_difference.png", contact_sheet([differences]))
    links["luma_difference"] = f"{stem}_luma_difference.png"
    return links


def _data_uri(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _wipe(out_dir: Path, crops: dict[str, str], caption: str) -> str:
    """A self-contained A/B wipe over an item's 1:1 crops (images inline: no network, no other file)."""
    order = [c for c in ("source", "baseline", "model", "reference") if c in crops]
    uris = {name: _data_uri(out_dir / crops[name]) for name in order}
    first, second = order[0], ("model" if "model" in order else order[-1])

    def options(selected: str) -> str:
        return "".join(f'<option value="{n}" data-src="{uris[n]}"{" selected" if n == selected else ""}>'
                       f"{html.escape(COLUMN_LABELS[n])}</option>" for n in order)

    return (f'<div class="wipe"><div class="wipe-controls">A <select class="wipe-a" aria-label="left image">'
            f'{options(first)}</select> B <select class="wipe-b" aria-label="right image">{options(second)}</select> '
            '<input type="range" class="wipe-pos" min="0" max="100" step="0.5" value="50" aria-label="wipe position">'
            f'</div><div class="wipe-stage"><img class="wipe-a" src="{uris[first]}" alt="A">'
            f'<img class="wipe-b" src="{uris[second]}" alt="B" style="clip-path:inset(0 0 0 50%)">'
            f'<div class="wipe-line" style="left:50%"></div></div>'
            f"<figcaption>{html.escape(caption)}: A left of the line, B right of it, at 1:1.</figcaption></div>")


def _detail_section(out_dir: Path, sets: list[EvaluationSet], links: dict, job) -> str:
    grain = getattr(getattr(job, "output", None), "grain", "clean")
    parts = [f"<p class='note'>Crops at 1:1 (one image pixel per screen pixel) where the Reference has the most "
             f"edge and texture detail: Source | Baseline | Model | Reference, then |ΔY| against the Reference "
             f"(baseline | model; black = 0, pale yellow ≥ {LUMA_DIFFERENCE_SCALE}). Grain choice: "
             f"<b>{html.escape(grain)}</b>"
             + (" (the Source's grain is added back over the model's luma)" if grain == "keep_source" else "")
             + ".</p>"]
    wipes = 0
    # The truth set (when there is one) first: it is the better judge.
    for s in sorted(sets, key=lambda e: e.key != "truth"):
        for i, item in enumerate(s.comparisons):
            link = links[(s.key, i)]
            if "detail" not in link:
                continue
            caption = (f"{s.label}: {item.name} (Source frame {item.frame}), crop at row {item.crop_origin[0]}, "
                       f"column {item.crop_origin[1]}")
            shown = " | ".join(COLUMN_LABELS[c] for c in ("source", "baseline", "model", "reference") if c in item.crops)
            parts.append(f'<figure><img class="px" src="{link["detail"]}" alt="{html.escape(caption)} at 1:1">'
                         f"<figcaption>{html.escape(caption)}: {shown}</figcaption></figure>"
                         f'<figure><img class="px" src="{link["luma_difference"]}" alt="{html.escape(caption)} '
                         f'luma difference"><figcaption>|ΔY| against the Reference: baseline | model</figcaption>'
                         "</figure>")
            if wipes < WIPE_ITEMS:
                parts.append(_wipe(out_dir, link["crops"], caption))
                wipes += 1
    return "".join(parts) if len(parts) > 1 else "<p class='note'>No 1:1 crops in this run.</p>"


def write_report(out_dir: str | os.PathLike, *, job, sets: list[EvaluationSet], beat_baseline: bool, verdict: str,  # noqa: PLR0913  keyword-only, one per section of the report
                 temporal: dict | None, baseline: dict, training_log: list[dict], options: dict,
                 guide: dict | None = None) -> dict:
    """Write images/, report.json and index.html (last, so a complete page means a complete run).
    Returns the report as written to report.json."""
    from .job import job_to_dict

    out_dir = Path(out_dir)
    links = _write_images(out_dir, sets, job.branch)
    job_data = job_to_dict(job)
    settings = {key: job_data[key] for key in ("name", "branch", "source", "reference", "balance", "cleanup",
                                               "crop", "training", "output", "dataset_dir", "model_path")}
    settings["alignment"] = {k: job_data["alignment"][k] for k in ("model", "mode", "roi", "smoothing")}
    losses = [e["loss"] for e in training_log if isinstance(e.get("loss"), (int, float))]
    psnrs = [e["val_psnr"] for e in training_log if isinstance(e.get("val_psnr"), (int, float))]
    report = {
        "schema": REPORT_SCHEMA, "version": 1, "run_id": out_dir.name,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "job": job.name, "branch": job.branch, "beat_baseline": bool(beat_baseline), "verdict": verdict,
        "sets": [{"key": s.key, "label": s.label, "table": s.table, "notes": s.notes,
                  "items": [{"name": c.name, "frame": c.frame,
                             "scores": {m: sc.as_dict() for m, sc in c.scores.items()},
                             **links[(s.key, i)]} for i, c in enumerate(s.comparisons)]} for s in sets],
        "temporal": temporal, "baseline": baseline,
        "training": {"log_entries": len(training_log), "final_loss": losses[-1] if losses else None,
                     "best_val_psnr": max(psnrs) if psnrs else None,
                     "last_step": training_log[-1]["step"] if training_log else None},
        "settings": settings, "options": options, "guide": guide,
    }
    with atomic_path(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(finite_json(report), indent=2, default=_json_default), encoding="utf-8")

    title = f"Film Recovery report: {html.escape(job.name)} ({job.branch})"
    banner_class = "win" if beat_baseline else "lose"
    banner_text = html.escape(verdict) if beat_baseline else "⚠ " + html.escape(verdict)
    sheets, heats = [], []
    for s in sets:
        for i, item in enumerate(s.comparisons):
            link = links[(s.key, i)]
            caption = f"{html.escape(s.label)}: {html.escape(item.name)} (Source frame {item.frame})"
            shown = " | ".join(COLUMN_LABELS[c] for c in ("source", "baseline", "model", "reference") if c in item.images)
            sheets.append(f'<figure><img src="{link["contact_sheet"]}" alt="{caption}">'
                          f"<figcaption>{caption}: {shown}</figcaption></figure>")
            heat_shown = " | ".join(COLUMN_LABELS[m] for m in ("baseline", "model") if m in item.errors)
            heats.append(f'<figure><img src="{link["heat_map"]}" alt="{caption} error">'
                         f"<figcaption>{caption}: |{heat_shown}| − Reference</figcaption></figure>")
    channel = "(Cb, Cr) distance" if job.branch == "chroma" else "|ΔY|"
    body = [
        f"<h1>{title}</h1><p class='note'>Run {html.escape(out_dir.name)}, {report['created']}</p>",
        f'<h2>Verdict</h2><div class="banner {banner_class}">{banner_text}</div>',
        "<h2>Metrics</h2>" + "".join(_metrics_table(s, job.branch) for s in sets)
        + f'<p class="note">Baseline: {html.escape(str(baseline.get("kind")))} in the '
          f'{html.escape(str(baseline.get("domain")))} domain, fit RMSE {_format(baseline.get("fit_rmse"), 4)}.</p>',
        "<h2>Contact sheets</h2>" + "".join(sheets),
        "<h2>Detail at 1:1</h2>" + _detail_section(out_dir, sets, links, job),
        f"<h2>Difference heat maps</h2><p class='note'>Error in the branch's channels, {channel}: black = 0, "
        f"pale yellow ≥ {HEAT_SCALE[job.branch]}.</p>" + "".join(heats),
        "<h2>Reference guide</h2>" + _guide_section(guide),
        "<h2>Temporal stability</h2>" + _temporal_section(temporal),
        "<h2>Training loss</h2>" + loss_curve_svg(training_log),
        "<h2>Settings</h2><pre>" + html.escape(json.dumps({"job": settings, "baseline": baseline,
                                                           "evaluation": options}, indent=2, default=_json_default))
        + "</pre>",
    ]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}<script>{_WIPE_SCRIPT}</script></body></html>")
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return report


def finite_json(value):
    """NaN and infinities become null, so report.json stays valid JSON."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _json_default(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
