"""Stage 1: which frames make good training pairs, and which Reference frame matches each.

Everything here works on small proxies (long side 256) of display-referred RGB frames, read
through loader callables (`frame -> float32 (H, W, 3)`) on a thread pool, so it runs inside
Blender's Python with numpy alone.

- `analyse_frames` measures each frame once: exposure, colour, texture, sharpness and two
  fingerprints (a luma thumbnail for structure, a colour histogram).
- `detect_cuts` finds shot cuts; `find_bad_frames` finds flashes, splices and blurred frames.
- `suggest_pairs` picks frames per shot (anchors, extremes, then variety) and says why, and
  says why every rejected candidate was rejected. `scope_check` warns about thin coverage.
- `match_frames` finds the Reference frame that matches each Source frame when the two are
  offset, by correlating colour-blind structure (normalised gradient magnitude of luma).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from . import warp
from .align import MISALIGNED_THRESHOLD
from .errors import FilmRecoveryError
from .job import Conform, Pair, Plate
from .primitives import block_mean, luma

Scope = Literal["shot", "scene", "sequence"]
FrameLoader = Callable[[int], np.ndarray]

# Guide: shot 4–9 pairs, scene 12–24, sequence 24–64+ (None: no upper bound).
SCOPE_RANGES: dict[str, tuple[int, int | None]] = {"shot": (4, 9), "scene": (12, 24), "sequence": (24, None)}
SCOPE_DEFAULTS = {"shot": 6, "scene": 16, "sequence": 32}

ANALYSIS_LONG_SIDE = 256
MATCH_WIDTH = 128


# ---------------------------------------------------------------------------------------------
# Small image helpers (numpy only)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-prefiltered bilinear resize (good enough for analysis and thumbnails)."""
    h, w = image.shape[:2]
    k = max(1, int(min(w / width, h / height)))
    small = block_mean(image, k) if k > 1 else image
    # Output pixel centre -> full-res coordinate -> block coordinate (block j covers k*j .. k*j+k-1).
    xs = ((np.arange(width) + 0.5) * w / width - 0.5 - (k - 1) / 2) / k
    ys = ((np.arange(height) + 0.5) * h / height - 0.5 - (k - 1) / 2) / k
    gx, gy = np.meshgrid(xs, ys)
    return warp.sample_bilinear(small, gx, gy, border="edge")


def proxy(image: np.ndarray, long_side: int = ANALYSIS_LONG_SIDE) -> np.ndarray:
    """Downscale so the long side is at most `long_side` (never upscales)."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1.0:
        return np.asarray(image, np.float32)
    return resize(image, max(1, round(w * scale)), max(1, round(h * scale)))


def conform_to_matrix(conform: Conform | None, source_size: tuple[int, int], reference_size: tuple[int, int],
                      pixel_aspects: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Reference px -> Source px for job.conform (sizes are (width, height); pixel aspects are
    (Source, Reference))."""
    from .ingest import conform_matrix

    return conform_matrix(conform or Conform(), reference_size, source_size, pixel_aspects[1], pixel_aspects[0])


def warp_onto(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample `image` onto a (height, width) raster; `matrix` maps image pixels to raster pixels.
    Block-averages first when shrinking, so the warp does not alias. Returns the warped image and
    the mask of raster pixels that saw the image."""
    matrix = warp.as_matrix(matrix)
    scale = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    k = int(1.0 / scale) if scale > 0 else 1
    if k > 1:
        image = block_mean(image, k)
        matrix = matrix @ np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1]], np.float64)
    return (warp.warp_to_source(image, matrix, (height, width)),
            warp.valid_mask(matrix, image.shape, (height, width)))


def _gradient_magnitude(plane: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(plane)
    return np.sqrt(gx * gx + gy * gy)


def _box3(plane: np.ndarray) -> np.ndarray:
    padded = np.pad(plane, 1, mode="edge")
    h, w = plane.shape
    return sum(padded[y:y + h, x:x + w] for y in range(3) for x in range(3)) / 9.0


def _normalised(values: np.ndarray) -> np.ndarray:
    values = values - values.mean()
    norm = float(np.sqrt((values * values).sum()))
    return values / norm if norm > 1e-12 else values * 0.0


# ---------------------------------------------------------------------------------------------
# Per-frame analysis


@dataclass
class FrameStats:
    """What curation needs to know about one frame (measured on a proxy)."""

    frame: int
    luma_mean: float
    luma_low: float        # 2nd percentile: deep shadows
    luma_high: float       # 98th percentile: highlights
    saturation: float      # 90th percentile of chroma magnitude (BT.709 CbCr)
    warmth: float          # mean Cr - Cb: warm (+) or cool (-)
    texture: float         # mean luma gradient magnitude per proxy pixel
    sharpness: float       # Laplacian energy / gradient energy; motion blur lowers it
    signature: np.ndarray = field(repr=False)  # 32-wide luma thumbnail (structure fingerprint)
    histogram: np.ndarray = field(repr=False)  # luma 32 + Cb 16 + Cr 16 bins, each part sums to 1


def analyse_frame(image: np.ndarray, frame: int) -> FrameStats:
    """Measure one frame (any size; it is reduced to a proxy first)."""
    small = proxy(image)
    y = luma(small)
    cb = (small[..., 2] - y) / 1.8556
    cr = (small[..., 0] - y) / 1.5748
    chroma = np.sqrt(cb * cb + cr * cr)
    low, high = np.percentile(y, [2, 98])
    h, w = y.shape
    half = resize(small, max(1, w // 2), max(1, h // 2)) if min(h, w) >= 16 else small
    yh = luma(half)  # half proxy: grain averages out, so blur shows in the spectrum
    gy, gx = np.gradient(yh)
    lap = (np.roll(yh, 1, 0) + np.roll(yh, -1, 0) + np.roll(yh, 1, 1) + np.roll(yh, -1, 1) - 4 * yh)[1:-1, 1:-1]
    sharpness = float((lap * lap).mean() / ((gx * gx + gy * gy).mean() + 1e-9))
    sig_w = 32
    sig_h = max(1, round(sig_w * h / w))
    hist = np.concatenate([
        np.histogram(y, bins=32, range=(0.0, 1.0))[0],
        np.histogram(cb, bins=16, range=(-0.25, 0.25))[0],
        np.histogram(cr, bins=16, range=(-0.25, 0.25))[0],
    ]).astype(np.float32) / y.size
    return FrameStats(
        frame=int(frame), luma_mean=float(y.mean()), luma_low=float(low), luma_high=float(high),
        saturation=float(np.percentile(chroma, 90)), warmth=float((cr - cb).mean()),
        texture=float(_gradient_magnitude(y).mean()), sharpness=sharpness,
        signature=resize(y, sig_w, sig_h), histogram=hist)


def load_parallel(load: FrameLoader, frames: Sequence[int], work: Callable[[np.ndarray, int], object],
                  workers: int = 4, progress: Callable[[int, int], None] | None = None) -> list:
    """Read frames on a thread pool (OIIO and numpy release the GIL) and reduce each at once,
    so only proxies stay in memory. Results come back in frame order."""
    def one(frame: int):
        return work(load(frame), frame)

    results = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, result in enumerate(pool.map(one, frames)):
            results.append(result)
            if progress:
                progress(i + 1, len(frames))
    return results


def analyse_frames(load: FrameLoader, frames: Sequence[int], workers: int = 4,
                   progress: Callable[[int, int], None] | None = None) -> list[FrameStats]:
    return load_parallel(load, frames, analyse_frame, workers, progress)


# ---------------------------------------------------------------------------------------------
# Shots, cuts and bad frames


@dataclass
class Shot:
    name: str
    first: int
    last: int

    def __contains__(self, frame: int) -> bool:
        return self.first <= frame <= self.last

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def structure_difference(a: FrameStats, b: FrameStats) -> float:
    """0 for the same picture, ~1 for unrelated pictures: 1 - correlation of the luma thumbnails
    (exposure flicker does not count) plus half the histogram distance (a colour change does)."""
    sa, sb = _normalised(a.signature.ravel()), _normalised(b.signature.ravel())
    correlation = float((sa * sb).sum())
    hist = 0.5 * float(np.abs(a.histogram - b.histogram).sum()) / 3.0
    return (1.0 - correlation) + 0.5 * hist


def detect_cuts(stats: Sequence[FrameStats], threshold: float = 0.45, ratio: float = 3.0) -> list[int]:
    """First frames of new shots. A cut is a big structural change between neighbours that stands
    out from the shot's own motion; a single frame unlike both neighbours (a flash or a splice)
    is not a cut."""
    n = len(stats)
    if n < 2:
        return []
    diff = np.array([structure_difference(stats[i - 1], stats[i]) for i in range(1, n)])
    cuts = []
    for i, d in enumerate(diff):  # boundary between stats[i] and stats[i+1]
        window = np.concatenate([diff[max(0, i - 6):max(0, i - 1)], diff[i + 2:i + 7]])
        local = float(np.median(window)) if window.size else 0.0
        if d < threshold or d < ratio * local:
            continue
        if 0 < i < n - 2 and diff[i - 1] >= threshold and \
                structure_difference(stats[i - 1], stats[i + 1]) < threshold:
            continue  # stats[i] is an isolated frame: its neighbours agree
        if i + 1 < n - 1 and diff[i + 1] >= threshold and \
                structure_difference(stats[i], stats[i + 2]) < threshold:
            continue  # stats[i+1] is an isolated frame
        cuts.append(stats[i + 1].frame)
    return cuts


def nominal_mapping(source: Plate, reference: Plate) -> Callable[[int], int]:
    """Source frame -> the Reference frame at the same time from the plates' starts (frame rates
    may differ); what matching searches around and what pairs use before matching."""
    ratio = reference.fps / source.fps if source.fps > 0 else 1.0
    return lambda f: reference.first_frame + int(math.floor((f - source.first_frame) * ratio + 0.5))


# A Reference whose rate differs from the Source's by a speed-up or slow-down (25/24 and 25/23.976 are 4 %
# apart) may map frame for frame (a speed-up transfer) or by time (a frame-rate conversion).
SPEED_CHANGE_RANGE = (0.01, 0.06)


def is_speed_change(source_fps: float, reference_fps: float) -> bool:
    """Whether the two rates are as far apart as a speed-up transfer's (`SPEED_CHANGE_RANGE`)."""
    low, high = SPEED_CHANGE_RANGE
    return source_fps > 0 and low <= abs(1.0 - reference_fps / source_fps) <= high


def frame_for_frame_mapping(source: Plate, reference: Plate) -> Callable[[int], int]:
    """Source frame -> the Reference frame as many frames from its start: a speed-up transfer's mapping."""
    return lambda f: reference.first_frame + (f - source.first_frame)


def mapping_agreements(*results: MatchResult) -> list[float]:
    """Per result (the same Source frames matched around different mappings): the mean structure
    correlation of each Source frame with the Reference frame it is paired with, -1 where that frame
    is outside the Reference plate. Over a shot the better mapping scores higher even where no single
    frame's match is trusted (a slow pan); where structure cannot tell neighbouring frames apart, the
    mapping that runs off the plate's end while the other still pairs every frame loses."""
    return [float(np.mean([m.scores.get(m.reference_frame, -1.0) if m.in_range else -1.0 for m in r.frames]))
            if r.frames else -1.0 for r in results]


def speed_change_note(shots: Sequence[ShotOffset], source_fps: float, reference_fps: float) -> str | None:
    """A warning when the Reference's frame rate maps frames by time but the content matches say they
    map one to one: a speed-up transfer (24 fps film played at 25 fps for PAL, every film frame once).
    Mapped by time, such a Reference drifts by (1 - 25/24) frame per Source frame, a frame a second,
    which soon leaves the match's search window; its shots' confident matches show that drift."""
    expected = 1.0 - reference_fps / source_fps if source_fps > 0 else 0.0
    if abs(expected) < 0.01:
        return None
    drifting = [s for s in shots if s.method == "content" and abs(s.drift - expected) <= 0.3 * abs(expected)]
    if not drifting:
        return None
    names = ", ".join(f"{s.shot} ({s.first}-{s.last}, drift {s.drift:+.3f})" for s in drifting)
    return (f"shot(s) {names}: the Reference's frames follow the Source's one for one, not by time at "
            f"{reference_fps:g} fps: a speed-up transfer (such as PAL 25 fps of 24 fps film, frame for frame), "
            f"which a mapping by time puts a frame off every {1 / abs(expected):.0f} frames. "
            f"Fix: set reference.fps to the Source's {source_fps:g} (job.json or the Ingest panel) and match again.")


# 3:2 pulldown puts 4 film frames into 5 video frames (AA BB BC CD DD: 23.976 or 24 fps film as 29.97 or
# 30 fps video). Two adjacent frames of each 5 mix two film frames' fields, combed (one field each) or
# blended by a deinterlacer; such a frame shows no one film frame, so it is no training partner.
PULLDOWN_RATIO = 1.25
PULLDOWN_CYCLE = 5
# The comb (alternate-row) energy of a cadence phase's frames above their neighbours' by this fraction
# (the median over the phase) marks the phase combed. Over the field corpus's 28 shots (small size): the
# four pulldown shots' combed phase +0.25..+1.26, every other phase of every shot within +0.06.
MIXED_EXCESS = 0.15


def is_pulldown(source_fps: float, reference_fps: float) -> bool:
    """Whether the Reference runs at a 3:2 pulldown's rate of the Source (29.97 of 23.976 or 24 fps)."""
    return source_fps > 0 and abs(reference_fps / source_fps - PULLDOWN_RATIO) < 0.01


def interlace_measures(image: np.ndarray) -> tuple[float, float]:
    """(comb, detail) of a frame's central picture on its own rows: the energy of each row's departure
    from its two neighbours' mean over that from the rows two away (interlace combing lifts it), and the
    energy of the 1 px horizontal luma steps over that of the 2 px steps (a blend of two moving frames
    lowers it; flicker and how much of the frame has detail do not change it)."""
    h, w = image.shape[:2]
    y0, x0 = h // 5, w // 5
    plane = luma(image)[y0:h - y0, x0:w - x0].astype(np.float64)
    if plane.shape[0] < 8 or plane.shape[1] < 2:
        return 0.0, 0.0
    near = plane[2:-2] - 0.5 * (plane[1:-3] + plane[3:-1])
    far = plane[2:-2] - 0.5 * (plane[:-4] + plane[4:])
    step, wide_step = (plane[:, 1:] - plane[:, :-1]) ** 2, (plane[:, 2:] - plane[:, :-2]) ** 2
    steps = float(step.mean()) / max(float(wide_step.mean()), 1e-12)
    return float((near ** 2).mean() / max((far ** 2).mean(), 1e-12)), steps


def cadence_phases(measures: dict[int, tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Per phase of the 5-frame cadence (counted from the first frame): the median over its frames of
    each frame's comb excess and softness, its `interlace_measures` against the median of its four
    nearest neighbours' (the picture changes slowly; a frame's mix does not)."""
    frames = sorted(measures)
    comb = np.array([measures[f][0] for f in frames])
    detail = np.array([measures[f][1] for f in frames])
    comb_excess = [comb[i] / max(_local_median(comb, i, 2), 1e-12) - 1.0 for i in range(len(frames))]
    softness = [1.0 - detail[i] / max(_local_median(detail, i, 2), 1e-12) for i in range(len(frames))]
    phases = [[i for i, f in enumerate(frames) if (f - frames[0]) % PULLDOWN_CYCLE == p] for p in range(PULLDOWN_CYCLE)]
    return ([float(np.median([comb_excess[i] for i in members])) for members in phases],
            [float(np.median([softness[i] for i in members])) for members in phases])


def field_mixed_frames(measures: dict[int, tuple[float, float]], cuts: Iterable[int] = ()) -> dict[int, str]:
    """Reference frames of a 3:2 pulldown that mix two film frames: frame -> "combed" or "blended".

    The cadence repeats every 5 frames, so the evidence is each phase's (`cadence_phases`). When the
    most combed phase is clearly combed (`MIXED_EXCESS`), it and the more mixed of its two neighbouring
    phases are mixed. The cadence is found afresh in each run of consecutive frames between `cuts` (an
    edit made on video breaks it); a run shorter than two cycles takes the one found over all the frames
    (a film cut telecined whole keeps it). Softness alone does not find a cadence (a shot's own changes
    of focus or content move it as much): a Reference blended throughout by a deinterlacer, never combed,
    is not found; nor is anything in fewer than two cycles."""
    frames = sorted(measures)
    whole = _mixed_in_run(measures) if len(frames) >= 2 * PULLDOWN_CYCLE else {}
    found: dict[int, str] = {}
    for run in split_shots(frames, set(cuts) | _gaps(frames)):
        members = [f for f in frames if f in run]
        if len(members) >= 2 * PULLDOWN_CYCLE:
            found.update(_mixed_in_run({f: measures[f] for f in members}))
        else:
            found.update({f: how for f, how in whole.items() if f in run})
    return found


def read_field_mixes(load_reference: FrameLoader, frames: Sequence[int], cuts: Iterable[int] = (),
                     workers: int = 4) -> dict[int, str]:
    """`field_mixed_frames` of Reference `frames`, each read once; a frame that cannot be read is left
    out (it is named where it is used)."""
    def measure(frame: int) -> tuple[float, float] | None:
        try:
            return interlace_measures(load_reference(frame))
        except Exception:  # noqa: BLE001 - an unreadable frame says nothing of the cadence
            return None

    frames = list(frames)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        measured = dict(zip(frames, pool.map(measure, frames), strict=True))
    return field_mixed_frames({f: m for f, m in measured.items() if m is not None}, cuts)


def mixed_partner_reason(reference_frame: int, how: str) -> str:
    """Why a Source frame whose Reference partner mixes two film frames' fields is not a pair."""
    return (f"its Reference partner {reference_frame} mixes two film frames' fields ({how}, 3:2 pulldown): "
            f"no one film frame to learn from")


def _gaps(frames: list[int]) -> set[int]:
    """The frames that follow a gap in a sorted frame list."""
    return {b for a, b in zip(frames, frames[1:], strict=False) if b != a + 1}


def _mixed_in_run(measures: dict[int, tuple[float, float]]) -> dict[int, str]:
    """`field_mixed_frames` in one run of consecutive frames, one cadence."""
    frames = sorted(measures)
    combed, soft = cadence_phases(measures)
    strongest = max(range(PULLDOWN_CYCLE), key=combed.__getitem__)
    if combed[strongest] < MIXED_EXCESS:
        return {}
    # Its companion is the neighbouring phase that looks more mixed, combed or soft (a blend can be
    # nearly as sharp as the clean frames on a slow pan: 0.002 softer on one corpus shot).
    mixed = [max(c, s) for c, s in zip(combed, soft, strict=True)]
    companion = max(((strongest - 1) % PULLDOWN_CYCLE, (strongest + 1) % PULLDOWN_CYCLE), key=mixed.__getitem__)
    phase_of = {f: (f - frames[0]) % PULLDOWN_CYCLE for f in frames}
    return {f: "combed" if combed[phase_of[f]] >= soft[phase_of[f]] else "blended"
            for f in frames if phase_of[f] in (strongest, companion)}


def shot_name(index: int) -> str:
    return str(index + 1)


def split_shots(frames: Sequence[int], cuts: Iterable[int]) -> list[Shot]:
    """Shots covering `frames` (sorted), split before each cut frame."""
    frames = sorted(frames)
    if not frames:
        return []
    starts = [frames[0]] + sorted(c for c in set(cuts) if frames[0] < c <= frames[-1])
    ends = [s - 1 for s in starts[1:]] + [frames[-1]]
    return [Shot(shot_name(i), s, e) for i, (s, e) in enumerate(zip(starts, ends, strict=True))]


def shot_of(shots: Sequence[Shot], frame: int) -> Shot | None:
    return next((s for s in shots if frame in s), None)


def _local_median(values: np.ndarray, i: int, radius: int) -> float:
    window = np.concatenate([values[max(0, i - radius):i], values[i + 1:i + 1 + radius]])
    return float(np.median(window)) if window.size else float(values[i])


# A flash or a dip: mean luma off what its neighbours predict by 25 % and by 0.05 (a dark frame's
# small wobble is not a flash). Flicker: a smaller jump, 4 %, once the flashes are taken out.
FLASH_RELATIVE = 0.25
FLASH_ABSOLUTE = 0.05
FLICKER_RELATIVE = 0.04


@dataclass
class ExposureEvents:
    """Indices (into the levels given) of isolated exposure jumps within one shot."""
    flashes: list[int]          # brighter than the neighbours predict
    dips: list[int]             # darker
    flicker: list[int]          # smaller jumps, flashes and dips excluded
    predicted: np.ndarray       # each frame's mean luma as its neighbours predict it
    relative: np.ndarray        # (level - predicted) / predicted

    @property
    def worst(self) -> float:
        return max((abs(float(self.relative[i])) for i in self.flashes + self.dips), default=0.0)


def temporal_reference(levels: np.ndarray) -> np.ndarray:
    """What each frame's mean luma should be from its neighbours alone (exact for a steady ramp).

    Inside: the median of the two frames either side; one frame from an end: the mean of its
    two neighbours; the end frames: extrapolated from the next two.
    """
    n = len(levels)
    out = np.empty(n)
    for i in range(n):
        if 2 <= i <= n - 3:
            out[i] = np.median(levels[[i - 2, i - 1, i + 1, i + 2]])
        elif 1 <= i <= n - 2:
            out[i] = 0.5 * (levels[i - 1] + levels[i + 1])
        elif n >= 3:
            out[i] = 2 * levels[1] - levels[2] if i == 0 else 2 * levels[n - 2] - levels[n - 3]
        else:
            out[i] = levels[1 - i]
    return out


def exposure_events(levels: Sequence[float]) -> ExposureEvents:
    """Flashes, dips and flicker among one shot's frames (mean luma per frame, in order): the one
    test QC and pair suggestion share."""
    levels = np.asarray(levels, dtype=np.float64)
    if len(levels) < 3:
        return ExposureEvents([], [], [], levels.copy(), np.zeros(len(levels)))
    predicted = temporal_reference(levels)
    deviation = levels - predicted
    relative = deviation / np.maximum(predicted, 0.02)
    jumps = [i for i in range(len(levels)) if abs(relative[i]) > FLASH_RELATIVE and abs(deviation[i]) > FLASH_ABSOLUTE]
    flashes = [i for i in jumps if deviation[i] > 0]
    dips = [i for i in jumps if deviation[i] < 0]
    steady = levels.copy()
    if jumps:  # judge flicker with the jumps taken out, so their neighbours are not blamed
        steady[jumps] = predicted[jumps]
    steady_relative = (steady - temporal_reference(steady)) / np.maximum(temporal_reference(steady), 0.02)
    flicker = [i for i in range(len(levels)) if abs(steady_relative[i]) > FLICKER_RELATIVE and i not in jumps]
    return ExposureEvents(flashes, dips, flicker, predicted, relative)


def find_bad_frames(stats: Sequence[FrameStats], shots: Sequence[Shot], *, isolation: float = 0.45,
                    blur_ratio: float = 0.55) -> dict[int, str]:
    """Frames that poison training, with the reason: flashes and exposure dips (`exposure_events`),
    splices or damaged frames (unlike both neighbours, which agree with each other), motion blur
    (sharpness far below the neighbouring frames of the same shot)."""
    bad: dict[int, str] = {}
    for shot in shots:
        members = [s for s in stats if s.frame in shot]
        if len(members) < 3:
            continue
        events = exposure_events([s.luma_mean for s in members])
        sharp = np.array([s.sharpness for s in members])
        for i, s in enumerate(members):
            around = float(events.predicted[i])
            if i in events.flashes:
                bad[s.frame] = f"flash: mean luma {s.luma_mean:.2f} vs {around:.2f} around it"
                continue
            if 0 < i < len(members) - 1:
                before, after = members[i - 1], members[i + 1]
                if (structure_difference(before, s) > isolation and structure_difference(s, after) > isolation
                        and structure_difference(before, after) < isolation):
                    bad[s.frame] = "splice or damaged frame: unlike both neighbours"
                    continue
            if i in events.dips:
                bad[s.frame] = f"exposure dip: mean luma {s.luma_mean:.2f} vs {around:.2f} around it"
                continue
            typical = _local_median(sharp, i, 6)
            if s.sharpness < blur_ratio * typical:
                bad[s.frame] = f"motion blur: sharpness {s.sharpness / typical:.0%} of neighbouring frames"
    return bad


def near_cut(frame: int, cuts: Iterable[int], margin: int) -> int | None:
    """The cut within `margin` frames of `frame` (cut c: frames c-margin .. c+margin-1), or None."""
    for cut in cuts:
        if cut - margin <= frame <= cut + margin - 1:
            return cut
    return None


# ---------------------------------------------------------------------------------------------
# Pair suggestion


@dataclass
class Suggestion:
    pairs: list[Pair]            # accepted suggestions, with rationale
    rejected: list[Pair]         # accepted=False, reason says why
    shots: list[Shot]
    cuts: list[int]
    warnings: list[str]
    reference_fps: float | None = None  # the rate the matches imply where it is not the job's (a speed-up)


def signature_distance(a: FrameStats, b: FrameStats) -> float:
    """RMS difference of the luma thumbnails (exposure counts): small = near-duplicate."""
    return float(np.sqrt(np.mean((a.signature - b.signature) ** 2)))


def _features(stats: Sequence[FrameStats]) -> np.ndarray:
    table = np.array([[s.luma_mean, s.luma_low, s.luma_high, s.saturation, s.warmth, s.texture]
                      for s in stats], np.float64)
    spread = table.std(axis=0)
    floor = np.array([0.02, 0.02, 0.02, 0.01, 0.01, 0.002])  # below this, differences are noise
    return (table - table.mean(axis=0)) / np.maximum(spread, floor)


def _rank(values: np.ndarray) -> np.ndarray:
    """Percentile rank 0..1 within the plate."""
    order = values.argsort().argsort()
    return order / max(len(values) - 1, 1)


def _describe(s: FrameStats, texture_rank: float) -> str:
    notes = []
    if s.luma_low < 0.04:
        notes.append("deep shadows")
    if s.luma_high > 0.92:
        notes.append("highlights")
    if s.saturation > 0.12:
        notes.append("saturated colour")
    notes.append(f"luma {s.luma_mean:.2f}, saturation {s.saturation:.2f}, texture {texture_rank:.1f}")
    return "; ".join(notes)


def default_count(scope: Scope, n_shots: int) -> int:
    """Preset pair counts: per shot for shot scope, per range otherwise (at least 2 per shot)."""
    if scope == "shot":
        return SCOPE_DEFAULTS["shot"] * n_shots
    return max(SCOPE_DEFAULTS[scope], 2 * n_shots)


def _allocate(count: int, capacity: list[int], equal: bool) -> list[int]:
    """Spread `count` pairs over shots: one each first, then to the shot with most candidates per
    pair (`equal`: the shot with fewest pairs, as shot scope trains each shot on its own)."""
    alloc = [min(1, c) for c in capacity]
    remaining = count - sum(alloc)
    while remaining > 0:
        open_shots = [i for i, c in enumerate(capacity) if alloc[i] < c]
        if not open_shots:
            break
        best = max(open_shots, key=lambda i: (-alloc[i] if equal else capacity[i] / (alloc[i] + 1), -i))
        alloc[best] += 1
        remaining -= 1
    return alloc


def _anchor_targets(first: int, last: int, k: int) -> list[tuple[float, str]]:
    """Beginning / middle / middle / end (the guide's anchors for short ranges)."""
    span = last - first
    if k <= 0:
        return []
    if k == 1:
        return [(first + span / 2, "middle")]
    if k == 2:
        return [(first, "beginning"), (last, "end")]
    if k == 3:
        return [(first, "beginning"), (first + span / 2, "middle"), (last, "end")]
    return [(first, "beginning"), (first + span / 3, "first middle"), (first + 2 * span / 3, "second middle"),
            (last, "end")]


_EXTREMES = [("darkest frame", lambda s: s.luma_mean, 0), ("brightest frame", lambda s: -s.luma_mean, 0),
             ("most saturated", lambda s: -s.saturation, 3), ("warmest", lambda s: -s.warmth, 4),
             ("coolest", lambda s: s.warmth, 4), ("most textured", lambda s: -s.texture, 5)]


def _duplicate_of(s: FrameStats, chosen: list[tuple[FrameStats, str]], threshold: float) -> FrameStats | None:
    return next((c for c, _ in chosen if signature_distance(c, s) < threshold), None)


def _choose_in_shot(shot: Shot, pool: list[FrameStats], k: int, feats: dict[int, np.ndarray],
                    duplicate_threshold: float) -> list[tuple[FrameStats, str]]:
    """Up to k frames of one shot with why each was chosen: anchors, distinct extremes, variety."""
    chosen: list[tuple[FrameStats, str]] = []

    def available() -> list[FrameStats]:
        taken = {c.frame for c, _ in chosen}
        return [s for s in pool if s.frame not in taken and _duplicate_of(s, chosen, duplicate_threshold) is None]

    def spread(s: FrameStats) -> float:
        # Time in the shot counts too, so a shot with flat statistics is still spread out.
        return min(float(np.linalg.norm(np.append(feats[s.frame] - feats[c.frame],
                                                  (s.frame - c.frame) / max(shot.length - 1, 1))))
                   for c, _ in chosen)

    for target, name in _anchor_targets(pool[0].frame, pool[-1].frame, min(k, 4)):
        options = available()
        if not options:
            return chosen
        pick = min(options, key=lambda s: (abs(s.frame - target), s.frame))  # noqa: B023 - used at once
        chosen.append((pick, f"anchor: {name}"))
    for name, key, column in _EXTREMES:
        options = available()
        if len(chosen) >= k or not options:
            break
        pick = min(options, key=key)
        # Distinct only if it moves this feature well past what is already covered.
        if min(abs(feats[pick.frame][column] - feats[c.frame][column]) for c, _ in chosen) > 0.5:
            chosen.append((pick, f"extreme: {name}"))
    while len(chosen) < k:
        options = available()
        if not options:
            break
        pick = max(options, key=lambda s: (spread(s), -s.frame))
        chosen.append((pick, f"variety: most unlike chosen frames (distance {spread(pick):.1f})"))
    return chosen


@dataclass(frozen=True)
class SuggestOptions:
    """How strict `suggest_pairs` is (the defaults are the guide's)."""

    max_align_error: float = MISALIGNED_THRESHOLD  # alignment residual (Source px) above which a frame is refused
    cut_margin: int = 2                            # frames this near a cut are refused (see `near_cut`)
    duplicate_threshold: float = 0.012             # `signature_distance` below which frames are near-duplicates
    reference_type: str = "telecine"               # written on every pair


@dataclass(frozen=True)
class _PairMaker:
    """Builds one suggestion's Pair rows: Reference partner, timecode, alignment score, Reference type."""

    reference_for: Callable[[int], int | None]
    timecode_for: Callable[[int], str]
    align_scores: dict[int, float] | None
    reference_type: str
    partner_problem: Callable[[int], str | None]  # why a frame's Reference partner cannot be used, or None

    def __call__(self, frame: int, shot: Shot, accepted: bool, reason: str = "", rationale: str = "",
                 label: str = "") -> Pair:
        partner = self.reference_for(frame)
        return Pair(source_frame=frame, reference_frame=int(frame if partner is None else partner),
                    accepted=accepted,
                    reason=reason, timecode=self.timecode_for(frame), shot=shot.name, label=label,
                    rationale=rationale, reference_type=self.reference_type,  # type: ignore[arg-type]
                    align_score=float(self.align_scores.get(frame, -1.0)) if self.align_scores else -1.0)


def suggest_pairs(stats: Sequence[FrameStats], count: int | None = None, scope: Scope = "shot", *,  # noqa: PLR0913  keyword-only: what the caller knows of each frame
                  cuts: Sequence[int] | None = None, align_scores: dict[int, float] | None = None,
                  reference_for: Callable[[int], int | None] | None = None,
                  timecode_for: Callable[[int], str] | None = None,
                  partner_problem: Callable[[int], str | None] | None = None,
                  options: SuggestOptions | None = None) -> Suggestion:
    """Choose training frames across every shot and say why; say why rejected candidates were rejected.

    Per shot: positional anchors (beginning / middle / middle / end), then extremes (darkest,
    brightest, most saturated, warmest, coolest, most textured) that are really distinct, then
    the frames most unlike those already chosen. Candidates near cuts, flashes, splices, blurred
    frames, frames whose alignment score (ml.align.alignment_score: residual misalignment in Source
    pixels after alignment, lower is better) is above `options.max_align_error`, frames whose Reference
    partner `partner_problem` refuses (a frame mixing two film frames' fields), and near-duplicates
    of a chosen frame are rejected. `count` is the total; the default follows the scope preset
    (shot: 6 per shot; scene 16; sequence 32, at least 2 per shot).
    """
    options = options or SuggestOptions()
    stats = _checked_stats(stats, scope)
    cuts = list(detect_cuts(stats) if cuts is None else cuts)
    shots = split_shots([s.frame for s in stats], cuts)
    make_pair = _PairMaker(reference_for or (lambda f: f), timecode_for or (lambda f: ""), align_scores,
                           options.reference_type, partner_problem or (lambda f: None))
    candidates, rejected = _screen_candidates(stats, shots, cuts, make_pair, options)
    alloc, warnings = _allocate_pairs(count, scope, shots, candidates)
    pairs, duplicates, shot_warnings = _pick_pairs(stats, shots, candidates, alloc, make_pair,
                                                   options.duplicate_threshold)
    rejected = sorted(rejected + duplicates, key=lambda p: p.source_frame)
    warnings += shot_warnings + scope_check(pairs, scope, shots, stats)
    return Suggestion(pairs, rejected, shots, cuts, warnings)


def _checked_stats(stats: Sequence[FrameStats], scope: Scope) -> list[FrameStats]:
    """Refuse an unknown scope or no frames; the frames' stats in frame order."""
    if scope not in SCOPE_RANGES:
        raise FilmRecoveryError(f"unknown scope {scope!r}.", where="scope", fix="Use shot, scene or sequence.")
    stats = sorted(stats, key=lambda s: s.frame)
    if not stats:
        raise FilmRecoveryError("no frames to choose from.", where="source range",
                                fix="Check the Source plate's frame range.")
    return stats


def _rejection(frame: int, cuts: Sequence[int], bad: dict[int, str], make_pair: _PairMaker,
               options: SuggestOptions) -> str | None:
    """Why a frame cannot be a candidate (near a cut, bad, no usable Reference partner, misaligned), or None."""
    cut = near_cut(frame, cuts, options.cut_margin)
    if cut is not None:
        return f"near cut at {cut}"
    if frame in bad:
        return bad[frame]
    if make_pair.reference_for(frame) is None:
        return "no matching Reference frame (outside the Reference plate)"
    problem = make_pair.partner_problem(frame)
    if problem is not None:
        return problem
    score = make_pair.align_scores.get(frame) if make_pair.align_scores else None
    if score is not None and score > options.max_align_error:  # NaN (no structure) passes: unknown
        return f"structure disagrees after alignment (residual {score:.2f} px > {options.max_align_error:.2f})"
    return None


def _screen_candidates(stats: list[FrameStats], shots: list[Shot], cuts: list[int], make_pair: _PairMaker,
                       options: SuggestOptions) -> tuple[dict[str, list[FrameStats]], list[Pair]]:
    """Split each shot's frames into candidates and rejected pairs (with the reason)."""
    bad = find_bad_frames(stats, shots)
    rejected: list[Pair] = []
    candidates: dict[str, list[FrameStats]] = {}
    for shot in shots:
        keep = []
        for s in (x for x in stats if x.frame in shot):
            reason = _rejection(s.frame, cuts, bad, make_pair, options)
            if reason is None:
                keep.append(s)
            else:
                rejected.append(make_pair(s.frame, shot, False, reason=reason))
        candidates[shot.name] = keep
    return candidates, rejected


def _allocate_pairs(count: int | None, scope: Scope, shots: list[Shot],
                    candidates: dict[str, list[FrameStats]]) -> tuple[list[int], list[str]]:
    """Pairs per shot for the total asked (or the scope's preset), with a warning when too few."""
    n_total = default_count(scope, len(shots)) if count is None else int(count)
    if n_total < len(shots):
        warning = f"{n_total} pairs for {len(shots)} shots: some shots get none; ask for at least {len(shots)}."
        return [1 if i < n_total else 0 for i in range(len(shots))], [warning]
    return _allocate(n_total, [len(candidates[s.name]) for s in shots], scope == "shot"), []


def _pick_pairs(stats: list[FrameStats], shots: list[Shot], candidates: dict[str, list[FrameStats]],
                alloc: list[int], make_pair: _PairMaker,
                duplicate_threshold: float) -> tuple[list[Pair], list[Pair], list[str]]:
    """Choose each shot's frames: the accepted pairs, the near-duplicates refused, and the warnings."""
    texture_rank = dict(zip((s.frame for s in stats), _rank(np.array([s.texture for s in stats])), strict=True))
    feats = dict(zip((s.frame for s in stats), _features(stats), strict=True))
    pairs: list[Pair] = []
    duplicates: list[Pair] = []
    warnings: list[str] = []
    for shot, k in zip(shots, alloc, strict=True):
        pool = candidates[shot.name]
        if not pool:
            warnings.append(f"shot {shot.name} ({shot.first}-{shot.last}) has no usable frame.")
            continue
        chosen = _choose_in_shot(shot, pool, k, feats, duplicate_threshold)
        if len(chosen) < k:
            warnings.append(f"shot {shot.name} has only {len(chosen)} distinct usable frame(s); "
                            f"{k - len(chosen)} fewer pair(s) than planned.")
        chosen_frames = {c.frame for c, _ in chosen}
        for s in pool:
            twin = None if s.frame in chosen_frames else _duplicate_of(s, chosen, duplicate_threshold)
            if twin is not None:
                duplicates.append(make_pair(s.frame, shot, False, reason=f"near-duplicate of {twin.frame}"))
        for index, (s, why) in enumerate(sorted(chosen, key=lambda c: c[0].frame)):
            rationale = f"shot {shot.name} {why}; {_describe(s, texture_rank[s.frame])}"
            pairs.append(make_pair(s.frame, shot, True, rationale=rationale, label=f"{shot.name}.{index + 1:02d}"))
    return pairs, duplicates, warnings


def scope_check(pairs: Sequence[Pair], scope: Scope, shots: Sequence[Shot],
                stats: Sequence[FrameStats] | None = None) -> list[str]:
    """Warnings for a pair set: too few / too many pairs for the scope (per shot for shot scope),
    shots without pairs, and (with `stats`) poor coverage of the plate's luma range, saturation
    and texture."""
    accepted = [p for p in pairs if p.accepted]
    low, high = SCOPE_RANGES[scope]
    warnings = []
    groups = [(f"shot {s.name}", [p for p in accepted if p.source_frame in s]) for s in shots] \
        if scope == "shot" else [(f"the {scope}", accepted)]
    for name, members in groups:
        if 0 < len(members) < low:
            warnings.append(f"{name}: {len(members)} pair(s); {scope} scope wants {low}"
                            f"{'–' + str(high) if high else '+'}.")
        elif high is not None and len(members) > high:
            warnings.append(f"{name}: {len(members)} pairs; {scope} scope wants at most {high} "
                            "(more pairs slow training without teaching more).")
    if scope != "shot" and not accepted:
        warnings.append(f"the {scope}: no accepted pairs.")
    for shot in shots:
        if not any(p.source_frame in shot for p in accepted):
            warnings.append(f"shot {shot.name} ({shot.first}-{shot.last}) has no pairs.")
    if stats and accepted:
        by_frame = {s.frame: s for s in stats}
        chosen = [by_frame[p.source_frame] for p in accepted if p.source_frame in by_frame]
        if chosen:
            def coverage(values_all: list[float], values_chosen: list[float]) -> float:
                lo, hi = np.percentile(values_all, [5, 95])
                if hi - lo < 1e-6:
                    return 1.0
                return (min(max(values_chosen), hi) - max(min(values_chosen), lo)) / (hi - lo)

            checks = [("luma range", [s.luma_mean for s in stats], [s.luma_mean for s in chosen], 0.05),
                      ("saturation", [s.saturation for s in stats], [s.saturation for s in chosen], 0.03),
                      ("texture", [s.texture for s in stats], [s.texture for s in chosen], 0.005)]
            for name, everything, picked, meaningful in checks:
                lo, hi = np.percentile(everything, [5, 95])
                if hi - lo > meaningful and coverage(everything, picked) < 0.6:
                    warnings.append(f"poor coverage of {name}: pairs span {min(picked):.3f}-{max(picked):.3f}, "
                                    f"the plate {lo:.3f}-{hi:.3f}; add frames at the extremes.")
    return warnings


# ---------------------------------------------------------------------------------------------
# Temporal matching


@dataclass
class FrameMatch:
    source_frame: int
    reference_frame: int     # the recommendation: trusted content match, else nominal + shot offset
    content_frame: int       # best structural match among the allowed candidates
    score: float             # its structure correlation, -1..1
    margin: float            # best minus the best rival (second candidate, or the Source's own neighbour)
    confidence: float        # margin / (margin + 1 - score), 0..1; >= 0.5: the match is trusted
    shot: str
    in_range: bool           # False: the recommended frame lies outside the Reference plate
    scores: dict[int, float] = field(default_factory=dict)


@dataclass
class ShotOffset:
    shot: str
    first: int
    last: int
    offset: int              # reference - nominal frame, robust over the shot
    drift: float             # change of offset per frame (Theil–Sen slope over confident frames)
    method: Literal["content", "cut", "nominal"]  # median of confident matches / head cut / none found
    frames_used: int


@dataclass
class MatchResult:
    frames: list[FrameMatch]
    shots: list[ShotOffset]
    source_cuts: list[int]
    reference_cuts: list[int]
    source_stats: list[FrameStats]  # every Source frame, measured once (suggest_pairs reuses them)
    reference_interlace: dict[int, tuple[float, float]] = field(default_factory=dict)  # `interlace_measures`


def structure_descriptor(plane: np.ndarray, valid: np.ndarray | None = None,
                         centre: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Colour-blind structure of a luma plane: gradient magnitude, lightly blurred (tolerates a
    pixel of misfit), on the central region only (letterbox bars and overscan stay out)."""
    h, w = plane.shape
    grad = _box3(_gradient_magnitude(plane))
    mask = np.zeros((h, w), bool)
    y0, x0 = int(round(h * (1 - centre) / 2)), int(round(w * (1 - centre) / 2))
    mask[y0:h - y0, x0:w - x0] = True
    if valid is not None:
        # Gradients next to the edge of the warped image are not picture: erode the mask.
        inner = valid.copy()
        inner[1:] &= valid[:-1]
        inner[:-1] &= valid[1:]
        inner[:, 1:] &= valid[:, :-1]
        inner[:, :-1] &= valid[:, 1:]
        mask &= inner
    return grad.astype(np.float32), mask


def structure_correlation(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Normalised correlation of two descriptors over the pixels both cover."""
    mask = a[1] & b[1]
    if mask.sum() < 16:
        return -1.0
    va, vb = _normalised(a[0][mask].astype(np.float64)), _normalised(b[0][mask].astype(np.float64))
    return float((va * vb).sum())


def shifted_structure_correlation(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                                  shift: int = 1) -> float:
    """`structure_correlation` at the best whole-pixel shift of `b` within `shift` px each way: a
    small misregistration (a telecine's fixed offset, gate weave) is geometry, not a content change."""
    best = -1.0
    h, w = b[0].shape
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            # a's pixel (y, x) against b's (y - dy, x - dx), over where both exist
            at = (slice(max(0, dy), h + min(0, dy)), slice(max(0, dx), w + min(0, dx)))
            bt = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
            best = max(best, structure_correlation((a[0][at], a[1][at]), (b[0][bt], b[1][bt])))
    return best


def _theil_sen(xs: np.ndarray, ys: np.ndarray) -> float:
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))
              if xs[j] != xs[i]]
    return float(np.median(slopes)) if slopes else 0.0


@dataclass(frozen=True)
class MatchOptions:
    """How `match_frames` searches and compares (the defaults are the `match` command's)."""

    search: int = 5                                  # Reference frames either side of the nominal frame
    matrix: np.ndarray | None = None                 # Reference px -> Source px; None: the `conform` fit
    conform: Conform | None = None
    pixel_aspects: tuple[float, float] = (1.0, 1.0)  # (Source, Reference)
    source_cuts: Sequence[int] | None = None         # the Source's cuts when known; None: detect them
    cut_margin: int = 2                              # matches this near a cut do not vote on a shot's offset
    min_confidence: float = 0.5                      # a content match this confident is trusted
    # Proxy px (1/128 of the width) a candidate may shift before it is scored: a fixed telecine offset
    # of a pixel or two plus weave on a slow pan otherwise made the previous Reference frame line up
    # better than the right one (a field shot paired 5 of 6 frames one early).
    misfit: int = 1
    workers: int = 4                                 # frame reader threads


@dataclass
class _PlateMatch:
    """One plate's side of matching: per-frame stats and structure descriptors, its cuts and shots."""

    stats: list[FrameStats]
    desc: dict[int, tuple[np.ndarray, np.ndarray]]
    cuts: list[int]
    shots: list[Shot]
    interlace: dict[int, tuple[float, float]] = field(default_factory=dict)  # Reference: `interlace_measures`


@dataclass
class _MatchState:
    """What scoring a Source frame against Reference frames needs, once both plates are read."""

    source: _PlateMatch
    reference: _PlateMatch
    nominal: Callable[[int], int]
    reference_range: tuple[int, int]
    windows: dict[int, list[int]]    # Source frame -> the Reference frames it may match
    options: MatchOptions


def match_frames(load_source: FrameLoader, load_reference: FrameLoader, source_frames: Sequence[int],
                 reference_range: tuple[int, int], *, frames: Sequence[int] | None = None,
                 nominal: Callable[[int], int] | None = None, options: MatchOptions | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> MatchResult:
    """Find, for each Source frame in `frames` (default: all `source_frames`), the Reference frame
    showing the same picture, within `options.search` frames of its nominal frame.

    The Reference is resampled onto the Source raster (`options.matrix`, Reference px -> Source px,
    or the `options.conform` fit) at a 128-pixel-wide proxy; structure is the normalised gradient
    magnitude of luma on the central 60 %, so grades, fades and letterbox bars do not matter.

    A match is trusted only when it beats both the other candidates and the Source frame's own
    neighbours: in a slow pan a small misfit of the simple fit looks like a frame of motion, and
    then structure cannot tell the frames apart. Each Source shot gets one robust offset: the
    median of its trusted matches away from cuts; failing that, the offset of the Reference cut
    that matches the shot's head cut (editorial offsets show at cuts); failing that, none (0).
    Matches never cross a Reference cut from where the shot's offset points.
    """
    options = options or MatchOptions()
    source_frames = sorted(source_frames)
    wanted = sorted(set(frames) if frames is not None else source_frames)
    nominal = nominal or (lambda f: f)
    source, source_size = _analyse_source(load_source, source_frames, options, _stage_progress(progress, "source"))
    windows, ref_needed = _reference_windows(wanted, source.cuts, nominal, options.search, reference_range)
    reference = _analyse_reference(load_reference, ref_needed, source_size, options,
                                   _stage_progress(progress, "reference"))
    state = _MatchState(source, reference, nominal, reference_range, windows, options)
    first_pass = {f: _best_match(state, f, windows[f], nominal(f)) for f in wanted}
    offsets, final = _match_shots(state, wanted, first_pass)
    matches = [final.get(f, first_pass[f]) for f in wanted]
    return MatchResult(matches, offsets, source.cuts, reference.cuts, source.stats, reference.interlace)


def _stage_progress(progress: Callable[[int, int, str], None] | None,
                    stage: str) -> Callable[[int, int], None] | None:
    """`load_parallel`'s progress callback reporting one matching stage."""
    return None if progress is None else lambda done, total: progress(done, total, stage)


def _match_raster(source_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the proxy raster matching compares on, for a Source of `source_size`."""
    sw, sh = source_size
    return MATCH_WIDTH, max(8, round(MATCH_WIDTH * sh / sw))


def _source_work(image: np.ndarray, frame: int):
    """One Source frame's stats, structure descriptor and (width, height)."""
    h, w = image.shape[:2]
    small = resize(image, *_match_raster((w, h)))
    return analyse_frame(image, frame), structure_descriptor(luma(small)), (w, h)


def _analyse_source(load_source: FrameLoader, source_frames: list[int], options: MatchOptions,
                    progress: Callable[[int, int], None] | None) -> tuple[_PlateMatch, tuple[int, int]]:
    """Read every Source frame once: stats, descriptors, cuts (given or detected) and shots; and its size."""
    analysed = load_parallel(load_source, source_frames, _source_work, options.workers, progress)
    stats = [s for s, _, _ in analysed]
    cuts = list(detect_cuts(stats) if options.source_cuts is None else options.source_cuts)
    plate = _PlateMatch(stats, {s.frame: d for s, d, _ in analysed}, cuts, split_shots(source_frames, cuts))
    return plate, analysed[0][2]


def _reference_windows(wanted: list[int], cuts: list[int], nominal: Callable[[int], int], search: int,
                       reference_range: tuple[int, int]) -> tuple[dict[int, list[int]], list[int]]:
    """Each wanted frame's Reference candidates, and every Reference frame to read (around the
    Source cuts too, so the Reference's own cuts can be found)."""
    first, last = reference_range
    windows = {f: [r for r in range(nominal(f) - search, nominal(f) + search + 1) if first <= r <= last]
               for f in wanted}
    needed = sorted({r for rs in windows.values() for r in rs} |
                    {r for c in cuts for r in range(nominal(c) - search - 1, nominal(c) + search + 1)
                     if first <= r <= last})
    return windows, needed


def _reference_work(image: np.ndarray, frame: int, *, source_size: tuple[int, int], options: MatchOptions):
    """One Reference frame's stats, its structure descriptor on the Source's proxy raster and its
    `interlace_measures` (on its own rows)."""
    h, w = image.shape[:2]
    raster = _match_raster(source_size)
    full = warp.as_matrix(options.matrix) if options.matrix is not None else \
        conform_to_matrix(options.conform, source_size, (w, h), options.pixel_aspects)
    warped, valid = warp_onto(image, warp.resize_matrix(source_size, raster) @ full, *raster)
    return analyse_frame(image, frame), structure_descriptor(luma(warped), valid), interlace_measures(image)


def _analyse_reference(load_reference: FrameLoader, needed: list[int], source_size: tuple[int, int],
                       options: MatchOptions, progress: Callable[[int, int], None] | None) -> _PlateMatch:
    """Read the Reference frames matching needs, warped onto the Source raster; find their cuts and shots."""
    work = functools.partial(_reference_work, source_size=source_size, options=options)
    analysed = load_parallel(load_reference, needed, work, options.workers, progress)
    stats = [s for s, _, _ in analysed]
    cuts = _cuts_in_runs(stats)
    return _PlateMatch(stats, {s.frame: d for s, d, _ in analysed}, cuts, split_shots(needed, cuts),
                       {s.frame: m for s, _, m in analysed})


def _cuts_in_runs(stats: list[FrameStats]) -> list[int]:
    """Cuts within each contiguous run of frames (a gap between runs is not a cut)."""
    cuts: list[int] = []
    run: list[FrameStats] = []
    for s in [*stats, None]:
        if s is not None and (not run or s.frame == run[-1].frame + 1):
            run.append(s)
            continue
        cuts += detect_cuts(run)
        run = [s] if s is not None else []
    return cuts


def _own_neighbour(state: _MatchState, f: int) -> float:
    """How alike the Source frame is to its neighbours in the same shot (the motion scale)."""
    desc = state.source.desc
    shot = shot_of(state.source.shots, f)
    near = [g for g in (f - 1, f + 1) if g in desc and shot is not None and g in shot]
    return max((shifted_structure_correlation(desc[f], desc[g], state.options.misfit) for g in near), default=-1.0)


def _best_match(state: _MatchState, f: int, allowed: list[int], fallback: int,
                trust_content: bool = True) -> FrameMatch:
    """Score Source frame `f` against the `allowed` Reference frames; recommend the best when trusted,
    else `fallback`."""
    scores = {r: shifted_structure_correlation(state.source.desc[f], state.reference.desc[r], state.options.misfit)
              for r in allowed}
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], abs(kv[0] - state.nominal(f))))
    best_r, best = ranked[0] if ranked else (fallback, -1.0)
    rival = max(ranked[1][1] if len(ranked) > 1 else -1.0, _own_neighbour(state, f))
    margin = best - rival
    # Trusted when the best stands out from its rivals by more than it misses a perfect match.
    confidence = float(np.clip(margin / max(margin + (1.0 - best), 1e-6), 0.0, 1.0))
    shot = shot_of(state.source.shots, f)
    recommended = best_r if trust_content and confidence >= state.options.min_confidence else fallback
    first, last = state.reference_range
    return FrameMatch(f, recommended, best_r, best, margin, confidence, shot.name if shot else "",
                      first <= recommended <= last, scores)


def _head_cut_offset(state: _MatchState, shot: Shot) -> int | None:
    """Offset of the Reference cut whose incoming frame shows the shot's first frame."""
    if shot.first not in state.source.cuts:
        return None
    c, search = shot.first, state.options.search
    nominal = state.nominal(c)
    for rc in sorted((r for r in state.reference.cuts if abs(r - nominal) <= search), key=lambda r: abs(r - nominal)):
        if structure_correlation(state.source.desc[c], state.reference.desc[rc]) > 0.5:
            return rc - nominal
    return None


def _shot_offset(state: _MatchState, shot: Shot, members: list[FrameMatch]) -> ShotOffset:
    """The shot's Reference offset: the median of its trusted matches away from cuts, else its head
    cut's, else none."""
    steady = [m for m in members if near_cut(m.source_frame, state.source.cuts, state.options.cut_margin) is None] \
        or members
    sure = [m for m in steady if m.confidence >= state.options.min_confidence]
    if sure and 2 * len(sure) >= len(steady):
        diffs = np.array([m.content_frame - state.nominal(m.source_frame) for m in sure], np.float64)
        drift = _theil_sen(np.array([m.source_frame for m in sure], np.float64), diffs)
        return ShotOffset(shot.name, shot.first, shot.last, int(np.floor(np.median(diffs) + 0.5)), drift,
                          "content", len(sure))
    head = _head_cut_offset(state, shot)
    if head is not None:
        return ShotOffset(shot.name, shot.first, shot.last, head, 0.0, "cut", 0)
    return ShotOffset(shot.name, shot.first, shot.last, 0, 0.0, "nominal", 0)


def _rematch(state: _MatchState, f: int, offset: ShotOffset) -> FrameMatch:
    """Match frame `f` again around its shot's offset, never across the Reference cut from there."""
    anchor = state.nominal(f) + offset.offset
    first, last = state.reference_range
    home = shot_of(state.reference.shots, anchor) if first <= anchor <= last else None
    allowed = [r for r in state.windows[f] if home is None or r in home]
    return _best_match(state, f, allowed, anchor, trust_content=offset.method == "content")


def _match_shots(state: _MatchState, wanted: list[int],
                 first_pass: dict[int, FrameMatch]) -> tuple[list[ShotOffset], dict[int, FrameMatch]]:
    """Each Source shot's offset, and its frames matched again with it."""
    offsets: list[ShotOffset] = []
    final: dict[int, FrameMatch] = {}
    for shot in state.source.shots:
        members = [first_pass[f] for f in wanted if f in shot and state.windows[f]]
        offset = _shot_offset(state, shot, members)
        offsets.append(offset)
        for m in members:
            final[m.source_frame] = _rematch(state, m.source_frame, offset)
    return offsets, final
