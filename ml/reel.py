"""The sample reel: several shots of one faded print, one of them from a section that faded differently.

What `ml plan` and `ml farm` are measured on. Each shot is a slow camera move across a photograph
shipped with scikit-image (hard cuts between them, so the cut detection finds the shots). The
Reference is the clean content with the sample's mild global grade (`ml.sample.apply_reference_grade`),
on the Source raster with no warp, so a plan can train without an alignment stage.

- Ordinary shots: the sample shot's dye fade (`ml.sample.DAMAGE`): stronger on the left, blotchy,
  a magenta cast with milky blacks, collapsed saturation, per-frame breathing and grain.
- The odd shot (`odd_shot`, default the third): a section of the print whose cyan and yellow dyes
  faded further (`ODD_DAMAGE_CHANGES`): a warm balance over the usual fade. Its faded colours look
  like the other shots' but came from other clean colours, so one model for the reel corrects it
  like the others and leaves it warm; a model of that shot alone follows it.

`truth/clean.####.exr` holds the clean frames and `truth/reel.json` the shots and their damage.
Deterministic for a seed; the damage functions are the sample shot's own (`ml.sample`).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FilmRecoveryError
from .events import Reporter
from .imageio import atomic_path, frame_path, write_exr

REEL_SCHEMA = "film_recovery.sample_reel"
FIRST_FRAME = 1001
PHOTOS = ("coffee", "rocket", "chelsea", "astronaut", "immunohistochemistry", "hubble_deep_field")
SOURCE_PATTERN = "source/source.####.exr"
REFERENCE_PATTERN = "reference/reference.####.exr"
CLEAN_PATTERN = "truth/clean.####.exr"
INFO_FILE = "truth/reel.json"

# The odd shot's fade: the same dyes, but its cyan and yellow dyes went further, leaving a warm
# red-yellow balance over the usual fade (per-channel gains on the faded image). Its faded colours
# overlap the other shots' while their clean colours differ: what undoes the other shots' fade
# leaves this one warm.
ODD_DAMAGE_CHANGES: dict[str, Any] = {"balance": [1.30, 0.95, 0.65]}


@dataclass
class ReelInfo:
    out_dir: str
    source_pattern: str
    reference_pattern: str
    clean_pattern: str
    first_frame: int
    last_frame: int
    shots: list[dict[str, Any]]   # name, photo, first_frame, last_frame, odd
    odd_shot: str                 # name of the shot that faded differently ("" when none)
    size: tuple[int, int]         # (width, height)
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate_reel(out_dir: str | Path, shots: int = 4, frames_per_shot: int = 8, width: int = 160,
                  height: int = 96, odd_shot: int = 3, seed: int = 0,
                  reporter: Reporter | None = None) -> ReelInfo:
    """Write a reel of `shots` shots of `frames_per_shot` frames from frame 1001; shot number
    `odd_shot` (1-based, 0 for none) fades differently. Returns where everything is."""
    from .sample import _breathing, _fade_map, _load_shot, _warp, apply_reference_grade, damage_source

    out_dir = Path(out_dir)
    if not 1 <= shots <= len(PHOTOS):
        raise FilmRecoveryError(f"{shots} shots asked for; the reel has photographs for 1 to {len(PHOTOS)}.",
                                where="--shots", fix=f"Ask for 1 to {len(PHOTOS)} shots.")
    if frames_per_shot < 4:
        raise FilmRecoveryError(f"{frames_per_shot} frames per shot is too short to find the cuts.",
                                where="--frames-per-shot", fix="Ask for at least 4 frames per shot.")
    if not 0 <= odd_shot <= shots:
        raise FilmRecoveryError(f"shot {odd_shot} is not in a reel of {shots} shots.", where="--odd-shot",
                                fix=f"Pick 1 to {shots}, or 0 for no odd shot.")
    if min(width, height) < 32:
        raise FilmRecoveryError(f"{width}x{height} is too small.", where="--width/--height",
                                fix="Use at least 32x32.")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / INFO_FILE).exists():
        raise FilmRecoveryError("the folder is not empty and holds no sample reel; nothing was written.",
                                where=str(out_dir), fix="Choose an empty or new folder (an earlier reel folder is fine).")
    try:
        import skimage  # noqa: F401 - the photographs and the resampler come from it
    except ImportError as exc:
        raise FilmRecoveryError("scikit-image is not installed in this Python.", where="reel",
                                fix="`pip install scikit-image` into this Python.") from exc

    rng = np.random.default_rng([seed, 0x4EE1])
    first = FIRST_FRAME
    last = first + shots * frames_per_shot - 1
    plans = []
    for index in range(shots):
        start = first + index * frames_per_shot
        end = start + frames_per_shot - 1
        photo = PHOTOS[(seed + index) % len(PHOTOS)]
        plans.append(_load_shot(str(index + 1), photo, (start, end), (start, end), 0, (width, height), rng,
                                photo=_photo(photo)))
    fade, _ = _fade_map(width, height, rng)
    odd_balance = np.asarray(ODD_DAMAGE_CHANGES["balance"], dtype=np.float32)
    phases = rng.uniform(0, 2 * np.pi, 3).astype(np.float32)
    attributes = {"film_recovery:reel_seed": int(seed)}

    def render(frame: int) -> None:
        shot_index = (frame - first) // frames_per_shot
        shot = plans[shot_index]
        odd = shot_index + 1 == odd_shot
        clean = _warp(shot.photo, shot.camera(frame, width, height), (height, width))
        gains = _breathing(frame, phases) * (odd_balance if odd else 1.0)
        source = damage_source(clean, fade, gains, np.random.default_rng([seed, frame, 1]))
        write_exr(frame_path(str(out_dir / SOURCE_PATTERN), frame), source, attributes=attributes)
        write_exr(frame_path(str(out_dir / REFERENCE_PATTERN), frame), apply_reference_grade(clean),
                  attributes=attributes)
        write_exr(frame_path(str(out_dir / CLEAN_PATTERN), frame), clean, attributes=attributes)

    out_dir.mkdir(parents=True, exist_ok=True)
    frames = list(range(first, last + 1))
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for done, _ in enumerate(pool.map(render, frames), start=1):
            if reporter is not None:
                reporter.progress(done, len(frames), "reel")
    shot_list = [{"name": p.name, "photo": p.photo_name, "first_frame": p.first_frame, "last_frame": p.last_frame,
                  "odd": i + 1 == odd_shot} for i, p in enumerate(plans)]
    info = ReelInfo(out_dir=str(out_dir.resolve()), source_pattern=str((out_dir / SOURCE_PATTERN).resolve()),
                    reference_pattern=str((out_dir / REFERENCE_PATTERN).resolve()),
                    clean_pattern=str((out_dir / CLEAN_PATTERN).resolve()), first_frame=first, last_frame=last,
                    shots=shot_list, odd_shot=str(odd_shot) if odd_shot else "", size=(width, height), seed=seed)
    with atomic_path(out_dir / INFO_FILE) as tmp:
        tmp.write_text(json.dumps({"schema": REEL_SCHEMA, "version": 1, **info.as_dict(),
                                   "odd_damage": ODD_DAMAGE_CHANGES}, indent=1) + "\n")
    return info


def _photo(name: str) -> np.ndarray:
    """A skimage photograph as float32 RGB 0..1 (grey ones repeated to three channels)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
    image = image / (255.0 if image.max() > 1.5 else 1.0)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])
