"""Inference on the full Source: every frame through the training chain, the model, and the writers.

Per frame: read + ingest + neutral pre-balance (`ingest.source_frame`), plus the training degrain
when the model was trained on degrained input; the model predicts its branch's YCbCr channels;
the other channels are the Source's own (chroma: Source Y + predicted CbCr; spatial: predicted Y
+ Source CbCr). With a degrained model input, the kept channels come from the Source *before*
degrain, so the delivered frames keep the plate's grain. Outputs (job.output chooses):

  work_dir/infer/display/<name>.####.exr  display-referred half EXR (what `evaluate` reads)
  work_dir/infer/aces/<name>.####.exr     archival ACES2065-1 half EXR (inverse output transform)
  work_dir/infer/review/<name>.####.png   8-bit Rec.709 review proxies (+ a ProRes .mov with ffmpeg)

Every file carries provenance in its header (model hash and step, recipe hash, dataset hash,
colour config, engine version, Source frame and file). A re-run skips frames whose outputs are
current (same model hash and recipe hash, and the pixels decode) and writes only the rest.

Throughput: decode runs ahead in a thread pool (bounded prefetch), the model runs on the device
with frames batched when small, and on CUDA the next batch is launched before the previous one's
results are waited for. The archival transform runs on the device as a baked 3D LUT
(`colour.bake_display_to_aces_lut`, sampled trilinearly); `archival="ocio"` uses the exact OCIO
path on the CPU instead. Half-float conversion and the 8-bit review quantisation also run on the
device; EXR/PNG encode runs in a thread pool with a bound on frames in flight. The host work
per frame is what bounds a GPU run, so it is kept small: Source EXRs are decoded by OpenEXR in
their own half type and widened on the device, which also applies the pre-balance and the
training degrain (a separable Gaussian, `models.degrain_ycbcr`, matching `cleanup.degrain`);
a reference-guided model's guide is built on the host (`ml.guide`); outputs are encoded by OpenEXR (both release the GIL: see bench/bench_host.py
for the CPU per frame). A CUDA out-of-memory error splits the batch, then retries in tiles, halving
the tile until it fits.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__ as ENGINE_VERSION
from ..colour import LUT_SHAPER_OFFSET, OCIO_CONFIG, bake_display_to_aces_lut
from ..errors import FilmRecoveryError, InputImageError
from ..events import Reporter
from ..guide import CORRECTION_METHOD, FINE_COLOUR_RULE, GuideFrame, GuidePlanner, guide_summary, reference_blur
from ..imageio import frame_path, remove_temp_files, write_exr, write_png
from ..ingest import plate_frame_path, read_plate_frame, source_frame
from ..job import Balance, Job
from ..writers import ARCHIVAL_HEADER, COMPRESSIONS, DISPLAY_HEADER
from . import checkpoint as ckpt
from .models import (
    RecoveryModel,
    degrain_ycbcr,
    frame_coords,
    guide_tensor,
    pad_to_multiple,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from .predict import (
    COLOUR_GRAIN_METHOD,
    amp_dtype_for,
    apply_grain_choice,
    check_metadata,
    grain_smoothing,
    predict_ycbcr,
    reference_share,
    resolve_device,
    unexplained_colour_match,
)

OUTPUT_KINDS = ("display", "aces", "review")
PROVENANCE = "film_recovery:"
MIN_TILE = 128
DEFAULT_OVERLAP = 64
DEFAULT_LUT_SIZE = 129  # 65^3 is ~2x less accurate near the gamut edge; 129^3 is 25 MB on the device
CUDA_BATCH_PIXELS = 12_000_000  # frames are batched up to this many pixels per model call on CUDA
STAGES = ("decode", "preprocess", "model", "colour", "encode")


@dataclass
class InferOptions:
    """How to run inference; the job says what to run it on."""

    model_path: str = ""  # "" -> job.model_path, else work_dir/train/model_best.safetensors
    frames: list[int] | None = None  # None -> every Source frame
    device: str = "auto"
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | bf16 | fp16 | fp32
    tile: int = 0  # 0: whole frames (tiles only after a CUDA out-of-memory error)
    overlap: int = DEFAULT_OVERLAP
    overwrite: bool = False  # also job.output.overwrite
    batch: int = 0  # frames per model call; 0 = by frame size on CUDA, 1 elsewhere
    decode_workers: int = 0  # 0 = from the core count
    encode_workers: int = 0
    archival: str = "lut"  # lut (baked 3D LUT on the device) | ocio (exact, CPU)
    lut_size: int = DEFAULT_LUT_SIZE
    compile: bool = False  # torch.compile the model (CUDA; first frames pay the compile)


@dataclass
class InferResult:
    frames: list[int]
    written: list[int]
    skipped: list[int]
    outputs: dict[str, str]  # kind -> frame pattern (or movie path)
    model: str
    model_hash: str
    recipe_hash: str
    device: str
    precision: str
    seconds: float
    fps: float
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    guide: dict[str, Any] = field(default_factory=dict)  # a guided model's coverage (ml.guide.guide_summary)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["frame_range"] = [min(self.frames), max(self.frames)] if self.frames else []
        return data


# --- model, frames, paths ----------------------------------------------------------------------

def resolve_model_path(job: Job, override: str = "") -> Path:
    """--model, else job.model_path, else work_dir/train/model_best (model_final when no best)."""
    if override or job.model_path:
        path = Path(override or job.model_path)
        if path.suffix == ".json":
            path = path.with_suffix(".safetensors")
        if not path.exists():
            raise FilmRecoveryError("model file not found.", where=str(path),
                                    fix="Check the model path (a .safetensors file with its .json beside it).")
        return path
    train_dir = job.work_path("train")
    for name in ("model_best.safetensors", "model_final.safetensors"):
        if (train_dir / name).exists():
            return train_dir / name
    raise FilmRecoveryError("no trained model.", where=str(train_dir / "model_best.safetensors"),
                            fix="Train first (`python -m ml train job.json`), or pass --model PATH.")


def parse_frame_range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", text or "")
    if not match:
        raise FilmRecoveryError(f"cannot read the frame range {text!r}.", where="--frames",
                                fix="Use A-B (e.g. 1001-1100) or a single frame.")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise FilmRecoveryError(f"last frame {last} is before first frame {first}.", where="--frames")
    return first, last


def select_frames(job: Job, frame_range: str = "", chunk: str = "") -> list[int]:
    """The Source frames to run: all, or --frames A-B, then the K-th of N equal chunks (--chunk K/N)."""
    first, last = job.source.first_frame, job.source.last_frame
    if last < first:
        raise InputImageError(f"last frame {last} is before first frame {first}.", where="job.source",
                              fix="Set the Source frame range.")
    if frame_range:
        a, b = parse_frame_range(frame_range)
        if a < first or b > last:
            raise FilmRecoveryError(f"frames {a}-{b} are outside the Source range {first}-{last}.",
                                    where="--frames", fix=f"Pick frames inside {first}-{last}.")
        first, last = a, b
    frames = list(range(first, last + 1))
    if chunk:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", chunk)
        if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
            raise FilmRecoveryError(f"cannot read the chunk {chunk!r}.", where="--chunk",
                                    fix="Use K/N with 1 <= K <= N, e.g. 3/8 for the third of eight chunks.")
        k, n = int(match.group(1)), int(match.group(2))
        frames = frames[(k - 1) * len(frames) // n:k * len(frames) // n]
    return frames


def output_patterns(job: Job) -> dict[str, Path]:
    """Frame patterns of the outputs job.output asks for (kind -> work_dir/infer/<kind>/<name>.####.ext)."""
    wanted = {"display": job.output.display_exr, "aces": job.output.aces_exr,
              "review": job.output.review in ("png", "movie")}
    extension = {"display": "exr", "aces": "exr", "review": "png"}
    return {kind: job.work_path("infer", kind, f"{job.name}.####.{extension[kind]}")
            for kind in OUTPUT_KINDS if wanted[kind]}


def movie_path(job: Job, frames: list[int]) -> Path:
    return job.work_path("infer", "review", f"{job.name}.{frames[0]:04d}-{frames[-1]:04d}.mov")


def check_output_locations(job: Job, patterns: dict[str, Path]) -> None:
    """Refuse outputs that would land in a Source or Reference plate folder (plates are never touched)."""
    plates = {"Source": job.source.path, "Reference": job.reference.path}
    for kind, pattern in patterns.items():
        folder = pattern.parent.resolve()
        for label, plate in plates.items():
            if plate and Path(plate).parent.resolve() == folder:
                raise FilmRecoveryError(f"the {kind} outputs would be written into the {label} plate folder.",
                                        where=str(pattern.parent),
                                        fix="Set work_dir to a folder outside the plate folders.")


def model_hash(metadata: dict[str, Any]) -> str:
    return str((metadata.get("weights") or {}).get("sha256", ""))


def training_degrain(job: Job, metadata: dict[str, Any]) -> float:
    """The Source degrain the model was trained with (the dataset records it), else the job's."""
    cleanup = (metadata.get("colour") or {}).get("cleanup")
    if isinstance(cleanup, dict) and "source_degrain" in cleanup:
        return float(cleanup["source_degrain"])
    return float(job.cleanup.source_degrain)


def precision_name(device: torch.device, dtype: str) -> str:
    amp = amp_dtype_for(device, None if dtype == "auto" else dtype)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]


def recipe_hash(job: Job, degrain: float, precision: str, options: InferOptions, guided: bool = False) -> str:
    """SHA-256 of what decides the output pixels besides the model: the Source and its chain,
    the branch, the precision, the archival transform and the compression; for a guided model also
    the Reference, the warps and the pairs it is guided by, and where its finer colour comes from
    (`output.fine_colour`, and `auto`'s rule) and how the Reference corrects the prediction (a
    Source-only model's frames stay current when only those change)."""
    recipe = {"source": dataclasses.asdict(job.source), "balance": dataclasses.asdict(job.balance),
              "degrain": degrain, "branch": job.branch, "precision": precision, "grain": job.output.grain,
              "archival": options.archival if options.archival == "ocio" else f"lut{options.lut_size}",
              "compression": job.output.compression}
    if job.branch == "chroma" and job.output.grain == "clean":
        # frames written before the colour grain reduction are stale: a resumed run must not mix the two
        recipe["colour_grain"] = COLOUR_GRAIN_METHOD
    if guided:
        recipe.update(reference=dataclasses.asdict(job.reference), alignment=dataclasses.asdict(job.alignment),
                      pairs=[(p.source_frame, p.reference_frame) for p in job.pairs if p.accepted],
                      fine_colour=job.output.fine_colour)
        if job.branch == "chroma":  # frames corrected another way are stale
            recipe["correction"] = CORRECTION_METHOD
        if job.branch == "chroma" and job.output.fine_colour == "auto":  # frames the rule before weighed are stale
            recipe["fine_colour_rule"] = FINE_COLOUR_RULE
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def provenance(model_path: Path, metadata: dict[str, Any], recipe: str, precision: str, archival: str
               ) -> dict[str, str | int]:
    """Header attributes shared by every output frame (the frame's own are added per frame)."""
    sha = model_hash(metadata)
    config = metadata.get("model") or {}
    return {
        f"{PROVENANCE}model_id": f"{model_path.stem}@{metadata.get('step', 0)}:{sha[:12]}",
        f"{PROVENANCE}model_hash": sha,
        f"{PROVENANCE}model_file": str(model_path),
        f"{PROVENANCE}model": f"{config.get('size', '?')} {config.get('kind', '?')} {metadata.get('branch', '?')}",
        f"{PROVENANCE}checkpoint_step": int(metadata.get("step", 0)),
        f"{PROVENANCE}recipe_hash": recipe,
        f"{PROVENANCE}training_recipe_hash": str(metadata.get("recipe_hash", "")),
        f"{PROVENANCE}dataset_hash": str(metadata.get("dataset_hash", "")),
        f"{PROVENANCE}ocio_config": OCIO_CONFIG,
        f"{PROVENANCE}engine_version": ENGINE_VERSION,
        f"{PROVENANCE}precision": precision,
        f"{PROVENANCE}archival_transform": archival,
    }


# --- output files --------------------------------------------------------------------------------

def output_status(path: Path, model_sha: str, recipe: str) -> str:
    """'current' (this model and recipe, pixels decode), 'missing', 'damaged' (unreadable or
    truncated: written again) or 'other' (a complete frame from another model or recipe)."""
    import OpenImageIO as oiio

    if not path.exists():
        return "missing"
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        return "damaged"
    try:
        spec = inp.spec()
        if inp.read_image(spec.format) is None:  # a truncated file fails here
            return "damaged"
        same = (spec.getattribute(f"{PROVENANCE}model_hash") == model_sha
                and spec.getattribute(f"{PROVENANCE}recipe_hash") == recipe)
        return "current" if same else "other"
    finally:
        inp.close()


# --- the device side -----------------------------------------------------------------------------

@functools.cache
def _archival_lut(size: int) -> torch.Tensor:
    """The display -> ACES2065-1 LUT (log2 shaper) as a (1, 3, R, G, B) volume for grid_sample."""
    return torch.from_numpy(bake_display_to_aces_lut(size)).permute(3, 0, 1, 2).unsqueeze(0).contiguous()


def display_to_aces_device(rgb_nhwc: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) display RGB -> ACES2065-1 on the tensor's device, trilinear in the baked LUT."""
    out = torch.empty_like(rgb_nhwc)
    for i in range(rgb_nhwc.shape[0]):
        # grid_sample's x, y, z index the volume's last three axes: B, G, R.
        grid = rgb_nhwc[i].flip(-1).clamp(0.0, 1.0).mul(2.0).sub(1.0).unsqueeze(0).unsqueeze(0)
        stored = F.grid_sample(lut, grid, mode="bilinear", padding_mode="border", align_corners=True)
        out[i] = torch.exp2(stored[0, :, 0].permute(1, 2, 0)) - LUT_SHAPER_OFFSET
    return out


@dataclass
class _Decoded:
    frame: int
    model_input: torch.Tensor | None  # (H, W, 3) float32 or float16 as stored (on CUDA: already on the device)
    kept: torch.Tensor | None  # the Source before degrain, for the kept channels (None: same as input)
    source_file: str
    seconds: float
    uploaded: Any = None  # CUDA event: the upload on the decode thread's stream has finished
    guide: torch.Tensor | None = None  # (H, W, 4) aligned Reference RGB + coverage, for a guided model
    guide_record: GuideFrame | None = None


@dataclass
class _Launched:
    """A batch whose device work is queued; its host results are ready once `ready` has fired."""

    decoded: list[_Decoded]
    display: torch.Tensor  # (N, H, W, 3) half (float32 for the OCIO archival path)
    aces: torch.Tensor | None
    review: torch.Tensor | None
    ready: Any  # torch.cuda.Event or None
    clock: list[Any]  # events (CUDA) or perf_counter values between preprocess/model/colour
    preprocess_start: float
    smoothing: torch.Tensor | None = None  # (N,) each frame's colour smoothing as applied (guided chroma)


@dataclass(frozen=True)
class PipelineSettings:
    """How the device side treats each batch, besides the model and the archival LUT."""

    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | bf16 | fp16 | fp32
    tile: int = 0  # 0: whole frames (tiles only after a CUDA out-of-memory error)
    overlap: int = DEFAULT_OVERLAP
    want_review: bool = False  # 8-bit review pixels
    exact_display: bool = False  # float32 display on the host (the OCIO archival path needs it)
    compile: bool = False  # torch.compile the model
    balance: Balance | None = None  # the neutral pre-balance, when the decode threads leave it to the device
    grain: str = "clean"  # job.output.grain: the Source's grain back over a predicted luma, or not
    degrain: float = 0.0  # the training degrain, applied to the model's input on the device


class DevicePipeline:
    """The model and the device-side colour work: Source RGB batch in, host-ready outputs out."""

    def __init__(self, model: RecoveryModel, metadata: dict[str, Any], device: torch.device,
                 settings: PipelineSettings | None = None, archival_lut: torch.Tensor | None = None):
        """`archival_lut` (None: no archival output from the device) is `_archival_lut`'s volume."""
        check_metadata(metadata)
        settings = settings or PipelineSettings()
        self.grain = settings.grain
        self.degrain = settings.degrain
        self.device = device
        self.cuda = device.type == "cuda"
        self.amp = amp_dtype_for(device, None if settings.dtype == "auto" else settings.dtype)
        self.tile = settings.tile or None  # halved after an out-of-memory error
        self.overlap = settings.overlap
        self.batch_limit: int | None = None  # set after an out-of-memory error
        self.kept_channels = [c for c in range(3) if c not in model.config.predicted_channels]
        self.predicted_channels = tuple(model.config.predicted_channels)
        self.guided = model.config.guided
        self.lut = archival_lut.to(device) if archival_lut is not None else None
        # The neutral pre-balance, when the decode threads leave it to the device (see _decode_frame).
        balance = settings.balance
        self.balance = None if balance is None else tuple(
            torch.tensor(values, dtype=torch.float32, device=device) for values in (balance.gain, balance.offset))
        self.want_review = settings.want_review
        self.exact_display = settings.exact_display
        model = model.to(device).eval()
        if self.cuda:
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.model: RecoveryModel = torch.compile(model) if settings.compile else model  # type: ignore[assignment]
        self.notes: list[str] = []

    def _stamp(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @torch.inference_mode()
    def _predict(self, source: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        """Model call, before the guide's correction (`RecoveryModel.correct`); on CUDA out of memory:
        split the batch, then tiles, halving until it fits."""
        while True:
            try:
                if self.batch_limit is not None and source.shape[0] > self.batch_limit:
                    parts = source.split(self.batch_limit)
                    guides = guide.split(self.batch_limit) if guide is not None else [None] * len(parts)
                    return torch.cat([self._predict(part, g) for part, g in zip(parts, guides, strict=True)])
                return self._predict_padded(source, guide)
            except torch.cuda.OutOfMemoryError:
                pass
            torch.cuda.empty_cache()  # outside the except block: the failed attempt's tensors are freed
            if source.shape[0] > 1 and (self.batch_limit is None or self.batch_limit > 1):
                self.batch_limit = max(1, source.shape[0] // 2)
                self.notes.append(f"out of GPU memory: {self.batch_limit} frame(s) per model call")
                continue
            longest = max(source.shape[-2:])
            tile = (self.tile or 1 << (longest - 1).bit_length()) // 2
            if tile < MIN_TILE:
                raise FilmRecoveryError(f"out of GPU memory even with {MIN_TILE} px tiles.", where="infer",
                                        fix="Close other GPU programs, use a smaller model, or run on the CPU.")
            self.tile = tile
            self.notes.append(f"out of GPU memory: {tile} px tiles")

    def _predict_padded(self, source: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        """Tiles cover the frame padded as the whole-frame pass pads it, so the frame's own edges
        see the same context either way; only the tiles' inner seams differ (feathered)."""
        height, width = source.shape[-2:]
        if not self.tile or (height <= self.tile and width <= self.tile):
            return predict_ycbcr(self.model, source, self.amp, guide=guide, corrected=False)
        config = self.model.config
        padded = pad_to_multiple(source, config.multiple)
        # Position channels as the whole-frame pass sees them: the frame's own, padded the same way.
        coords = pad_to_multiple(frame_coords(height, width, device=source.device), config.multiple) \
            if config.position else None
        tile = max(self.tile // config.multiple * config.multiple, config.multiple)
        guide = None if guide is None else pad_to_multiple(guide, config.multiple)
        out = predict_ycbcr(self.model, padded, self.amp, tile, self.overlap, coords=coords, guide=guide,
                            corrected=False)
        return out[..., :height, :width]

    @torch.inference_mode()
    def launch(self, batch: list[_Decoded]) -> _Launched:
        """Queue a batch of same-size frames on the device (returns at once on CUDA)."""
        start = time.perf_counter()
        self._wait_for_uploads(batch)
        clock = [self._stamp()]
        source, model_source = self._model_source(batch)
        guide, detail = self._guide(batch, source.shape[-2:]) if self.guided else (None, None)
        clock.append(self._stamp())
        prediction = self._predict(model_source, guide)
        out = prediction if guide is None else self.model.correct(prediction, guide, detail[:, 0], detail[:, 1],
                                                                  detail[:, 3])
        clock.append(self._stamp())
        recombined, smoothing = self._recombine(out, prediction, source, batch, guide, detail)
        display, aces, review = self._outputs(recombined)
        ready = None
        if self.cuda:
            ready = torch.cuda.Event()
            ready.record()
        clock.append(self._stamp())
        return _Launched(batch, display, aces, review, ready, clock, start, smoothing)

    def _wait_for_uploads(self, batch: list[_Decoded]) -> None:
        """On CUDA: the main stream waits for each frame's upload on its decode thread's stream."""
        if not self.cuda:
            return
        current = torch.cuda.current_stream(self.device)
        for d in batch:
            if d.uploaded is not None:
                current.wait_event(d.uploaded)
                for t in (d.model_input, d.kept):
                    if t is not None and t.is_cuda:
                        t.record_stream(current)

    def _model_source(self, batch: list[_Decoded]) -> tuple[torch.Tensor, torch.Tensor]:
        """(the balanced Source's YCbCr, what the model sees: the same after the training degrain)."""
        rgb = torch.stack([d.model_input.to(self.device, non_blocking=self.cuda) for d in batch]).float()
        if self.balance is not None:  # as balance.apply_balance: multiply, then add, in float32
            gain, offset = self.balance
            rgb = rgb * gain + offset
        source = rgb_to_ycbcr(rgb.permute(0, 3, 1, 2))  # NHWC memory = channels_last NCHW
        # The model sees the training chain's degrained Source; the kept channels and the grain
        # stay the plate's own (`source`).
        model_source = degrain_ycbcr(source, self.degrain)
        if self.cuda:
            model_source = model_source.contiguous(memory_format=torch.channels_last)
        return source, model_source

    def _guide(self, batch: list[_Decoded], size: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """A guided model's guide tensor and each frame's (detail sigma, fine weight, colour smoothing,
        Reference blur) (N, 4); frames without a guide get coverage 0 (the model's Source-only prediction)."""
        stacked = torch.stack([d.guide.to(self.device, non_blocking=self.cuda) if d.guide is not None else
                               torch.zeros((*size, 4), device=self.device) for d in batch]).float()
        guide = guide_tensor(stacked[..., :3].permute(0, 3, 1, 2), stacked[..., 3:].permute(0, 3, 1, 2))
        detail = torch.tensor([(r.detail_sigma, r.fine_weight, r.colour_smoothing, reference_blur(r.detail_sigma, r.coding_blocks))
                               if (r := d.guide_record) is not None else (0.0, 0.0, 0.0, 0.0) for d in batch])
        return guide, detail

    def _recombine(self, out: torch.Tensor, uncorrected: torch.Tensor, source: torch.Tensor, batch: list[_Decoded],
                   guide: torch.Tensor | None = None, detail: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the prediction with the plate's own kept channels and, as job.output.grain says, its grain,
        each frame's colour smoothing or None). On the chroma branch the grain is not reduced where
        the guide took the Reference's finer colour (`detail`'s fine weight times the guide's
        coverage), and is smoothed by the most of `detail`'s colour smoothing, its fine weight and the
        share `grain_smoothing` finds from how the unexplained colour of the prediction, corrected and
        `uncorrected`, matches the Reference's."""
        grain_from = source  # the grain is the plate's: taken before any training degrain
        if self.degrain > 0 and self.kept_channels:
            out[:, self.kept_channels] = source[:, self.kept_channels]
        if any(d.kept is not None for d in batch):
            kept = torch.stack([(d.kept if d.kept is not None else d.model_input).to(self.device, non_blocking=self.cuda)
                                for d in batch])
            grain_from = rgb_to_ycbcr(kept.float().permute(0, 3, 1, 2))
            if self.kept_channels:
                out[:, self.kept_channels] = grain_from[:, self.kept_channels]
        share = reference_share(guide, detail) if guide is not None and detail is not None else None
        smoothing = detail[:, 2].to(out.device) if detail is not None else None
        if smoothing is not None and guide is not None and self.grain == "clean" and 0 not in self.predicted_channels:
            # A frame's finer colour the guide finds to be grain (its fine weight) is grain also where
            # the Reference does not cover: there that share follows the luma. Frames already smoothed
            # whole are not measured (sigma 0: match 1).
            known = torch.maximum(detail[:, 2], detail[:, 1])  # on the host
            uncorrected[:, self.kept_channels] = out[:, self.kept_channels]  # the plate's own luma, as `out`'s
            measured = grain_smoothing(*unexplained_colour_match((out, uncorrected), guide,
                                                                 torch.where(known < 1, detail[:, 0], 0.0)))
            smoothing = torch.maximum(known.to(out.device), measured)
        return apply_grain_choice(out, grain_from, self.grain, self.predicted_channels, share, smoothing), smoothing

    def _outputs(self, out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """YCbCr -> the display, archival and review pixels, copied (on CUDA: queued) to the host."""
        display = ycbcr_to_rgb(out).permute(0, 2, 3, 1)  # (N, H, W, 3) float32
        aces = display_to_aces_device(display, self.lut).half() if self.lut is not None else None
        review = display.clamp(0.0, 1.0).mul(255.0).add(0.5).to(torch.uint8) if self.want_review else None
        display = display.contiguous() if self.exact_display else display.half()
        return tuple(self._to_host(t) for t in (display, aces, review))

    def _to_host(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        if tensor is None or not self.cuda:
            return None if tensor is None else tensor.contiguous().cpu()
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        return host

    def finish(self, launched: _Launched) -> dict[str, float]:
        """Wait for a launched batch; returns its preprocess/model/colour seconds. Each frame's guide
        record gets the colour smoothing applied to it."""
        if launched.ready is not None:
            launched.ready.synchronize()
        if launched.smoothing is not None:
            for decoded, value in zip(launched.decoded, launched.smoothing.tolist(), strict=True):
                if decoded.guide_record is not None:
                    decoded.guide_record.colour_smoothing = float(value)
        c = launched.clock
        if launched.ready is not None:
            return {"preprocess": c[0].elapsed_time(c[1]) / 1e3, "model": c[1].elapsed_time(c[2]) / 1e3,
                    "colour": c[2].elapsed_time(c[3]) / 1e3}
        return {"preprocess": c[1] - c[0], "model": c[2] - c[1], "colour": c[3] - c[2]}


def infer_frame(model: RecoveryModel, metadata: dict[str, Any], rgb: np.ndarray, device: str | torch.device = "cpu",
                settings: PipelineSettings | None = None, kept: np.ndarray | None = None,
                guide: np.ndarray | None = None, detail: tuple[float, ...] = (0.0, 0.0)) -> np.ndarray:
    """Recover one (H, W, 3) frame through the inference pipeline's device path; float32 RGB,
    before any half-float quantisation (`settings.exact_display` is forced on). `settings` gives
    the precision, tiles and grain choice. `kept` supplies the kept channels (default: `rgb`'s) and
    the grain `grain="keep_source"` puts back; `guide` (H, W, 4: aligned Reference RGB + coverage)
    feeds a reference-guided model, corrected as `detail` (detail sigma, fine weight[, colour
    smoothing]) says (`models.reference_correction`, `GuideFrame.colour_smoothing`)."""
    settings = dataclasses.replace(settings or PipelineSettings(), exact_display=True)
    pipeline = DevicePipeline(model, metadata, torch.device(device), settings)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    decoded = _Decoded(0, tensor(rgb), None if kept is None else tensor(kept), "", 0.0)
    if guide is not None:
        decoded.guide = tensor(guide)
        decoded.guide_record = GuideFrame(0, None, None, "given", float(guide[..., 3].mean()), "", detail[0],
                                          fine_weight=detail[1], colour_smoothing=detail[2] if len(detail) > 2 else 0.0)
    launched = pipeline.launch([decoded])
    pipeline.finish(launched)
    return launched.display[0].numpy()


# --- the pipeline --------------------------------------------------------------------------------

class _StageTimes:
    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def summary(self, frames: int, wall: float) -> dict[str, dict[str, float]]:
        # decode and encode run in parallel threads: their seconds are thread-seconds, above wall time.
        return {stage: {"seconds": round(s, 4), "ms_per_frame": round(1e3 * s / max(frames, 1), 3),
                        "share_of_wall": round(s / wall, 3) if wall > 0 else 0.0}
                for stage, s in self.seconds.items()}


def _auto_workers(requested: int, share: float) -> int:
    return requested if requested > 0 else max(2, int((os.cpu_count() or 2) * share))


def _remove_stale_temp_files(frames: list[int], patterns: dict[str, Path], reporter: Reporter) -> None:
    """Temp files a killed run left for this run's frames (only these: farm chunks writing other
    frames into the same folders keep theirs)."""
    removed = 0
    for pattern in patterns.values():
        stems = {Path(frame_path(pattern.name, f)).stem for f in frames}
        removed += remove_temp_files(pattern.parent, stems)
    if removed:
        reporter.message(f"Removed {removed} temp file(s) an interrupted run left.")


def _frame_outputs(frame: int, patterns: dict[str, Path]) -> dict[str, Path]:
    return {kind: pattern.parent / frame_path(pattern.name, frame) for kind, pattern in patterns.items()}


def _encode_frame(frame: int, index: int, launched: _Launched, paths: dict[str, Path], base: dict[str, Any],
                  compression: str, archival: str) -> dict[str, float]:
    """Write one frame's outputs (the ones in `paths`); returns encode/colour seconds."""
    start = time.perf_counter()
    decoded = launched.decoded[index]
    attributes = {**base, f"{PROVENANCE}source_frame": int(frame), f"{PROVENANCE}source_file": decoded.source_file}
    colour_s = 0.0
    display = launched.display[index].numpy()
    if "aces" in paths:
        if archival == "ocio":
            from ..colour import display_to_aces2065

            colour_start = time.perf_counter()
            aces = display_to_aces2065(display).astype(np.float16)
            colour_s = time.perf_counter() - colour_start
        else:
            aces = launched.aces[index].numpy()
        write_exr(paths["aces"], aces, compression, {**ARCHIVAL_HEADER, **attributes})
    if "display" in paths:
        # The display frames stay lossless (evaluation reads them): DWAA applies to the archive only.
        lossless = compression if compression in ("zip", "piz") else "zip"
        write_exr(paths["display"], display, lossless, {**DISPLAY_HEADER, **attributes})
    if "review" in paths:
        write_png(paths["review"], launched.review[index].numpy(), {"png:compressionLevel": 3, **attributes})
    return {"encode": time.perf_counter() - start - colour_s, "colour": colour_s}


_upload_streams = threading.local()


def _upload(array: np.ndarray, device: torch.device) -> tuple[torch.Tensor, Any]:
    """Host array -> tensor for the model. On CUDA: page-locked, copied on this decode thread's own
    stream, so uploads overlap the model's work on the main stream; returns the copy's event.

    Each decode thread keeps its page-locked staging buffers (allocating pinned memory per 4K frame
    costs more than the copy); a buffer is reused once its previous copy has finished."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor, None
    stream = getattr(_upload_streams, "stream", None)
    if stream is None:
        stream = _upload_streams.stream = torch.cuda.Stream(device)
        _upload_streams.staging = {}
    staging: dict[tuple[Any, ...], list[tuple[torch.Tensor, Any]]] = _upload_streams.staging
    buffers = staging.setdefault((*tensor.shape, tensor.dtype), [])
    free = next((i for i, (_, event) in enumerate(buffers) if event is None or event.query()), None)
    if free is None:
        buffers.append((torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True), None))
        free = len(buffers) - 1
    pinned = buffers[free][0]
    pinned.copy_(tensor)
    with torch.cuda.stream(stream):
        on_device = pinned.to(device, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record(stream)
    buffers[free] = (pinned, copied)
    return on_device, copied


def _decode_frame(job: Job, frame: int, device: torch.device, planner: GuidePlanner | None = None) -> _Decoded:
    """Read one Source frame and start its upload. The frame travels as stored (a half file stays
    half: half the bytes, no float32 copy on the host); the device applies the pre-balance and any
    training degrain. A guided model's frame also gets its aligned Reference and coverage
    (`ml.guide`: partner, warp, agreement), built here on the host."""
    start = time.perf_counter()
    model_input = read_plate_frame(job.source, frame, keep_half=True)
    guide_array, record = None, None
    if planner is not None:
        aligned, cover, record = planner.guide(frame, source_frame(job, frame, balanced=True))
        if aligned is not None and cover is not None:
            guide_array = np.concatenate([aligned, cover[..., None]], axis=2).astype(np.float32)
    model_tensor, copied = _upload(model_input, device)
    guide_upload = None
    if guide_array is not None:
        guide_upload, copied = _upload(guide_array, device)  # same stream: its event covers both copies
    return _Decoded(frame, model_tensor, None, plate_frame_path(job.source, frame),
                    time.perf_counter() - start, copied, guide_upload, record)


def _output_plan(frames: list[int], patterns: dict[str, Path], model_sha: str, recipe: str, overwrite: bool,
                 workers: int) -> tuple[dict[int, dict[str, Path]], list[Path], int]:
    """(frame -> outputs to write, complete outputs of another model/recipe, damaged outputs)."""
    if overwrite:
        return {frame: _frame_outputs(frame, patterns) for frame in frames}, [], 0
    checks = [(frame, kind, path) for frame in frames for kind, path in _frame_outputs(frame, patterns).items()]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check") as pool:
        states = list(pool.map(lambda item: output_status(item[2], model_sha, recipe), checks))
    todo: dict[int, dict[str, Path]] = {frame: {} for frame in frames}
    others: list[Path] = []
    damaged = 0
    for (frame, kind, path), state in zip(checks, states, strict=True):
        if state == "other":
            others.append(path)
        elif state != "current":
            todo[frame][kind] = path
            damaged += state == "damaged"
    return todo, others, damaged


def run_inference(job: Job, reporter: Reporter, options: InferOptions | None = None) -> InferResult:
    """Run the model over the Source frames and write the outputs job.output asks for."""
    options = options or InferOptions()
    frames, patterns = _checked_request(job, options)
    setup = _load_setup(job, options, frames, patterns)
    plan = _plan_outputs(job, reporter, options, setup)
    for note in setup.notes:
        reporter.message(note, "warning")
    pipeline = _device_pipeline(job, options, setup, plan)
    reporter.message(f"Inference: {len(plan.to_write)} frame(s) on {setup.device.type} ({setup.precision}), "
                     f"{setup.decode_workers} decode / {setup.encode_workers} encode threads, "
                     f"archival transform {setup.archival}.")
    start = time.perf_counter()
    planner = GuidePlanner(job) if pipeline.guided else None
    if planner is not None and planner.blocky:
        reporter.message("The Reference shows video coding blocks (8 px grid): it sets the shot's coarser "
                         "colour; the model's prediction from the Source gives the finer colour detail where the "
                         "Source's luma shows picture there, not grain.")
    elif planner is not None and planner.half_chroma:
        reporter.message("The Reference's chroma has half its luma's resolution (4:2:0 video): it sets "
                         "the colour at twice its pixel size; the model's prediction gives the finer detail where "
                         "the Source's luma shows picture there, not grain.")
    run = _Run(job, reporter, pipeline, options, setup, plan, planner)
    run.run()
    wall = time.perf_counter() - start
    guide = _write_guide_report(job, run.guide_records) if planner is not None else {}
    notes = [*setup.notes, *_run_notes(job, pipeline, guide)]
    outputs = {kind: str(pattern) for kind, pattern in patterns.items()}
    if job.output.review == "movie" and frames:
        notes.append(_write_movie(job, frames, patterns, bool(plan.to_write), reporter, outputs))
    written = plan.to_write
    return InferResult(frames=frames, written=written, skipped=plan.skipped, outputs=outputs, model=str(setup.path),
                       model_hash=setup.sha, recipe_hash=setup.recipe, device=str(setup.device),
                       precision=setup.precision, seconds=wall, fps=len(written) / wall if wall > 0 and written else 0.0,
                       stages=run.times.summary(len(written), wall), notes=[n for n in notes if n], guide=guide)


@dataclass
class _Setup:
    """What a run fixes before it reads a frame: the frames and outputs, the model, the recipe."""

    frames: list[int]
    patterns: dict[str, Path]
    device: torch.device
    precision: str
    path: Path
    model: RecoveryModel
    metadata: dict[str, Any]
    degrain: float
    sha: str
    recipe: str
    archival: str
    base: dict[str, Any]  # provenance every output frame's header carries
    decode_workers: int
    encode_workers: int
    notes: list[str]  # how the job differs from what the model was trained on


@dataclass
class _Plan:
    """The outputs each frame still needs, and which frames need some."""

    todo: dict[int, dict[str, Path]]
    to_write: list[int]
    skipped: list[int]


def _checked_request(job: Job, options: InferOptions) -> tuple[list[int], dict[str, Path]]:
    """Refuse unknown options and outputs that would land in a plate folder; (frames, output patterns)."""
    if options.archival not in ("lut", "ocio"):
        raise FilmRecoveryError(f"unknown archival transform {options.archival!r}.", where="--archival",
                                fix="Use lut (baked 3D LUT on the device) or ocio (exact, CPU).")
    if job.output.compression not in COMPRESSIONS:
        raise FilmRecoveryError(f"unknown EXR compression {job.output.compression!r}.",
                                where="job.output.compression", fix="Use zip, piz or dwaa.")
    frames = options.frames if options.frames is not None else select_frames(job)
    patterns = output_patterns(job)
    if not patterns:
        raise FilmRecoveryError("no outputs are enabled.", where="job.output",
                                fix="Enable the display EXR, the archival EXR or review proxies.")
    check_output_locations(job, patterns)
    return frames, patterns


def _load_setup(job: Job, options: InferOptions, frames: list[int], patterns: dict[str, Path]) -> _Setup:
    """Resolve the device and precision, load the model (refused for another branch), fix the recipe."""
    device = resolve_device(options.device)
    if options.dtype not in ("auto", "bf16", "fp16", "fp32"):
        raise FilmRecoveryError(f"unknown precision {options.dtype!r}.", where="--dtype", fix="Use bf16, fp16 or fp32.")
    precision = precision_name(device, options.dtype)
    path = resolve_model_path(job, options.model_path)
    model, metadata = ckpt.load_model(path, device)
    if metadata.get("branch") != job.branch:
        raise FilmRecoveryError(f"the model was trained for the {metadata.get('branch')} branch, the job is "
                                f"{job.branch}.", where=str(path), fix="Pick the model trained for this branch.")
    degrain = training_degrain(job, metadata)
    recipe = recipe_hash(job, degrain, precision, options, guided=model.config.guided)
    archival = "ocio" if options.archival == "ocio" else f"lut{options.lut_size}"
    # Measured host CPU per 2K frame: decode ~50 ms, archival encode ~90 (PIZ) to ~160 ms (ZIP).
    return _Setup(frames, patterns, device, precision, path, model, metadata, degrain, model_hash(metadata), recipe,
                  archival, base=provenance(path, metadata, recipe, precision, archival),
                  decode_workers=_auto_workers(options.decode_workers, 0.375),
                  encode_workers=_auto_workers(options.encode_workers, 0.75),
                  notes=_training_notes(job, metadata, degrain))


def _training_notes(job: Job, metadata: dict[str, Any], degrain: float) -> list[str]:
    """Where the job's Source chain now differs from the one the model was trained on."""
    notes: list[str] = []
    if degrain != job.cleanup.source_degrain:
        notes.append(f"Source degrain {degrain:g} as the model was trained (the job now says "
                     f"{job.cleanup.source_degrain:g}).")
    trained_balance = (metadata.get("colour") or {}).get("balance")
    if isinstance(trained_balance, dict) and trained_balance != dataclasses.asdict(job.balance):
        notes.append("The Source balance changed since training; the model sees the job's current balance.")
    return notes


def _plan_outputs(job: Job, reporter: Reporter, options: InferOptions, setup: _Setup) -> _Plan:
    """Check the existing outputs: current ones are skipped, damaged ones written again, another
    model's or recipe's refused (unless overwriting)."""
    frames, patterns = setup.frames, setup.patterns
    reporter.progress(0, len(frames), "infer", "checking existing outputs")
    _remove_stale_temp_files(frames, patterns, reporter)
    overwrite = options.overwrite or job.output.overwrite
    todo, others, damaged = _output_plan(frames, patterns, setup.sha, setup.recipe, overwrite, setup.encode_workers)
    if others:
        raise FilmRecoveryError(f"{len(others)} existing output file(s) were written by another model or recipe "
                                f"(first: {others[0].name}); they are not overwritten.", where=str(others[0].parent),
                                fix="Re-run with --overwrite (or output.overwrite) to replace them, or move them away.")
    if damaged:
        reporter.message(f"{damaged} damaged output file(s) (unreadable or truncated) are written again.", "warning")
    to_write = [f for f in frames if todo[f]]
    skipped = [f for f in frames if not todo[f]]
    if skipped:
        reporter.message(f"{len(skipped)} of {len(frames)} frame(s) already written by this model and recipe; "
                         f"writing {len(to_write)}.")
    return _Plan(todo, to_write, skipped)


def _device_pipeline(job: Job, options: InferOptions, setup: _Setup, plan: _Plan) -> DevicePipeline:
    """The model on the device, with the archival LUT only when archival frames are still to write."""
    wants_lut = "aces" in setup.patterns and options.archival == "lut" and plan.to_write
    lut = _archival_lut(options.lut_size) if wants_lut else None
    settings = PipelineSettings(dtype=options.dtype, tile=options.tile, overlap=options.overlap,
                                want_review="review" in setup.patterns, exact_display=options.archival == "ocio",
                                compile=options.compile, balance=job.balance if job.balance.enabled else None,
                                grain=job.output.grain, degrain=setup.degrain)
    return DevicePipeline(setup.model, setup.metadata, setup.device, settings, lut)


def _run_notes(job: Job, pipeline: DevicePipeline, guide: dict[str, Any]) -> list[str]:
    """What the run found: a guided model without a Reference, out-of-memory fallbacks, unguided frames."""
    notes: list[str] = []
    if pipeline.guided and not job.reference.path:
        notes.append("Reference-guided model but no Reference plate: every frame is predicted from the Source alone.")
    notes += pipeline.notes
    if guide.get("unguided_frames"):
        notes.append(f"{len(guide['unguided_frames'])} frame(s) had no usable Reference and were predicted from the "
                     f"Source alone (first: {guide['unguided_frames'][0]}; see {guide['report']}).")
    return notes


def _write_guide_report(job: Job, records: list[GuideFrame]) -> dict[str, Any]:
    """work/infer/guide.json: each frame's Reference partner, warp and coverage (what QC reads)."""
    summary = guide_summary(sorted(records, key=lambda r: r.source_frame))
    if not summary:
        return {}
    if job.branch == "chroma":  # output.grain on this branch: the prediction's colour grain (apply_grain_choice)
        summary["colour_grain"] = "reduced" if job.output.grain == "clean" else "kept"
    path = job.work_path("infer", "guide.json")
    from ..imageio import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"summary": summary, "frames": [dataclasses.asdict(r) for r in records]},
                                  indent=1), encoding="utf-8")
    return {**summary, "report": str(path)}


def _write_movie(job: Job, frames: list[int], patterns: dict[str, Path], changed: bool, reporter: Reporter,
                 outputs: dict[str, str]) -> str:
    from ..imageio import read_image
    from ..writers import review_movie_available, write_review_movie

    if not review_movie_available():
        note = ("No review movie: no ffmpeg (install the imageio-ffmpeg package or put ffmpeg on PATH; "
                "OpenImageIO's wheel cannot write movies); the review PNGs are written, encode them in "
                "Blender's Sequencer or another tool.")
        reporter.message(note, "warning")
        return note
    path = movie_path(job, frames)
    outputs["movie"] = str(path)
    if path.exists() and not changed and not job.output.overwrite:
        return ""
    source = patterns.get("display", patterns["review"])
    reporter.message(f"Encoding the review movie {path.name}.")
    write_review_movie(path, (read_image(str(source.parent / frame_path(source.name, f))) for f in frames),
                       job.source.fps)
    reporter.preview(str(path), "review_movie")
    return ""


class _Run:
    """One pass of the decode -> device -> encode pipeline over the frames still to write."""

    def __init__(self, job: Job, reporter: Reporter, pipeline: DevicePipeline, options: InferOptions,
                 setup: _Setup, plan: _Plan, planner: GuidePlanner | None = None):
        self.job, self.reporter, self.pipeline, self.options = job, reporter, pipeline, options
        self.todo, self.frames = plan.todo, plan.to_write
        self.total, self.done = len(setup.frames), len(plan.skipped)
        self.base, self.planner = setup.base, planner
        self.times = _StageTimes()
        self.guide_records: list[GuideFrame] = []
        self.decode_pool = ThreadPoolExecutor(max_workers=setup.decode_workers, thread_name_prefix="decode")
        self.encode_pool = ThreadPoolExecutor(max_workers=setup.encode_workers, thread_name_prefix="encode")
        self.prefetch = setup.decode_workers * 2
        self.max_encoding = setup.encode_workers * 2  # frames whose pixels wait in host memory for encode
        self.pending: deque[Future] = deque()  # decodes in flight, in frame order
        self.upcoming = iter(self.frames)
        self.held: _Decoded | None = None  # decoded, but of another size than the last batch
        self.encoding: dict[Future, int] = {}
        self.written = 0
        self.started = 0.0
        self.previewed = False

    def run(self) -> None:
        """Decode ahead, launch batches, encode what lands; on any error drop the queued work."""
        if not self.frames:
            return
        self.started = time.perf_counter()
        try:
            self._fill()
            self._launch_all()
            while self.encoding:
                self._collect(block=True)
        except BaseException:
            for future in self.pending:
                future.cancel()
            raise
        finally:
            # On cancel: queued work is dropped, writes in progress finish (atomic: whole files only).
            self.decode_pool.shutdown(wait=True, cancel_futures=True)
            self.encode_pool.shutdown(wait=True, cancel_futures=True)

    def _fill(self) -> None:
        """Keep `prefetch` decodes running ahead of the device."""
        while len(self.pending) < self.prefetch:
            frame = next(self.upcoming, None)
            if frame is None:
                return
            self.pending.append(self.decode_pool.submit(_decode_frame, self.job, frame, self.pipeline.device,
                                                        self.planner))

    def _launch_all(self) -> None:
        """Every batch onto the device; the previous one goes to encode once the next is queued."""
        in_flight: _Launched | None = None
        while self.pending or self.held is not None:
            launched = self.pipeline.launch(self._next_batch())
            if in_flight is not None:  # the device already works on `launched` while this one lands
                self._hand_off(in_flight)
            in_flight = launched
            self._collect(block=False)
        if in_flight is not None:
            self._hand_off(in_flight)

    def _next_batch(self) -> list[_Decoded]:
        """The next decoded frames of one size, up to the batch limit (one of another size is held)."""
        batch = [self.held] if self.held is not None else [self._take()]
        self.held = None
        self._fill()
        limit = self._batch_limit(batch[0])
        while len(batch) < limit and self.pending:
            nxt = self._take()
            self._fill()
            if nxt.model_input.shape != batch[0].model_input.shape:
                self.held = nxt
                break
            batch.append(nxt)
        return batch

    def _take(self) -> _Decoded:
        decoded = self.pending.popleft().result()
        self.times.add("decode", decoded.seconds)
        if decoded.guide_record is not None:
            self.guide_records.append(decoded.guide_record)
        return decoded

    def _batch_limit(self, decoded: _Decoded) -> int:
        if self.options.batch > 0:
            limit = self.options.batch
        elif self.pipeline.cuda:
            limit = max(1, CUDA_BATCH_PIXELS // (decoded.model_input.shape[0] * decoded.model_input.shape[1]))
        else:
            limit = 1
        return min(limit, self.pipeline.batch_limit or limit)

    def _hand_off(self, launched: _Launched) -> None:
        for stage, seconds in self.pipeline.finish(launched).items():
            self.times.add(stage, seconds)
        for decoded in launched.decoded:  # copied to the device: the inputs need not wait for encode
            decoded.model_input = decoded.kept = decoded.guide = None
        archival = self.options.archival
        for index, decoded in enumerate(launched.decoded):
            while len(self.encoding) >= self.max_encoding:
                self._collect(block=True)
            future = self.encode_pool.submit(_encode_frame, decoded.frame, index, launched,
                                             self.todo[decoded.frame], self.base, self.job.output.compression,
                                             archival)
            self.encoding[future] = decoded.frame

    def _collect(self, block: bool) -> None:
        if not self.encoding:
            return
        finished, _ = wait(list(self.encoding), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in finished:
            frame = self.encoding.pop(future)
            for stage, seconds in future.result().items():
                self.times.add(stage, seconds)
            self.written += 1
            self.done += 1
            self._report(frame)

    def _report(self, frame: int) -> None:
        now = time.perf_counter()
        review = self.todo[frame].get("review")
        if review is not None and not self.previewed:
            self.reporter.preview(str(review), "review")
            self.previewed = True
        fps = self.written / max(now - self.started, 1e-9)
        remaining = len(self.frames) - self.written
        self.reporter.progress(self.done, self.total, "infer", f"frame {frame}, {fps:.2f} fps", fps=fps,
                               eta_s=remaining / fps if fps > 0 else None, frame=frame)
