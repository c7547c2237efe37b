"""Does a longer training schedule change the field table's model-versus-baseline answer?

The field table (`bench/field.py`) trains 200 steps per shot to fit this CPU; the product's default is
2000 (`training.steps`). This runs chosen kinds through the CLI door at several step counts, with the
same harness otherwise, and writes one table of model and baseline scores against truth.

    .venv/bin/python bench/bench_field_schedule.py --out /tmp/schedule --steps 200,1000,2000 \
        --kinds high_key,pal_speedup,ntsc_pulldown,pan_scan --write-docs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import field  # noqa: E402

SECTION_TITLE = "## Field corpus: training length against the baseline"
RESULTS_MD = ROOT / "bench" / "results" / "field_schedule.md"


def run(out: Path, kinds: list[str], steps: list[int]) -> dict[int, dict]:
    """The field result per step count (CLI door only; shots generated once)."""
    results = {}
    for n in steps:
        harness = field.HarnessSettings(steps=n, lean_outputs=True)
        results[n] = field.run_field(out / f"steps{n}", kinds=kinds, doors=("cli",), harness=harness)
    return results


def markdown(results: dict[int, dict]) -> str:
    steps = sorted(results)
    kinds = [shot["kind"] for shot in results[steps[0]]["shots"]]
    lines = [SECTION_TITLE, "",
             f"`bench/bench_field_schedule.py` ran {', '.join(kinds)} of the field corpus through the CLI door "
             f"at {', '.join(str(n) for n in steps)} training steps (batch 8 x 64^2, small bilateral, the field "
             f"harness otherwise; this machine, 2 cores, {time.strftime('%Y-%m-%d')}). Cells: `PSNR-CbCr dB / mean "
             "CIEDE2000` against truth on the same held-out frames as the field table. The baseline does not "
             "train, so it has one column.", "",
             "| kind | baseline | " + " | ".join(f"model, {n} steps" for n in steps) + " |",
             "|---|---|" + "---|" * len(steps)]
    for kind in kinds:
        shots = {n: next(s for s in results[n]["shots"] if s["kind"] == kind) for n in steps}
        baseline = field.cli_scores(shots[steps[0]], "baseline")
        cells = [field._cell(baseline, "chroma")] + [field._cell(field.cli_scores(shots[n], "model"), "chroma") for n in steps]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="scratch folder for the shots and work folders")
    parser.add_argument("--steps", default="200,1000,2000", help="comma-separated step counts")
    parser.add_argument("--kinds", default="high_key,pal_speedup,ntsc_pulldown,pan_scan")
    parser.add_argument("--write-docs", action="store_true",
                        help="store the table in bench/results/field_schedule.md and docs/benchmarks.md")
    args = parser.parse_args(argv)
    results = run(Path(args.out), [k.strip() for k in args.kinds.split(",")],
                  [int(n) for n in args.steps.split(",")])
    section = markdown(results)
    print(section)
    if args.write_docs:
        field.store_section(section, RESULTS_MD, SECTION_TITLE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
