"""The built-in sample shot: a faded Source and a graded, letterboxed Reference with known truth.

Made from photographs shipped inside scikit-image, so it needs no download. Two shots with one
hard cut; a slow camera move across each photo gives the clean frames C_f (Source raster).

- Source S_f: dye fade of C_f that is stronger on the left and blotchy (so no single global
  grade or 3D LUT can undo it), collapsed saturation, milky magenta blacks, per-frame colour
  breathing and luma-dominant film grain.
- Reference R_g (lower resolution): a mild global grade of the clean content, seen through a
  known similarity warp plus per-frame gate weave, slightly soft, with letterbox bars. Its edit
  holds shot A two frames longer, so in shot B reference frame f + 2 shows Source frame f.
- truth/: the clean frames and truth.json with every parameter, including the exact per-frame
  warp M (Reference pixels -> Source pixels, the shared convention).

Everything is deterministic for a seed. scikit-image is used here only (sample data, resampling).
"""

from __future__ import annotations

import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FilmRecoveryError
from .events import Reporter
from .imageio import atomic_path, frame_path, write_exr
from .primitives import gaussian_blur, luma, separable_filter

TRUTH_SCHEMA = "film_recovery.sample_truth"
TRUTH_VERSION = 1
FIRST_FRAME = 1001
PHOTOS = ("coffee", "rocket", "chelsea", "astronaut")

SOURCE_PATTERN = "source/source.####.exr"
REFERENCE_PATTERN = "reference/reference.####.exr"
CLEAN_PATTERN = "truth/clean.####.exr"
FADE_MAP = "truth/fade_strength.exr"
TRUTH_FILE = "truth/truth.json"
INFO_FILE = "sample.json"

SHOT_B_REFERENCE_OFFSET = 2          # reference frame = source frame + 2 in shot B
PAN_PX_PER_FRAME = 1.5               # Source pixels per frame
ZOOM_PER_FRAME = 0.001               # slow push-in
REFERENCE_SCALE = 0.75               # Reference raster / Source raster, default 480x270 for 640x360
LETTERBOX_FRACTION = 20 / 270        # rows of black, top and bottom, per Reference height
SUPERSAMPLE = 2                      # Reference rendered at 2x then box-averaged (exact centres)
REFERENCE_SOFTNESS_SIGMA = 0.5       # Reference pixels

# Mild global grade of the Reference: S-curve (endpoints fixed), warmth gains, a touch of saturation.
REFERENCE_GRADE = {"s_curve": 0.25, "gains": [1.035, 1.0, 0.94], "saturation": 1.05}

# Dye fade: per-channel exponent loss (cyan and yellow dyes fade, magenta holds: a magenta/red
# cast), scaled by a spatial fade-strength map; then milky lifted blacks and crushed whites.
DAMAGE = {
    "saturation": 0.55,
    "dye_loss": [0.45, 0.05, 0.30],
    "black_lift": [0.075, 0.05, 0.07],
    "white_point": 0.95,
    "fade_map": {"left": 1.0, "right": 0.45, "blotches": 3, "blotch_amplitude": 0.12,
                 "blotch_sigma_fraction": 0.22, "min": 0.3, "max": 1.0},
    "breathing": {"amplitude": 0.012, "period_frames": 9.0},
    "grain": {"luma_sigma": 0.025, "chroma_ratio": 0.3, "shadow_floor": 0.35},
}

# The spatial sample (`branch="spatial"`): detail, not colour, is what its Source lost. The Source is
# a later generation (a dupe or reduction print): optically soft, grainier, lifted blacks and a mild,
# even fade whose colour a 3D LUT can undo; the Reference a sharper transfer of a better element at
# the Source's raster, in its own grade, with light grain of its own, gate weave and its own framing
# (a slight offset, rotation and thin letterbox bars).
SPATIAL_SOURCE_BLUR_SIGMA = 1.2      # Source px, Gaussian: the softness the model must undo
SPATIAL_DAMAGE = {
    "saturation": 0.85,
    "dye_loss": [0.12, 0.02, 0.08],
    "black_lift": [0.06, 0.055, 0.06],
    "white_point": 0.96,
    "fade_map": {"left": 1.0, "right": 0.8, "blotches": 0, "blotch_amplitude": 0.0,
                 "blotch_sigma_fraction": 0.22, "min": 0.3, "max": 1.0},
    "breathing": DAMAGE["breathing"],
    "grain": {"luma_sigma": 0.03, "chroma_ratio": 0.3, "shadow_floor": 0.4},
}
SPATIAL_REFERENCE_GRADE = {"s_curve": 0.2, "gains": [0.97, 1.0, 1.04], "saturation": 1.1}
SPATIAL_REFERENCE_GRAIN_SIGMA = 0.006  # luma, Reference px: the better element's own fine grain

# What differs between the two samples (the shared building blocks take these as arguments).
SAMPLE_PROFILES: dict[str, dict[str, Any]] = {
    "chroma": {"reference_scale": REFERENCE_SCALE, "reference_softness_sigma": REFERENCE_SOFTNESS_SIGMA,
               "letterbox_fraction": LETTERBOX_FRACTION, "reference_grade": REFERENCE_GRADE,
               "reference_grain_sigma": 0.0, "damage": DAMAGE, "source_blur_sigma": 0.0, "first_photo": 0},
    "spatial": {"reference_scale": 1.0, "reference_softness_sigma": 0.0,
                "letterbox_fraction": 10 / 270, "reference_grade": SPATIAL_REFERENCE_GRADE,
                "reference_grain_sigma": SPATIAL_REFERENCE_GRAIN_SIGMA, "damage": SPATIAL_DAMAGE,
                "source_blur_sigma": SPATIAL_SOURCE_BLUR_SIGMA,
                "first_photo": 2},  # fur and fabric (chelsea, astronaut): fine texture to recover
}


@dataclass
class SampleInfo:
    """Where the sample shot lies and what it is. Patterns are absolute, with ####."""

    out_dir: str
    source_pattern: str
    reference_pattern: str
    clean_pattern: str
    truth_dir: str
    truth_path: str
    first_frame: int
    last_frame: int
    cut_frame: int                      # first frame of shot B (Source numbering)
    reference_offset: int               # shot B: Source frame f <-> Reference frame f + offset
    source_size: tuple[int, int]        # (width, height)
    reference_size: tuple[int, int]     # (width, height)
    letterbox_rows: int                 # black rows at the top and at the bottom of the Reference
    seed: int
    shot_offsets: dict[str, int] = field(default_factory=dict)
    branch: str = "chroma"              # the recovery the shot is made for (SAMPLE_PROFILES)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Shot:
    name: str
    photo_name: str
    photo: np.ndarray                   # float32 (h, w, 3), possibly pre-shrunk
    photo_from_original: np.ndarray     # 3x3, original photo px -> pre-shrunk photo px
    first_frame: int                    # Source frames of the shot
    last_frame: int
    reference_offset: int
    time_mid: float
    centre: np.ndarray                  # original photo px at time_mid
    velocity: np.ndarray                # original photo px per frame
    scale: float                        # original photo px per Source px at time_mid
    pan_px_per_frame: float = PAN_PX_PER_FRAME  # Source px per frame

    def camera(self, time: float, width: int, height: int) -> np.ndarray:
        """3x3 map from Source pixels to (pre-shrunk) photo pixels at a content time."""
        scale = self.scale * (1.0 - ZOOM_PER_FRAME * (time - self.time_mid))
        centre = self.centre + self.velocity * (time - self.time_mid)
        original = _translate(*centre) @ np.diag([scale, scale, 1.0]) @ _translate(
            -(width - 1) / 2.0, -(height - 1) / 2.0)
        return self.photo_from_original @ original

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "photo": f"skimage.data.{self.photo_name}",
                "first_frame": self.first_frame, "last_frame": self.last_frame,
                "reference_offset": self.reference_offset,
                "camera": {"centre_photo_px": self.centre.tolist(), "time_mid": self.time_mid,
                           "velocity_photo_px_per_frame": self.velocity.tolist(),
                           "photo_px_per_source_px": self.scale, "zoom_per_frame": ZOOM_PER_FRAME,
                           "pan_source_px_per_frame": self.pan_px_per_frame}}


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def blur121(image: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 over rows and columns, edges repeated: the grain's short correlation."""
    return separable_filter(image, (0.25, 0.5, 0.25), edge="nearest", use_opencv=False)


def _warp(photo: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sample `photo` at matrix @ [x, y, 1] for every output pixel (bicubic, centres at integers)."""
    from skimage.transform import ProjectiveTransform, warp

    out = warp(photo, ProjectiveTransform(matrix=matrix), output_shape=shape, order=3, mode="edge")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def apply_reference_grade(image: np.ndarray, grade: dict[str, Any] | None = None) -> np.ndarray:
    """The Reference's global grade (also the colour an ideal chroma recovery of the clean frame has)."""
    grade = grade or REFERENCE_GRADE
    image = np.clip(image, 0.0, 1.0)
    image = image - grade["s_curve"] * np.sin(2.0 * np.pi * image) / (2.0 * np.pi)
    image = image * np.asarray(grade["gains"], dtype=np.float32)
    lum = luma(image)[..., None]
    image = lum + grade["saturation"] * (image - lum)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _fade_map(width: int, height: int, rng: np.random.Generator,
              params: dict[str, Any] | None = None) -> tuple[np.ndarray, list[dict]]:
    """Fade strength 0..1 per Source pixel: a left-to-right ramp plus a few soft blotches
    (`params` like DAMAGE["fade_map"], its default; the field corpus passes its own)."""
    params = params or DAMAGE["fade_map"]
    xs = np.arange(width, dtype=np.float32) / max(width - 1, 1)
    ys = np.arange(height, dtype=np.float32)[:, None]
    strength = np.broadcast_to(params["left"] + (params["right"] - params["left"]) * xs,
                               (height, width)).copy()
    sigma = params["blotch_sigma_fraction"] * width
    blotches = []
    for _ in range(params["blotches"]):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        amplitude = float(rng.choice([-1.0, 1.0]) * params["blotch_amplitude"] * rng.uniform(0.6, 1.0))
        strength += amplitude * np.exp(-((xs * (width - 1) - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
        blotches.append({"centre_px": [float(cx), float(cy)], "amplitude": amplitude, "sigma_px": sigma})
    return np.clip(strength, params["min"], params["max"]).astype(np.float32), blotches


def _breathing(frame: int, phases: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
    params = params or DAMAGE["breathing"]
    angle = 2.0 * np.pi * frame / params["period_frames"] + phases
    return (1.0 + params["amplitude"] * np.sin(angle)).astype(np.float32)


def damage_source(clean: np.ndarray, fade_strength: np.ndarray, gains: np.ndarray,
                  grain_rng: np.random.Generator | None, damage: dict[str, Any] | None = None) -> np.ndarray:
    """Clean frame -> faded, grainy Source frame (values stay in 0..1). No grain without a rng.
    `damage` has DAMAGE's keys (the default); the field corpus passes its own."""
    damage = damage or DAMAGE
    lum = luma(clean)[..., None]
    image = lum + damage["saturation"] * (clean - lum)
    exponent = 1.0 - np.asarray(damage["dye_loss"], dtype=np.float32) * fade_strength[..., None]
    image = np.clip(image, 1e-6, 1.0) ** exponent
    lift = np.asarray(damage["black_lift"], dtype=np.float32)
    image = lift + (damage["white_point"] - lift) * image
    image = image * gains
    if grain_rng is not None:
        grain = damage["grain"]
        noise = grain_rng.standard_normal((*clean.shape[:2], 4), dtype=np.float32)
        noise = blur121(noise) / 0.375  # keep unit variance after the blur (grain ~1.5 px)
        value = luma(image)[..., None]
        sigma = grain["luma_sigma"] * (grain["shadow_floor"] + 4.0 * (1 - grain["shadow_floor"])
                                       * value * (1.0 - value))
        image = image + sigma * (noise[..., :1] + grain["chroma_ratio"] * noise[..., 1:])
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _load_shot(name: str, photo_name: str, frames: tuple[int, int], content: tuple[int, int], offset: int,  # noqa: PLR0913  one per placement choice
               size: tuple[int, int], rng: np.random.Generator, photo: np.ndarray | None = None,
               pan_px_per_frame: float = PAN_PX_PER_FRAME) -> _Shot:
    """Place a camera window, panning `pan_px_per_frame` Source px per frame, that stays inside the
    photo for every content time of the shot. `photo` (float32 0..1 RGB) replaces
    skimage.data.<photo_name> (the field corpus's composites)."""
    import skimage.data
    from skimage.transform import resize

    (first, last), (content_first, content_last), (width, height) = frames, content, size
    original = (np.asarray(photo, dtype=np.float32) if photo is not None else
                np.asarray(getattr(skimage.data, photo_name)(), dtype=np.float32)[..., :3] / 255.0)
    ph, pw = original.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    span = content_last - content_first
    zoom = 1.0 + ZOOM_PER_FRAME * span / 2.0
    guard = 0.04 * width + 8.0  # room for the Reference warp, weave and the bicubic footprint
    need_x = width * zoom + guard + abs(direction[0]) * pan_px_per_frame * span
    need_y = height * zoom + guard + abs(direction[1]) * pan_px_per_frame * span
    scale = min((pw - 4) / need_x, (ph - 4) / need_y)
    slack = np.array([(pw - 4 - scale * need_x) / 2, (ph - 4 - scale * need_y) / 2])
    centre = np.array([(pw - 1) / 2, (ph - 1) / 2]) + rng.uniform(-0.8, 0.8, 2) * slack
    photo_from_original = np.eye(3)
    photo = original
    if scale > 1.0:  # Source smaller than the window: shrink the photo first (anti-aliased)
        size = (max(8, round(ph / scale)), max(8, round(pw / scale)))
        photo = resize(original, size, order=3, anti_aliasing=True).astype(np.float32)
        fx, fy = pw / size[1], ph / size[0]  # skimage: original = (shrunk + 0.5) * f - 0.5
        photo_from_original = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5],
                                        [0, 0, 1.0]])
    return _Shot(name=name, photo_name=photo_name, photo=np.clip(photo, 0, 1),
                 photo_from_original=photo_from_original, first_frame=first, last_frame=last,
                 reference_offset=offset, time_mid=(content_first + content_last) / 2.0,
                 centre=centre, velocity=direction * pan_px_per_frame * scale, scale=float(scale),
                 pan_px_per_frame=float(pan_px_per_frame))


def _check_arguments(out_dir: Path, frames: int, width: int, height: int,
                     reference_width: int, reference_height: int) -> None:
    try:
        import skimage  # noqa: F401 - the photographs and the resampler come from it
    except ImportError as exc:
        raise FilmRecoveryError("scikit-image is not installed in this Python.", where="sample",
                                fix="Run the sample with the engine's training Python, or "
                                    "`pip install scikit-image` into this one.") from exc
    if frames < 2 * SHOT_B_REFERENCE_OFFSET + 2:
        raise FilmRecoveryError(f"{frames} frames is too short for two shots.", where="frames",
                                fix=f"Ask for at least {2 * SHOT_B_REFERENCE_OFFSET + 2} frames.")
    if min(width, height) < 32 or min(reference_width, reference_height) < 24:
        raise FilmRecoveryError(f"{width}x{height} (Reference {reference_width}x{reference_height}) "
                                "is too small.", where="width/height",
                                fix="Use at least 32x32 for the Source and 24x24 for the Reference.")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / INFO_FILE).exists():
        raise FilmRecoveryError("the folder is not empty and holds no sample shot; nothing was written.",
                                where=str(out_dir),
                                fix="Choose an empty or new folder (an earlier sample folder is fine).")


def _remove_stale_frames(out_dir: Path, first: int, last: int) -> None:
    """An earlier, longer sample in the same folder must not leave frames past the new range."""
    for pattern in (SOURCE_PATTERN, REFERENCE_PATTERN, CLEAN_PATTERN):
        folder, name = (out_dir / pattern).parent, Path(pattern).name
        stem, _, suffix = name.partition("####")
        numbered = re.compile(re.escape(stem) + r"(\d+)" + re.escape(suffix) + "$")
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = numbered.match(path.name)
            if match and not first <= int(match.group(1)) <= last:
                path.unlink()


def _write_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")


def add_film_grain(image: np.ndarray, rng: np.random.Generator, luma_sigma: float,
                   chroma_ratio: float = 0.3) -> np.ndarray:
    """Grain of a constant strength (~1.5 px, luma-dominant) over an image (values stay in 0..1)."""
    noise = blur121(rng.standard_normal((*image.shape[:2], 4), dtype=np.float32)) / 0.375
    return np.clip(image + luma_sigma * (noise[..., :1] + chroma_ratio * noise[..., 1:]), 0.0, 1.0
                   ).astype(np.float32)


def soften(image: np.ndarray, sigma: float) -> np.ndarray:
    """Optical softness of a later generation: a Gaussian blur of `sigma` pixels (0: unchanged).
    The numpy path on every Python, so a sample is the same with or without OpenCV."""
    return image if sigma <= 0 else gaussian_blur(image, sigma, edge="nearest", use_opencv=False).astype(np.float32)


def spatial_reference_damage(image: np.ndarray, rng: np.random.Generator | None = None,
                             grain_sigma: float = 0.0, soft_edges_sigma: float = 0.0) -> np.ndarray:
    """What can make a sharper Reference imperfect, for the field corpus's spatial kinds: its own
    grain or noise (`grain_sigma`, luma; needs `rng`) and a lens that is sharp only in the centre
    (`soft_edges_sigma`: the blur reached at the corners, growing with the squared radius)."""
    if soft_edges_sigma > 0:
        h, w = image.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        radius2 = ((xs - (w - 1) / 2) / (w / 2)) ** 2 + ((ys - (h - 1) / 2) / (h / 2)) ** 2
        weight = np.clip(radius2 / 2.0, 0.0, 1.0)[..., None]  # 0 at the centre, 1 in the corners
        image = (1 - weight) * image + weight * soften(image, soft_edges_sigma)
    if grain_sigma > 0 and rng is not None:
        image = add_film_grain(image, rng, grain_sigma)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


@dataclass
class _ReferenceGeometry:
    """Reference px -> Source px of every frame: the conform (pixel centres), one similarity about
    the Source centre (telecine misregistration), and a per-frame gate weave."""
    conform: np.ndarray
    similarity: np.ndarray
    magnification: float
    rotation_deg: float
    shift: np.ndarray
    weave_periods: np.ndarray
    weave_phases: np.ndarray

    def weave(self, frame: int) -> np.ndarray:
        waves = np.sin(2 * np.pi * frame / self.weave_periods + self.weave_phases)
        return waves @ np.array([0.7, 0.3])  # |weave| <= 1 px on each axis

    def matrix(self, frame: int) -> np.ndarray:
        return _translate(*self.weave(frame)) @ self.similarity @ self.conform


def _reference_geometry(rng: np.random.Generator, source_size: tuple[int, int],
                        reference_size: tuple[int, int]) -> _ReferenceGeometry:
    """Draw the shot's Reference geometry (the draws keep their order: the sample is seeded)."""
    (width, height), (reference_width, reference_height) = source_size, reference_size
    conform = np.array([[width / reference_width, 0, 0.5 * width / reference_width - 0.5],
                        [0, height / reference_height, 0.5 * height / reference_height - 0.5],
                        [0, 0, 1.0]])
    magnification = 1.01 + rng.uniform(-0.003, 0.003)
    rotation_deg = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.5))
    shift = rng.uniform(-4.0, 4.0, 2) * (width / 640.0)
    cos_r, sin_r = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    rotate = np.array([[cos_r, -sin_r, 0], [sin_r, cos_r, 0], [0, 0, 1.0]])
    similarity = (_translate(*shift) @ _translate((width - 1) / 2, (height - 1) / 2) @ rotate
                  @ np.diag([1 / magnification, 1 / magnification, 1.0])
                  @ _translate(-(width - 1) / 2, -(height - 1) / 2))
    return _ReferenceGeometry(conform, similarity, magnification, rotation_deg, shift,
                              weave_periods=rng.uniform(5.0, 12.0, (2, 2)),
                              weave_phases=rng.uniform(0, 2 * np.pi, (2, 2)))


# Supersampled Reference pixel u -> Reference pixel (u + 0.5) / SUPERSAMPLE - 0.5, so each box
# average of SUPERSAMPLE^2 samples is centred on its Reference pixel exactly.
_SUPERSAMPLE_MATRIX = np.array([[1 / SUPERSAMPLE, 0, 0.5 / SUPERSAMPLE - 0.5],
                                [0, 1 / SUPERSAMPLE, 0.5 / SUPERSAMPLE - 0.5], [0, 0, 1.0]])


@dataclass
class _SamplePlan:
    """Everything drawn before the first frame is rendered."""
    out_dir: Path
    seed: int
    branch: str
    first: int
    last: int
    cut: int
    offset: int  # the Reference edit holds shot A this many frames longer (shot B starts at cut + offset)
    source_size: tuple[int, int]
    reference_size: tuple[int, int]
    shots: list[_Shot]
    geometry: _ReferenceGeometry
    letterbox: int
    fade_strength: np.ndarray
    blotches: list[dict]
    breathing_phases: np.ndarray

    @property
    def profile(self) -> dict[str, Any]:
        return SAMPLE_PROFILES[self.branch]

    def reference_content(self, frame: int) -> tuple[_Shot, int]:
        """The shot and content time a Reference frame shows: frames cut..cut+offset-1 still show
        shot A, content the Source never had."""
        return (self.shots[0], frame) if frame < self.cut + self.offset else (self.shots[1], frame - self.offset)


def _plan_sample(out_dir: Path, seed: int, frames: int, source_size: tuple[int, int],
                 reference_size: tuple[int, int], branch: str) -> _SamplePlan:
    """Draw the two shots, the Reference geometry, the fade map and the breathing, in that order."""
    profile = SAMPLE_PROFILES[branch]
    rng = np.random.default_rng([seed, 0x5A3])
    first, last = FIRST_FRAME, FIRST_FRAME + frames - 1
    cut, offset = FIRST_FRAME + frames // 2, SHOT_B_REFERENCE_OFFSET
    photo_a = PHOTOS[(seed + profile["first_photo"]) % len(PHOTOS)]
    photo_b = PHOTOS[(seed + profile["first_photo"] + 1) % len(PHOTOS)]
    shots = [_load_shot("A", photo_a, (first, cut - 1), (first, cut - 1 + offset), 0, source_size, rng),
             _load_shot("B", photo_b, (cut, last), (cut, last - offset), offset, source_size, rng)]
    geometry = _reference_geometry(rng, source_size, reference_size)
    fade_strength, blotches = _fade_map(*source_size, rng, profile["damage"]["fade_map"])
    return _SamplePlan(out_dir, seed, branch, first, last, cut, offset, source_size, reference_size, shots,
                       geometry, letterbox=max(1, round(profile["letterbox_fraction"] * reference_size[1])),
                       fade_strength=fade_strength, blotches=blotches,
                       breathing_phases=rng.uniform(0, 2 * np.pi, 3).astype(np.float32))


def _render_reference(plan: _SamplePlan, frame: int) -> tuple[np.ndarray, _Shot, int]:
    """One Reference frame: supersampled through its warp, softened, graded, grained, letterboxed."""
    profile, (width, height), (reference_width, reference_height) = plan.profile, plan.source_size, plan.reference_size
    content_shot, content_time = plan.reference_content(frame)
    big = _warp(content_shot.photo,
                content_shot.camera(content_time, width, height) @ plan.geometry.matrix(frame) @ _SUPERSAMPLE_MATRIX,
                (reference_height * SUPERSAMPLE, reference_width * SUPERSAMPLE))
    reference = big.reshape(reference_height, SUPERSAMPLE, reference_width, SUPERSAMPLE, 3)
    reference = soften(reference.mean(axis=(1, 3)), profile["reference_softness_sigma"])
    reference = apply_reference_grade(reference, profile["reference_grade"])
    if profile["reference_grain_sigma"] > 0:
        reference = add_film_grain(reference, np.random.default_rng([plan.seed, frame, 2]),
                                   profile["reference_grain_sigma"])
    reference[:plan.letterbox] = 0.0
    reference[reference_height - plan.letterbox:] = 0.0
    return reference, content_shot, content_time


def _render_frame(plan: _SamplePlan, frame: int) -> tuple[dict, dict, list[float]]:
    """Write one frame's Source, clean and Reference; return its truth entries."""
    profile, (width, height) = plan.profile, plan.source_size
    attributes = {"film_recovery:sample_seed": int(plan.seed)}
    shot = plan.shots[0] if frame < plan.cut else plan.shots[1]
    clean = _warp(shot.photo, shot.camera(frame, width, height), (height, width))
    gains = _breathing(frame, plan.breathing_phases, profile["damage"]["breathing"])
    source = damage_source(soften(clean, profile["source_blur_sigma"]), plan.fade_strength, gains,
                           np.random.default_rng([plan.seed, frame, 1]), profile["damage"])
    write_exr(frame_path(str(plan.out_dir / SOURCE_PATTERN), frame), source, attributes=attributes)
    write_exr(frame_path(str(plan.out_dir / CLEAN_PATTERN), frame), clean, attributes=attributes)
    reference, content_shot, content_time = _render_reference(plan, frame)
    write_exr(frame_path(str(plan.out_dir / REFERENCE_PATTERN), frame), reference, attributes=attributes)

    warp_matrix = plan.geometry.matrix(frame)
    shown = content_time if content_shot.first_frame <= content_time <= content_shot.last_frame else None
    partner = frame + shot.reference_offset
    return ({"frame": frame, "shot": content_shot.name, "content_time": content_time,
             "source_frame": shown, "weave_px": plan.geometry.weave(frame).tolist(),
             "M": (warp_matrix / warp_matrix[2, 2]).reshape(-1).tolist()},
            {"source_frame": frame, "shot": shot.name,
             "reference_frame": partner if partner <= plan.last else None},
            gains.tolist())


def _render_frames(plan: _SamplePlan, reporter: Reporter | None) -> tuple[list[dict], list[dict], dict]:
    """Render every frame on a few threads: frames are independent (each has its own grain seed),
    and the heavy parts (warp, numpy, EXR encode) release the GIL, so the pixels are the same."""
    reference_frames, pairs, breathing = [], [], {}
    frames = plan.last - plan.first + 1
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
    try:
        results = pool.map(lambda frame: _render_frame(plan, frame), range(plan.first, plan.last + 1))
        for index, (reference_entry, pair, gains) in enumerate(results):
            reference_frames.append(reference_entry)
            pairs.append(pair)
            breathing[str(pair["source_frame"])] = gains
            if reporter is not None:
                reporter.progress(index + 1, frames, "sample", f"frame {pair['source_frame']}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return reference_frames, pairs, breathing


def _truth_document(plan: _SamplePlan, reference_frames: list[dict], pairs: list[dict],
                    breathing: dict) -> dict[str, Any]:
    """truth/truth.json: the frames' exact warps, shots, pairs and damage."""
    profile, geometry = plan.profile, plan.geometry
    (width, height), (reference_width, reference_height) = plan.source_size, plan.reference_size
    damage = profile["damage"]
    return {
        "schema": TRUTH_SCHEMA, "version": TRUTH_VERSION, "seed": plan.seed, "branch": plan.branch,
        "first_frame": plan.first, "last_frame": plan.last, "cut_frame": plan.cut,
        "reference_cut_frame": plan.cut + plan.offset,
        "source": {"pattern": SOURCE_PATTERN, "width": width, "height": height,
                   "first_frame": plan.first, "last_frame": plan.last},
        "reference": {"pattern": REFERENCE_PATTERN, "width": reference_width, "height": reference_height,
                      "first_frame": plan.first, "last_frame": plan.last,
                      "letterbox": {"top": plan.letterbox, "bottom": plan.letterbox,
                                    "active_rows": [plan.letterbox, reference_height - plan.letterbox]}},
        "clean_pattern": CLEAN_PATTERN, "fade_strength_map": FADE_MAP,
        "shots": [shot.describe() for shot in plan.shots],
        "pairs": pairs,
        "reference_frames": reference_frames,
        "reference_transform": {
            "convention": "M maps Reference px to Source px: [xs, ys, 1] ~ M @ [xr, yr, 1]; "
                          "M = translate(weave) @ similarity @ conform",
            "conform": geometry.conform.reshape(-1).tolist(), "similarity": geometry.similarity.reshape(-1).tolist(),
            "magnification": geometry.magnification, "rotation_deg": geometry.rotation_deg,
            "offset_px": geometry.shift.tolist(), "weave_max_px": 1.0, "supersample": SUPERSAMPLE,
            "softness_sigma_px": profile["reference_softness_sigma"],
            "grain_luma_sigma": profile["reference_grain_sigma"]},
        "reference_grade": profile["reference_grade"],
        "damage": {**damage, "fade_map": {**damage["fade_map"], "blotch_list": plan.blotches},
                   "breathing_gains": breathing, "source_blur_sigma_px": profile["source_blur_sigma"]},
        "notes": ["Source frame f <-> Reference frame f + shots[i].reference_offset (pairs lists them; "
                  "null where the partner lies past the last frame).",
                  "Reference frames cut..cut+offset-1 show shot A content the Source does not have.",
                  "truth/clean is C_f (Source raster, before damage); the ideal chroma recovery of "
                  "Source frame f has the colour of ml.sample.apply_reference_grade(C_f) (with the grade "
                  "in reference_grade); the ideal spatial recovery has its luma and the Source's CbCr."],
    }


def _sample_info(plan: _SamplePlan) -> SampleInfo:
    out_dir = plan.out_dir
    return SampleInfo(
        out_dir=str(out_dir.resolve()), source_pattern=str((out_dir / SOURCE_PATTERN).resolve()),
        reference_pattern=str((out_dir / REFERENCE_PATTERN).resolve()),
        clean_pattern=str((out_dir / CLEAN_PATTERN).resolve()),
        truth_dir=str((out_dir / TRUTH_FILE).parent.resolve()),
        truth_path=str((out_dir / TRUTH_FILE).resolve()), first_frame=plan.first, last_frame=plan.last,
        cut_frame=plan.cut, reference_offset=plan.offset, source_size=plan.source_size,
        reference_size=plan.reference_size, letterbox_rows=plan.letterbox, seed=plan.seed,
        shot_offsets={shot.name: shot.reference_offset for shot in plan.shots}, branch=plan.branch)


def generate_sample(out_dir: str | Path, seed: int = 0, frames: int = 24, width: int = 640,
                    height: int = 360, reporter: Reporter | None = None,
                    reference_size: tuple[int | None, int | None] | None = None,
                    branch: str = "chroma") -> SampleInfo:
    """Write the sample shot (Source, Reference, truth) into `out_dir` and describe it.

    `branch` picks the damage: "chroma" (faded Source, softer graded Reference) or "spatial"
    (soft, grainy Source with usable colour; sharper Reference in its own grade). `reference_size`
    (width, height; either may be None) defaults to the branch's scale of the Source."""
    if branch not in SAMPLE_PROFILES:
        raise FilmRecoveryError(f"unknown sample branch {branch!r}.", where="branch",
                                fix=f"Choose one of {', '.join(SAMPLE_PROFILES)}.")
    scale = SAMPLE_PROFILES[branch]["reference_scale"]
    reference_width, reference_height = reference_size or (None, None)
    reference_width = reference_width or max(24, round(width * scale))
    reference_height = reference_height or max(24, round(height * scale))
    out_dir = Path(out_dir)
    _check_arguments(out_dir, frames, width, height, reference_width, reference_height)
    plan = _plan_sample(out_dir, seed, frames, (width, height), (reference_width, reference_height), branch)

    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_frames(out_dir, plan.first, plan.last)
    write_exr(out_dir / FADE_MAP, np.repeat(plan.fade_strength[..., None], 3, axis=2))
    reference_frames, pairs, breathing = _render_frames(plan, reporter)
    info = _sample_info(plan)
    _write_json(out_dir / TRUTH_FILE, _truth_document(plan, reference_frames, pairs, breathing))
    _write_json(out_dir / INFO_FILE, {"schema": "film_recovery.sample", "version": 1, **info.as_dict(),
                                      "description": ("Built-in sample shot: faded Source, graded "
                                      "letterboxed Reference" if branch == "chroma" else "Built-in spatial "
                                      "sample shot: soft, grainy Source, sharper graded Reference")
                                      + ", truth in truth/truth.json."})
    return info


def load_truth(out_dir: str | Path) -> dict[str, Any]:
    """truth/truth.json of a sample folder, with each M also as a 3x3 numpy array (`M_matrix`)."""
    path = Path(out_dir) / TRUTH_FILE
    if not path.exists():
        raise FilmRecoveryError("no sample truth here.", where=str(path),
                                fix="Run `python -m ml sample --out DIR` first, or point at that DIR.")
    try:
        truth = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FilmRecoveryError(f"unreadable truth file ({exc}).", where=str(path),
                                fix="Generate the sample again.") from exc
    if truth.get("schema") != TRUTH_SCHEMA:
        raise FilmRecoveryError(f"not a sample truth file (schema {truth.get('schema')!r}).",
                                where=str(path), fix="Generate the sample again.")
    for entry in truth["reference_frames"]:
        entry["M_matrix"] = np.asarray(entry["M"], dtype=np.float64).reshape(3, 3)
    return truth
