"""Recovery networks: a UNet-style encoder–decoder and a bilateral-grid colour model.

Both work in engine YCbCr (BT.709 full range, Cb/Cr centred on 0). The network sees the
Source's three YCbCr channels and predicts a residual only for the channels its branch changes
(Cb, Cr for chroma; Y for spatial); the other channels are copied from the Source untouched, so
grain and detail the branch must keep survive by construction.
The spatial branch's luma residual sits on a per-shot tone curve of the Source luma (`LumaCurve`),
the chroma branch's colour residual on the shot's baseline 3D LUT (`ColourLUT`); both are fitted to
the training pairs before training.

`RecoveryModel` wraps a core network with that channel bookkeeping and with padding to the
network's size multiple (reflect, then cropped back), so any frame size works.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# BT.709 luma weights; Cb = (B - Y) / 1.8556, Cr = (R - Y) / 1.5748 (ml/colour.py, numpy side).
_KR, _KG, _KB = 0.2126, 0.7152, 0.0722
_CB_SCALE, _CR_SCALE = 1.8556, 1.5748

CHANNEL_NAMES = ("Y", "Cb", "Cr")
GUIDE_CHANNELS = 4  # the aligned Reference's YCbCr and its coverage (1: real, agreeing Reference picture)
BRANCH_CHANNELS = {"chroma": (1, 2), "spatial": (0,)}


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> engine YCbCr, same layout."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = _KR * r + _KG * g + _KB * b
    return torch.cat([y, (b - y) / _CB_SCALE, (r - y) / _CR_SCALE], dim=1)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_ycbcr`."""
    y, cb, cr = ycbcr[:, 0:1], ycbcr[:, 1:2], ycbcr[:, 2:3]
    r = y + _CR_SCALE * cr
    b = y + _CB_SCALE * cb
    g = (y - _KR * r - _KB * b) / _KG
    return torch.cat([r, g, b], dim=1)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; stored in every model's JSON sidecar."""

    kind: str  # "unet" | "bilateral"
    size: str  # "tiny" | "small" | "medium" | "large"
    branch: str  # "chroma" | "spatial"
    width: int  # base channel count
    levels: int  # UNet: down-samplings; bilateral: stride-2 stages of the low-res CNN
    downsample: int = 1  # bilateral only: full-res -> low-res factor
    grid_depth: int = 8  # bilateral only: luma/guide bins of the grid
    position: bool = False  # also sees each pixel's place in the frame (uneven fades, vignettes)
    tone_curve: bool = False  # spatial: a per-shot luma tone curve (fitted before training) under the residual
    guided: bool = False  # also sees the aligned Reference (YCbCr + coverage, `ml.guide`) where it covers
    colour_lut: bool = False  # chroma: the shot's baseline 3D LUT (fitted before training) under the residual

    @property
    def input_channels(self) -> int:
        return 3 + (2 if self.position else 0) + (GUIDE_CHANNELS if self.guided else 0)

    @property
    def predicted_channels(self) -> tuple[int, ...]:
        return BRANCH_CHANNELS[self.branch]

    @property
    def multiple(self) -> int:
        """Frame sizes the core accepts are multiples of this; others are padded."""
        return 2 ** self.levels * self.downsample

    def to_dict(self) -> dict:
        return asdict(self)


# CopyCat-class is "medium": 4 levels, 32 base channels.
_UNET_SIZES = {"tiny": (8, 2), "small": (16, 3), "medium": (32, 4), "large": (64, 4)}
# (width, stride-2 stages, downsample): a grid cell spans downsample * 2**levels pixels.
_BILATERAL_SIZES = {"tiny": (8, 2, 2), "small": (16, 2, 4), "medium": (32, 3, 4), "large": (48, 3, 4)}


def model_config(kind: str, size: str, branch: str, position: bool = False,
                 tone_curve: bool | None = None, guided: bool = False, colour_lut: bool | None = None) -> ModelConfig:
    """`tone_curve` defaults to on for the spatial branch (see `LumaCurve`), `colour_lut` for the
    chroma branch (see `ColourLUT`)."""
    if branch not in BRANCH_CHANNELS:
        raise ValueError(f"unknown branch {branch!r}")
    tone_curve = branch == "spatial" if tone_curve is None else tone_curve
    colour_lut = branch == "chroma" if colour_lut is None else colour_lut
    if kind == "unet":
        width, levels = _UNET_SIZES[size]
        return ModelConfig(kind, size, branch, width, levels, position=position, tone_curve=tone_curve,
                           guided=guided, colour_lut=colour_lut)
    if kind == "bilateral":
        width, levels, downsample = _BILATERAL_SIZES[size]
        return ModelConfig(kind, size, branch, width, levels, downsample, position=position, tone_curve=tone_curve,
                           guided=guided, colour_lut=colour_lut)
    raise ValueError(f"unknown model kind {kind!r}")


def frame_coords(height: int, width: int, origin: tuple[int, int] = (0, 0),
                 frame_size: tuple[int, int] | None = None, device: torch.device | str | None = None
                 ) -> torch.Tensor:
    """(1, 2, H, W) x/y position of each pixel centre in its whole Source frame, scaled to -1..1.

    `origin` is the (row, column) of this image's top-left pixel in the frame and `frame_size`
    the frame's (height, width); a training crop of the shared crop thus knows where it sits.
    """
    frame_h, frame_w = frame_size or (height, width)
    ys = (torch.arange(height, dtype=torch.float32, device=device) + origin[0] + 0.5) * (2.0 / frame_h) - 1.0
    xs = (torch.arange(width, dtype=torch.float32, device=device) + origin[1] + 0.5) * (2.0 / frame_w) - 1.0
    return torch.stack([xs.view(1, width).expand(height, width), ys.view(height, 1).expand(height, width)])[None]


def _centre_luma(x: torch.Tensor) -> torch.Tensor:
    """Y is 0..1, Cb/Cr are centred on 0: centre Y too (position channels, if any, pass through)."""
    return torch.cat([x[:, :1] - 0.5, x[:, 1:]], dim=1)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class UNet(nn.Module):
    """Encoder–decoder with skip connections; the head is zero-initialised so training starts
    from the identity (the Source itself)."""

    def __init__(self, out_channels: int, width: int, levels: int, in_channels: int = 3):
        super().__init__()
        chans = [width * 2 ** min(i, 3) for i in range(levels + 1)]
        self.stem = _conv_block(in_channels, chans[0])
        self.down = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1)
                                  for i in range(levels))
        self.enc = nn.ModuleList(_conv_block(chans[i + 1], chans[i + 1]) for i in range(levels))
        self.reduce = nn.ModuleList(nn.Conv2d(chans[i + 1], chans[i], 1) for i in range(levels))
        self.dec = nn.ModuleList(_conv_block(2 * chans[i], chans[i]) for i in range(levels))
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(_centre_luma(x))]
        for down, enc in zip(self.down, self.enc, strict=True):
            skips.append(enc(self.act(down(skips[-1]))))
        h = skips.pop()
        for i in reversed(range(len(self.dec))):
            skip = skips.pop()
            h = F.interpolate(self.reduce[i](h), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = self.dec[i](torch.cat([h, skip], dim=1))
        return self.head(h)


class BilateralColourNet(nn.Module):
    """HDRNet-style: a CNN on a downsampled frame predicts a grid of affine YCbCr transforms
    (spatial cells x guide bins); a learned per-pixel guide slices it at full resolution.

    Colour varies slowly, so a 4K frame needs the CNN only at 1/downsample resolution; the
    full-resolution work is the guide (two 1x1 convs) and the trilinear slice."""

    def __init__(self, out_channels: int, width: int, levels: int, downsample: int, grid_depth: int,
                 in_channels: int = 3):
        super().__init__()
        self.out_channels = out_channels
        self.downsample = downsample
        self.grid_depth = grid_depth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.1, inplace=True)]
        for i in range(levels):
            cin, cout = width * 2 ** min(i, 2), width * 2 ** min(i + 1, 2)
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True)]
        top = width * 2 ** min(levels, 2)
        layers += [nn.Conv2d(top, top, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                   nn.Conv2d(top, top, 3, padding=1), nn.LeakyReLU(0.1, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.coefficients = nn.Conv2d(top, grid_depth * out_channels * 4, 1)
        nn.init.zeros_(self.coefficients.weight)
        nn.init.zeros_(self.coefficients.bias)
        self.guide = nn.Sequential(nn.Conv2d(3, 16, 1), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(16, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        centred_all = _centre_luma(x)  # YCbCr (+ position channels) for the low-res CNN
        low = F.avg_pool2d(centred_all, self.downsample) if self.downsample > 1 else centred_all
        coeffs = self.coefficients(self.features(low))
        x, centred = x[:, :3], centred_all[:, :3]  # the guide and the transforms work on colour only
        gh, gw = coeffs.shape[-2:]
        grid = coeffs.view(n, self.out_channels * 4, self.grid_depth, gh, gw).float()
        guide = torch.sigmoid(self.guide(centred)).float()  # (N, 1, H, W) in 0..1
        # Pixel centres in grid_sample's normalised coordinates (align_corners=False).
        xs = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) * (2.0 / w) - 1.0
        ys = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) * (2.0 / h) - 1.0
        sample = torch.stack([xs.view(1, 1, w).expand(n, h, w), ys.view(1, h, 1).expand(n, h, w),
                              guide[:, 0] * 2.0 - 1.0], dim=-1).unsqueeze(1)  # (N, 1, H, W, 3)
        sliced = F.grid_sample(grid, sample, mode="bilinear", padding_mode="border", align_corners=False)
        affine = sliced.view(n, self.out_channels, 4, h, w)
        return (affine[:, :, :3] * x.float().unsqueeze(1)).sum(dim=2) + affine[:, :, 3]


class LumaCurve(nn.Module):
    """A per-shot tone curve on the Source luma, piecewise linear over evenly spaced knots in 0..1
    (slope 1 beyond them), the identity until fitted.

    A soft later generation differs from its Reference in tone too (lifted blacks, a fade, the
    Reference's grade). A global 3D LUT gets that for free; a network started at the identity
    spends most of a short schedule learning it. Fitted to the training pairs by least squares
    before the first step (`fit`, then trained with the rest), the curve leaves the network the
    detail, which is what the spatial branch is for."""

    def __init__(self, knots: int = 33):
        super().__init__()
        self.values = nn.Parameter(torch.linspace(0.0, 1.0, knots))

    def _basis(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = self.values.numel() - 1
        position = y.clamp(0.0, 1.0) * last
        index = position.floor().clamp(max=last - 1)
        return index.long(), position - index

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        index, frac = self._basis(y)
        values = self.values.to(y.dtype)
        return values[index] * (1.0 - frac) + values[index + 1] * frac + (y - y.clamp(0.0, 1.0))

    @torch.no_grad()
    def fit(self, source_y: torch.Tensor, target_y: torch.Tensor, ridge: float = 1e-5) -> None:
        """Least squares of target on the curve of source (hat-function basis; the normal matrix
        is tridiagonal, summed per knot), pulled gently towards the identity where the pairs have
        few pixels."""
        knots = self.values.numel()
        index, frac = self._basis(source_y.flatten().float())
        index, frac, target = index.cpu(), frac.double().cpu(), target_y.flatten().double().cpu()
        low, high = 1.0 - frac, frac

        def per_knot(at: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            return torch.bincount(at, weights=weights, minlength=knots)[:knots]

        weight = ridge * target.numel()
        diagonal = per_knot(index, low * low) + per_knot(index + 1, high * high) + weight
        off = per_knot(index, low * high)[:-1]  # between knot i and i + 1
        normal = torch.diag(diagonal) + torch.diag(off, 1) + torch.diag(off, -1)
        identity = torch.linspace(0.0, 1.0, knots, dtype=torch.float64)
        rhs = per_knot(index, low * target) + per_knot(index + 1, high * target) + weight * identity
        self.values.copy_(torch.linalg.solve(normal, rhs).float())


class ColourLUT(nn.Module):
    """The shot's global grade as a 3D LUT on display RGB (indexed [r, g, b] over 0..1, inputs
    clamped, trilinear: `ml.baseline.apply_baseline` of a display-domain LUT fit), the identity
    until `load`ed. A fixed buffer, saved with the weights.

    Like the luma tone curve: a network started at the Source spends most of a short schedule
    learning the shot's global grade, which the baseline fit gets in seconds. Started from that fit
    (the residual head is zero), a model is the baseline at step 0 and learns what is local."""

    def __init__(self, size: int = 17):
        super().__init__()
        grid = torch.linspace(0.0, 1.0, size)
        r, g, b = torch.meshgrid(grid, grid, grid, indexing="ij")
        self.register_buffer("table", torch.stack([r, g, b], dim=-1))  # (R, G, B, 3), as the baseline's

    @torch.no_grad()
    def load(self, table: torch.Tensor) -> None:
        """Take a fitted (S, S, S, 3) display-domain LUT of this module's size."""
        self.table.copy_(table.to(self.table))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) display RGB -> graded display RGB."""
        volume = self.table.permute(3, 2, 1, 0).contiguous()[None]  # (1, 3, B, G, R)
        # The frames ride in the sampling grid's depth: one volume, no per-frame copies of it.
        where = (rgb.float().clamp(0.0, 1.0) * 2.0 - 1.0).permute(0, 2, 3, 1)[None]  # (1, N, H, W, [r, g, b])
        graded = F.grid_sample(volume, where, mode="bilinear", padding_mode="border", align_corners=True)
        return graded[0].transpose(0, 1)  # (N, 3, H, W)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad right/bottom to a multiple: reflect where the frame is big enough, else replicate."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def guide_tensor(aligned_rgb: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) aligned Reference RGB and (N, 1, H, W) coverage -> the (N, 4, H, W) guide."""
    return torch.cat([rgb_to_ycbcr(aligned_rgb.float()), coverage.float()], dim=1)


def gaussian_blur(x: torch.Tensor, sigma: float, edge: str = "replicate") -> torch.Tensor:
    """Separable Gaussian of `sigma` px over (N, C, H, W); the kernel is `ml.primitives.gaussian_kernel`'s (3 sigma
    radius, float64 taps rounded to float32). `edge="reflect"` pads as numpy's reflect does (where
    the image is larger than the radius; replicated otherwise), so it matches
    `ml.primitives.gaussian_blur` (edge "mirror")."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(device=x.device, dtype=x.dtype)
    c = x.shape[1]
    if edge == "reflect" and min(x.shape[-2:]) <= radius:
        edge = "replicate"
    x = F.pad(x, (radius, radius, 0, 0), mode=edge)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, radius, radius), mode=edge)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def degrain_ycbcr(ycbcr: torch.Tensor, strength: float) -> torch.Tensor:
    """`cleanup.degrain` on the device, in YCbCr: Gaussian sigma = strength on luma, 2 x on chroma."""
    if strength <= 0:
        return ycbcr
    return torch.cat([gaussian_blur(ycbcr[:, :1], strength, "reflect"),
                      gaussian_blur(ycbcr[:, 1:], 2.0 * strength, "reflect")], dim=1)


def reference_correction(predicted: torch.Tensor, reference: torch.Tensor, cover: torch.Tensor,
                         detail_sigma: torch.Tensor | None = None,
                         fine_weight: torch.Tensor | None = None,
                         reference_blur: torch.Tensor | None = None) -> torch.Tensor:
    """The prediction corrected towards the aligned Reference where it covers.

    Without `detail_sigma` (or where it is 0) the covered pixels take the Reference's values. With
    it (N,), only the difference's frequencies below a Gaussian of that many pixels are taken
    (normalised by the blurred coverage, so nothing outside the coverage leaks in): the Reference
    sets the colour, the prediction from the full-resolution Source keeps the detail a softer
    Reference lacks (an SD, 4:2:0 transfer's chroma). With `reference_blur` (N,, Source px, where
    above 0: `ml.guide.reference_blur`) the Reference is compared with the prediction blurred as
    softly as the Reference itself is, and the difference taken below that blur instead: the band
    the Reference only half resolves then corrects the prediction's colour without softening its
    detail. `fine_weight` (N,, 0 to 1, default 0) takes that share of the finer difference too
    (`ml.guide.fine_weight`: where the Source's finer detail is grain rather than picture); 1 takes
    the Reference's values whole."""
    if detail_sigma is None or not bool((detail_sigma > 0).any()):
        return predicted + cover * (reference - predicted)
    out = []
    for i in range(predicted.shape[0]):
        p, r, c = predicted[i:i + 1], reference[i:i + 1], cover[i:i + 1]
        sigma = float(detail_sigma[i])
        if sigma <= 0:
            out.append(p + c * (r - p))
            continue
        blur = float(reference_blur[i]) if reference_blur is not None else 0.0
        seen, sigma = (gaussian_blur(p, blur), blur) if blur > 0 else (p, sigma)
        low = gaussian_blur(c * (r - seen), sigma) / gaussian_blur(c, sigma).clamp_min(1e-3)
        weight = float(fine_weight[i]) if fine_weight is not None else 0.0
        out.append(p + c * (low + weight * (r - p - low)) if weight > 0 else p + c * low)
    return torch.cat(out)


def guide_input(guide: torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) guide YCbCr + coverage -> the network's guide channels: zero where not covered
    (nothing leaks from outside the coverage), luma centred like the Source's."""
    cover = guide[:, 3:4]
    return torch.cat([(guide[:, :1] - 0.5) * cover, guide[:, 1:3] * cover, cover], dim=1)


class RecoveryModel(nn.Module):
    """Source YCbCr in, recovered YCbCr out: predicted channels = base + residual, the rest
    copied from the Source bit for bit. The base is the Source's channel (through the shot's tone
    curve for a spatial luma, through the shot's baseline LUT for chroma). A reference-guided model blends by the guide's coverage
    (`reference_correction`): the aligned Reference's own channel where it covers (the training
    target is exactly that channel there: measured on the field corpus, a learned residual on top
    only lost accuracy), or at inference on the chroma branch its low frequencies under the
    prediction's detail; the network's prediction where it does not cover, feathered in between."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        out_channels = len(config.predicted_channels)
        if config.kind == "unet":
            self.core: nn.Module = UNet(out_channels, config.width, config.levels, config.input_channels)
        else:
            self.core = BilateralColourNet(out_channels, config.width, config.levels,
                                           config.downsample, config.grid_depth, config.input_channels)
        self.tone = LumaCurve() if (config.tone_curve and 0 in config.predicted_channels) else None
        self.grade = ColourLUT() if (config.colour_lut and 1 in config.predicted_channels) else None

    def forward(self, source_ycbcr: torch.Tensor, amp_dtype: torch.dtype | None = None,
                coords: torch.Tensor | None = None, guide: torch.Tensor | None = None,
                corrected: bool = True) -> torch.Tensor:
        """`coords` (N or 1, 2, H, W) place the pixels in their frame (see `frame_coords`); without
        them the input is taken to be a whole frame. Models without position ignore them.
        `guide` (N, 4, H, W): the aligned Reference's YCbCr and coverage (`ml.guide`); a guided
        model without one predicts from the Source alone, as where the coverage is 0, and takes the
        Reference's own channels where it covers (`correct`, as training's targets have them);
        `corrected=False`: the network's prediction before that (inference corrects it with each
        frame's detail limit, `RecoveryModel.correct`)."""
        h, w = source_ycbcr.shape[-2:]
        parts = [source_ycbcr]
        if self.config.position:
            if coords is None:
                coords = frame_coords(h, w, device=source_ycbcr.device)
            parts.append(coords.to(source_ycbcr.dtype).expand(source_ycbcr.shape[0], -1, -1, -1))
        if self.config.guided:
            if guide is None:
                guide = torch.zeros((source_ycbcr.shape[0], GUIDE_CHANNELS, h, w), dtype=source_ycbcr.dtype,
                                    device=source_ycbcr.device)
            guide = guide.to(source_ycbcr.dtype)
            parts.append(guide_input(guide))
        else:
            guide = None
        inputs = torch.cat(parts, dim=1) if len(parts) > 1 else source_ycbcr
        padded = pad_to_multiple(inputs, self.config.multiple)
        with torch.autocast(source_ycbcr.device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            residual = self.core(padded)
        residual = residual[..., :h, :w].float()
        predicted = set(self.config.predicted_channels)
        graded = rgb_to_ycbcr(self.grade(ycbcr_to_rgb(source_ycbcr.float()))) if self.grade is not None else None
        channels, k = [], 0
        for c in range(3):
            if c in predicted:
                base = source_ycbcr[:, c:c + 1]
                if c == 0 and self.tone is not None:  # the residual sits on the shot's tone curve
                    base = self.tone(base.float())
                if c > 0 and graded is not None:  # the colour residual sits on the shot's baseline grade
                    base = graded[:, c:c + 1]
                channels.append(base + residual[:, k:k + 1])
                k += 1
            else:
                channels.append(source_ycbcr[:, c:c + 1])
        prediction = torch.cat(channels, dim=1)
        return self.correct(prediction, guide) if corrected else prediction

    def correct(self, prediction: torch.Tensor, guide: torch.Tensor | None,
                detail_sigma: torch.Tensor | None = None, fine_weight: torch.Tensor | None = None,
                reference_blur: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted channels taken towards the Reference's own wherever the guide covers
        (`reference_correction`); unchanged without a guide or for a model that is not guided."""
        if guide is None or not self.config.guided:
            return prediction
        cover = guide[:, 3:4].float()
        return torch.cat([reference_correction(prediction[:, c:c + 1], guide[:, c:c + 1].float(), cover,
                                               detail_sigma, fine_weight, reference_blur)
                          if c in self.config.predicted_channels else prediction[:, c:c + 1] for c in range(3)], dim=1)


def build_model(config: ModelConfig) -> RecoveryModel:
    return RecoveryModel(config)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
