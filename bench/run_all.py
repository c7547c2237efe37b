"""Run every CPU benchmark at a CPU-friendly size and write docs/benchmarks.md.

    .venv/bin/python bench/run_all.py                  # about 10-15 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick --out /tmp/bench.md   # tiny sizes: checks the wiring
    .venv/bin/python bench/run_all.py --pipeline existing           # reuse work/demo's last report

Each benchmark runs as its own process (its stdout is the markdown section) and carries its
comparison from the same run: OpenCV's ECC for alignment, a one-worker export and a naive loop
for the dataset, the 3D-LUT baseline for quality. The sample-shot quality table comes from the
real pipeline (`scripts/film_recovery_batch.py --sample --stages all`, which needs bpy). The
GPU numbers are not measured here: see bench/gpu_suite.sh; earlier H200 measurements are kept
verbatim in their own section, and so are the field corpus table (bench/field.py --write-docs) and
the film-scale section (bench/bench_farm.py --write-docs).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_dataset import cpu_name  # noqa: E402

# Sections measured by long runs of their own, each written by its script's --write-docs and carried
# over here rather than dropped: the field corpus (bench/field.py), film scale (bench/bench_farm.py)
# and the baseline variants (bench/bench_baseline_fit.py).
CARRIED_SECTIONS = [ROOT / "bench" / "results" / name
                    for name in ("field_corpus.md", "film_scale.md", "baseline_fit.md", "primitives.md",
                                 "field_schedule.md", "starting_grade.md", "fine_colour.md",
                                 "colour_grain.md", "field_outside.md", "reference_limits.md", "speedup_pairs.md",
                                 "pulldown_frames.md")]

# (title, script arguments for the full run, for --quick, what is compared, the size run here)
BENCHMARKS = [
    ("Alignment at 2K", ["bench/bench_align.py"], ["bench/bench_align.py", "--images", "astronaut"],
     "OpenCV's pyramid ECC on the same synthetic pairs", "2048x1556, two photographs, four motion models"),
    ("Dataset export at 2K", ["bench/bench_dataset.py", "--pairs", "64"],
     ["bench/bench_dataset.py", "--pairs", "4", "--size", "640x360"],
     "the same export on one worker, and a naive loop", "64 distinct pairs of 2048x1556 (full size)"),
    ("Training speed (CPU-sized)", ["bench/bench_train.py", "--quick", "--threads", "2"],
     ["bench/bench_train.py", "--quick", "--threads", "2", "--steps", "5", "--warmup", "2", "--sizes", "tiny"],
     "the model kinds and sizes against each other", "scaled down: batch 4 x 64^2 crops, 512x384 inference"),
    ("Inference end to end (CPU-sized)", ["bench/bench_infer.py", "--quick"],
     ["bench/bench_infer.py", "--quick", "--model-kind", "bilateral", "--grain", "clean"],
     "small UNet against small bilateral, and the colour grain reduced (output.grain clean, the default) against "
     "kept, per stage", "scaled down: 512x389 and 1024x540, 6 frames"),
    ("Host CPU per inference frame", ["bench/bench_host.py"],
     ["bench/bench_host.py", "--sizes", "1024x778", "--frames", "2"],
     "the previous host path (OpenImageIO decode to float32, pre-balance on the host, OpenImageIO encode)",
     "2048x1556 and 4096x2160 (full size), 6 grainy frames"),
    ("Time to beat the 3D-LUT baseline (CPU)", ["bench/bench_time_to_beat.py", "--unet"],
     ["bench/bench_time_to_beat.py", "--size", "320x180", "--frames", "12", "--max-seconds", "10", "--steps", "200",
      "--crop", "64", "--batch", "4"],
     "the 3D-LUT baseline's held-out PSNR", "scaled down: 640x360 sample, batch 8 x 128^2, 120 s limit"),
    ("Spatial recovery (CPU)", ["bench/bench_spatial.py", "--grid"],
     ["bench/bench_spatial.py", "--size", "128x72", "--steps", "16"],
     "the 3D-LUT baseline, the Source and the aligned Reference's own luma against the truth; a Source-only "
     "model; the variants the spatial defaults were chosen from",
     "scaled down: 256x144 spatial sample, the default schedule (400 steps of batch 8 x 64^2)"),
    ("Spatial recovery at the demo size (CPU)", ["bench/bench_spatial.py", "--size", "640x360"],
     ["bench/bench_spatial.py", "--size", "160x90", "--steps", "16"],
     "the 3D-LUT baseline, the Source and the aligned Reference's own luma against the truth; a Source-only model",
     "640x360 spatial sample (the demo's size), the default schedule"),
]

H200_SECTION = """\
## Measured on a lent NVIDIA H200 (earlier run, same code family)

These numbers were measured by earlier sessions on a lent NVIDIA H200 (torch CUDA, bf16), not in
this run; the code has changed since (notably the position channels, see the note). Table
contents are as recorded.

Training speed, H200 (batch 16 x 256^2 crops; 4K inference one 4096x2160 frame), torch CUDA bf16:

| model | size | params | steps/s | crops/s | 4K inference fps |
|---|---|---|---|---|---|
| unet | tiny | 0.04M | 130 | 2085 | 100 |
| unet | small | 0.64M | 114 | 1830 | 64 |
| unet | medium | 6.18M | 68 | 1085 | 34 |
| unet | large | 24.7M | 46 | 730 | 16.5 |
| bilateral | small–large | 0.1–1.2M | 156–176 | ~2600 | 299–325 |

Real training on 512^2 synthetic pairs: small UNet batch 16 x 128^2 ~100 steps/s, held-out 26.3 dB (Source) -> 47.1 dB in 400 steps, 21 s wall including start-up; small bilateral ~190 steps/s.
(note: these runs were before the position channels were added to the models.)

End-to-end inference, H200, bf16, archival ACES EXR only (ZIP), 48 frames after 8 warm-up, writing to /dev/shm, untrained models; stage columns are ms per frame (decode/encode summed across threads):

| size | model | fps | decode | preprocess | model | colour | encode |
|---|---|---|---|---|---|---|---|
| 2048x1556 | small unet | 29.3 | 85 | 8.3 | 8.9 | 1.9 | 110 |
| 2048x1556 | small bilateral | 34.2 | 77 | 8.7 | 4.9 | 1.2 | 94 |
| 4096x2160 | small unet | 14.7 | 138 | 17.3 | 28.3 | 6.3 | 147 |
| 4096x2160 | small bilateral | 15.0 | 170 | 19.1 | 14.1 | 6.4 | 178 |

Writing the display EXR as well: 2K 22–24 fps, 4K 10.0–10.3 fps. Goal (4K >= 24 fps, 2K >= 60 fps end to end) NOT met: host EXR decode/encode bound (see the stage columns).
These inference rows predate the current host path: the Source was decoded through OpenImageIO's
`ImageBuf.get_pixels` (which holds the GIL, so decode threads ran one at a time) into float32
frames, and both codecs were OpenImageIO's. The section "Host CPU per inference frame" above
measures what the current path (OpenEXR decode of the half frame, widened and pre-balanced on
the device; OpenEXR encode) costs per frame; the end-to-end rerun on a GPU is still to be done
(`SECTIONS=host,infer bash bench/gpu_suite.sh`).
"""

GPU_HOWTO = """\
## Running the GPU benchmarks

`bench/gpu_suite.sh` runs, on a machine with a CUDA GPU and no bpy, the time-to-beat race at
2048x1556 (the sample shot generated there with scikit-image; at most 60 s of training) and
the host CPU per inference frame on that machine's cores, and end-to-end inference at 2048x1556
and 4096x2160 with ZIP and PIZ archival EXRs, writing `gpu_bench.md` (`SECTIONS` picks parts);
`SECTIONS=field` runs the field corpus's chroma kinds at 2K through the engine CLI door with the
product's training defaults, `FIELD_RUNS` at once (about 4-5 minutes a kind with five at once: give
it two calls, or fewer kinds, `FIELD_KINDS`). OpenImageIO, PyOpenColorIO and OpenEXR travel as cp312 wheels in `.whl/bench` (the script's
header says how to fetch them); `bash bench/gpu_suite.sh --cpu` is its smoke test on the CPU.
"""


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except ImportError:
        return "not installed"
    return str(getattr(mod, "__version__", None) or getattr(mod, "VERSION_STRING", "?"))


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine_section() -> str:
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    try:
        os_name = next(line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                       if line.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        os_name = platform.platform()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    versions = ", ".join(f"{name} {_version(module)}" for name, module in
                         (("numpy", "numpy"), ("torch", "torch"), ("OpenImageIO", "OpenImageIO"), ("OpenEXR", "OpenEXR"),
                          ("OpenColorIO", "PyOpenColorIO"), ("OpenCV", "cv2"), ("scikit-image", "skimage")))
    return "\n".join([
        "## Machine", "",
        f"- CPU: {cpu_name()}, {os.cpu_count()} cores; RAM {mem_kb / 2 ** 20:.0f} GiB; no GPU used",
        f"- OS: {os_name} (kernel {platform.release()}); Python {platform.python_version()}",
        f"- {versions}",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; load average at the start {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} (1/5/15 min). The machine is shared: other work running at the same time slows "
        "the CPU rows, the threaded ones most.",
        ""])


def run_script(args: list[str], timeout: float) -> tuple[str, float, str]:
    """(stdout, seconds, problem); problem is empty when the script succeeded."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return out, time.perf_counter() - start, f"stopped after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        return done.stdout, seconds, f"exit code {done.returncode}:\n\n```\n{tail}\n```"
    return done.stdout, seconds, ""


def _demote_headings(markdown: str) -> str:
    """A script's own headings, whatever their level, become sub-headings of its section."""
    return "\n".join("### " + line.lstrip("#").strip() if line.startswith("#") else line
                     for line in markdown.splitlines())


def _quality_tables(report: dict) -> list[str]:
    channels = "CbCr" if report["branch"] == "chroma" else "Y"
    lines = []
    for evaluation in report["sets"]:
        count = next(iter(evaluation["table"].values()), {}).get("images", "?")
        lines += [f"**{evaluation['label']}** ({count} image{'' if count == 1 else 's'})", "",
                  f"| | PSNR {channels} dB | CIEDE2000 mean | CIEDE2000 p95 | SSIM (luma) |", "|---|---|---|---|---|"]
        for method, scores in evaluation["table"].items():
            lines.append(f"| {method.capitalize()} | {scores['psnr']:.2f} | {scores['delta_e_mean']:.2f} | "
                         f"{scores['delta_e_p95']:.2f} | {scores['ssim']:.4f} |")
        lines += [""] + [f"- {note}" for note in evaluation.get("notes", [])] + [""]
    temporal = report.get("temporal") or {}
    change = temporal.get("chroma_change")
    if change:
        lines += [f"Temporal stability (mean frame-to-frame CbCr change on static pixels, lower is steadier; "
                  f"frames {temporal.get('first_frame')}-{temporal.get('last_frame')}): "
                  + ", ".join(f"{k.capitalize()} {v:.4f}" for k, v in change.items()), ""]
    lines += [f"Verdict: {report['verdict']}", ""]
    return lines


def _sample_size(report: dict) -> str:
    """ ' at WxH' from the sample.json beside the report's Source plate, if it is still there."""
    plate = report.get("settings", {}).get("source", {}).get("path", "")
    info = Path(plate).parent.parent / "sample.json"
    if not plate or not info.exists():
        return ""
    width, height = json.loads(info.read_text())["source_size"]
    return f" at {width}x{height}"


def pipeline_section(mode: str, scratch: str | None) -> str:
    """The sample shot's quality table from the real pipeline (run now, or work/demo's last run)."""
    lines = ["## Sample shot quality: Source, 3D-LUT baseline and model against the truth", ""]
    stage_times: list[str] = []
    wall = None
    if mode == "run":
        work = Path(tempfile.mkdtemp(prefix="bench_pipeline_", dir=scratch))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "scripts/film_recovery_batch.py", "--sample", "--work-dir", str(work),
                               "--sample-size", "640x360", "--stages", "all"], cwd=ROOT, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - start
        stage_times = [line.strip() for line in done.stdout.splitlines() if line.strip().endswith(" s")
                       and " done in " in line]
        reports = sorted(glob.glob(str(work / "report" / "*" / "report.json")))
        report = json.loads(Path(reports[-1]).read_text()) if reports else None
        size = _sample_size(report) if report else ""
        shutil.rmtree(work, ignore_errors=True)
        if done.returncode or report is None:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            return "\n".join(lines + [f"The pipeline run failed (exit code {done.returncode}):", "", "```", tail,
                                      "```", ""])
        source = "measured in this run"
    else:
        reports = sorted(glob.glob(str(ROOT / "work" / "demo" / "report" / "*" / "report.json")))
        if not reports:
            return "\n".join(lines + ["No pipeline report found (run with `--pipeline run`).", ""])
        source = f"read from an earlier run's report ({Path(reports[-1]).relative_to(ROOT)})"
        report = json.loads(Path(reports[-1]).read_text())
        size = _sample_size(report)
    training = report.get("settings", {}).get("training", {})
    sample = report.get("settings", {}).get("source", {})
    lines += [f"The built-in sample shot through every stage of the real pipeline "
              f"(`scripts/film_recovery_batch.py --sample --stages all`, bpy module, this CPU), {source}"
              + (f"; {wall:.0f} s wall in all, Blender start and the extension build included." if wall else "."),
              f"Frames {sample.get('first_frame')}-{sample.get('last_frame')}{size}; "
              f"{training.get('size')} {training.get('model')} model, {training.get('steps')} steps of batch "
              f"{training.get('batch')} x {training.get('crop_size')}^2, position channels "
              f"{'on' if training.get('position') else 'off'}; 17^3 3D-LUT baseline fitted on the same training "
              "pairs. Held-out pairs are scored against their dataset target; the truth frames against the "
              "clean frames in the Reference's grade (the colour an ideal recovery has).", ""]
    lines += _quality_tables(report)
    if stage_times:
        lines += ["Stage times: " + "; ".join(stage_times) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--pipeline", choices=["run", "existing", "skip"], default="run",
                        help="sample-shot quality: run the pipeline now (needs bpy), read work/demo's last "
                             "report, or leave it out")
    parser.add_argument("--skip", default="", help="comma-separated words: benchmarks whose title holds one are left out")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per benchmark")
    parser.add_argument("--scratch", help="folder for temporary files (default: the system temp)")
    parser.add_argument("--only", default="", help="comma-separated words: run only the benchmarks whose title "
                        "holds one and replace just their sections and summary rows in --out (the rest, carried "
                        "sections included, is kept as it is; the pipeline runs only with --pipeline run)")
    args = parser.parse_args()
    only = [word.strip().lower() for word in args.only.split(",") if word.strip()]

    skip = [word.strip().lower() for word in args.skip.split(",") if word.strip()]
    sections = [machine_section()]
    summary = []
    for title, full, quick, compared, size in BENCHMARKS:
        if any(word in title.lower() for word in skip) or (only and not any(w in title.lower() for w in only)):
            continue
        command = quick if args.quick else full
        if args.scratch and "bench_infer" in command[0]:
            command = [*command, "--out", args.scratch]
        elif args.scratch and command[0].endswith(("bench_dataset.py", "bench_time_to_beat.py", "bench_spatial.py")):
            command = [*command, "--scratch", args.scratch]
        print(f"== {title}: {' '.join(command)}", file=sys.stderr, flush=True)
        out, seconds, problem = run_script(command, args.timeout)
        print(f"   {seconds:.0f} s{' - ' + problem.splitlines()[0] if problem else ''}", file=sys.stderr, flush=True)
        summary.append(f"| {title} | {compared} | {'tiny (--quick)' if args.quick else size} | {seconds:.0f} | "
                       f"{_load():.1f} |")
        body = [f"## {title}", "", f"`python {' '.join(command)}` ({seconds:.0f} s wall). Compared: {compared}.", "",
                _demote_headings(out.strip()), ""]
        if problem:
            body += [f"**Did not finish:** {problem}", ""]
        sections.append("\n".join(body))
    if args.pipeline != "skip" and not (only and args.pipeline != "run"):
        print(f"== sample shot pipeline ({args.pipeline})", file=sys.stderr, flush=True)
        start = time.perf_counter()
        sections.append(pipeline_section(args.pipeline, args.scratch))
        seconds = time.perf_counter() - start
        print(f"   {seconds:.0f} s", file=sys.stderr, flush=True)
        summary.append(f"| Sample shot quality (whole pipeline) | the 3D-LUT baseline against the truth | "
                       f"640x360, 24 frames (the sample's own size) | "
                       f"{f'{seconds:.0f}' if args.pipeline == 'run' else 'earlier run'} | {_load():.1f} |")
    if only:
        _replace_sections(Path(args.out), sections[1:], summary)
        return
    sections += [path.read_text().rstrip() for path in CARRIED_SECTIONS if path.exists()]
    # GPU runs of bench/gpu_suite.sh, newest first, kept as they came back from the device.
    gpu_runs = sorted((Path(__file__).parent / "results").glob("gpu_*.md"), reverse=True)
    sections += [p.read_text().rstrip() for p in gpu_runs] + [H200_SECTION, GPU_HOWTO]

    header = ["# Benchmarks", "",
              "Written by `bench/run_all.py`" + (" with `--quick` (tiny sizes; not for quoting)" if args.quick else "")
              + ". Every CPU number below was measured in one run on the machine described; each table "
              "carries its comparison from the same run. Some sizes are scaled down to fit a 2-core CPU (the "
              "table says which); the GPU sections near the end are from lent-GPU runs and say which.", "",
              "| benchmark | compared with | size run here | wall s | load after |", "|---|---|---|---|---|",
              *summary, "",
              f"Load after: the 1-minute load average when the benchmark ended ({os.cpu_count()} cores); well "
              "above the benchmark's own threads means other work shared the CPU and slowed it.", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(header + sections).rstrip() + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


def _replace_sections(path: Path, sections: list[str], summary: list[str]) -> None:
    """Put freshly measured sections and summary rows into an existing benchmarks page, and the
    carried sections as their files now hold them."""
    sys.path.insert(0, str(Path(__file__).parent))
    from field import replace_section

    document = path.read_text()
    carried = [p.read_text().rstrip() for p in CARRIED_SECTIONS if p.exists()]
    for section in [*sections, *carried]:
        document = replace_section(document, section, section.splitlines()[0].rstrip())
    lines = document.splitlines()
    for row in summary:
        title = row.split(" | ")[0] + " |"
        index = next((i for i, line in enumerate(lines) if line.startswith(title)), None)
        if index is not None:
            lines[index] = row
    path.write_text("\n".join(lines).rstrip() + "\n")
    print(f"updated {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
