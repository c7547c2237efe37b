"""The training loop: random crops of the exported dataset, AdamW with warm-up + cosine decay,
Charbonnier/L1 loss on the branch's channels, validation PSNR against the untouched Source,
atomic safetensors checkpoints with exact resume, contact sheets and a loss curve.

Runs on CUDA (bf16 autocast), Apple MPS or the CPU (fp32). Under `torchrun` (WORLD_SIZE > 1)
it trains data-parallel: the batch is split across processes, rank 0 writes every file and
event, other ranks stay silent.

Crops are drawn from a generator seeded by (seed, step, rank), so a resumed run draws exactly
the crops the uninterrupted run would have, and its weights match bit for bit on the CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..baseline import dataset_band_sigma, fit_from_dataset
from ..dataset import check_dataset_recipe
from ..dataset_io import Dataset, DatasetPair, load_dataset
from ..errors import Cancelled, FilmRecoveryError
from ..events import Reporter
from ..guide import coding_block_sigma
from ..imageio import remove_temp_files, write_png
from ..job import Job, job_to_dict
from ..plots import contact_sheet, write_loss_curve
from ..primitives import downscale
from . import checkpoint as ckpt
from .models import (
    CHANNEL_NAMES,
    ModelConfig,
    build_model,
    frame_coords,
    gaussian_blur,
    guide_tensor,
    model_config,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from .predict import YCBCR_CONVENTION, amp_dtype_for, predict_ycbcr, resolve_device

KEEP_CHECKPOINTS = 2
REPORT_INTERVAL_S = 0.5
MAX_HISTORY = 4000
VALIDATION_TILE = 1024  # frames larger than this are validated in tiles
CHARBONNIER_EPS = 1e-3


@dataclass
class TrainResult:
    out_dir: str
    final_model: str
    best_model: str
    steps: int
    completed: bool
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _SilentReporter(Reporter):
    """Non-zero DDP ranks report nothing."""

    def emit(self, event: dict) -> None:
        pass


@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _start_distributed(device_name: str) -> tuple[_Distributed, torch.device]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Distributed(), resolve_device(device_name)
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return _Distributed(dist.get_rank(), dist.get_world_size()), device


def plan_steps(steps: int, epochs: int, batch: int, train_pairs: int) -> tuple[int, float]:
    """(steps, epochs): `epochs` > 0 sets steps = ceil(epochs x pairs / batch), else steps rule."""
    if epochs > 0:
        steps = math.ceil(epochs * train_pairs / batch)
    return max(int(steps), 1), steps * batch / train_pairs


def learning_rate_at(step: int, total: int, base: float) -> float:
    """Linear warm-up over the first 5 % (at most 200 steps), then cosine decay to 2 % of base."""
    warmup = max(1, min(200, total // 20))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


@contextmanager
def _deferred_stop_signals() -> Iterator[dict[str, bool]]:
    """SIGTERM/SIGINT set a flag the loop checks between steps, so a Cancel never lands half
    way through an optimizer step (the checkpoint written on the way out is then consistent)."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def _request(signum, frame):  # noqa: ARG001 - signal handler signature
        flag["stop"] = True

    previous = {s: signal.signal(s, _request) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


UNET_GRADE_LR_SCALE = 0.25  # see _Trainer: a UNet on the starting grade at the full rate swung
# A reference-guided model must also predict where the Reference is missing (bars, subtitles, frames
# without one): this share of training crops loses its guide, and this share loses a rectangle of it.
GUIDE_DROP = 0.3
GUIDE_HOLE = 0.2


class _TrainingData:
    """Source and target YCbCr of every pair plus each pixel's place in its Source frame (and, for a
    reference-guided model, the aligned Reference's YCbCr and coverage), held as (8 or 12, H, W)
    float32 tensors (on the device when they fit), cropped per step from a generator seeded by
    (seed, step, rank). The position and guide channels ride through every crop and augmentation
    with their pixels, so a flipped crop still knows where its pixels came from."""

    def __init__(self, pairs: list[DatasetPair], device: torch.device, storage: torch.device, guided: bool = False):
        self.device = device
        self.guided = guided
        self.tensors = [self._to_tensor(p, guided).to(storage) for p in pairs]

    @staticmethod
    def _to_tensor(pair: DatasetPair, guided: bool = False) -> torch.Tensor:
        both = np.concatenate([pair.input, pair.target], axis=2).transpose(2, 0, 1)
        both_t = torch.from_numpy(np.ascontiguousarray(both)).unsqueeze(0)
        coords = frame_coords(both.shape[1], both.shape[2], pair.origin, pair.frame_size)
        parts = [rgb_to_ycbcr(both_t[:, :3]), rgb_to_ycbcr(both_t[:, 3:]), coords]
        if guided:
            assert pair.guide is not None and pair.coverage is not None
            guide = torch.from_numpy(np.ascontiguousarray(pair.guide.transpose(2, 0, 1)))[None]
            parts.append(guide_tensor(guide, torch.from_numpy(np.ascontiguousarray(pair.coverage))[None, None]))
        return torch.cat(parts, dim=1)[0]

    def sample(self, rng: np.random.Generator, batch: int, crop: int, augment: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        picks = rng.integers(len(self.tensors), size=batch)
        crops = []
        for index in picks:
            image = self.tensors[index]
            if augment:
                crops.append(self._augmented_crop(rng, image, crop))
            else:
                h, w = image.shape[-2:]
                y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
                crops.append(image[:, y:y + crop, x:x + crop])
        both = torch.stack(crops).to(self.device, non_blocking=True)
        guide = self._drop_guide(rng, both[:, 8:12].clone()) if self.guided else None
        return both[:, :3], both[:, 3:6], both[:, 6:8], guide

    @staticmethod
    def _drop_guide(rng: np.random.Generator, guide: torch.Tensor) -> torch.Tensor:
        """Whole crops and rectangles without the Reference (coverage 0), as at inference where it is missing."""
        size = guide.shape[-1]
        for i in range(guide.shape[0]):
            draw = rng.random()
            if draw < GUIDE_DROP:
                guide[i, 3] = 0.0
            elif draw < GUIDE_DROP + GUIDE_HOLE:
                h, w = (int(v) for v in rng.integers(size // 4, size + 1, size=2))
                y, x = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
                guide[i, 3, y:y + h, x:x + w] = 0.0
        return guide

    @staticmethod
    def _augmented_crop(rng: np.random.Generator, image: torch.Tensor, crop: int) -> torch.Tensor:
        """Same flip / 90-degree turn / scale 0.8-1.25 / sub-pixel offset for input and target.
        No exposure or colour change: for chroma that would teach false colour."""
        h, w = image.shape[-2:]
        scale = min(math.exp(rng.uniform(math.log(0.8), math.log(1.25))), min(h, w) / crop)
        half = crop * scale / 2.0
        cx, cy = rng.uniform(half, w - half), rng.uniform(half, h - half)
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        offsets = (torch.arange(crop, dtype=torch.float32, device=image.device) + 0.5 - crop / 2.0) * scale
        u, v = offsets.view(1, crop).expand(crop, crop), offsets.view(crop, 1).expand(crop, crop)
        if flip:
            u = -u
        for _ in range(turns):
            u, v = -v, u
        grid = torch.stack([(cx + u) * (2.0 / w) - 1.0, (cy + v) * (2.0 / h) - 1.0], dim=-1)
        return F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="border",
                             align_corners=False)[0]


def _batch_too_large(exc: RuntimeError) -> bool:
    """Out of GPU memory, or past a kernel's 32-bit element limit (huge batch x crop)."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "INT_MAX" in str(exc)


def _reconstruction_loss(out: torch.Tensor, target: torch.Tensor, kind: str, gradient_weight: float,
                         band_sigma: float = 0.0) -> torch.Tensor:
    """Charbonnier (or L1) plus a gradient term, on the difference blurred by `band_sigma` px when
    the target's finer detail is not picture (a block-coded or SD Reference: `baseline.dataset_band_sigma`)."""
    diff = out - target
    if band_sigma > 0:
        diff = gaussian_blur(diff.float(), band_sigma, "reflect")
    loss = diff.abs().mean() if kind == "l1" else torch.sqrt(diff * diff + CHARBONNIER_EPS ** 2).mean()
    if gradient_weight > 0:
        loss = loss + gradient_weight * ((diff[..., 1:, :] - diff[..., :-1, :]).abs().mean()
                                         + (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean())
    return loss


def _fit_crop(requested: int, config: ModelConfig, pairs: list[DatasetPair], reporter: Reporter) -> int:
    smallest = min(min(p.input.shape[:2]) for p in pairs)
    crop = min(requested, smallest) // config.multiple * config.multiple
    if crop < config.multiple:
        raise FilmRecoveryError(f"the dataset's frames ({smallest} px on the short side) are smaller than this "
                                f"model's minimum crop of {config.multiple} px.", where="training.crop_size",
                                fix="Export a larger crop, or pick a smaller model.")
    if crop != requested:
        reporter.message(f"Crop size {requested} -> {crop} (fits the frames and is a multiple of "
                         f"{config.multiple} for this model).", "warning")
    return crop


def _dataset_fits_device(dataset: Dataset, device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    needed = sum(p.input.nbytes + p.target.nbytes for p in dataset.pairs)
    free, _ = torch.cuda.mem_get_info(device)
    return needed < 0.3 * free


def _recipe_hash(job: Job) -> str:
    return hashlib.sha256(json.dumps(job_to_dict(job), sort_keys=True).encode()).hexdigest()


def _to_rgb_image(ycbcr: torch.Tensor) -> np.ndarray:
    return ycbcr_to_rgb(ycbcr[None].float())[0].permute(1, 2, 0).cpu().numpy()


class _Trainer:
    def __init__(self, job: Job, reporter: Reporter, dataset: Dataset, out_dir: Path, dist: _Distributed,
                 device: torch.device):
        self.job, self.dataset, self.out_dir, self.dist, self.device = job, dataset, out_dir, dist, device
        self.reporter = reporter if dist.is_main else _SilentReporter()
        t = job.training
        guided = t.reference_guided and dataset.has_guides
        if t.reference_guided and not dataset.has_guides:
            self.reporter.message("This dataset was exported without the aligned Reference guides: training a "
                                  "Source-only model. Export the dataset again for a reference-guided one.", "warning")
        self.config = model_config(t.model, t.size, dataset.branch, position=t.position, guided=guided,
                                   colour_lut=t.start_from_grade and dataset.branch == "chroma")
        self.channels = list(self.config.predicted_channels)
        self.channel_label = "".join(CHANNEL_NAMES[c] for c in self.channels)
        self.amp = amp_dtype_for(device)
        train_pairs = dataset.training_pairs
        self.crop = _fit_crop(t.crop_size, self.config, train_pairs, self.reporter)
        self.total_steps, self.epochs = plan_steps(t.steps, t.epochs, t.batch, len(train_pairs))
        self.batch = max(1, t.batch // dist.world_size)  # per process
        self.validation_pairs = dataset.holdout_pairs or train_pairs
        self.validation_split = "holdout" if dataset.holdout_pairs else "train"
        # The chroma branch learns the Reference's colour only as coarse as the baseline trusts it
        # (`baseline.dataset_band_sigma`: a block-coded Reference's blocks, an SD transfer's scale).
        # Measured on the field corpus (held-out frames against truth, 200 steps): on the block-coded
        # kind, taught its blocks the model scored 36.5 dB PSNR-CbCr / CIEDE2000 2.89 at 1000 steps, taught
        # only coarser colour 38.3 / 2.57 (before the starting grade). With the starting grade, this band on
        # the SD kinds took PAL speed-up from 28.2 / 4.51 to 32.1 / 3.51 and pan and scan from 38.6 / 2.15 to
        # 39.4 / 2.06; NTSC pulldown went from 40.4 / 1.90 to 40.5 / 2.00.
        self.band_sigma = dataset_band_sigma(dataset) if dataset.branch == "chroma" else 0.0
        if self.band_sigma > 0:
            why = "shows video coding blocks" if coding_block_sigma(dataset) > 0 else "is coarser than the Source"
            self.reporter.message(f"The Reference {why}: the model learns only its colour coarser than "
                                  f"{self.band_sigma:.1f} px, as the baseline does.")
        self.checkpoints = out_dir / "checkpoints"
        self.previews = out_dir / "previews"
        self.loss_history: list[list[float]] = []
        self.val_history: list[list[float]] = []
        self.best: dict[str, Any] = {}
        self.source_psnr: float | None = None
        self.fallback_psnr: float | None = None  # a guided model's validation without its guide
        self.last_validated = -1
        self.last_checkpoint = -1
        self._loss_bin = [0.0, 0]  # running sum and count of the curve point being built

        torch.manual_seed(t.seed)
        self.model: torch.nn.Module = build_model(self.config).to(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self.model = self.model.to(memory_format=torch.channels_last)
        # A UNet started from the grade starts near a good answer: at the full peak rate its prediction
        # from the Source alone swung on the sample shot's held-out pairs (38.3 dB down to -6.7 and back
        # within 50 steps); at a quarter it climbed steadily (bench/bench_time_to_beat.py curves).
        self.learning_rate = t.learning_rate * (UNET_GRADE_LR_SCALE if self.config.kind == "unet"
                                                and self.config.colour_lut else 1.0)
        if self.learning_rate != t.learning_rate:
            self.reporter.message(f"A UNet from the baseline grade trains at a quarter of the learning rate "
                                  f"({self.learning_rate:.2g}).")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.learning_rate, weight_decay=1e-4)
        storage = device if _dataset_fits_device(dataset, device) else torch.device("cpu")
        self.data = _TrainingData(train_pairs, device, storage, guided)
        self._fit_tone()

    def _fit_tone(self) -> None:
        """Fit a model's tone curve (if it has one) on the training pairs' luma; resumed and initial
        weights replace it with their own."""
        tone = getattr(ckpt.unwrap(self.model), "tone", None)
        if tone is None:
            return
        # Every pixel up to ~4 M of them (a 2K set of 64 pairs has 200 M: a stride keeps it cheap).
        stride = max(1, sum(t[0].numel() for t in self.data.tensors) // 4_000_000)
        tone.fit(torch.cat([t[0].flatten()[::stride].cpu() for t in self.data.tensors]),
                 torch.cat([t[3].flatten()[::stride].cpu() for t in self.data.tensors]))

    def _fit_grade(self) -> None:
        """Fit a chroma model's starting grade (if it has one): the shot's baseline, the same
        `ml.baseline.fit_from_dataset` the `baseline` stage runs with this seed."""
        grade = getattr(ckpt.unwrap(self.model), "grade", None)
        if grade is None:
            return
        started = time.perf_counter()
        fit = fit_from_dataset(self.dataset, seed=self.job.training.seed)
        grade.load(torch.from_numpy(fit.params))
        self.reporter.message(f"The model starts from the shot's baseline grade (3D LUT, fit RMSE "
                              f"{fit.stats['fit_rmse']:.4f}, {time.perf_counter() - started:.1f} s).")

    # -- metadata -----------------------------------------------------------------------------
    def metadata(self, step: int) -> dict[str, Any]:
        training = dataclasses.asdict(self.job.training)
        training.update(steps=self.total_steps, crop_size=self.crop, batch=self.batch * self.dist.world_size)
        return {"branch": self.dataset.branch,
                "predicted_channels": [CHANNEL_NAMES[c] for c in self.channels],
                "colour": {**self.dataset.colour, "ycbcr": YCBCR_CONVENTION},
                "recipe_hash": _recipe_hash(self.job), "dataset_hash": self.dataset.manifest_hash,
                "dataset_dir": str(self.dataset.folder), "training": training, "step": step,
                "metrics": self.metrics(), "torch": torch.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {"channels": self.channel_label, "validation_split": self.validation_split}
        if self.loss_history:
            metrics["loss"] = self.loss_history[-1][1]
        if self.val_history:
            metrics.update(val_psnr=self.val_history[-1][1], source_psnr=self.source_psnr,
                           gain_db=self.val_history[-1][1] - (self.source_psnr or 0.0))
        if self.best:
            metrics.update(best_psnr=self.best["psnr"], best_step=self.best["step"])
        if self.fallback_psnr is not None:
            metrics["fallback_psnr"] = self.fallback_psnr
        return metrics

    def training_state(self) -> dict[str, Any]:
        return {"batch": self.batch, "loss_history": self.loss_history, "val_history": self.val_history,
                "best": self.best, "source_psnr": self.source_psnr}

    # -- resume / initial weights -------------------------------------------------------------
    def restore(self, resume: bool) -> int:
        """The step to start from: the last checkpoint's when resuming (else they are removed), or 0."""
        if self.dist.is_main:
            removed = len(ckpt.remove_incomplete(self.checkpoints)) + remove_temp_files(self.out_dir)
            if removed:
                self.reporter.message(f"Removed {removed} incomplete file(s) an interrupted run left.")
        existing = ckpt.list_checkpoints(self.checkpoints)
        if existing and not resume:
            if self.dist.is_main:
                for _, path in existing:
                    ckpt.remove_checkpoint(path)
                self.reporter.message(f"Starting over: removed {len(existing)} earlier checkpoint(s).")
            existing = []
        if existing:
            return self._resume(*existing[-1])
        if self.job.training.init_weights:
            meta = ckpt.load_weights_into(self.model, self.job.training.init_weights)
            self.reporter.message(f"Initial weights from {self.job.training.init_weights} "
                                  f"(trained {meta.get('step', '?')} steps).")
        self._fit_grade()  # this shot's grade, also under initial weights from another shot
        return 0

    def _resume(self, step: int, path: Path) -> int:
        """Load a checkpoint of this model and dataset, with its optimizer and training state."""
        meta = ckpt.read_checkpoint_metadata(path)
        fix = "Train with resume off (--no-resume) to start over, or choose another output folder."
        theirs, ours = dict(meta.get("model") or {}), self.config.to_dict()
        if theirs != ours:
            grade_fix = ckpt.starting_grade_fix(theirs, ours, "resume it")
            raise FilmRecoveryError(f"the checkpoint is a {meta.get('model')} model; this run asks for "
                                    f"{ours}.", where=str(path), fix=f"{grade_fix} Or: {fix}" if grade_fix else fix)
        if meta.get("dataset_hash") != self.dataset.manifest_hash:
            raise FilmRecoveryError("the checkpoint was trained on a different dataset export.",
                                    where=str(path), fix=fix)
        meta = ckpt.load_checkpoint(path, self.model, self.optimizer)
        state = meta.get("training_state", {})
        self.batch = int(state.get("batch", self.batch))
        self.loss_history = state.get("loss_history", [])
        self.val_history = state.get("val_history", [])
        self.best = state.get("best", {})
        self.source_psnr = state.get("source_psnr")
        self.last_validated = self.last_checkpoint = step
        self.reporter.message(f"Resuming from step {step} ({path.name}).")
        return step

    # -- one optimisation step ----------------------------------------------------------------
    def step(self, step: int, ddp_model: torch.nn.Module) -> torch.Tensor:
        t = self.job.training
        rng = np.random.default_rng([t.seed, step, self.dist.rank])
        source, target, coords, guide = self.data.sample(rng, self.batch, self.crop, t.augment)
        if self.device.type == "cuda":
            source = source.contiguous(memory_format=torch.channels_last)
        lr = learning_rate_at(step, self.total_steps, self.learning_rate)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        out = ddp_model(source, amp_dtype=self.amp, coords=coords, guide=guide)
        loss = _reconstruction_loss(out[:, self.channels], target[:, self.channels], t.loss, t.gradient_loss,
                                    self.band_sigma)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss.detach()

    def guarded_step(self, step: int, ddp_model: torch.nn.Module) -> torch.Tensor:
        """Out of GPU memory: halve the batch and retry; fail clearly once the batch is 1."""
        while True:
            try:
                return self.step(step, ddp_model)
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
                if not _batch_too_large(exc):
                    raise
            # Outside the except block, so the failed step's tensors (held by the traceback) are freed.
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            if self.batch <= 1:
                raise FilmRecoveryError(
                    f"out of GPU memory even at batch 1 with {self.crop} px crops ({self.config.size} "
                    f"{self.config.kind}).", where="training.crop_size",
                    fix="Use a smaller crop size or model size, or close other GPU programs.")
            self.batch //= 2
            self.reporter.message(f"Batch too large for the GPU (out of memory): retrying with batch "
                                  f"{self.batch} per GPU.", "warning")

    # -- validation and pictures ----------------------------------------------------------------
    def _predict(self, source: torch.Tensor, coords: torch.Tensor | None = None,
                 guide: torch.Tensor | None = None) -> torch.Tensor:
        try:
            return predict_ycbcr(ckpt.unwrap(self.model), source, self.amp, tile=VALIDATION_TILE, coords=coords,
                                 guide=guide)
        except torch.cuda.OutOfMemoryError:
            pass
        torch.cuda.empty_cache()  # outside the except block: the failed attempt's tensors are gone
        return predict_ycbcr(ckpt.unwrap(self.model), source, self.amp, tile=VALIDATION_TILE // 4, coords=coords,
                             guide=guide)

    def _pair_tensor(self, pair: DatasetPair) -> torch.Tensor:
        return _TrainingData._to_tensor(pair, self.config.guided).to(self.device)

    @staticmethod
    def _guide_of(both: torch.Tensor) -> torch.Tensor | None:
        return both[:, 8:12] if both.shape[1] > 8 else None

    def validate(self, step: int) -> None:
        """PSNR on the validation pairs; a guided model is also scored without its guide (its
        fallback where the Reference is missing) and its best model is chosen on both together."""
        self.model.eval()
        out_sq, fallback_sq, src_sq, count = 0.0, 0.0, 0.0, 0
        for pair in self.validation_pairs:
            both = self._pair_tensor(pair)[None]
            source, target, coords = both[:, :3], both[:, 3:6], both[:, 6:8]
            out = self._predict(source, coords, self._guide_of(both))
            out_sq += float(((out[:, self.channels] - target[:, self.channels]) ** 2).sum())
            if self.config.guided:
                alone = self._predict(source, coords, None)
                fallback_sq += float(((alone[:, self.channels] - target[:, self.channels]) ** 2).sum())
            src_sq += float(((source[:, self.channels] - target[:, self.channels]) ** 2).sum())
            count += target[:, self.channels].numel()
        self.model.train()
        value, self.source_psnr = psnr(out_sq / count), psnr(src_sq / count)
        extra = {"fallback_psnr": psnr(fallback_sq / count)} if self.config.guided else {}
        self.val_history.append([step, value])
        self.last_validated = step
        self.reporter.metric("val_psnr", value, step=step, source_psnr=self.source_psnr,
                             gain_db=value - self.source_psnr, channels=self.channel_label,
                             split=self.validation_split, **extra)
        score = psnr((out_sq + fallback_sq) / (2 * count)) if self.config.guided else value
        if self.config.guided:
            self.fallback_psnr = extra["fallback_psnr"]
        if not self.best or score > self.best.get("score", self.best["psnr"]):
            self.best = {"step": step, "psnr": value, "score": score}
            ckpt.save_model(self.out_dir / "model_best.safetensors", self.model, self.metadata(step))

    def write_previews(self, step: int) -> None:
        self.model.eval()
        rng = np.random.default_rng([self.job.training.seed, 7919])  # same crops on every sheet
        size = min(self.crop, 192, *(min(p.input.shape[:2]) for p in self.validation_pairs))
        rows = []
        for _ in range(4):
            pair = self.validation_pairs[int(rng.integers(len(self.validation_pairs)))]
            h, w = pair.input.shape[:2]
            y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
            both = self._pair_tensor(pair)[:, y:y + size, x:x + size]
            out = self._predict(both[None, :3], both[None, 6:8], self._guide_of(both[None]))[0]
            rows.append([_to_rgb_image(both[:3]), _to_rgb_image(out), _to_rgb_image(both[3:6])])
        frame_row = self._preview_frame_row(3 * size + 2 * 4)
        if frame_row:
            rows.append(frame_row)
        self.model.train()
        sheet = self.previews / f"contact_{step:06d}.png"
        write_png(sheet, contact_sheet(rows, column_labels=["SOURCE", "MODEL", "TARGET"]))
        self.reporter.preview(str(sheet), "contact_sheet")
        curve = self.previews / "loss_curve.png"
        write_loss_curve(curve, [s for s, _ in self.loss_history], [v for _, v in self.loss_history],
                         [s for s, _ in self.val_history], [v for _, v in self.val_history],
                         total_steps=self.total_steps)
        self.reporter.preview(str(curve), "loss_curve")

    def _preview_frame_row(self, row_width: int) -> list[np.ndarray]:
        """The Preview frame, whole: Input | Output (| Ground Truth when it is a pair)."""
        pair = next((p for p in self.dataset.pairs if p.name == self.dataset.preview_name), None)
        if pair is not None:
            both = self._pair_tensor(pair)
            source, target, coords = both[None, :3], both[3:6], both[None, 6:8]
            guide = self._guide_of(both[None])
        elif self.dataset.preview_input is not None:
            rgb = torch.from_numpy(self.dataset.preview_input).permute(2, 0, 1)[None].to(self.device)
            source, target, coords, guide = rgb_to_ycbcr(rgb), None, None, None
        else:
            return []
        out = self._predict(source, coords, guide)[0]
        panels = [source[0], out] + ([target] if target is not None else [])
        return [downscale(_to_rgb_image(p), max_width=max(row_width // len(panels), 16)) for p in panels]

    def save_checkpoint(self, step: int) -> None:
        if step == self.last_checkpoint:
            return
        ckpt.save_checkpoint(self.checkpoints, step, self.model, self.optimizer, self.metadata(step),
                             self.training_state())
        self.last_checkpoint = step
        for _, old in ckpt.list_checkpoints(self.checkpoints)[:-KEEP_CHECKPOINTS]:
            ckpt.remove_checkpoint(old)

    def record_losses(self, first_step: int, losses: list[float], every: int) -> None:
        """Per-step losses -> one curve point per `every` steps (the mean over those steps)."""
        for offset, loss in enumerate(losses):
            self._loss_bin[0] += loss
            self._loss_bin[1] += 1
            if (first_step + offset) % every == 0:
                self.loss_history.append([first_step + offset, self._loss_bin[0] / self._loss_bin[1]])
                self._loss_bin = [0.0, 0]
        if len(self.loss_history) > MAX_HISTORY:  # keep the curve's whole span at half the density
            self.loss_history = self.loss_history[::2]


def _stop_requested(flag: dict[str, bool], dist: _Distributed, device: torch.device) -> bool:
    if not dist.enabled:
        return flag["stop"]
    import torch.distributed as torch_dist

    vote = torch.tensor([1.0 if flag["stop"] else 0.0], device=device)
    torch_dist.all_reduce(vote)
    return bool(vote.item() > 0)


def train(job: Job, reporter: Reporter, dataset_dir: str | Path | None = None, out_dir: str | Path | None = None,
          resume: bool = True, after_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train the job's model on its dataset; returns the final and best model paths and metrics.

    `after_step(step)` runs after every completed step (progress hooks, tests); raising
    `Cancelled` there, like SIGTERM/SIGINT, writes a checkpoint and re-raises."""
    dataset_dir = Path(dataset_dir or job.dataset_dir or job.work_path("dataset"))
    out_dir = Path(out_dir or job.work_path("train"))
    dataset = load_dataset(dataset_dir)
    unchecked = check_dataset_recipe(dataset_dir, dataset.manifest, job)
    if unchecked:
        reporter.message(unchecked, level="warning")
    if dataset.branch != job.branch:
        raise FilmRecoveryError(f"the dataset was exported for the {dataset.branch} branch, the job is "
                                f"{job.branch}.", where=str(dataset_dir / "manifest.json"),
                                fix="Export the dataset again for this branch.")
    dist, device = _start_distributed(job.training.device)
    try:
        return _run(job, reporter, dataset, out_dir, dist, device, resume, after_step)
    finally:
        if dist.enabled:
            import torch.distributed as torch_dist

            torch_dist.destroy_process_group()


def _run(job: Job, reporter: Reporter, dataset: Dataset, out_dir: Path, dist: _Distributed, device: torch.device,
         resume: bool, after_step: Callable[[int], None] | None) -> TrainResult:
    """Restore (or start), train to the planned step, then write the final model."""
    trainer = _Trainer(job, reporter, dataset, out_dir, dist, device)
    start = trainer.restore(resume)
    _announce(trainer)
    if start == 0 and trainer.dist.is_main and getattr(ckpt.unwrap(trainer.model), "grade", None) is not None:
        # The starting grade is a candidate too: where the steps learn nothing that holds on the
        # held-out pairs, the best model stays the shot's baseline grade.
        trainer.validate(0)
    ddp_model = _parallel_model(trainer)
    trainer.model.train()
    loop = _Loop(trainer, start)
    loop.run(ddp_model, after_step)
    return _finish(trainer, loop)


def _announce(trainer: _Trainer) -> None:
    """What is trained on what, and a warning when validation has no held-out pairs."""
    t, dist, dataset = trainer.job.training, trainer.dist, trainer.dataset
    trainer.reporter.message(
        f"Training {t.size} {t.model} ({trainer.channel_label}) on {trainer.device.type}"
        f"{f' x{dist.world_size}' if dist.enabled else ''}: {trainer.total_steps} steps = "
        f"{trainer.epochs:.1f} epochs of {len(dataset.training_pairs)} pairs at batch "
        f"{trainer.batch * dist.world_size}, {trainer.crop} px crops, {'bf16' if trainer.amp else 'fp32'}.")
    if not dataset.holdout_pairs:
        trainer.reporter.message("No held-out pairs: validation PSNR is measured on the training pairs and says "
                                 "little about new frames. Mark a pair as holdout for an honest number.", "warning")


def _parallel_model(trainer: _Trainer) -> torch.nn.Module:
    """The model the steps run: wrapped for data-parallel training under torchrun, else itself."""
    if not trainer.dist.enabled:
        return trainer.model
    from torch.nn.parallel import DistributedDataParallel

    device = trainer.device
    return DistributedDataParallel(trainer.model, device_ids=[device.index] if device.type == "cuda" else None)


class _Loop:
    """The step loop: steps, reports, and the validation, checkpoint and preview schedule."""

    def __init__(self, trainer: _Trainer, start: int):
        self.trainer = trainer
        self.start = self.step = start
        # Per-step losses stay on the device until a report reads them all at once: one GPU sync per
        # report (about every REPORT_INTERVAL_S), not one per step.
        self.pending: list[torch.Tensor] = []
        self.history_every = max(1, trainer.total_steps // 2000)
        self.run_start = self.window_start = time.monotonic()
        self.window_step = start

    def run(self, ddp_model: torch.nn.Module, after_step: Callable[[int], None] | None) -> None:
        """Step to the planned total; a Cancel writes a checkpoint (resumable from there) and re-raises."""
        trainer = self.trainer
        dist = trainer.dist
        with _deferred_stop_signals() as stop:
            try:
                while self.step < trainer.total_steps:
                    if _stop_requested(stop, dist, trainer.device):
                        raise Cancelled("training cancelled")
                    self.pending.append(trainer.guarded_step(self.step, ddp_model))
                    self.step += 1
                    if after_step is not None:
                        after_step(self.step)
                    self._after_step()
            except (Cancelled, KeyboardInterrupt):
                if dist.is_main and self.step > self.start:
                    self._read_pending()
                    trainer.save_checkpoint(self.step)
                    trainer.reporter.message(f"Cancelled at step {self.step}; checkpoint written, training "
                                             "resumes from here.")
                raise

    def _after_step(self) -> None:
        """Report progress, then validate, checkpoint and write previews when their step comes."""
        trainer, step = self.trainer, self.step
        t = trainer.job.training
        last = step == trainer.total_steps
        validate = last or step % max(t.validate_every, 1) == 0
        now = time.monotonic()
        if validate or now - self.window_start >= REPORT_INTERVAL_S:
            self._report(now)
        if trainer.dist.is_main:
            if validate:
                trainer.validate(step)
            if step % max(t.checkpoint_every, 1) == 0 or last:
                trainer.save_checkpoint(step)
            if step % max(t.preview_every, 1) == 0 or last:
                trainer.write_previews(step)

    def _report(self, now: float) -> None:
        """One progress event: the mean loss since the last one, the rates and the ETA."""
        trainer, step = self.trainer, self.step
        world_size = trainer.dist.world_size
        values = self._read_pending()
        loss = sum(values) / len(values)
        rate = (step - self.window_step) / max(now - self.window_start, 1e-9)
        trainer.reporter.progress(step, trainer.total_steps, "train", f"loss {loss:.4g}", loss=loss,
                                  lr=learning_rate_at(step - 1, trainer.total_steps, trainer.learning_rate),
                                  steps_per_s=rate, crops_per_s=rate * trainer.batch * world_size,
                                  eta_s=(trainer.total_steps - step) / max(rate, 1e-9),
                                  epoch=step * trainer.batch * world_size / len(trainer.dataset.training_pairs))
        self.window_start, self.window_step = now, step

    def _read_pending(self) -> list[float]:
        """The losses held on the device, read at once and added to the loss curve."""
        values = torch.stack(self.pending).float().tolist() if self.pending else []
        self.trainer.record_losses(self.step - len(values) + 1, values, self.history_every)
        self.pending.clear()
        return values


def _finish(trainer: _Trainer, loop: _Loop) -> TrainResult:
    """Validate a run that had no steps left, write the final model and checkpoint (rank 0), and
    keep every rank until they are written."""
    step, dist, out_dir = loop.step, trainer.dist, trainer.out_dir
    if dist.is_main and trainer.last_validated != step:
        trainer.validate(step)  # resumed at or past the end: the final model still gets numbers
    final = out_dir / "model_final.safetensors"
    best = out_dir / "model_best.safetensors"
    if dist.is_main:
        ckpt.save_model(final, trainer.model, trainer.metadata(step))
        trainer.save_checkpoint(step)
    if dist.enabled:  # other ranks wait while rank 0 writes, then all leave together
        import torch.distributed as torch_dist

        torch_dist.barrier()
    metrics = trainer.metrics()
    metrics["steps_per_s"] = (step - loop.start) / (time.monotonic() - loop.run_start) if step > loop.start else None
    return TrainResult(str(out_dir), str(final), str(best), step, step >= trainer.total_steps, metrics)
