"""What should a chroma model's finer colour be? The same trained models, inferred once per choice.

Below the Reference's resolution a reference-guided chroma model's colour detail is the Source's own:
picture, or grain the Reference does not have. Two output choices act there:
- `output.fine_colour` (`--option fine_colour`): `model` keeps the prediction's detail (the guide
  before `ml.guide.fine_weight`), `auto` (the default) decides per frame (the picture share of the Source's finer colour);
- `output.grain` (`--option grain`): `keep_source` leaves the colour grain the prediction carries from
  the Source, `clean` (the default) reduces it (`ml.neural.predict.reduce_colour_grain`).
This takes a field run's folder (`bench/field.py --out DIR --doors cli`), infers each completed chroma
kind again under each choice (the others at their defaults), and scores them against truth as the
field harness does; the training is not repeated, so only that choice differs.

    .venv/bin/python bench/field.py --out /tmp/f2k --size 2k --doors cli --steps 20 --eval-frames 4 --lean \\
        --kinds grey_edge,dark_edges,night,high_key,sky_wall,pal_speedup,ntsc_pulldown,pan_scan,turning,pillarbox_grade
    .venv/bin/python bench/bench_fine_colour.py --field /tmp/f2k [/tmp/fsmall ...] --option grain --write-docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import field  # noqa: E402


@dataclass(frozen=True)
class Option:
    """One job.output field compared: its choices (the default last), and its section."""

    choices: tuple[str, str]
    title: str
    results_md: Path
    explains: str


OPTIONS = {
    "fine_colour": Option(
        ("model", "auto"), "## Field corpus: where the finer colour comes from", ROOT / "bench" / "results" / "fine_colour.md",
        "`output.fine_colour = model` keeps the prediction's colour detail finer than the Reference resolves "
        "(the guide before `ml.guide.fine_weight`), `auto` (the default) takes the Reference's colour there too "
        "where the Source's colour there is more than its picture's luma detail explains (grain)"),
    "grain": Option(
        ("keep_source", "clean"), "## Field corpus: colour grain", ROOT / "bench" / "results" / "colour_grain.md",
        "`output.grain = keep_source` leaves the colour grain the prediction carries from the Source through the "
        "grade, `clean` (the default) reduces it (`ml.neural.predict.reduce_colour_grain`: per 3x3 window the colour "
        "the luma explains is kept, the rest shrunk by a Wiener gain against the frame's own noise level) and, where "
        "the colour the luma does not explain is grain (`ml.neural.predict.grain_smoothing`, or the fine weight where "
        "the Reference does not cover), makes the colour follow the luma"),
}


def rescore(field_dir: Path, eval_frames: int | None, option: str = "fine_colour", log=print) -> list[dict]:
    """Per completed chroma kind of a field run: its scores and median fine weight under each choice
    of job.output.<option>, on `eval_frames` held-out frames (None: as many as the run scored)."""
    result = json.loads((field_dir / "field.json").read_text())
    eval_frames = eval_frames or result["harness"]["eval_frames"]
    rows = []
    for shot in result["shots"]:
        run = shot["doors"].get("cli")
        if shot["branch"] != "chroma" or not run or not run["completed"]:
            continue
        work = field_dir / "work" / shot["kind"] / "cli"
        row = {"kind": shot["kind"], "size": result["size"], "reference_size": shot["reference_size"]}
        try:  # the job is left at the default choice, whatever happens
            for choice in OPTIONS[option].choices:
                start = time.perf_counter()
                _set_output(work / "job.json", option, choice)
                code, message, _, _ = field.run_engine(["infer", str(work / "job.json"), "--overwrite"], timeout=3600)
                if code:
                    raise RuntimeError(f"{shot['kind']}: infer failed: {message}")
                guide = json.loads((work / "infer" / "guide.json").read_text())["summary"]
                scores = field.score_work(str(field_dir / "shots" / shot["kind"]), work, True, eval_frames)["quality"]
                row[choice] = {"quality": scores, "fine_weight": guide.get("fine_weight", 0.0),
                               "colour_smoothing": guide.get("colour_smoothing", 0.0)}
                log(f"[{shot['kind']}] {choice}: {_cell(scores['methods']['model'])}, "
                    f"fine weight {row[choice]['fine_weight']:.2f} ({time.perf_counter() - start:.0f} s)")
        finally:
            _set_output(work / "job.json", option, OPTIONS[option].choices[-1])
        rows.append(row)
    return rows


def _set_output(job_path: Path, option: str, choice: str) -> None:
    """job.output.<option> (fine_colour was added to the schema later: a job.json written before lacks it)."""
    data = json.loads(job_path.read_text())
    data["output"][option] = choice
    tmp = job_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(job_path)


def _cell(scores: dict) -> str:
    return f"{scores['psnr']:.1f} / {scores['delta_e_mean']:.2f}"


def _fine(choice_row: dict) -> str:
    """The median fine weight, and the colour smoothing a blocky Reference gets instead where there is any."""
    smoothing = choice_row.get("colour_smoothing", 0.0)
    return f"{choice_row['fine_weight']:.2f}" + (f" (smoothed {smoothing:.2f})" if smoothing > 0 else "")


def _gap(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _table(rows: list[dict], option: str) -> list[str]:
    before_choice, after_choice = OPTIONS[option].choices
    lines = [f"| kind | Reference | Baseline | Reference's own | {before_choice}: Model | gap closed "
             f"| fine weight (median) | {after_choice}: Model | gap closed | goal met ({after_choice}) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        before, after = row[before_choice]["quality"], row[after_choice]["quality"]
        methods = after["methods"]
        lines.append(f"| {row['kind']} | {row['reference_size'][0]}x{row['reference_size'][1]} | "
                     f"{_cell(methods['baseline'])} | {_cell(methods['reference'])} | "
                     f"{_cell(before['methods']['model'])} | {_gap(before['gap_closed'])} | "
                     f"{_fine(row[after_choice])} | {_cell(methods['model'])} | "
                     f"{_gap(after['gap_closed'])} | {'yes' if field.goal_met('chroma', after)[0] else 'no'} |")
    met = {choice: sum(field.goal_met("chroma", row[choice]["quality"])[0] for row in rows)
           for choice in (before_choice, after_choice)}
    return lines + ["", f"Goal met: {met[before_choice]} of {len(rows)} kinds with `{before_choice}`, "
                        f"{met[after_choice]} of {len(rows)} with `{after_choice}`."]


def _trained(field_dir: Path) -> str:
    harness = json.loads((field_dir / "field.json").read_text())["harness"]
    return (f"{harness['model_size']} {harness['model']} trained {harness['steps']} steps of batch {harness['batch']} "
            f"x {harness['crop_size']}^2")


def markdown(runs: list[tuple[Path, list[dict]]], option: str = "fine_colour") -> str:
    """The section: one table per field run (size), all from this invocation."""
    spec = OPTIONS[option]
    sizes = ", ".join(f"{rows[0]['size'] if rows else '?'} size ({_trained(field_dir)})" for field_dir, rows in runs)
    lines = [spec.title, "",
             f"`bench/bench_fine_colour.py --option {option}` inferred each chroma kind of field runs ({sizes}; "
             f"CLI door; this machine, {time.strftime('%Y-%m-%d')}) twice with the same trained model: "
             f"{spec.explains}. Cells: `PSNR-CbCr dB / mean CIEDE2000` against truth on the field table's held-out "
             "frames; the goal as the field table's (90 % of the baseline-to-Reference gap where the Reference beats "
             "the baseline, CIEDE2000 at most 2.0)."]
    for _, rows in runs:
        if len(runs) > 1:
            lines += ["", f"### {rows[0]['size'] if rows else '?'} size"]
        lines += [""] + _table(rows, option)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", required=True, nargs="+", help="bench/field.py --out folders (CLI door runs)")
    parser.add_argument("--option", choices=sorted(OPTIONS), default="fine_colour",
                        help="the job.output choice to compare")
    parser.add_argument("--eval-frames", type=int, default=None, help="default: each field run's own")
    parser.add_argument("--write-docs", action="store_true",
                        help="store the section in bench/results/ (fine_colour.md or colour_grain.md) and the docs")
    args = parser.parse_args(argv)
    runs = []
    for folder in args.field:
        field_dir = Path(folder).resolve()
        runs.append((field_dir, rescore(field_dir, args.eval_frames, args.option,
                                        log=lambda text: print(text, file=sys.stderr, flush=True))))
    section = markdown(runs, args.option)
    print(section)
    if args.write_docs:
        spec = OPTIONS[args.option]
        field.store_section(section, spec.results_md, spec.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
