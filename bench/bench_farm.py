"""Film scale on the sample reel: the plan's shot fallback with per-shot numbers, and one vs two local
Dask workers running the same plan.

    .venv/bin/python bench/bench_farm.py --out work/bench_farm                # about 10 minutes on 2 cores
    .venv/bin/python bench/bench_farm.py --out work/bench_farm --write-docs   # also docs/benchmarks.md

The reel (`python -m ml reel`): 4 shots of 8 frames at 160x96, shot 3 faded differently (a warm
balance over the usual fade, ml/reel.py). The plan is one sequence unit; after its model is trained,
every shot is scored on its held-out pairs (`ml score`) against the unit's 3D-LUT baseline and against
a 3D LUT fitted on that shot alone (for the table), and a shot whose model scores below the artist's
PSNR threshold gets its own unit and model. The farm runs twice from scratch on an embedded Dask
LocalCluster, with one worker and with two, one thread per task; the outputs of the two runs are
compared byte for byte. The final frames are also scored per shot against the reel's clean truth.
Prints the markdown section; --write-docs stores it in bench/results/film_scale.md and replaces the
"## Film scale" section of docs/benchmarks.md (bench/run_all.py carries that file over).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ml.evaluation import branch_truth  # noqa: E402
from ml.imageio import frame_path, read_image  # noqa: E402
from ml.job import Job, Plate, save_job  # noqa: E402
from ml.metrics import branch_psnr  # noqa: E402
from ml.plan import PlanRules, build_plan, load_plan, save_plan, write_unit_jobs  # noqa: E402
from ml.reel import generate_reel  # noqa: E402

SECTION_TITLE = "## Film scale: shot fallback and farm workers on the sample reel"
RESULTS_MD = ROOT / "bench" / "results" / "film_scale.md"
DOCS = ROOT / "docs" / "benchmarks.md"


def farm(plan: Path, workers: int, threads: int) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ml", "--json", "farm", str(plan), "--local", str(workers),
                           "--threads", str(threads)], capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        raise SystemExit(f"farm failed ({done.returncode}): {events[-1] if events else done.stderr[-2000:]}")
    return seconds, events[-1]


def reset(work: Path, plan_text: str) -> None:
    shutil.rmtree(work / "plan" / "units", ignore_errors=True)
    shutil.rmtree(work / "infer", ignore_errors=True)
    shutil.rmtree(work / "plan" / "farm", ignore_errors=True)
    (work / "plan" / "plan.json").write_text(plan_text)


def outputs(work: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((work / "infer").rglob("*.exr"))}


def shot_lut_numbers(plan, unit_id: str) -> dict[str, float]:
    """The sequence model's held-out pairs against a 3D LUT fitted on each shot alone (for the table)."""
    from ml.neural.shot_score import score_shots

    scores = score_shots(plan.unit_dir(unit_id) / "dataset", plan.model_path(unit_id), plan.branch, baseline="shot")
    return {shot: n["baseline"]["psnr"] for shot, n in scores["shots"].items() if n["scored"]}


def truth_psnr(reel_dir: Path, work: Path, name: str, branch: str, first: int, last: int) -> float:
    values = []
    for frame in range(first, last + 1):
        source = read_image(frame_path(str(reel_dir / "source" / "source.####.exr"), frame))
        clean = read_image(frame_path(str(reel_dir / "truth" / "clean.####.exr"), frame))
        from ml.sample import apply_reference_grade

        truth = branch_truth(source, apply_reference_grade(clean), branch)
        out = read_image(str(work / "infer" / "display" / f"{name}.{frame:04d}.exr"))
        values.append(branch_psnr(out, truth, branch))
    return sum(values) / len(values)


def run(out: Path, steps: int, min_psnr: float | None, threads: int, guided: bool = True) -> str:
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("reel", "work"):
        shutil.rmtree(out / stale, ignore_errors=True)
    info = generate_reel(out / "reel", shots=4, frames_per_shot=8, width=160, height=96, odd_shot=3)
    job = Job(name="reel", work_dir=str(out / "work"),
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame))
    t = job.training
    t.model, t.size, t.steps, t.batch, t.crop_size, t.device = "bilateral", "small", steps, 8, 64, "cpu"
    t.reference_guided = guided
    t.validate_every, t.checkpoint_every, t.preview_every = 250, 500, 100000
    job.output.aces_exr, job.output.review = False, "none"
    save_job(job, out / "job.json")
    start = time.perf_counter()
    plan = build_plan(job, out / "job.json", "sequence", rules=PlanRules(min_psnr=min_psnr, chunk_frames=4))
    plan_seconds = time.perf_counter() - start
    plan_path = save_plan(plan, out / "work" / "plan" / "plan.json")
    write_unit_jobs(plan)
    plan_text = plan_path.read_text()
    work = out / "work"

    runs = {}
    for workers in (1, 2):
        reset(work, plan_text)
        print(f"farm with {workers} worker(s)...", file=sys.stderr, flush=True)
        runs[workers] = farm(plan_path, workers, threads)
        runs[workers] = (*runs[workers], outputs(work))
        print(f"   {runs[workers][0]:.0f} s", file=sys.stderr, flush=True)
    identical = runs[1][2] == runs[2][2]
    plan = load_plan(plan_path)
    sequence = plan.unit("sequence")
    shot_luts = shot_lut_numbers(plan, "sequence")
    load = os.getloadavg()[0]

    lines = [SECTION_TITLE, "",
             f"`python bench/bench_farm.py` ({sum(r[0] for r in runs.values()) + plan_seconds:.0f} s wall). "
             "Compared: the 3D-LUT baseline per shot, a shot's own model against the reel's, one Dask worker "
             "against two.", "",
             f"The sample reel (`python -m ml reel`): {len(plan.shots)} shots of 8 frames, 160x96, cuts found at "
             f"{', '.join(map(str, plan.cuts))}; shot 3 faded differently (its cyan and yellow dyes went further: "
             "a warm balance over the reel's fade). Plan: one sequence unit, "
             f"{sum(p['accepted'] and not p['holdout'] for p in sequence.pairs)} training pairs and one held-out "
             "pair per shot; small bilateral model, "
             f"{steps} steps, batch 8 x 64^2 crops, CPU, one thread per task; "
             + ("reference-guided (the default: inference takes each frame's aligned Reference where it covers; "
                "`ml score` scores the model's Source-only prediction, which is what tells the shots apart). "
                if guided else "Source-only models (`training.reference_guided` off, `--source-only`). ")
             + "Fallback rule: the defaults, a shot "
             "that loses to the unit's 3D-LUT baseline or scores more than 3 dB below the unit's median shot"
             + (f", and the artist's PSNR threshold of {min_psnr:g} dB" if min_psnr is not None else "") + ".", "",
             "Per shot, on its held-out pair (PSNR of Cb,Cr in dB against the pair's ground truth; CIEDE2000 mean "
             "in brackets). *Unit LUT*: the 3D LUT `ml baseline` fits on the unit's training pairs (what `ml score` "
             "compares with); *shot LUT*: a 3D LUT fitted on that shot's training pairs alone.", "",
             "| shot | Source | unit LUT | shot LUT | reel model | decision | shot's own model |",
             "|---|---|---|---|---|---|---|"]
    decisions = {d["shot"]: d for d in plan.fallbacks}
    for shot in plan.shots:
        numbers = sequence.scores.get(shot.name, {})
        if not numbers.get("scored"):
            lines.append(f"| {shot.name} | - | - | - | - | not scored ({numbers.get('why', '')}) | - |")
            continue
        cell = lambda m: f"{m['psnr']:.2f} ({m['delta_e_mean']:.2f})"  # noqa: E731
        decision = decisions.get(shot.name)
        after = decision and decision.get("after") and decision["after"].get("model")
        lines.append(f"| {shot.name}{' (odd)' if shot.name == '3' else ''} | {cell(numbers['source'])} | "
                     f"{cell(numbers['baseline'])} | {shot_luts.get(shot.name, float('nan')):.2f} | "
                     f"{cell(numbers['model'])} | "
                     f"{('own model: ' + decision['reason'].split(':')[0]) if decision else 'keeps the reel model'} | "
                     f"{cell(after) if after else '-'} |")
    lines += ["", "Final frames against the reel's clean truth (every frame of the shot, PSNR of Cb,Cr; each shot "
                  "inferred with the model the plan gave it):", "",
              "| shot | model used | PSNR vs truth |", "|---|---|---|"]
    for shot in plan.shots:
        lines.append(f"| {shot.name} | {shot.model_unit} | "
                     f"{truth_psnr(out / 'reel', work, 'reel', plan.branch, shot.first, shot.last):.2f} |")
    lines += ["", "One vs two local Dask workers (`ml farm plan.json --local N --threads 1`, from an empty work "
                  "folder each time; the plan's dataset, train, score and inference tasks, the fallback units "
                  "included):", "", "| workers | wall s | tasks | frames |", "|---|---|---|---|"]
    for workers, (seconds, result, _) in runs.items():
        lines.append(f"| {workers} | {seconds:.1f} | {result['tasks']} | {result['frames_done']}/{result['frames_total']} |")
    lines += ["", f"Speed-up {runs[1][0] / runs[2][0]:.2f}x; outputs of the two runs byte-identical: "
                  f"{'yes' if identical else 'NO'}. Load after: {load:.1f} (1-minute load average, "
                  f"{os.cpu_count()} cores; other work shared this CPU). The sequence unit's training is one task, "
                  "so two workers overlap only what comes after it (the fallback units' training with each other and "
                  "with the other shots' inference chunks); on a CPU this loaded, two single-thread tasks at once "
                  "can take longer than one after the other."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "work" / "bench_farm"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--min-psnr", type=float, default=None, help="the artist's threshold (default: none)")
    parser.add_argument("--source-only", action="store_true",
                        help="train Source-only models (training.reference_guided off)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    section = run(Path(args.out), args.steps, args.min_psnr, args.threads, guided=not args.source_only)
    print(section)
    if args.write_docs:
        RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_MD.write_text(section + "\n")
        from field import replace_section  # bench/field.py: one way to replace a benchmarks section

        DOCS.write_text(replace_section(DOCS.read_text() if DOCS.exists() else "# Benchmarks\n", section,
                                        SECTION_TITLE))
        print(f"wrote {RESULTS_MD} and the film-scale section of {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
