"""How clearly a 3:2 pulldown Reference's mixed frames stand out (`curation.field_mixed_frames`).

For each shot of field runs (`bench/field.py --out DIR`, `bench/field_outside.py --out DIR`), every
Reference frame's `curation.interlace_measures`, set against its neighbours as the detector does, and
the median over each phase of the 5-frame cadence: the comb excess of the most combed phase against
the highest of the other phases (the margin the threshold `curation.MIXED_EXCESS` sits in), and the
frames found against the truth's field mixes. Every shot is measured, at whatever rate: the clean
References show how far their phases stay from the threshold (the product looks only at a Reference
at a pulldown's rate).

    .venv/bin/python bench/bench_pulldown.py --shots /tmp/field/shots /tmp/outside/shots [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import field  # noqa: E402

TITLE = "## Field corpus: a pulldown Reference's mixed frames"
RESULTS_MD = ROOT / "bench" / "results" / "pulldown_frames.md"


def measure_shot(shot_dir: Path) -> dict:
    """One shot: its cadence phases' comb excess (`curation.cadence_phases`), the frames found and the
    truth's mixed frames."""
    import field_corpus

    from ml import curation
    from ml.imageio import frame_path, read_image

    shot = field_corpus.load_shot(shot_dir)
    truth = json.loads((shot_dir / "truth" / "truth.json").read_text())
    reference = shot["reference"]
    frames = list(range(reference["first_frame"], reference["last_frame"] + 1))
    measures = {f: curation.interlace_measures(read_image(frame_path(reference["path"], f))) for f in frames}
    combed, _ = curation.cadence_phases(measures)
    strongest = int(np.argmax(combed))
    return {"kind": shot_dir.name, "reference_size": [reference["width"], reference["height"]],
            "frames": len(frames), "combed_phase": combed[strongest],
            "other_phases": max(c for p, c in enumerate(combed) if p != strongest),
            "found": {str(f): how for f, how in curation.field_mixed_frames(measures).items()},
            "truth": {str(e["frame"]): e["field_mix"] for e in truth["reference_frames"] if e["field_mix"] != "clean"}}


def measure(shot_roots: list[Path], log=print) -> list[dict]:
    rows = []
    for root in shot_roots:
        for shot_dir in sorted(p for p in root.iterdir() if (p / "truth" / "truth.json").exists()):
            rows.append(measure_shot(shot_dir))
            log(f"[{shot_dir.name}] combed phase {rows[-1]['combed_phase']:+.3f}, found {len(rows[-1]['found'])}")
    return rows


def markdown(rows: list[dict]) -> str:
    from ml import curation

    def frames(mixes: dict[str, str]) -> str:
        return ", ".join(f"{f} {how}" for f, how in sorted(mixes.items())) or "none"

    agree = sum(row["found"] == row["truth"] for row in rows)
    lines = [TITLE, "",
             f"`bench/bench_pulldown.py` measured every shot of the field corpus and the shots outside it (small "
             f"size; this machine, {time.strftime('%Y-%m-%d')}). *Combed phase*: the median, over the frames at "
             f"the 5-frame cadence's most combed phase, of each frame's comb (alternate-row) energy over its four "
             f"neighbours' median, minus 1; *other phases*: the highest of the four other phases. The detector "
             f"marks a phase combed at {curation.MIXED_EXCESS:+.2f} or more, and with it the neighbouring phase that "
             f"looks more mixed (combed or soft). *Found* against *truth*: the Reference frames that mix two film "
             f"frames' fields. The product looks only at a Reference at a pulldown's rate (29.97 of 23.976 or 24 "
             f"fps); every shot is measured here to show how far clean References stay from the threshold.", "",
             "| shot | Reference | frames | combed phase | other phases | found | truth |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        same = row["found"] == row["truth"]
        lines.append(f"| {row['kind']} | {row['reference_size'][0]}x{row['reference_size'][1]} | {row['frames']} | "
                     f"{row['combed_phase']:+.3f} | {row['other_phases']:+.3f} | {frames(row['found'])} | "
                     f"{'the same' if same else frames(row['truth'])} |")
    lines += ["", f"Found equals truth on {agree} of {len(rows)} shots."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", nargs="+", required=True, help="folders of field shots (DIR/shots)")
    parser.add_argument("--write-docs", action="store_true", help=f"store the section ({TITLE}) in docs/benchmarks.md")
    args = parser.parse_args(argv)
    rows = measure([Path(p) for p in args.shots], log=lambda text: print(text, file=sys.stderr, flush=True))
    section = markdown(rows)
    print(section)
    if args.write_docs:
        field.store_section(section, RESULTS_MD, TITLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
