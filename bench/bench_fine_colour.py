"""Where should a chroma model's finer colour come from? The same trained models, inferred twice.

Below the Reference's resolution a reference-guided chroma model's colour detail is the Source's own
(picture, or grain the Reference does not have). `output.fine_colour` chooses: `model` keeps the
prediction's detail (the guide before `ml.guide.fine_weight`), `auto` (the default) decides per frame
from the luma. This takes a field run's folder (`bench/field.py --out DIR --doors cli`), infers each
completed chroma kind again with `model` and with `auto`, and scores both against truth as the field
harness does; the training is not repeated, so only the guide differs.

    .venv/bin/python bench/field.py --out /tmp/f2k --size 2k --doors cli --steps 20 --eval-frames 4 --lean \\
        --kinds grey_edge,dark_edges,night,high_key,sky_wall,pal_speedup,ntsc_pulldown,pan_scan,turning,pillarbox_grade
    .venv/bin/python bench/bench_fine_colour.py --field /tmp/f2k --eval-frames 4 --write-docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import field  # noqa: E402

SECTION_TITLE = "## Field corpus: where the finer colour comes from"
RESULTS_MD = ROOT / "bench" / "results" / "fine_colour.md"
CHOICES = ("model", "auto")


def rescore(field_dir: Path, eval_frames: int, log=print) -> list[dict]:
    """Per completed chroma kind of a field run: its scores and median fine weight under each choice."""
    result = json.loads((field_dir / "field.json").read_text())
    rows = []
    for shot in result["shots"]:
        run = shot["doors"].get("cli")
        if shot["branch"] != "chroma" or not run or not run["completed"]:
            continue
        work = field_dir / "work" / shot["kind"] / "cli"
        row = {"kind": shot["kind"], "size": result["size"], "reference_size": shot["reference_size"]}
        for choice in CHOICES:
            start = time.perf_counter()
            _set_fine_colour(work / "job.json", choice)
            code, message, _, _ = field.run_engine(["infer", str(work / "job.json"), "--overwrite"], timeout=3600)
            if code:
                raise RuntimeError(f"{shot['kind']}: infer failed: {message}")
            guide = json.loads((work / "infer" / "guide.json").read_text())["summary"]
            scores = field.score_work(str(field_dir / "shots" / shot["kind"]), work, True, eval_frames)["quality"]
            row[choice] = {"quality": scores, "fine_weight": guide.get("fine_weight", 0.0)}
            log(f"[{shot['kind']}] {choice}: {_cell(scores['methods']['model'])}, "
                f"fine weight {row[choice]['fine_weight']:.2f} ({time.perf_counter() - start:.0f} s)")
        _set_fine_colour(work / "job.json", "auto")
        rows.append(row)
    return rows


def _set_fine_colour(job_path: Path, choice: str) -> None:
    """job.output.fine_colour (added to the schema later: a job.json written before lacks it)."""
    data = json.loads(job_path.read_text())
    data["output"]["fine_colour"] = choice
    tmp = job_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(job_path)


def _cell(scores: dict) -> str:
    return f"{scores['psnr']:.1f} / {scores['delta_e_mean']:.2f}"


def _gap(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def markdown(rows: list[dict], field_dir: Path) -> str:
    size = rows[0]["size"] if rows else "?"
    harness = json.loads((field_dir / "field.json").read_text())["harness"]
    lines = [SECTION_TITLE, "",
             f"`bench/bench_fine_colour.py` inferred each chroma kind of a field run ({size} size, CLI door, "
             f"{harness['model_size']} {harness['model']} trained {harness['steps']} steps of batch {harness['batch']} "
             f"x {harness['crop_size']}^2; this machine, {time.strftime('%Y-%m-%d')}) twice with the same trained model: "
             "`output.fine_colour = model` keeps the prediction's colour detail finer than the Reference resolves "
             "(the guide before `ml.guide.fine_weight`), `auto` (the default) takes the Reference's colour there "
             "too where the Source's luma does not follow the Reference's (grain). Cells: `PSNR-CbCr dB / mean "
             "CIEDE2000` against truth on the field table's held-out frames; the goal as the field table's (90 % "
             "of the baseline-to-Reference gap where the Reference beats the baseline, CIEDE2000 at most 2.0).", "",
             "| kind | Reference | Baseline | Reference's own | model: Model | gap closed | fine weight (median) "
             "| auto: Model | gap closed | goal met (auto) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    met = 0
    for row in rows:
        before, after = row["model"]["quality"], row["auto"]["quality"]
        ok, _ = field.goal_met("chroma", after)
        met += ok
        methods = after["methods"]
        lines.append(f"| {row['kind']} | {row['reference_size'][0]}x{row['reference_size'][1]} | "
                     f"{_cell(methods['baseline'])} | {_cell(methods['reference'])} | "
                     f"{_cell(before['methods']['model'])} | {_gap(before['gap_closed'])} | "
                     f"{row['auto']['fine_weight']:.2f} | {_cell(methods['model'])} | {_gap(after['gap_closed'])} | "
                     f"{'yes' if ok else 'no'} |")
    met_before = sum(field.goal_met("chroma", row["model"]["quality"])[0] for row in rows)
    lines += ["", f"Goal met: {met_before} of {len(rows)} kinds keeping the prediction's finer colour, "
                  f"{met} of {len(rows)} with `auto`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", required=True, help="a bench/field.py --out folder (CLI door run)")
    parser.add_argument("--eval-frames", type=int, default=field.HarnessSettings.eval_frames)
    parser.add_argument("--write-docs", action="store_true", help=f"store the table in {RESULTS_MD.name} and the docs")
    args = parser.parse_args(argv)
    field_dir = Path(args.field).resolve()
    rows = rescore(field_dir, args.eval_frames, log=lambda text: print(text, file=sys.stderr, flush=True))
    section = markdown(rows, field_dir)
    print(section)
    if args.write_docs:
        field.store_section(section, RESULTS_MD, SECTION_TITLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
