"""MatchGrade-style global colour baselines fitted on the accepted training pairs.

A baseline maps every pixel's colour through one global function, with no spatial context.
If the model cannot beat it, the model has learnt nothing a grade could not do. Three kinds:

- "lut": a smoothed least-squares 3D LUT (default). Node values minimise
  mean ||trilinear(LUT, input) - target||^2 + lambda * mean (second differences / h^2)^2
  + mu * mean ||LUT - identity||^2. The smoothness term uses second differences along each
  axis, so any LUT linear along each axis (the identity included) costs nothing; the tiny
  identity prior decides the nodes that no data reaches. Solved per channel by
  Jacobi-preconditioned conjugate gradients on the sparse normal equations, in numpy.
- "affine": out = M @ [r, g, b, 1] (3x4 least squares).
- "rootpoly": Finlayson's degree-2 root polynomial, out = M @ [r, g, b, sqrt(rg), sqrt(gb),
  sqrt(rb)] (3x6 least squares; exposure-invariant, no offset).

Each is fitted in a stated domain: "display" (the display-referred Rec.709 2.4 values the
pairs hold) or "log" (display -> linear light by the 2.4 gamma -> a log2 encoding that maps
0..1 to 0..1 over ten stops), and applied in the same domain.

Any fit can be exported as a display-domain `.cube` (Resolve/Nuke/OCIO: LUT_3D_SIZE,
DOMAIN_MIN/MAX, red index fastest), sampled from `apply_baseline` on the grid.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .colour import apply_lut3d
from .errors import FilmRecoveryError, InputImageError
from .imageio import atomic_path, read_header, write_exr

BaselineKind = Literal["lut", "affine", "rootpoly"]
BaselineDomain = Literal["display", "log"]

FIT_SCHEMA = "film_recovery.baseline"
FIT_ATTRIBUTE = "filmrecovery:baseline_fit"  # EXR header: which fit rendered the frame

# Curvature weight of the LUT fit. Measured on six field-corpus shots (bench/bench_baseline_fit.py,
# docs/benchmarks.md): 1e-5 beat the earlier 1e-4 on held-out frames against truth (PSNR-CbCr 36.39 vs
# 35.90 dB, CIEDE2000 2.58 vs 2.79); smoother fits flatten real grades, rougher ones extrapolate
# badly where pairs are thin. Clamped target pixels are kept: dropping them lost up to 2.8 dB.
DEFAULT_SMOOTHNESS = 1e-5

# Against a Reference of much lower resolution than the Source (an SD transfer of a 2K scan), the LUT is
# matched on colour coarser than the Reference resolves: both sides blurred by a Gaussian of the warp's
# scale (Source px per Reference px) before they are compared (`fit_lut_band`); against a block-coded
# Reference, by its coding blocks (`guide.coding_block_sigma`). Measured on the field corpus (held-out
# frames against truth, CIEDE2000, pixel by pixel -> band-limited): SD References pal_speedup 4.70 -> 3.98,
# ntsc_pulldown 2.30 -> 2.17, pan_scan 3.32 -> 2.96; the block-coded high_key 2.79 -> 2.33. Near the
# Source's resolution (scale 1.0-1.45) the pixel-by-pixel fit is kept: there it also damps the Source's
# grain (band-limited at the warp scale, sky_wall went 1.21 -> 1.42 and turning 2.91 -> 2.96; the spatial
# kinds lost 0.1-0.2 dB). An SD Reference whose chroma is 4:2:0 (the dataset manifest's `half_chroma`)
# resolves colour at twice its pixel size, so its band doubles: pal_speedup 30.8 / 3.98 -> 32.7 / 3.56
# (PSNR-CbCr / CIEDE2000), ntsc_pulldown 40.2 / 2.17 -> 39.8 / 2.20.
BAND_MIN_SCALE = 1.5
BAND_PIXELS = 1_000_000  # pixels of the pairs the band-limited fit sees (seeded windows beyond that)
BAND_ITERATIONS = 80

_LOG_STOPS = 10.0
_LOG_OFFSET = 2.0 ** -_LOG_STOPS  # linear light added before log2 so black stays finite
_GAMMA = 2.4


# --------------------------------------------------------------------------- domains

def to_domain(rgb: np.ndarray, domain: BaselineDomain) -> np.ndarray:
    """Display-referred values -> the fitting domain."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if domain == "display":
        return rgb
    linear = np.maximum(rgb, 0.0) ** _GAMMA
    scale = np.log2(1.0 + _LOG_OFFSET) - np.log2(_LOG_OFFSET)
    return ((np.log2(linear + _LOG_OFFSET) - np.log2(_LOG_OFFSET)) / scale).astype(np.float32)


def from_domain(values: np.ndarray, domain: BaselineDomain) -> np.ndarray:
    """The fitting domain -> display-referred values (inverse of `to_domain` for values >= 0)."""
    values = np.asarray(values, dtype=np.float32)
    if domain == "display":
        return values
    scale = np.log2(1.0 + _LOG_OFFSET) - np.log2(_LOG_OFFSET)
    linear = np.exp2(values * scale + np.log2(_LOG_OFFSET)) - _LOG_OFFSET
    return (np.maximum(linear, 0.0) ** (1.0 / _GAMMA)).astype(np.float32)


# --------------------------------------------------------------------------- the fit

@dataclass
class BaselineFit:
    """A fitted global colour transform. `params` is the LUT (n, n, n, 3) indexed [r, g, b]
    for "lut", or the matrix (3, 4) / (3, 6) for "affine" / "rootpoly"."""

    kind: BaselineKind
    domain: BaselineDomain
    params: np.ndarray
    settings: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"schema": FIT_SCHEMA, "version": 1, "kind": self.kind, "domain": self.domain,
                "shape": list(self.params.shape),
                "params": np.round(self.params.astype(np.float64), 7).ravel().tolist(),
                "settings": self.settings, "stats": self.stats}

    @property
    def fit_id(self) -> str:
        """A short hash of the transform itself (not of the statistics)."""
        digest = hashlib.sha1()
        digest.update(f"{self.kind}/{self.domain}/{self.params.shape}".encode())
        digest.update(np.round(self.params.astype(np.float64), 7).tobytes())
        return digest.hexdigest()[:12]


def fit_from_dict(data: dict, where: str = "baseline fit") -> BaselineFit:
    if data.get("schema") != FIT_SCHEMA:
        raise FilmRecoveryError("not a baseline fit file.", where=where,
                                fix="Run `python -m ml baseline job.json` to fit one.")
    params = np.asarray(data["params"], dtype=np.float32).reshape(data["shape"])
    return BaselineFit(data["kind"], data["domain"], params, data.get("settings", {}), data.get("stats", {}))


def save_fit(fit: BaselineFit, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(fit.to_dict()), encoding="utf-8")
    return path


def load_fit(path: str | os.PathLike) -> BaselineFit:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FilmRecoveryError(f"cannot read the baseline fit ({exc}).", where=str(path),
                                fix="Run `python -m ml baseline job.json` to fit it again.") from exc
    return fit_from_dict(data, where=str(path))


# --------------------------------------------------------------------------- trilinear LUT

_CORNERS = np.array([[dr, dg, db] for dr in (0, 1) for dg in (0, 1) for db in (0, 1)], dtype=np.int64)


def _corner_weights(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For colours (S, 3) in the 0..1 domain (clamped, as OCIO does): the flat index of each
    sample's cell base node (S,) and the 8 trilinear corner weights (S, 8), corner order
    `_CORNERS`."""
    pos = np.clip(coords, 0.0, 1.0) * (size - 1)
    base = np.minimum(np.floor(pos).astype(np.int64), size - 2)
    frac = (pos - base).astype(np.float64)
    weights = np.ones((coords.shape[0], 8), dtype=np.float64)
    for k, corner in enumerate(_CORNERS):
        for axis in range(3):
            weights[:, k] *= frac[:, axis] if corner[axis] else 1.0 - frac[:, axis]
    flat_base = (base[:, 0] * size + base[:, 1]) * size + base[:, 2]
    return flat_base, weights


def _corner_offsets(size: int) -> np.ndarray:
    return (_CORNERS[:, 0] * size + _CORNERS[:, 1]) * size + _CORNERS[:, 2]


def identity_lut(size: int) -> np.ndarray:
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r, g, b], axis=-1)


def _second_difference_penalty(x: np.ndarray) -> np.ndarray:
    """D^T D x summed over the three axes, for x (n, n, n, channels): the gradient of
    0.5 * sum of squared second differences along each axis."""
    out = np.zeros_like(x)
    for axis in range(3):
        moved = np.moveaxis(x, axis, 0)
        d2 = moved[:-2] - 2.0 * moved[1:-1] + moved[2:]
        acc = np.moveaxis(out, axis, 0)
        acc[:-2] += d2
        acc[1:-1] -= 2.0 * d2
        acc[2:] += d2
    return out


def _second_difference_diagonal(size: int) -> np.ndarray:
    """The diagonal of sum_axes D^T D on the grid (for the Jacobi preconditioner)."""
    per_axis = np.zeros(size)
    for start in range(size - 2):
        per_axis[start:start + 3] += np.array([1.0, 4.0, 1.0])
    diag = np.zeros((size, size, size))
    diag += per_axis[:, None, None]
    diag += per_axis[None, :, None]
    diag += per_axis[None, None, :]
    return diag


def fit_lut(inputs: np.ndarray, targets: np.ndarray, size: int = 17, smoothness: float = DEFAULT_SMOOTHNESS,
            identity_weight: float = 1e-4, max_iterations: int = 3000, tolerance: float = 1e-5,
            initial: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Least-squares 3D LUT from colour samples (S, 3) -> (S, 3), both in the 0..1 domain.

    Returns the LUT (size, size, size, 3) indexed [r, g, b] and solver statistics. The normal
    matrix is held as one 8x8 block per LUT cell (sum of w w^T over the cell's samples,
    accumulated with np.bincount), so a matrix-vector product costs O(cells), not O(samples).
    """
    if size < 2:
        raise ValueError("LUT size must be at least 2")
    inputs = np.asarray(inputs, dtype=np.float64).reshape(-1, 3)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 3)
    samples = inputs.shape[0]
    nodes = size ** 3
    identity = identity_lut(size).astype(np.float64)
    offsets = _corner_offsets(size)

    # Data term, normalised per sample: (1/S) W^T W and (1/S) W^T t.
    base, weights = _corner_weights(inputs, size)
    unique_bases, cell_index = np.unique(base, return_inverse=True)
    cells = unique_bases.size
    cell_blocks = np.zeros((cells, 8, 8))
    rhs = np.zeros((nodes, 3))
    for a in range(8):
        for b in range(a, 8):
            block = np.bincount(cell_index, weights=weights[:, a] * weights[:, b], minlength=cells) / samples
            cell_blocks[:, a, b] = block
            cell_blocks[:, b, a] = block
        for channel in range(3):
            rhs[:, channel] += np.bincount(base + offsets[a], weights=weights[:, a] * targets[:, channel],
                                           minlength=nodes) / samples
    cell_nodes = unique_bases[:, None] + offsets[None, :]  # (cells, 8)

    regulariser = _Regulariser(size, smoothness, identity_weight)
    rhs += regulariser.prior_weight * identity.reshape(nodes, 3)

    def matvec(x: np.ndarray) -> np.ndarray:
        gathered = x[cell_nodes]  # (cells, 8, 3)
        local = np.einsum("cab,cbk->cak", cell_blocks, gathered)
        out = np.zeros_like(x)
        for channel in range(3):
            out[:, channel] = np.bincount(cell_nodes.ravel(), weights=local[:, :, channel].ravel(),
                                          minlength=nodes)
        return out + regulariser.apply(x)

    diagonal = np.bincount(cell_nodes.ravel(), weights=np.einsum("caa->ca", cell_blocks).ravel(), minlength=nodes)
    start = identity if initial is None else np.asarray(initial, dtype=np.float64)
    x, solver = _conjugate_gradients(matvec, rhs, start.reshape(nodes, 3), diagonal + regulariser.diagonal(),
                                     max_iterations, tolerance)
    solver.update(cells_with_data=int(unique_bases.size), cells=(size - 1) ** 3)
    return x.reshape(size, size, size, 3).astype(np.float32), solver


class _Regulariser:
    """The LUT's curvature penalty and identity prior (normal-equation terms). Weights: the mean
    over nodes of (second difference / h^2)^2, h = 1/(n-1), and of ||LUT - identity||^2."""

    def __init__(self, size: int, smoothness: float, identity_weight: float):
        self.size = size
        nodes = size ** 3
        self.smooth_weight = smoothness * (size - 1) ** 4 / nodes
        self.prior_weight = identity_weight / nodes

    def apply(self, x: np.ndarray) -> np.ndarray:
        n = self.size
        return (self.smooth_weight * _second_difference_penalty(x.reshape(n, n, n, 3)).reshape(n ** 3, 3)
                + self.prior_weight * x)

    def diagonal(self) -> np.ndarray:
        return self.smooth_weight * _second_difference_diagonal(self.size).ravel() + self.prior_weight


def _conjugate_gradients(matvec: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray, start: np.ndarray,
                         diagonal: np.ndarray, max_iterations: int, tolerance: float) -> tuple[np.ndarray, dict]:
    """Jacobi-preconditioned conjugate gradients, the three channels side by side."""
    inverse_diagonal = (1.0 / np.maximum(diagonal, 1e-300))[:, None]
    x = start.copy()
    residual = rhs - matvec(x)
    rhs_norm = np.linalg.norm(rhs, axis=0)
    z = inverse_diagonal * residual
    direction = z.copy()
    rz = np.sum(residual * z, axis=0)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        a_dir = matvec(direction)
        alpha = rz / np.maximum(np.sum(direction * a_dir, axis=0), 1e-300)
        x += alpha * direction
        residual -= alpha * a_dir
        if np.all(np.linalg.norm(residual, axis=0) <= tolerance * rhs_norm):
            break
        z = inverse_diagonal * residual
        rz_new = np.sum(residual * z, axis=0)
        direction = z + (rz_new / np.maximum(rz, 1e-300)) * direction
        rz = rz_new
    relative_residual = float(np.max(np.linalg.norm(residual, axis=0) / np.maximum(rhs_norm, 1e-300)))
    return x, {"iterations": iterations, "relative_residual": relative_residual}


def fit_lut_band(images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], sigma: float, size: int = 17,
                 smoothness: float = DEFAULT_SMOOTHNESS, identity_weight: float = 1e-4,
                 max_iterations: int = BAND_ITERATIONS, tolerance: float = 1e-4,
                 initial: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """The 3D LUT whose output matches the targets after both are blurred by a Gaussian of `sigma` px.

    `images`: (input (H, W, 3), target (H, W, 3), valid (H, W)) in the 0..1 domain. The data term is
    mean ||G * (trilinear(LUT, input) - target)||^2 over the pixels whose whole blur window is valid,
    the regulariser `fit_lut`'s. A soft Reference's colour is right only at the scales it resolves:
    fitted pixel by pixel, the LUT also learns its blur and maps the Source's fine colour towards the
    local mean (desaturating texture); compared after the blur, only the coarse colour is matched and
    the LUT carries the Source's fine colour through the same grade. The blurred residual stays
    linear in the node values, so this is still a least-squares fit, solved matrix-free (blur, then
    its transpose: the same Gaussian with zero edges)."""
    from .primitives import gaussian_blur

    nodes = size ** 3
    offsets = _corner_offsets(size)

    def blur(image: np.ndarray) -> np.ndarray:
        return gaussian_blur(image, sigma, edge="constant")

    prepared = []
    for inputs, targets, valid in images:
        shape = inputs.shape[:2]
        base, weights = _corner_weights(np.asarray(inputs, dtype=np.float64).reshape(-1, 3), size)
        inside = (blur(np.asarray(valid, dtype=np.float32)) > 0.999).astype(np.float32)
        prepared.append((shape, base, weights, inside, np.asarray(targets, dtype=np.float32)))
    count = float(sum(p[3].sum() for p in prepared))
    if count <= 0:
        raise FilmRecoveryError(f"no pixel of the pairs has a whole {sigma:.1f} px blur window of picture.",
                                where="baseline fit", fix="Export a larger crop, or fit with --band-sigma 0.")

    def spread(shape, base, weights, inside, image: np.ndarray) -> np.ndarray:
        """W^T G m G image: the blurred residual's gradient on the nodes."""
        back = blur(blur(image) * inside[..., None]).reshape(-1, 3)
        out = np.zeros((nodes, 3))
        for a in range(8):
            for channel in range(3):
                out[:, channel] += np.bincount(base + offsets[a], weights=weights[:, a] * back[:, channel],
                                               minlength=nodes)
        return out

    def lookup(shape, base, weights, x: np.ndarray) -> np.ndarray:
        values = np.zeros((base.size, 3))
        for a in range(8):
            values += weights[:, a:a + 1] * x[base + offsets[a]]
        return values.reshape(*shape, 3).astype(np.float32)

    regulariser = _Regulariser(size, smoothness, identity_weight)
    rhs = sum(spread(shape, base, weights, inside, targets) for shape, base, weights, inside, targets in prepared)
    rhs = rhs / count + regulariser.prior_weight * identity_lut(size).astype(np.float64).reshape(nodes, 3)

    def matvec(x: np.ndarray) -> np.ndarray:
        data = sum(spread(shape, base, weights, inside, lookup(shape, base, weights, x))
                   for shape, base, weights, inside, _ in prepared)
        return data / count + regulariser.apply(x)

    # Jacobi: the unblurred data diagonal (the blur spreads it, the scale is what matters)
    diagonal = sum(np.bincount(base + offsets[a], weights=weights[:, a] ** 2, minlength=nodes)
                   for _, base, weights, _, _ in prepared for a in range(8)) / max(count, 1.0)
    start = identity_lut(size) if initial is None else initial
    x, solver = _conjugate_gradients(matvec, rhs, np.asarray(start, dtype=np.float64).reshape(nodes, 3),
                                     diagonal + regulariser.diagonal(), max_iterations, tolerance)
    solver.update(band_sigma=float(sigma), band_pixels=int(count))
    return x.reshape(size, size, size, 3).astype(np.float32), solver


# --------------------------------------------------------------------------- matrices

def _affine_terms(rgb: np.ndarray) -> np.ndarray:
    flat = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    return np.concatenate([flat, np.ones((flat.shape[0], 1))], axis=1)


def _root_polynomial_terms(rgb: np.ndarray) -> np.ndarray:
    flat = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    r, g, b = flat[:, 0], flat[:, 1], flat[:, 2]
    # Products of negative values (below-black noise) would give roots of no meaning: clamp.
    roots = [np.sqrt(np.maximum(p, 0.0)) for p in (r * g, g * b, r * b)]
    return np.stack([r, g, b, *roots], axis=1)


_TERMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"affine": _affine_terms, "rootpoly": _root_polynomial_terms}


def fit_matrix(inputs: np.ndarray, targets: np.ndarray, kind: Literal["affine", "rootpoly"]) -> np.ndarray:
    """Least-squares matrix (3, terms) so that targets ~ terms(inputs) @ M.T."""
    terms = _TERMS[kind](inputs)
    solution, *_ = np.linalg.lstsq(terms, np.asarray(targets, dtype=np.float64).reshape(-1, 3), rcond=None)
    return solution.T.astype(np.float32)


# --------------------------------------------------------------------------- fit / apply

def fit_baseline(inputs: np.ndarray, targets: np.ndarray, kind: BaselineKind = "lut",
                 domain: BaselineDomain = "display", lut_size: int = 17,
                 smoothness: float = DEFAULT_SMOOTHNESS) -> BaselineFit:
    """Fit a baseline from display-referred colour samples (S, 3) -> (S, 3)."""
    x = to_domain(np.asarray(inputs).reshape(-1, 3), domain)
    y = to_domain(np.asarray(targets).reshape(-1, 3), domain)
    settings: dict = {"kind": kind, "domain": domain}
    stats: dict = {"samples": int(x.shape[0])}
    if kind == "lut":
        settings.update(lut_size=lut_size, smoothness=smoothness)
        initial = None
        if lut_size > 17:
            # Coarse-to-fine: a 17^3 solve, upsampled, starts the fine solve near its answer.
            coarse, _ = fit_lut(x, y, 17, smoothness)
            initial = apply_lut3d(identity_lut(lut_size), coarse, "trilinear")
        params, solver = fit_lut(x, y, lut_size, smoothness, initial=initial)
        stats.update(solver)
    elif kind in _TERMS:
        params = fit_matrix(x, y, kind)
    else:
        raise FilmRecoveryError(f"unknown baseline kind {kind!r}.", where="baseline kind",
                                fix="Use lut, affine or rootpoly.")
    fit = BaselineFit(kind, domain, params, settings, stats)
    fit.stats["fit_rmse"] = float(np.sqrt(np.mean((apply_baseline(inputs, fit) - np.asarray(targets).reshape(-1, 3)) ** 2)))
    return fit


def apply_baseline(rgb: np.ndarray, fit: BaselineFit) -> np.ndarray:
    """Apply a fit to display-referred colours (..., 3); returns display-referred float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    x = to_domain(rgb, fit.domain)
    if fit.kind == "lut":
        y = apply_lut3d(x, fit.params, "trilinear")
    else:
        y = (_TERMS[fit.kind](x) @ fit.params.T.astype(np.float64)).astype(np.float32).reshape(rgb.shape)
    return from_domain(y, fit.domain).reshape(rgb.shape)


# --------------------------------------------------------------------------- .cube

def bake_lut(fit: BaselineFit, size: int = 33) -> np.ndarray:
    """Sample a fit on a display-domain grid: the LUT (size, size, size, 3) a .cube carries."""
    if fit.kind == "lut" and fit.domain == "display" and fit.params.shape[0] == size:
        return fit.params.copy()
    return apply_baseline(identity_lut(size), fit)


def write_cube(path: str | os.PathLike, lut: np.ndarray, title: str = "Film Recovery baseline") -> Path:
    """Write a 3D LUT (n, n, n, 3) indexed [r, g, b] as a .cube over 0..1 (red index fastest)."""
    size = lut.shape[0]
    rows = np.asarray(lut, dtype=np.float64).transpose(2, 1, 0, 3).reshape(-1, 3)  # b slowest, r fastest
    lines = [f'TITLE "{title}"', f"LUT_3D_SIZE {size}", "DOMAIN_MIN 0.0 0.0 0.0", "DOMAIN_MAX 1.0 1.0 1.0"]
    lines += [f"{r:.7f} {g:.7f} {b:.7f}" for r, g, b in rows]
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def apply_cube_with_ocio(path: str | os.PathLike, rgb: np.ndarray) -> np.ndarray:
    """Apply a .cube through OpenColorIO's FileTransform (trilinear), as Resolve/Nuke would."""
    import PyOpenColorIO as ocio

    ocio.ClearAllCaches()  # OCIO caches LUT files by path; a re-exported .cube must be re-read
    config = ocio.Config.CreateRaw()
    transform = ocio.FileTransform(src=str(Path(path).resolve()), interpolation=ocio.INTERP_LINEAR,
                                   direction=ocio.TRANSFORM_DIR_FORWARD)
    processor = config.getProcessor(transform).getDefaultCPUProcessor()
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.float32).reshape(-1, 3)).copy()
    processor.applyRGB(pixels)
    return pixels.reshape(np.shape(rgb))


def check_cube_with_ocio(path: str | os.PathLike, lut: np.ndarray, samples: int = 4096) -> float:
    """Largest difference between OCIO applying the exported .cube and `colour.apply_lut3d` (trilinear) on the
    same LUT, on random colours inside the domain. Near zero when the export is right."""
    colours = np.random.default_rng(0).random((samples, 3), dtype=np.float32)
    return float(np.max(np.abs(apply_cube_with_ocio(path, colours) - apply_lut3d(colours, lut, "trilinear"))))


def bake_error(fit: BaselineFit, lut: np.ndarray, samples: int = 4096) -> float:
    """Largest difference between a baked LUT and the exact fit on random display colours:
    what the .cube loses by sampling (zero for a display-domain LUT of the same size)."""
    colours = np.random.default_rng(1).random((samples, 3), dtype=np.float32)
    return float(np.max(np.abs(apply_lut3d(colours, lut, "trilinear") - apply_baseline(colours, fit))))


# --------------------------------------------------------------------------- from a dataset

def collect_samples(pairs: Iterable[tuple[np.ndarray, np.ndarray]], max_samples: int = 2_000_000,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Colour samples (S, 3) from (input, target) image pairs: a seeded random subset of each
    pair's pixels, at most `max_samples` in all, split evenly between the pairs."""
    pairs = list(pairs)
    if not pairs:
        raise FilmRecoveryError("no training pairs to fit the baseline on.", where="dataset manifest",
                                fix="Accept some pairs (not all held out) and export the dataset.")
    rng = np.random.default_rng(seed)
    per_pair = max(1, max_samples // len(pairs))
    inputs, targets = [], []
    for source, target in pairs:
        flat_in, flat_out = source.reshape(-1, 3), target.reshape(-1, 3)
        if flat_in.shape[0] > per_pair:
            pick = rng.choice(flat_in.shape[0], per_pair, replace=False)
            flat_in, flat_out = flat_in[pick], flat_out[pick]
        inputs.append(flat_in)
        targets.append(flat_out)
    return np.concatenate(inputs), np.concatenate(targets)


def dataset_band_sigma(dataset) -> float:
    """`fit_lut_band`'s Gaussian for a dataset (0: fit pixel by pixel): a block-coded Reference's
    `guide.coding_block_sigma`, else the median warp scale of its training pairs (Source px per
    Reference px, the manifest's matrices) where it is at least BAND_MIN_SCALE, doubled where the
    Reference's chroma has half its luma's resolution (the manifest's `half_chroma`)."""
    from .guide import coding_block_sigma, training_matrices
    from .warp import scale_of

    blocks = coding_block_sigma(dataset)
    if blocks > 0:
        return blocks
    matrices = training_matrices(dataset)
    scale = float(np.median([scale_of(m) for m in matrices])) if matrices else 0.0
    if scale < BAND_MIN_SCALE:
        return 0.0
    return scale * (2.0 if dataset.manifest.get("half_chroma") else 1.0)


def band_windows(pairs, pixels: int, seed: int, domain: BaselineDomain) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(input, target, valid) in the fitting domain from dataset pairs, at most `pixels` in all: each
    pair whole, or a seeded window of its share. Valid is the pair's coverage (where the Reference
    is agreeing picture: no subtitles, no bars) when the export has one."""
    rng = np.random.default_rng(seed)
    share = max(1, pixels // max(1, len(pairs)))
    out = []
    for pair in pairs:
        h, w = pair.input.shape[:2]
        if h * w > share:
            side = int(np.sqrt(share))
            wh, ww = min(h, max(side, share // w)), min(w, max(side, share // h))
            y, x = int(rng.integers(h - wh + 1)), int(rng.integers(w - ww + 1))
            box = (slice(y, y + wh), slice(x, x + ww))
        else:
            box = (slice(0, h), slice(0, w))
        valid = (pair.coverage[box] > 0.5) if pair.coverage is not None else np.ones((h, w), bool)[box]
        out.append((to_domain(pair.input[box], domain), to_domain(pair.target[box], domain), valid))
    return out


def fit_from_dataset(dataset, kind: BaselineKind = "lut", domain: BaselineDomain = "display", lut_size: int = 17,
                     smoothness: float = DEFAULT_SMOOTHNESS, max_samples: int = 2_000_000,
                     seed: int = 0, band_sigma: float | None = None) -> BaselineFit:
    """Fit on a loaded dataset's training pairs (`ml.dataset_io.load_dataset`); records the
    dataset it came from and, when pairs are held out, the RMSE on them. A LUT is then refined on
    colour coarser than `band_sigma` px (`fit_lut_band`; None: `dataset_band_sigma`, 0: off)."""
    training = dataset.training_pairs
    inputs, targets = collect_samples(((p.input, p.target) for p in training), max_samples, seed)
    fit = fit_baseline(inputs, targets, kind, domain, lut_size, smoothness)
    sigma = dataset_band_sigma(dataset) if band_sigma is None else float(band_sigma)
    if kind == "lut" and sigma > 0:
        try:
            params, solver = fit_lut_band(band_windows(training, BAND_PIXELS, seed, domain), sigma, lut_size,
                                          smoothness, initial=fit.params)
        except FilmRecoveryError as exc:  # name the dataset whose pairs are too small for the band
            raise FilmRecoveryError(exc.problem, where=str(Path(dataset.folder) / "manifest.json"),
                                    fix=exc.fix) from exc
        fit = BaselineFit(kind, domain, params, dict(fit.settings), {**fit.stats, **solver})
        fit.stats["fit_rmse"] = float(np.sqrt(np.mean((apply_baseline(inputs, fit) - targets.reshape(-1, 3)) ** 2)))
    fit.settings.update(band_sigma=sigma if kind == "lut" else 0.0)
    fit.settings.update(dataset=str(dataset.folder), dataset_hash=dataset.manifest_hash,
                        training_pairs=[p.name for p in training])
    if dataset.holdout_pairs:
        errors = [np.mean((apply_baseline(p.input, fit) - p.target) ** 2) for p in dataset.holdout_pairs]
        fit.stats["holdout_rmse"] = float(np.sqrt(np.mean(errors)))
    return fit


# --------------------------------------------------------------------------- sequence render

def baseline_frame_path(out_dir: str | os.PathLike, name: str, frame: int) -> Path:
    return Path(out_dir) / f"{name}.{frame:04d}.exr"


def is_current_frame(path: Path, fit: BaselineFit) -> bool:
    """True when `path` is a readable EXR that this same fit rendered."""
    if not path.exists():
        return False
    try:
        return read_header(path).get(FIT_ATTRIBUTE) == fit.fit_id
    except InputImageError:
        return False


def render_baseline_frames(fit: BaselineFit, frames: list[int], read_frame: Callable[[int], np.ndarray],
                           out_dir: str | os.PathLike, name: str, reporter, compression: str = "zip",
                           force: bool = False) -> dict:
    """Apply `fit` to every frame (read_frame(frame) -> display RGB) and write half EXRs,
    skipping frames this fit already rendered. Returns counts written/skipped."""
    written = skipped = 0
    total = len(frames)
    for done, frame in enumerate(frames, start=1):
        out = baseline_frame_path(out_dir, name, frame)
        if not force and is_current_frame(out, fit):
            skipped += 1
            reporter.progress(done, total, "baseline", f"frame {frame} up to date")
            continue
        write_exr(out, apply_baseline(read_frame(frame), fit), compression=compression,
                  attributes={FIT_ATTRIBUTE: fit.fit_id, "filmrecovery:source_frame": int(frame),
                              "filmrecovery:baseline": f"{fit.kind}/{fit.domain}"})
        written += 1
        reporter.progress(done, total, "baseline", f"frame {frame}")
    return {"written": written, "skipped": skipped}


def dataset_folder(job) -> Path:
    """The job's dataset folder (job.dataset_dir, else work_dir/dataset)."""
    return Path(job.dataset_dir) if job.dataset_dir else job.work_path("dataset")


CUBE_TOLERANCE = 1e-4  # OCIO vs numpy on the exported LUT; larger means the export is wrong


@dataclass(frozen=True)
class BaselineOptions:
    """The `baseline` stage's settings (the command's flags)."""
    kind: str = "lut"                 # lut | affine | rootpoly
    domain: str = "display"           # display | log
    lut_size: int = 17
    smoothness: float = DEFAULT_SMOOTHNESS
    cube_size: int = 33               # nodes per axis of the exported .cube
    max_samples: int = 2_000_000      # pixels sampled from the pairs
    band_sigma: float | None = None   # LUT matched on colour coarser than this (px); None: `dataset_band_sigma`, 0: off
    render: bool = True               # render the baseline over every Source frame
    force: bool = False               # re-render frames this fit already rendered


def baseline_job(job, reporter, options: BaselineOptions | None = None) -> dict:
    """The whole `baseline` stage: fit on the job's dataset, save fit.json, export the .cube (checked
    through OpenColorIO) and render the baseline over every Source frame into work_dir/baseline/.
    Progress and metrics go to `reporter`; returns the result."""
    from .dataset_io import load_dataset

    options = options or BaselineOptions()
    kind, domain = options.kind, options.domain

    dataset = load_dataset(dataset_folder(job))
    reporter.progress(0, 1, "baseline fit", f"{kind} in the {domain} domain, "
                      f"{len(dataset.training_pairs)} training pair(s)")
    fit = fit_from_dataset(dataset, kind, domain, options.lut_size, options.smoothness, options.max_samples,
                           job.training.seed, options.band_sigma)
    band = fit.settings.get("band_sigma", 0.0)
    reporter.progress(1, 1, "baseline fit", f"fit RMSE {fit.stats['fit_rmse']:.4f}"
                      + (f", matched on colour coarser than {band:.1f} px" if band else ""))
    reporter.metric("baseline_fit_rmse", fit.stats["fit_rmse"])
    if "holdout_rmse" in fit.stats:
        reporter.metric("baseline_holdout_rmse", fit.stats["holdout_rmse"])

    out_dir = job.work_path("baseline")
    fit_path = save_fit(fit, out_dir / "fit.json")
    lut = bake_lut(fit, options.cube_size)
    cube_path = write_cube(out_dir / f"{job.name}_baseline.cube", lut,
                           title=f"Film Recovery baseline {fit.kind}/{fit.domain} {fit.fit_id}")
    ocio_difference = check_cube_with_ocio(cube_path, lut)
    if ocio_difference > CUBE_TOLERANCE:
        raise FilmRecoveryError(f"OpenColorIO applies the exported LUT differently (max {ocio_difference:.2g}).",
                                where=str(cube_path), fix="Report this as a bug; the .cube export is wrong.")
    cube_error = bake_error(fit, lut)
    reporter.metric("cube_ocio_difference", ocio_difference)
    reporter.metric("cube_bake_error", cube_error)

    counts = {"written": 0, "skipped": 0}
    if options.render:
        from .ingest import plate_frames, source_frame

        counts = render_baseline_frames(fit, list(plate_frames(job.source)), lambda frame: source_frame(job, frame),
                                        out_dir, job.name, reporter, compression=job.output.compression,
                                        force=options.force)
    return {"fit": str(fit_path), "cube": str(cube_path), "fit_id": fit.fit_id, "kind": fit.kind, "domain": fit.domain,
            "band_sigma": band,
            "fit_rmse": fit.stats["fit_rmse"], "holdout_rmse": fit.stats.get("holdout_rmse"),
            "cube_ocio_difference": ocio_difference, "cube_bake_error": cube_error,
            "frames": str(out_dir / f"{job.name}.####.exr"), **counts}
