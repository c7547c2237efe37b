"""Parity QC of Source and Reference before any training (`python -m ml qc job.json`).

Checks (statuses per the workflow guide's QC checklist):
  plate       the plate path / range is usable at all                         fail
  missing     frames in the range that do not exist                           fail
  unreadable  frames OpenImageIO cannot decode                                fail
  nan_inf     frames holding NaN or Inf                                       fail
  resolution  frame size changes inside a plate, or Source/Reference sizes
              differ with conform mode 'none'                                  fail
              sizes/aspects differ but conform places the Reference           pass / warn (stretch)
  pixel_aspect file header vs plate setting, Source vs Reference              warn
  frame_range Source and Reference frame counts or rates differ               warn
  duplicates  a frame identical to the one before it (cadence, repeats)       warn
  channels    alpha (dropped), extra or missing channels                      warn
  range       display-referred values outside 0-1 (scene-linear data?)        warn
  flicker     frames whose mean luma jumps against their neighbours           warn
  flash       an isolated very bright/dark frame (splice flash)               warn
  cast        per-channel cast of the Source (neutral pre-balance advised)    pass / warn

Frames are read on a thread pool (OpenImageIO and numpy release the GIL); a movie plate is
read in runs of MOVIE_RUN frames, each decoded by one ffmpeg process. Every frame is
reduced to a small thumbnail in the display domain for the temporal checks, so QC of long
4K plates stays bounded in memory. The report goes to work_dir/qc/qc.json (atomically).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import curation
from .errors import FilmRecoveryError, QCFailed
from .events import Reporter
from .imageio import atomic_path, read_info
from .ingest import apply_ingest, is_movie_plate, plate_frame_path, plate_frames, read_plate_raw, read_plate_raw_run
from .job import Job, Plate
from .movie import movie_info
from .primitives import downscale, luma

QC_SCHEMA = "film_recovery.qc"
QC_VERSION = 1
STATUS_ORDER = {"pass": 0, "warn": 1, "fail": 2}

THUMBNAIL_SIZE = 64  # long side of the per-frame thumbnail used for temporal checks
RANGE_TOLERANCE = 1e-3  # display values this far outside 0-1 count as out of range
DUPLICATE_MAD = 2e-4  # mean absolute thumbnail difference below which two frames are the same
CAST_WARN = 0.02  # display units between a channel's median and the mean of the three
MOVIE_RUN = 24  # movie frames decoded per QC task (one ffmpeg process each)


@dataclass
class FrameStats:
    frame: int
    path: str
    missing: bool = False
    error: str = ""
    width: int = 0
    height: int = 0
    channels: list[str] = field(default_factory=list)
    pixel_aspect: float = 1.0
    fps: float | None = None
    nonfinite: int = 0
    below: float = 0.0  # fraction of values below 0
    above: float = 0.0  # fraction of values above 1
    peak: float = 0.0
    thumbnail: np.ndarray | None = None
    analysis: curation.FrameStats | None = None  # what pair curation measures: cuts are found alike

    @property
    def ok(self) -> bool:
        return not self.missing and not self.error


def finding(check: str, status: str, message: str, frames: list[int] | None = None) -> dict[str, Any]:
    return {"check": check, "status": status, "message": message, "frames": sorted(frames or [])}


def thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """Block-mean downsample so the long side is at most `size` (NaN/Inf treated as 0)."""
    image = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    image = image if image.ndim == 3 else image[..., None]
    return downscale(image, max_side=size)


def frame_stats(plate: Plate, frame: int) -> FrameStats:
    """Read one frame and measure everything QC needs (never raises for a bad frame)."""
    path = plate_frame_path(plate, frame)
    stats = FrameStats(frame=frame, path=path)
    if not os.path.exists(path):
        stats.missing = True
        return stats
    try:
        info = read_info(path)
        raw = read_plate_raw(plate, frame, check_finite=False)
    except FilmRecoveryError as exc:
        stats.error = exc.problem
        return stats
    stats.width, stats.height = info.width, info.height
    stats.channels, stats.pixel_aspect, stats.fps = info.channels, info.pixel_aspect, info.fps
    _measure(stats, raw, plate.ingest)
    return stats


def _runs(plate: Plate, frames: list[int]) -> list[list[int]]:
    """QC tasks: runs of MOVIE_RUN frames for a movie plate (one ffmpeg process each, no per-frame
    seek), single frames for an image sequence."""
    step = MOVIE_RUN if is_movie_plate(plate) else 1
    return [frames[i:i + step] for i in range(0, len(frames), step)]


def run_stats(plate: Plate, frames: list[int]) -> list[FrameStats]:
    """`frame_stats` for each frame of a run; a movie plate's consecutive frames are decoded by one process."""
    if not is_movie_plate(plate):
        return [frame_stats(plate, frame) for frame in frames]
    all_stats = [FrameStats(frame=frame, path=plate.path) for frame in frames]
    try:
        info = movie_info(plate.path)
        for stats, raw in zip(all_stats, read_plate_raw_run(plate, frames[0], len(frames)), strict=False):
            stats.width, stats.height, stats.channels = info.width, info.height, ["R", "G", "B"]
            stats.pixel_aspect, stats.fps = info.pixel_aspect, info.fps
            _measure(stats, raw, plate.ingest)
    except FilmRecoveryError as exc:
        for stats in all_stats:
            if stats.thumbnail is None:
                stats.error = exc.problem
    return all_stats


def _measure(stats: FrameStats, raw: np.ndarray, ingest: str) -> None:
    finite = np.isfinite(raw)
    stats.nonfinite = int((~finite.all(axis=2)).sum())
    values = raw[finite]
    if values.size:
        stats.below = float(np.mean(values < -RANGE_TOLERANCE))
        stats.above = float(np.mean(values > 1.0 + RANGE_TOLERANCE))
        stats.peak = float(values.max())
    stats.thumbnail = apply_ingest(thumbnail(raw), ingest)
    stats.analysis = curation.analyse_frame(apply_ingest(curation.proxy(np.where(finite, raw, 0.0)), ingest),
                                            stats.frame)


def _ranges(frames: list[int]) -> str:
    """1001-1003, 1007 (short text for messages)."""
    frames = sorted(frames)
    parts: list[str] = []
    start = prev = None
    for f in frames + [None]:
        if start is None:
            start = prev = f
        elif f is not None and f == prev + 1:
            prev = f
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = f
    text = ", ".join(parts[:8])
    return text + (f" (+{len(parts) - 8} more)" if len(parts) > 8 else "")


def _plate_findings(name: str, plate: Plate, stats: list[FrameStats]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    label = name.capitalize()
    missing = [s.frame for s in stats if s.missing]
    if missing:
        out.append(finding("missing", "fail", f"{label}: {len(missing)} frame(s) missing ({_ranges(missing)}), "
                           f"e.g. {next(s.path for s in stats if s.missing)}. Fix: re-export the missing "
                           "frames or correct the plate's frame range.", missing))
    broken = [s for s in stats if s.error]
    if broken:
        out.append(finding("unreadable", "fail", f"{label}: {len(broken)} frame(s) cannot be read, e.g. "
                           f"{broken[0].path}: {broken[0].error} Fix: re-export those frames.",
                           [s.frame for s in broken]))
    good = [s for s in stats if s.ok]
    if not good:
        return out

    nonfinite = [s for s in good if s.nonfinite]
    if nonfinite:
        worst = max(nonfinite, key=lambda s: s.nonfinite)
        out.append(finding("nan_inf", "fail", f"{label}: {len(nonfinite)} frame(s) hold NaN/Inf pixels "
                           f"({_ranges([s.frame for s in nonfinite])}; worst {worst.path} with {worst.nonfinite}). "
                           "Fix: re-render or re-export those frames.", [s.frame for s in nonfinite]))

    sizes = Counter((s.width, s.height) for s in good)
    common = sizes.most_common(1)[0][0]
    odd = [s for s in good if (s.width, s.height) != common]
    if odd:
        out.append(finding("resolution", "fail", f"{label}: {len(odd)} frame(s) are not {common[0]}x{common[1]} "
                           f"(e.g. {odd[0].path} is {odd[0].width}x{odd[0].height}). Fix: re-export the plate "
                           "at one resolution.", [s.frame for s in odd]))

    header_par = Counter(round(s.pixel_aspect, 4) for s in good).most_common(1)[0][0]
    if abs(header_par - plate.pixel_aspect) > 1e-3:
        out.append(finding("pixel_aspect", "warn", f"{label}: files say pixel aspect {header_par:g} but the plate "
                           f"is set to {plate.pixel_aspect:g}. Fix: set the plate's pixel aspect to match the "
                           "scan (anamorphic scans are often 2.0).", []))

    header_fps = [s.fps for s in good if s.fps]
    if header_fps and abs(Counter(header_fps).most_common(1)[0][0] - plate.fps) > 1e-3:
        out.append(finding("frame_range", "warn", f"{label}: files say {header_fps[0]:g} fps but the plate is set "
                           f"to {plate.fps:g} fps. Fix: set the plate's frame rate.", []))

    alpha = [s for s in good if any(c.upper() in ("A", "ALPHA") or c.endswith(".A") for c in s.channels)]
    if alpha:
        out.append(finding("channels", "warn", f"{label}: alpha channel present ({alpha[0].path}: "
                           f"{','.join(alpha[0].channels)}); it is dropped on ingest. Fix: export RGB only.",
                           [s.frame for s in alpha]))
    alpha_frames = {s.frame for s in alpha}
    extra = [s for s in good if len(s.channels) > (4 if s.frame in alpha_frames else 3)
             or (len(s.channels) == 2 and s.frame not in alpha_frames)]
    if extra:
        out.append(finding("channels", "warn", f"{label}: {extra[0].path} has channels "
                           f"{','.join(extra[0].channels)}; only the first three (RGB) are used. Fix: export RGB.",
                           [s.frame for s in extra]))
    grey = [s for s in good if len(s.channels) < 3]
    if grey:
        out.append(finding("channels", "warn", f"{label}: {grey[0].path} is single-channel; it is read as grey "
                           "RGB. Fix: export RGB if the plate has colour.", [s.frame for s in grey]))

    if plate.ingest == "display":
        outside = [s for s in good if s.below > 0 or s.above > 0]
        if outside:
            peak = max(s.peak for s in good)
            hint = (f" Peak value {peak:.2f} looks scene-linear: if this is an ACES2065-1 master, set the plate's "
                    "ingest to 'aces2065-1'." if peak > 2.0 else
                    " Fix: export with the Rec.709 2.4 ODT (values bounded to 0-1); training clamps lightly.")
            worst = max(outside, key=lambda s: s.below + s.above)
            out.append(finding("range", "warn", f"{label}: {len(outside)} frame(s) have values outside 0-1 (worst "
                               f"{worst.path}: {100 * (worst.below + worst.above):.2f}% of values).{hint}",
                               [s.frame for s in outside]))

    out += _temporal_findings(label, [s for s in good if s.thumbnail is not None and (s.width, s.height) == common])
    return out


def _temporal_findings(label: str, stats: list[FrameStats]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if len(stats) < 2:
        return out
    duplicates = [b.frame for a, b in zip(stats, stats[1:], strict=False)
                  if b.frame == a.frame + 1 and float(np.mean(np.abs(a.thumbnail - b.thumbnail))) < DUPLICATE_MAD]
    if duplicates:
        out.append(finding("duplicates", "warn", f"{label}: {len(duplicates)} frame(s) repeat the frame before "
                           f"({_ranges(duplicates)}). Fix: check for pulldown/cadence or repeated frames in the "
                           "export; pair them with care.", duplicates))
    # Luma is judged within each shot: the jump at a hard cut is editing, not flicker.
    cuts = _cuts(stats)
    bounds = [0, *cuts, len(stats)]
    flashes: list[int] = []
    flicker: list[int] = []
    worst_flash = 0.0
    for start, end in zip(bounds, bounds[1:], strict=False):
        shot = stats[start:end]
        events = curation.exposure_events([float(luma(s.thumbnail).mean()) for s in shot])
        flashes += [shot[i].frame for i in sorted(events.flashes + events.dips)]
        flicker += [shot[i].frame for i in events.flicker]
        worst_flash = max(worst_flash, events.worst)
    if flashes:
        out.append(finding("flash", "warn", f"{label}: {len(flashes)} isolated bright/dark frame(s) "
                           f"({_ranges(flashes)}; mean luma off its neighbours by up to {100 * worst_flash:.0f}%): "
                           "splice flashes or damage. Fix: exclude them from training pairs or repair them.", flashes))
    if flicker:
        out.append(finding("flicker", "warn", f"{label}: {len(flicker)} frame(s) jump in mean luma by more than "
                           f"{100 * curation.FLICKER_RELATIVE:.0f}% against their neighbours ({_ranges(flicker)}). Fix: "
                           "deflicker the plate before export, or avoid those frames as pairs.", flicker))
    if cuts:
        out.append(finding("cuts", "pass", f"{label}: shot cut(s) before frame(s) "
                           f"{', '.join(str(stats[i].frame) for i in cuts)}; luma checks run per shot.",
                           [stats[i].frame for i in cuts]))
    return out


def _cuts(stats: list[FrameStats]) -> list[int]:
    """Indices where a new shot starts, by the same test pair suggestion and the shot plan use
    (`curation.detect_cuts`), so QC, curation and the plan agree on the shots."""
    index = {s.frame: i for i, s in enumerate(stats)}
    return [index[f] for f in curation.detect_cuts([s.analysis for s in stats if s.analysis is not None])
            if f in index]


def plate_cast(stats: list[FrameStats]) -> list[float]:
    """Per-channel cast (median of a channel minus the mean of the three medians) over thumbnails."""
    pixels = np.concatenate([s.thumbnail.reshape(-1, 3) for s in stats if s.ok and s.thumbnail is not None])
    medians = np.median(pixels, axis=0)
    return [float(m - medians.mean()) for m in medians]


def _pair_findings(job: Job, source: list[FrameStats], reference: list[FrameStats]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    src = [s for s in source if s.ok]
    ref = [s for s in reference if s.ok]
    if src and ref:
        sw, sh = Counter((s.width, s.height) for s in src).most_common(1)[0][0]
        rw, rh = Counter((s.width, s.height) for s in ref).most_common(1)[0][0]
        src_aspect = sw * job.source.pixel_aspect / sh
        ref_aspect = rw * job.reference.pixel_aspect / rh
        if (sw, sh) == (rw, rh) and abs(job.source.pixel_aspect - job.reference.pixel_aspect) < 1e-3:
            out.append(finding("resolution", "pass", f"Source and Reference are both {sw}x{sh}."))
        elif job.conform.mode == "none":
            out.append(finding("resolution", "fail", f"Reference is {rw}x{rh} (PAR {job.reference.pixel_aspect:g}) "
                               f"but Source is {sw}x{sh} (PAR {job.source.pixel_aspect:g}) and conform mode is "
                               "'none'. Fix: set the conform mode to fit, fill or stretch (or re-export at one "
                               "size).", []))
        elif job.conform.mode == "stretch" and abs(src_aspect / ref_aspect - 1.0) > 0.01:
            out.append(finding("resolution", "warn", f"Reference {rw}x{rh} (display aspect {ref_aspect:.3f}) is "
                               f"stretched onto Source {sw}x{sh} ({src_aspect:.3f}), distorting it. Fix: use "
                               "conform 'fit' (letterbox/pillarbox) or 'fill'.", []))
        else:
            out.append(finding("resolution", "pass", f"Reference {rw}x{rh} (display aspect {ref_aspect:.3f}) is "
                               f"placed on Source {sw}x{sh} ({src_aspect:.3f}) by conform "
                               f"'{job.conform.mode}'."))
        if abs(job.source.pixel_aspect - job.reference.pixel_aspect) > 1e-3:
            out.append(finding("pixel_aspect", "warn", f"Source pixel aspect {job.source.pixel_aspect:g} differs "
                               f"from Reference {job.reference.pixel_aspect:g}; conform corrects it. Fix: check "
                               "both settings against the scans.", []))
    count_src = job.source.last_frame - job.source.first_frame + 1
    count_ref = job.reference.last_frame - job.reference.first_frame + 1
    if count_src != count_ref:
        out.append(finding("frame_range", "warn", f"Source has {count_src} frames "
                           f"({job.source.first_frame}-{job.source.last_frame}) but Reference has {count_ref} "
                           f"({job.reference.first_frame}-{job.reference.last_frame}). Fix: export the same range, "
                           "or pair frames explicitly.", []))
    if abs(job.source.fps - job.reference.fps) > 1e-3:
        out.append(finding("frame_range", "warn", f"Source is {job.source.fps:g} fps but Reference is "
                           f"{job.reference.fps:g} fps. Fix: conform the Reference without retimes.", []))
    return out


def run_qc(job: Job, reporter: Reporter | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run every check on both plates; returns the report (see `write_qc_report`)."""
    plates = {"source": job.source, "reference": job.reference}
    findings: list[dict[str, Any]] = []
    frames: dict[str, list[int]] = {}
    for name, plate in plates.items():
        try:
            frames[name] = plate_frames(plate)
        except FilmRecoveryError as exc:
            findings.append(finding("plate", "fail", f"{name.capitalize()}: {exc.describe()}"))
            frames[name] = []
    tasks = [(name, run) for name, plate in plates.items() for run in _runs(plate, frames[name])]
    total = sum(len(frames[name]) for name in plates)
    results: dict[str, dict[int, FrameStats]] = {name: {} for name in plates}
    workers = threads or min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qc") as pool:
        futures = {pool.submit(run_stats, plates[name], run): (name, run) for name, run in tasks}
        done = 0
        for future in as_completed(futures):
            name, run = futures[future]
            for stats in future.result():
                results[name][stats.frame] = stats
            done += len(run)
            if reporter:
                reporter.progress(done, total, "qc", f"{name} {run[-1]}")
    summary: dict[str, Any] = {}
    stats_by_plate = {name: [results[name][f] for f in frames[name]] for name in plates}
    for name, plate in plates.items():
        stats = stats_by_plate[name]
        findings += _plate_findings(name, plate, stats)
        good = [s for s in stats if s.ok and s.thumbnail is not None]
        summary[name] = {
            "path": plate.path, "frames": [s.frame for s in stats], "ingest": plate.ingest,
            "size": list(Counter((s.width, s.height) for s in good).most_common(1)[0][0]) if good else None,
            "luma": [round(float(luma(s.thumbnail).mean()), 5) if s.ok and s.thumbnail is not None else None
                     for s in stats],
            "cast": [round(c, 5) for c in plate_cast(good)] if good else None,
        }
    findings += _pair_findings(job, stats_by_plate["source"], stats_by_plate["reference"])
    source_cast = summary["source"]["cast"]
    if source_cast is not None:
        worst = max(abs(c) for c in source_cast)
        text = ", ".join(f"{ch} {c:+.3f}" for ch, c in zip("RGB", source_cast, strict=True))
        if worst > CAST_WARN:
            findings.append(finding("cast", "warn", f"Source has a colour cast ({text} against the channel mean). "
                                    "Fix: run `python -m ml balance job.json --write` for a neutral pre-balance."))
        else:
            findings.append(finding("cast", "pass", f"Source cast is small ({text})."))
    status = max((f["status"] for f in findings), key=STATUS_ORDER.__getitem__, default="pass")
    return {"schema": QC_SCHEMA, "version": QC_VERSION, "status": status, "findings": findings,
            "plates": summary}


def write_qc_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


def qc_report_path(job: Job) -> Path:
    return job.work_path("qc", "qc.json")


def _report_matches_plates(report: dict[str, Any], job: Job) -> bool:
    """A QC report is about this job's plates (same files, same frame ranges)."""
    plates = report.get("plates") or {}
    for name, plate in (("source", job.source), ("reference", job.reference)):
        seen = plates.get(name) or {}
        if seen.get("path") != plate.path or seen.get("frames") != list(range(plate.first_frame,
                                                                                plate.last_frame + 1)):
            return False
    return True


def require_qc_pass(job: Job, reporter: Reporter | None = None) -> None:
    """Later stages call this: a QC report with hard failures blocks them, naming what to fix.

    With no report yet, or one about other plates, QC runs first (its report is written as `qc`
    would write it); warnings never block.
    """
    path = qc_report_path(job)
    report = None
    if path.exists():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            report = None
    if report is None or not _report_matches_plates(report, job):
        if reporter:
            reporter.message("No parity QC result for these plates: running QC first.")
        report = run_qc(job, reporter)
        write_qc_report(report, path)
    failed = [f for f in report.get("findings", []) if f.get("status") == "fail"]
    if failed:
        problem, _, fix = failed[0]["message"].partition(" Fix: ")
        more = f" ({len(failed) - 1} more failed check(s) in the report.)" if len(failed) > 1 else ""
        raise QCFailed(f"parity QC failed: {problem}{more}", where=str(path),
                       fix=(fix.rstrip(". ") if fix else "Repair the plates or the recipe")
                       + ", then run QC again (`python -m ml qc job.json`).")
