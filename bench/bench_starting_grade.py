"""Does starting a chroma model from the shot's baseline grade help? Field kinds, with and without.

`training.start_from_grade` (on by default) puts a chroma model's colour residual on the shot's
baseline 3D LUT, fitted before the first step. This runs chosen field-corpus kinds through the CLI
door twice, with the grade and from the Source's own colour, the field harness otherwise (`--model`
picks the network: the field table uses the bilateral model, the product's default is the UNet),
and writes one table of model scores against truth.

    .venv/bin/python bench/bench_starting_grade.py --out /tmp/grade --model unet --steps 400 --write-docs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import field  # noqa: E402

SECTION_TITLE = "## Field corpus: starting from the baseline grade"
RESULTS_MD = ROOT / "bench" / "results" / "starting_grade.md"
KINDS = "grey_edge,night,high_key,pal_speedup,ntsc_pulldown,pan_scan"


def run(out: Path, kinds: list[str], model: str, steps: int) -> dict[bool, dict]:
    """The field result with and without the starting grade (CLI door only)."""
    results = {}
    for grade in (True, False):
        harness = field.HarnessSettings(steps=steps, model=model, lean_outputs=True, start_from_grade=grade)
        results[grade] = field.run_field(out / ("grade" if grade else "source"), kinds=kinds, doors=("cli",),
                                         harness=harness)
    return results


def markdown(results: dict[bool, dict], model: str, steps: int) -> str:
    kinds = [shot["kind"] for shot in results[True]["shots"]]
    lines = [SECTION_TITLE, "",
             f"`bench/bench_starting_grade.py` ran {', '.join(kinds)} of the field corpus through the CLI door with "
             f"a small {model}, {steps} steps of batch 8 x 64^2 (the field harness otherwise; this machine, 2 cores, "
             f"{time.strftime('%Y-%m-%d')}), once from the shot's baseline grade (`training.start_from_grade`, the "
             "default) and once from the Source's own colour. Cells: `PSNR-CbCr dB / mean CIEDE2000` against "
             "truth on the field table's held-out frames.", "",
             "| kind | baseline | guided baseline | model from the Source | model from the grade |",
             "|---|---|---|---|---|"]
    for kind in kinds:
        shots = {grade: next(s for s in results[grade]["shots"] if s["kind"] == kind) for grade in (True, False)}
        cells = [field._cell(field.cli_scores(shots[True], "baseline"), "chroma"),
                 field._cell(field.cli_scores(shots[True], "baseline_guided"), "chroma"),
                 field._cell(field.cli_scores(shots[False], "model"), "chroma"),
                 field._cell(field.cli_scores(shots[True], "model"), "chroma")]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="scratch folder for the shots and work folders")
    parser.add_argument("--kinds", default=KINDS)
    parser.add_argument("--model", default="unet", choices=["unet", "bilateral"])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--write-docs", action="store_true",
                        help="store the table in bench/results/starting_grade.md and docs/benchmarks.md")
    args = parser.parse_args(argv)
    results = run(Path(args.out), [k.strip() for k in args.kinds.split(",")], args.model, args.steps)
    section = markdown(results, args.model, args.steps)
    print(section)
    if args.write_docs:
        field.store_section(section, RESULTS_MD, SECTION_TITLE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
