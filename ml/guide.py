"""The aligned Reference as a guide for the model, for every Source frame (reference-guided mode).

A reference-guided model sees, besides the Source, the Reference frame showing the same picture,
warped onto the Source raster, and a coverage mask: 1 where that picture is real and agrees with
the Source, 0 where there is none (outside the Reference raster, its letterbox/pillarbox bars, a
frame with no Reference) or where it shows something the Source does not (burned-in subtitles,
logos, a Reference frame of other content). The model takes the Reference's channels where the
coverage is 1 and its own Source-only prediction where it is 0 (`models.RecoveryModel`).

The dataset stores each pair's guide beside its input and target (the pair's own warp); inference
builds it for every frame here: the Reference partner (the pair's, else the nominal frame plus
the nearest pairs' offset; a wrong one shows other content and loses its coverage), the warp (the job's
solve, else solved on top of the nearest solved frame, as per-frame alignment tracks weave), and
the coverage. numpy only: the engine's host side.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import align, crop, curation, warp
from .ingest import conform_matrix, reference_frame, source_frame
from .job import Job
from .primitives import box_filter, luma

# Agreement test, on a proxy of at most this many pixels on the long side. Text, logos and other
# burned-in marks are picture the Source does not have: the Reference's fine structure there is far
# above its usual ratio to the Source's, AND its blurred, tone-matched luma departs from the Source's.
# Either test alone fires elsewhere (measured on the field corpus): the energy ratio on an edge a
# grainy Source barely shows, the luma residual on small bright highlights a softer Reference renders
# lower; together they flag 98 % of burned-in subtitle pixels and under 1 % of other picture
# (a black surround's edge: 2.8 %).
_PROXY_LONG_SIDE = 480
_BLUR_RADIUS = 2
_ENERGY_RATIO = 8.0  # Reference fine-structure energy over the Source's, relative to the frame's median ratio
_MIN_ENERGY = 4e-4  # (0.02 luma)^2: structure, not noise
_MIN_DISAGREEMENT = 0.03  # luma the blurred, tone-matched Reference differs by, at least
_ROBUST_SIGMAS = 4.0
_GROW_PX = 3  # proxy pixels around a disagreement also lose coverage (soft text edges, blur)
# A frame whose Reference disagrees over more than this fraction of its picture shows other
# content (a wrong partner, a flash): it gets no guide at all.
_MAX_DISAGREEING_FRACTION = 0.35
# The same picture correlates above ~0.4 even soft, grainy or regraded (0.40-0.99 over the field
# corpus's kinds, compared no finer than the Reference samples: `structure_match`); another picture
# below ~0.25.
_MIN_STRUCTURE_MATCH = 0.3
_STRUCTURE_SIDE = 160  # px, the long side of the proxy the structures are compared on (at most)
_EDGE_PX = 2  # Source pixels next to the warped Reference's edge blend with black: no coverage
DETAIL_SCALE = 0.5  # chroma: the Reference corrects frequencies below this x its warp scale (`detail_sigma`)
# A Reference decoded from block-coded video (MPEG-2 DVD, DV, JPEG) carries the coding's errors on an
# 8 px grid, and 4:2:0 chroma is coded on half-size planes, so its colour errors repeat every 16 px.
# Such a Reference corrects only frequencies below BLOCKY_DETAIL x the block (in Reference px), which
# attenuates the 16 px chroma blocks to 6 %: measured on the field corpus's blocky kind (held-out
# frames against truth), CIEDE2000 3.77 at the usual 0.5 x scale, 2.77 at 3, 2.60 at 6 and 2.70 at 12
# Reference px.
CODING_BLOCK = 8
BLOCKY_DETAIL = 0.75
# A Reference is softer than its sampling: each pixel averages a patch of the picture, 4:2:0 chroma
# averages again, and the warp resamples it onto the Source raster. Compared with the prediction as
# it is, the band the Reference only half resolves reads as a colour error and the correction takes
# the Reference's blur there. The prediction blurred by REFERENCE_BLUR x the detail limit, the
# difference taken below that same blur (`reference_blur`): field and outside chroma shots (small
# size, the same trained models, held-out frames against truth), PSNR-CbCr / CIEDE2000 grey_edge
# 40.7 / 1.50 -> 41.7 / 1.35, pan_scan 39.2 / 1.97 -> 40.7 / 1.75, night 42.4 / 1.67 -> 43.0 / 1.58,
# turning 43.9 / 0.98 -> 44.6 / 0.90; no shot lost more than 0.05 CIEDE2000.
REFERENCE_BLUR = 0.75
CORRECTION_METHOD = "reference-blur-0.75"  # in infer's recipe hash: change it when the correction's pixels change
# Below the detail limit the prediction keeps the Source's own colour detail, which is picture or
# grain. In the octave just below the Reference's sampling limit, the Source's luma correlates with the
# aligned Reference's (`match`) where the picture has detail there and hardly where that octave is grain;
# match^2 of the Source's luma energy there is picture. The picture's colour carries about the share of
# its luma energy the Reference's colour carries one octave coarser, where the Reference resolves it,
# in the Source's units (the two frames' colour-per-luma compared in the coarse picture, 4x the limit,
# where grain is gone: a faded Source has less colour, a regraded Reference more). The picture share
# (`fine_octave`) is that expected colour energy over the Source's measured colour energy in the octave. It reads low even
# for a clean picture (~0.6: the Reference's own loss lowers the match), and well under where the
# Source's finer colour is mostly grain. Below PICTURE_SHARE_LOW the Reference's colour is taken whole
# (`fine_weight` 1), above PICTURE_SHARE_HIGH the prediction's detail is kept, linear between. Over the
# field corpus's 10 chroma kinds whose Reference has no coding blocks and 7 shots outside it (small
# size, the same trained models, held-out frames against truth), the shots that do better keeping the
# prediction's detail read 0.35-0.57, those that do better taking the Reference's colour 0.003-0.17
# (night, better kept in PSNR-CbCr and taken in CIEDE2000, 0.45). The luma's correlation alone (the
# rule before this one: below FINE_MATCH_LOW taken, above FINE_MATCH_HIGH kept) kept the grainy colour
# of printed text, strong luma with flat colour (correlation 0.74, share 0.13: CIEDE2000 3.73 -> 1.59
# with this rule). A Reference's colour near its coding blocks' scale is coding error, so a blocky
# Reference cannot give the share: there the luma's correlation decides, and the share it finds to be
# grain is smoothed, not taken (`GuidePlanner._fine_colour`).
PICTURE_SHARE_LOW, PICTURE_SHARE_HIGH = 0.15, 0.3
FINE_MATCH_LOW, FINE_MATCH_HIGH = 0.5, 0.65
# In infer's recipe hash for `output.fine_colour = auto`: change it when the rule's weights change.
FINE_COLOUR_RULE = "picture-share-1"
FINE_WINDOW = 512  # px: the centre window `fine_weight` measures (2K frame, 2 cores: 0.24-0.41 s; 1024 px: 0.65-0.91 s)
# Block edges: in both directions one phase of the 8 px grid carries steps (median over the
# picture) this much above the median of the phases away from it, at the same phase in every
# sampled frame. Over the field corpus's 10 chroma kinds the blocky Reference passes on all of its
# 16 frames at one phase; the other kinds' References on at most 1 frame of 16 (pan-and-scan,
# combed NTSC fields). A static texture of exactly 8 px period could still pass: its shot then
# takes its fine colour from the model, as a blocky one does.
_BLOCK_EDGE_RATIO = 1.3
# Chroma coded at half the luma's resolution both ways (4:2:0 video: DVD, PAL DV, most broadcast and
# web files) lacks its finest octave. Per 16 px tile of the picture, the energy of the finest octave
# (the plane minus its 0.7 px Gaussian) over the next (0.7 px minus 1.4 px) is taken for the chroma and
# for the luma; the median over the tiles of chroma over luma is ~1 for full-resolution chroma and well
# under for subsampled chroma. Over 12 of the field corpus's kinds: 0.80-1.36 for full chroma (burned-in
# subtitles add luma detail on a few tiles only: 0.80), 0.26-0.46 for 4:2:0. Such a Reference's colour
# is resolved at twice its pixel size. A telecine's luma-only sharpening lowers full chroma's ratio
# (unsharp mask 1.0 at 1 px: 0.67-1.09 on three photographs), still above the threshold. 4:2:2 (half
# only across) is not told apart reliably (0.48-0.95 on three photographs with linear upsampling) and
# keeps the usual limit. So does a Reference whose picture is softer than its raster, where its luma also
# lacks the finest octave: the corpus's 4:2:0 SD References at its 2K size (scaled-up photographs)
# give 0.61-0.70. A soft picture's 4:2:0 chroma drops less against its luma, but its own finest octave
# is still as weak as any 4:2:0 chroma's: ratios 0.60-0.65 (chroma's own 0.27-0.33) on two outside shots
# of fur and a clock at small size, one of them a fast pan whose 3-frame median sat at the threshold and
# whose finer colour the guide then took (CIEDE2000 1.52 -> 1.72). So under _CHROMA_OCTAVE_RATIO_SOFT a
# Reference whose chroma's own ratio is under _CHROMA_OWN_RATIO is 4:2:0 too: the 4:2:0 Reference kinds
# 0.27-0.38 without coding blocks, full chroma 0.40-1.35 (the soft one at 0.40 has a ratio of 1.0). Not
# on a blocky Reference, whose blocks move both (flat_blocky: 0.67 and 0.41, and taking it as 4:2:0
# lost 1.63 -> 2.08).
_CHROMA_OCTAVE_RATIO = 0.6
_CHROMA_OCTAVE_RATIO_SOFT = 0.75
_CHROMA_OWN_RATIO = 0.45
_OCTAVE_TILE = 16
_OCTAVE_WINDOW = 512  # px of the picture's centre looked at, each way (0.32 -> 0.07 s per 1080p frame)
_BLOCK_SAMPLE_FRAMES = 3
_MAX_PARTNER_TRIES = 3  # sync offsets tried for a frame without a pair


@dataclass
class GuideFrame:
    """Where one frame's guide came from (written beside the inference outputs)."""

    source_frame: int
    reference_frame: int | None
    matrix: list[float] | None
    matrix_from: str  # manual | auto | solved-now | nearest | global | conform | none
    coverage: float  # fraction of the frame guided
    note: str = ""
    detail_sigma: float = 0.0  # models.reference_correction: the Reference's detail limit in Source px
    coding_blocks: bool = False  # the Reference shows video coding blocks (a wider detail limit)
    half_chroma: bool = False  # the Reference's chroma is coded at half its luma's resolution (twice the limit)
    fine_weight: float = 0.0  # share of the Reference's colour finer than detail_sigma taken too (`fine_weight`)
    # share of the finer colour smoothed to what the luma explains instead (a blocky Reference's is coding error)
    colour_smoothing: float = 0.0


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(px):
        inner = out.copy()
        inner[1:] &= out[:-1]
        inner[:-1] &= out[1:]
        inner[:, 1:] &= out[:, :-1]
        inner[:, :-1] &= out[:, 1:]
        out = inner
    return out


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    return ~_erode(~mask, px)


def _tone_map(values: np.ndarray, onto: np.ndarray, bins: int = 16) -> np.ndarray:
    """Per-frame monotone tone curve taking `values` onto `onto` (binned medians, interpolated):
    a Reference in another grade or exposure still agrees with the Source."""
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))
    centres, targets = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        picked = (values >= lo) & (values <= hi)
        if picked.sum() >= 8:
            centres.append(float(np.median(values[picked])))
            targets.append(float(np.median(onto[picked])))
    if len(centres) < 2:
        return values + float(np.median(onto) - np.median(values))
    order = np.argsort(centres)
    xs, ys = np.asarray(centres)[order], np.maximum.accumulate(np.asarray(targets)[order])
    return np.interp(values, xs, ys)


def _blur_inside(plane: np.ndarray, radius: int, inside: np.ndarray) -> np.ndarray:
    mean = float(plane[inside].mean())
    return box_filter(np.where(inside, plane, mean) - mean, radius, passes=3) + mean


def disagreement(source_rgb: np.ndarray, aligned_rgb: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Source pixels where the aligned Reference shows something the Source does not (bool, HxW):
    burned-in subtitles, logos (see the agreement test's notes above)."""
    h, w = source_rgb.shape[:2]
    scale = min(1.0, _PROXY_LONG_SIDE / max(h, w))
    pw, ph = max(8, round(w * scale)), max(8, round(h * scale))
    src = luma(curation.resize(source_rgb, pw, ph) if scale < 1 else source_rgb)
    ref = luma(curation.resize(aligned_rgb, pw, ph) if scale < 1 else aligned_rgb)
    inside = _erode(curation.resize(live.astype(np.float32), pw, ph) > 0.99 if scale < 1 else live.copy(),
                    _BLUR_RADIUS + 1)
    if inside.sum() < 64:
        return np.zeros((h, w), bool)
    src_b, ref_b = _blur_inside(src, _BLUR_RADIUS, inside), _blur_inside(ref, _BLUR_RADIUS, inside)
    mapped = _tone_map(ref_b[inside], src_b[inside])
    residual = np.zeros_like(src_b)
    residual[inside] = np.abs(mapped - src_b[inside])
    values = residual[inside]
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    departs = _grow(residual > max(_MIN_DISAGREEMENT, median + _ROBUST_SIGMAS * spread), _GROW_PX)
    # The same tone curve on the unblurred Reference, then fine-structure energy of both.
    order = np.argsort(ref_b[inside])
    ref_mapped = np.interp(ref, ref_b[inside][order], mapped[order])

    def energy(plane: np.ndarray) -> np.ndarray:
        fine = plane - _blur_inside(plane, 1, inside)
        return _blur_inside(fine * fine, 3, inside)

    ref_energy, src_energy = energy(ref_mapped), energy(src)
    ratio = np.log((ref_energy + 1e-6) / (src_energy + 1e-6))
    ratio -= float(np.median(ratio[inside]))
    extra = (ratio > np.log(_ENERGY_RATIO)) & (ref_energy > _MIN_ENERGY)
    bad = _grow(extra & departs & inside, _GROW_PX) & inside
    if scale < 1:  # back to the Source raster (nearest proxy pixel)
        rows = np.minimum((np.arange(h) * ph / h).astype(int), ph - 1)
        cols = np.minimum((np.arange(w) * pw / w).astype(int), pw - 1)
        bad = bad[rows[:, None], cols[None, :]]
    return bad


def structure_match(source_rgb: np.ndarray, aligned_rgb: np.ndarray, live: np.ndarray,
                    reference_scale: float = 1.0) -> float:
    """Correlation of the two pictures' structure (colour-blind, `curation.structure_descriptor`)
    over the live area, at a proxy of 160 px on the long side, or coarser where the Reference
    (`reference_scale` Source px per Reference px) samples coarser than that: finer, an SD Reference
    has no structure and a grainy Source only grain (a low-structure field shot's right partner read
    0.30 at 160 px, 0.42 or more at its Reference's 133)."""
    side = max(32, min(_STRUCTURE_SIDE, round(max(source_rgb.shape[:2]) / max(reference_scale, 1.0))))
    live_proxy = curation.proxy(np.repeat(live.astype(np.float32)[..., None], 3, axis=2), side)[..., 0] > 0.99
    return curation.structure_correlation(
        curation.structure_descriptor(luma(curation.proxy(source_rgb, side)), live_proxy),
        curation.structure_descriptor(luma(curation.proxy(aligned_rgb, side)), live_proxy))


def coverage(source_rgb: np.ndarray, aligned_rgb: np.ndarray, matrix: np.ndarray,
             reference_shape: tuple[int, int], reference_borders: crop.Borders | None = None
             ) -> tuple[np.ndarray, str]:
    """(HxW float32 coverage, 0 to 1, feathered inside; note): real Reference picture that agrees
    with the Source."""
    borders = reference_borders if reference_borders is not None else (0, 0, 0, 0)
    live = _erode(crop.live_mask(matrix, reference_shape, source_rgb.shape, borders), _EDGE_PX)
    if not live.any():
        return np.zeros(live.shape, np.float32), "the Reference does not cover the frame"
    same = structure_match(source_rgb, aligned_rgb, live, warp.scale_of(matrix))
    if same < _MIN_STRUCTURE_MATCH:
        return (np.zeros(live.shape, np.float32),
                f"the aligned Reference shows other content (structure correlation {same:.2f})")
    bad = disagreement(source_rgb, aligned_rgb, live) & live
    fraction = float(bad.sum()) / float(live.sum())
    if fraction > _MAX_DISAGREEING_FRACTION:
        return (np.zeros(live.shape, np.float32),
                f"the Reference disagrees with the Source over {fraction:.0%} of the picture (other content?)")
    note = f"{fraction:.1%} of the Reference's picture left out (shows what the Source does not)" if fraction else ""
    return feather(live & ~bad), note


def feather(mask: np.ndarray) -> np.ndarray:
    """Coverage that ramps up over a few pixels inside the covered area (no seam where the model's own
    prediction meets the Reference's channels); 0 wherever `mask` is False."""
    radius = max(1, round(max(mask.shape) / 640))
    soft = box_filter(mask.astype(np.float32) - 0.5, radius, passes=3) + 0.5
    return np.clip(2.0 * soft - 1.0, 0.0, 1.0) * mask


def reference_guide(source_rgb: np.ndarray, reference_rgb: np.ndarray, matrix: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """(aligned Reference RGB, coverage, note) on the Source raster for one frame and its warp."""
    aligned = warp.warp_to_source(reference_rgb, matrix, source_rgb.shape)
    cov, note = coverage(source_rgb, aligned, matrix, reference_rgb.shape[:2],
                         crop.detect_borders([reference_rgb]))
    return aligned, cov, note


# --- every Source frame: its Reference partner and warp ----------------------------------------

class GuidePlanner:
    """The Reference frame and warp for any Source frame of the job (thread-safe: the one state
    written after construction, the shot's colour smoothing, is written once under a lock)."""

    def __init__(self, job: Job):
        self.job = job
        self.anchors = sorted((p.source_frame, p.reference_frame) for p in job.pairs if p.accepted)
        self.nominal = curation.nominal_mapping(job.source, job.reference)
        alignment = job.alignment
        self.solved = {int(k): warp.as_matrix(v) for k, v in alignment.solves.items() if k.lstrip("-").isdigit()}
        for key in alignment.use_manual:
            if str(key) in alignment.manual:
                self.solved[int(key)] = warp.as_matrix(alignment.manual[str(key)])
        self.manual = {int(k) for k in alignment.use_manual if str(k) in alignment.manual}
        self.global_matrix = warp.as_matrix(alignment.solves["global"]) if "global" in alignment.solves else None
        self.pair_partner = dict(self.anchors)
        self.blocky = self.half_chroma = False
        if job.branch == "chroma" and job.reference.path:
            self.blocky, self.half_chroma = self._reference_coding()
        self._shot_smoothing: float | None = None  # `shot_colour_smoothing`, measured on first use
        self._shot_lock = threading.Lock()
        self._mixed: dict[int, str] | None = None  # `mixed_reference_frames`, found on first use
        self._mixed_lock = threading.Lock()

    def _reference_coding(self) -> tuple[bool, bool]:
        """Whether the Reference shows video coding blocks (`coding_block_phase`, the same grid on every
        frame looked at) and whether its chroma has half its luma's resolution (`chroma_octaves`, their
        medians, `is_half_chroma`), on a few of its frames: the pairs' partners, else the frames
        nominally under the Source's first, middle and last."""
        frames = [reference for _, reference in self.anchors]
        if not frames:
            src = self.job.source
            frames = [self.nominal(f) for f in (src.first_frame, (src.first_frame + src.last_frame) // 2, src.last_frame)]
        frames = [f for f in dict.fromkeys(frames) if self.in_reference(f)]
        step = max(1, len(frames) // _BLOCK_SAMPLE_FRAMES)
        phases, octave_ratios = [], []
        for frame in frames[::step][:_BLOCK_SAMPLE_FRAMES]:
            try:
                image = reference_frame(self.job, frame)
            except Exception:  # noqa: BLE001 - an unreadable frame says nothing about coding; the guide names it later
                continue
            phases.append(coding_block_phase(image))
            octave_ratios.append(chroma_octaves(image))
        blocky = bool(phases) and phases[0] is not None and all(p == phases[0] for p in phases)
        measured = [r for r in octave_ratios if r is not None]
        if not measured:
            return blocky, False
        relative, own = (float(np.median([m[i] for m in measured])) for i in range(2))
        return blocky, is_half_chroma(relative, own, blocky)

    def in_reference(self, frame: int) -> bool:
        return self.job.reference.first_frame <= frame <= self.job.reference.last_frame

    def candidate_partners(self, frame: int) -> list[int]:
        """Reference frames to try, best guess first: the pair's own; else the nominal frame plus
        the sync offset of the nearest pair, then of the next pairs out (across a cut the
        nearest pair may be in the other shot, with another offset). Measured on the field
        corpus, the nearest pair's offset beats choosing among neighbouring frames by structure:
        neighbours differ by a little motion, which the start warp (another frame's) confuses.
        A pulldown Reference's frame that mixes two film frames is tried after the nearest clean
        frames either side of it (`mixed_reference_frames`): the film frame it half shows has no
        clean frame of its own, and a neighbour's one frame of motion is what the per-frame solve
        takes out, where the mix's two fields disagree by it (a fast pan's: 1.60-1.76 CIEDE2000
        on those frames against 1.46-1.48 on the others)."""
        if frame in self.pair_partner:
            return [self.pair_partner[frame]]
        nominal = self.nominal(frame)
        offsets: list[int] = []
        for source, reference in sorted(self.anchors, key=lambda a: (abs(a[0] - frame), a[0])):
            offset = reference - self.nominal(source)
            if offset not in offsets:
                offsets.append(offset)
        guesses = [nominal + offset for offset in (offsets or [0])[:_MAX_PARTNER_TRIES]]
        mixed = self.mixed_reference_frames()
        if not mixed.keys() & set(guesses):
            return guesses
        candidates: list[int] = []
        for guess in guesses:
            if guess in mixed:
                candidates += [r for r in (_nearest_clean(guess, -1, mixed), _nearest_clean(guess, 1, mixed))
                               if self.in_reference(r)]
            candidates.append(guess)
        return list(dict.fromkeys(candidates))

    def mixed_reference_frames(self) -> dict[int, str]:
        """For a Reference at a 3:2 pulldown's rate, its frames that mix two film frames' fields
        (`curation.field_mixed_frames` over the whole plate, read once on first use); else none."""
        with self._mixed_lock:
            if self._mixed is None:
                job = self.job
                self._mixed = {}
                if job.reference.path and curation.is_pulldown(job.source.fps, job.reference.fps):
                    self._mixed = curation.read_field_mixes(
                        lambda f: reference_frame(job, f), range(job.reference.first_frame, job.reference.last_frame + 1))
            return self._mixed

    def start_matrix(self, frame: int, reference_shape: tuple[int, int], source_shape: tuple[int, int]
                     ) -> tuple[np.ndarray, str]:
        if frame in self.solved:
            return self.solved[frame], "manual" if frame in self.manual else "auto"
        frames = [f for f in self.solved]
        if frames and self.job.alignment.mode == "per_frame":
            nearest = min(frames, key=lambda f: (abs(f - frame), f))
            return self.solved[nearest], "nearest"
        if self.global_matrix is not None:
            return self.global_matrix, "global"
        if frames:
            nearest = min(frames, key=lambda f: (abs(f - frame), f))
            return self.solved[nearest], "nearest"
        return conform_matrix(self.job.conform, (reference_shape[1], reference_shape[0]),
                              (source_shape[1], source_shape[0]), self.job.reference.pixel_aspect,
                              self.job.source.pixel_aspect), "conform"

    def guide(self, frame: int, source_rgb: np.ndarray | None = None
              ) -> tuple[np.ndarray | None, np.ndarray | None, GuideFrame]:
        """(aligned Reference RGB, coverage, record) for one Source frame; (None, None, record)
        where there is no Reference to guide with."""
        job = self.job
        if not job.reference.path:
            return None, None, GuideFrame(frame, None, None, "none", 0.0, "no Reference plate")
        src = source_rgb if source_rgb is not None else source_frame(job, frame)
        tried: list[tuple[float, np.ndarray | None, np.ndarray | None, GuideFrame]] = []
        candidates = self.candidate_partners(frame)
        mixed_frames = {} if frame in self.pair_partner else self.mixed_reference_frames()
        mixed = next((r for r in candidates if r in mixed_frames), None)
        for partner in candidates:
            aligned, cov, record = self._guide_from(frame, src, partner)
            if cov is not None and cov.any():
                if mixed is not None and partner != mixed:
                    record.note = "; ".join(filter(None, [record.note, (
                        f"Reference frame {mixed} mixes two film frames' fields "
                        f"({mixed_frames[mixed]}); guided by {partner}, the nearest clean one")]))
                return aligned, cov, record
            tried.append((-1.0 if cov is None else 0.0, aligned, cov, record))
        _, aligned, cov, record = max(tried, key=lambda t: t[0])
        if job.branch == "chroma":  # nothing to measure the frame's grain on: the shot's decision
            record.colour_smoothing = self.shot_colour_smoothing()
        return (None, None, record) if cov is None else (aligned, cov, record)

    def shot_colour_smoothing(self) -> float:
        """The colour smoothing of a chroma frame the Reference does not guide: the share of the shot's
        finer colour found to be grain (the median of the fine weight or colour smoothing, whichever is
        more, over up to three of its pairs' frames), which follows the luma there as it would in a
        guided frame's uncovered part. Measured once, on first use."""
        with self._shot_lock:
            if self._shot_smoothing is None:
                shares = []
                for source, reference in self.anchors[::max(1, len(self.anchors) // 3)][:3]:
                    try:
                        _, cov, record = self._guide_from(source, source_frame(self.job, source), reference)
                    except Exception:  # noqa: BLE001 - an unreadable pair frame tells nothing; others may
                        continue
                    if cov is not None and cov.any():
                        shares.append(max(record.fine_weight, record.colour_smoothing))
                self._shot_smoothing = float(np.median(shares)) if shares else 0.0
            return self._shot_smoothing

    def _guide_from(self, frame: int, src: np.ndarray, partner: int
                    ) -> tuple[np.ndarray | None, np.ndarray | None, GuideFrame]:
        job = self.job
        if not self.in_reference(partner):
            return None, None, GuideFrame(frame, None, None, "none", 0.0,
                                          f"no Reference frame at this time (frame {partner} is outside the plate)")
        try:
            ref = reference_frame(job, partner)
        except Exception as exc:  # noqa: BLE001 - a missing/corrupt Reference frame: no guide, say which
            return None, None, GuideFrame(frame, partner, None, "none", 0.0, f"Reference unreadable: {exc}")
        m, origin = self.start_matrix(frame, ref.shape[:2], src.shape[:2])
        if origin == "nearest" and job.alignment.mode == "per_frame":
            solve = align.solve_frame_on_shot(src, ref, m, job.alignment.roi)
            if solve.usable:
                m, origin = solve.matrix, "solved-now"
        aligned, cov, note = reference_guide(src, ref, m)
        chroma = job.branch == "chroma"
        weight, smoothing = self._fine_colour(src, aligned, cov, m) if chroma else (0.0, 0.0)
        return aligned, cov, GuideFrame(frame, partner, warp.matrix_to_list(m), origin, float(cov.mean()), note,
                                        detail_sigma(m, self.blocky, self.half_chroma) if chroma else 0.0,
                                        self.blocky, self.half_chroma, weight, smoothing)

    def _fine_colour(self, src: np.ndarray, aligned: np.ndarray, cov: np.ndarray, matrix: np.ndarray
                     ) -> tuple[float, float]:
        """(fine weight, colour smoothing) as job.output.fine_colour asks: measured (auto), 0 (model)
        or 1 (reference). Measured on a blocky Reference, whose finer colour is coding error, the
        share `fine_weight` finds to be grain is smoothed (`colour_smoothing`) instead of taken."""
        choice = self.job.output.fine_colour
        if choice != "auto":
            return (1.0 if choice == "reference" else 0.0), 0.0
        weight = fine_weight(src, aligned, cov, sampling_sigma(matrix, self.half_chroma), self.blocky)
        return (0.0, weight) if self.blocky else (weight, 0.0)


def _nearest_clean(frame: int, step: int, mixed: dict[int, str]) -> int:
    """The nearest frame from `frame` in direction `step` (+1 / -1) that is not in `mixed`."""
    frame += step
    while frame in mixed:
        frame += step
    return frame


def coding_block_phase(reference_rgb: np.ndarray, period: int = CODING_BLOCK) -> tuple[int, int] | None:
    """The (x, y) phase of a video coding block grid the frame shows, or None. Inside the picture
    (bars left out), the median step between neighbouring pixels is taken per column (per row), and
    the median of those per phase of the grid: a coded frame's block edges make one phase stand out in both
    directions; picture texture spreads over all phases."""
    top, bottom, left, right = crop.detect_borders([reference_rgb])
    h, w = reference_rgb.shape[:2]
    inset = 2  # a bar's soft edge is not a block edge
    y0, y1, x0, x1 = top + inset, h - bottom - inset, left + inset, w - right - inset
    if y1 - y0 < 4 * period or x1 - x0 < 4 * period:
        return None
    plane = luma(reference_rgb)[y0:y1, x0:x1]
    found = []
    for steps, origin in ((np.abs(np.diff(plane, axis=1)), x0), (np.abs(np.diff(plane, axis=0)).T, y0)):
        profile = np.median(steps, axis=0)  # step i lies between pixel origin + i and the next
        positions = (origin + np.arange(profile.size)) % period
        per_phase = np.array([np.median(profile[positions == p]) for p in range(period)])
        edge = int(np.argmax(per_phase))
        # The coding's ringing also raises the steps next to a block edge: compare with the rest.
        inner = np.delete(per_phase, [(edge - 1) % period, edge, (edge + 1) % period])
        if per_phase[edge] < _BLOCK_EDGE_RATIO * max(float(np.median(inner)), 1e-6):
            return None
        found.append(edge)
    return found[0], found[1]


def is_half_chroma(relative: float, own: float, blocky: bool = False) -> bool:
    """Whether `chroma_octaves` say 4:2:0: the chroma's finest octave well under the luma's, or somewhat
    under it and weak in itself (a soft picture; not on a blocky Reference). See _CHROMA_OCTAVE_RATIO."""
    return relative < _CHROMA_OCTAVE_RATIO or \
        (not blocky and relative < _CHROMA_OCTAVE_RATIO_SOFT and own < _CHROMA_OWN_RATIO)


def chroma_octaves(reference_rgb: np.ndarray) -> tuple[float, float] | None:
    """Medians over 16 px tiles of the picture (bars left out) of the chroma's finest-octave energy ratio
    over the luma's, and of the chroma's own (see _CHROMA_OCTAVE_RATIO); None where too little of the
    frame has structure."""
    from .colour import rgb_to_ycbcr
    from .primitives import gaussian_blur

    top, bottom, left, right = crop.detect_borders([reference_rgb])
    h, w = reference_rgb.shape[:2]
    inset = 4  # a bar's soft edge is not picture detail
    picture = reference_rgb[top + inset:h - bottom - inset, left + inset:w - right - inset]
    # The centre's tiles tell as much as the whole frame's, at a fraction of the cost on HD and 2K frames.
    ph, pw = picture.shape[:2]
    y0, x0 = max(0, (ph - _OCTAVE_WINDOW) // 2), max(0, (pw - _OCTAVE_WINDOW) // 2)
    ycc = rgb_to_ycbcr(picture[y0:y0 + _OCTAVE_WINDOW, x0:x0 + _OCTAVE_WINDOW])
    rows, cols = ycc.shape[0] // _OCTAVE_TILE, ycc.shape[1] // _OCTAVE_TILE
    if rows * cols < 8:
        return None
    fine = gaussian_blur(ycc, 0.7)
    finest = (ycc - fine) ** 2
    next_octave = (fine - gaussian_blur(ycc, 1.4)) ** 2

    def per_tile(energy: np.ndarray) -> np.ndarray:
        cut = energy[:rows * _OCTAVE_TILE, :cols * _OCTAVE_TILE]
        return cut.reshape(rows, _OCTAVE_TILE, cols, _OCTAVE_TILE, 3).mean(axis=(1, 3)).reshape(-1, 3)

    top_energy, next_energy = per_tile(finest), per_tile(next_octave)
    chroma_next = next_energy[:, 1] + next_energy[:, 2]
    structured = (next_energy[:, 0] > 1e-6) & (chroma_next > 1e-7)
    if structured.sum() < 8:
        return None
    luma_ratio = top_energy[structured, 0] / next_energy[structured, 0]
    chroma_ratio = (top_energy[structured, 1] + top_energy[structured, 2]) / chroma_next[structured]
    return float(np.median(chroma_ratio / luma_ratio)), float(np.median(chroma_ratio))


def sampling_sigma(matrix: np.ndarray, half_chroma: bool = False) -> float:
    """The finest colour the Reference resolves on the Source raster: DETAIL_SCALE x the warp's
    scale (Source px per Reference px), twice that for 4:2:0 chroma."""
    return warp.scale_of(warp.as_matrix(matrix)) * DETAIL_SCALE * (2.0 if half_chroma else 1.0)


def fine_weight(source_rgb: np.ndarray, aligned_rgb: np.ndarray, cover: np.ndarray, sigma: float,
                blocky: bool = False) -> float:
    """How much of the Source's colour finer than the Reference's detail limit is grain (0 to 1): the
    share of the Reference's colour there to take instead (for a `blocky` Reference, to smooth). From
    the octave below `sigma` (the `sampling_sigma`), inside the coverage: by the picture share of the
    Source's colour there, or for a blocky Reference by its luma's correlation with the Reference's
    (`fine_octave`; see PICTURE_SHARE_LOW). 0 where too little is covered to tell."""
    measured = fine_octave(source_rgb, aligned_rgb, cover, sigma)
    if measured is None:
        return 0.0
    match, share = measured
    if blocky:
        return float(np.clip((FINE_MATCH_HIGH - match) / (FINE_MATCH_HIGH - FINE_MATCH_LOW), 0.0, 1.0))
    return float(np.clip((PICTURE_SHARE_HIGH - share) / (PICTURE_SHARE_HIGH - PICTURE_SHARE_LOW), 0.0, 1.0))


def fine_octave(source_rgb: np.ndarray, aligned_rgb: np.ndarray, cover: np.ndarray, sigma: float
                ) -> tuple[float, float] | None:
    """(match, picture_share) of the octave below `sigma` (see PICTURE_SHARE_LOW), measured in the
    frame's centre window inside the coverage; None where too little is covered to tell."""
    from .colour import rgb_to_ycbcr
    from .primitives import gaussian_blur

    if sigma <= 0:
        return None
    h, w = cover.shape  # a centre window is plenty to tell, and bounds the cost at 4K
    y, x = max(0, (h - FINE_WINDOW) // 2), max(0, (w - FINE_WINDOW) // 2)
    window = (slice(y, y + FINE_WINDOW), slice(x, x + FINE_WINDOW))
    cover = cover[window]
    inner = (gaussian_blur(cover, 4.0 * sigma) > 0.98) & (cover > 0.5)
    if inner.sum() < 1024:
        return None
    source = rgb_to_ycbcr(source_rgb[window]) * cover[..., None]
    reference = rgb_to_ycbcr(aligned_rgb[window]) * cover[..., None]
    blurred: dict = {}  # (plane, sigma) -> its Gaussian inside the coverage, normalised by the coverage's

    def blur(name: str, plane: np.ndarray, s: float) -> np.ndarray:
        if ("cover", s) not in blurred:
            blurred["cover", s] = np.maximum(gaussian_blur(cover, s)[inner], 1e-3)
        if (name, s) not in blurred:
            weight = blurred["cover", s]
            blurred[name, s] = gaussian_blur(plane, s)[inner] / (weight if plane.ndim == 2 else weight[:, None])
        return blurred[name, s]

    def colour_per_luma(energy: np.ndarray) -> float:  # (Y, Cb, Cr) energies
        return float(energy[1] + energy[2]) / max(float(energy[0]), 1e-12)

    source_fine = blur("source", source, sigma / 2.0) - blur("source", source, sigma)
    reference_fine = blur("reference y", reference[..., 0], sigma / 2.0) - blur("reference", reference, sigma)[:, 0]
    reference_coarse = blur("reference", reference, sigma) - blur("reference", reference, 2.0 * sigma)
    energy = (source_fine ** 2).mean(axis=0)
    norm = float(np.sqrt(energy[0] * (reference_fine ** 2).mean()))
    match = float((source_fine[:, 0] * reference_fine).mean()) / norm if norm > 0 else 1.0
    # The Reference's colour-per-luma in the Source's units (a faded Source has less colour, a regraded
    # Reference more): scaled by the two frames' ratio of it in the coarse picture, where grain is gone.
    units = (colour_per_luma(blur("source", source, 4.0 * sigma).var(axis=0))
             / max(colour_per_luma(blur("reference", reference, 4.0 * sigma).var(axis=0)), 1e-12))
    expected_colour = units * colour_per_luma((reference_coarse ** 2).mean(axis=0)) * energy[0] * max(match, 0.0) ** 2
    return match, float(expected_colour / max(float(energy[1] + energy[2]), 1e-12))


def detail_sigma(matrix: np.ndarray, blocky: bool = False, half_chroma: bool = False) -> float:
    """How much of a chroma prediction's detail to keep under the Reference's colour: a Gaussian of
    DETAIL_SCALE x the warp's scale (Source px per Reference px), so a Reference of lower resolution
    corrects only the frequencies it resolves. Measured on the field corpus's chroma kinds (held-out
    frames against truth, 200 steps): 0.5 gained 0.3 to 3.5 dB PSNR-CbCr over taking the Reference's
    chroma whole on SD and pan-and-scan References and kept CIEDE2000 within 0.2 of it except on a
    heavily grained night shot (+0.3); 1.0 and 2.0 gained more PSNR on the lowest-resolution
    References but lost CIEDE2000 on the others. A `blocky` Reference (coding blocks) corrects only
    below BLOCKY_DETAIL x its block instead; one with `half_chroma` (`is_half_chroma`: 4:2:0
    video) resolves colour at twice its pixel size, so below twice the usual limit (field corpus, 200
    steps: pal_speedup 28.6 / 4.24 -> 29.0 / 4.16, ntsc_pulldown 40.0 / 1.68 -> 41.0 / 1.75)."""
    if blocky:
        return warp.scale_of(warp.as_matrix(matrix)) * BLOCKY_DETAIL * CODING_BLOCK
    return sampling_sigma(matrix, half_chroma)


def reference_blur(detail: float, blocky: bool = False) -> float:
    """How soft the Reference's colour is on the Source raster (Source px), REFERENCE_BLUR x its
    `detail_sigma`: the correction compares the prediction blurred that much with it and takes the
    difference below it (`models.reference_correction`). 0 for a blocky Reference, whose limit is its
    blocks', far coarser than its blur."""
    return 0.0 if blocky else REFERENCE_BLUR * detail


def training_matrices(dataset) -> list[np.ndarray]:
    """The warps of a dataset's training pairs (Reference -> Source), from its manifest."""
    training = {p.name for p in dataset.training_pairs}
    return [warp.as_matrix(entry["matrix"]) for entry in dataset.manifest.get("pairs", [])
            if entry.get("name") in training and entry.get("matrix")]


def coding_block_sigma(dataset) -> float:
    """For a dataset whose Reference shows coding blocks (its manifest's `coding_blocks`), the scale
    below which its colour is coding error, not picture: the median over the training pairs of
    `detail_sigma(matrix, blocky=True)`, Source px. 0 for any other dataset."""
    matrices = training_matrices(dataset) if dataset.manifest.get("coding_blocks") else []
    return float(np.median([detail_sigma(m, blocky=True) for m in matrices])) if matrices else 0.0


def guide_summary(records: list[GuideFrame]) -> dict:
    """What the inference result and report say about the guide."""
    if not records:
        return {}
    unguided = [r.source_frame for r in records if r.coverage <= 0]
    return {"frames": len(records), "mean_coverage": float(np.mean([r.coverage for r in records])),
            "unguided_frames": unguided,
            "notes": {str(r.source_frame): r.note for r in records if r.note},
            "coding_blocks": any(r.coding_blocks for r in records),
            "half_chroma": any(r.half_chroma for r in records),
            "detail_sigma": float(np.median([r.detail_sigma for r in records if r.coverage > 0] or [0.0])),
            "fine_weight": float(np.median([r.fine_weight for r in records if r.coverage > 0] or [0.0])),
            "colour_smoothing": float(np.median([r.colour_smoothing for r in records if r.coverage > 0] or [0.0]))}


def guide_text(summary: dict) -> str:
    """One line for the panel and the CLI: how much of the run the Reference guided."""
    if not summary:
        return ""
    frames, unguided = summary.get("frames", 0), len(summary.get("unguided_frames", []))
    text = f"; Reference-guided on {frames - unguided} of {frames} frames ({summary.get('mean_coverage', 0):.0%} covered)"
    text += f", {unguided} from the Source alone" if unguided else ""
    detail = detail_sentence(summary)
    return text + (f"; {detail}" if detail else "")


def detail_sentence(summary: dict) -> str:
    """Which colour detail the Reference set and which the model, and whether the model's colour
    grain was reduced (lower case, no full stop), or ""."""
    sigma, weight = summary.get("detail_sigma", 0.0), summary.get("fine_weight", 0.0)
    grain = ("the colour grain the prediction carries from the Source is reduced (output.grain clean)"
             if summary.get("colour_grain") == "reduced" and weight < 0.99 else "")
    if summary.get("coding_blocks"):
        text = f"the Reference shows video coding blocks, so it sets the colour coarser than {sigma:.0f} px"
    elif summary.get("half_chroma"):
        text = (f"the Reference's chroma has half its luma's resolution (4:2:0 video), so it sets the colour "
                f"coarser than {sigma:.1f} px")
    elif weight >= 0.5:
        text = f"the Reference sets the colour coarser than {sigma:.1f} px"
    else:
        return grain
    smoothing = summary.get("colour_smoothing", 0.0)
    if weight >= 0.5:
        share = "whole" if weight >= 0.99 else f"at {weight:.0%}"
        text += ("; finer, the Source's colour detail is mostly grain (more than its picture's luma detail "
                 f"explains), so the Reference's colour is taken {share} there too")
        if summary.get("colour_grain") == "reduced":  # output.grain clean: `DevicePipeline._recombine`
            text += ", and where the Reference does not cover, the colour follows the luma"
    elif smoothing >= 0.5:
        why = ("the Source's colour detail is mostly grain and the Reference's coding error"
               if summary.get("coding_blocks") else
               "the Source's colour detail that its luma does not explain is grain (unlike the Reference's)")
        text += f"; finer, {why}, so the colour there follows the luma (smoothed {smoothing:.0%})"
    else:
        text += " and the model's prediction the finer detail"
    return text + (f"; {grain}" if grain else "")
