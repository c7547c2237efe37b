"""Training pictures drawn with numpy only: the loss curve and contact sheets.

The loss curve labels itself with the engine's bitmap font (`ml.bitmap_font`; Blender's Python
has no font library): the training loss in orange on a log scale (left axis), the validation PSNR
in cyan on a dB scale of its own (right axis), the step along the bottom, and a legend. Contact
sheets can carry column labels (Source | Model | Target).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bitmap_font import draw_text, text_width
from .imageio import write_png
from .primitives import nice_ticks, tick_text

BACKGROUND = (0.11, 0.11, 0.12)
AXIS = (0.6, 0.6, 0.6)
GRID = (0.2, 0.2, 0.22)
LOSS_COLOUR = (1.0, 0.6, 0.15)
LOSS_RAW_COLOUR = (0.45, 0.3, 0.15)
PSNR_COLOUR = (0.3, 0.85, 1.0)


def _draw_polyline(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour: tuple, thickness: int = 2) -> None:
    """Draw connected segments by sampling each at one-pixel spacing."""
    height, width = image.shape[:2]
    if len(xs) == 1:
        xs, ys = np.repeat(xs, 2), np.repeat(ys, 2)
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:], strict=True):
        count = int(max(abs(x1 - x0), abs(y1 - y0))) + 2
        t = np.linspace(0.0, 1.0, count)
        px = np.round(x0 + (x1 - x0) * t).astype(int)
        py = np.round(y0 + (y1 - y0) * t).astype(int)
        for dy in range(thickness):
            for dx in range(thickness):
                qx, qy = px + dx - thickness // 2, py + dy - thickness // 2
                keep = (qx >= 0) & (qx < width) & (qy >= 0) & (qy < height)
                image[qy[keep], qx[keep]] = colour


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < 3:
        return values
    kernel = np.ones(min(window, len(values))) / min(window, len(values))
    padded = np.pad(values, (len(kernel) // 2, len(kernel) - 1 - len(kernel) // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def draw_loss_curve(steps: list[int], losses: list[float], val_steps: list[int] | None = None,
                    val_psnr: list[float] | None = None, total_steps: int | None = None,
                    width: int = 640, height: int = 380) -> np.ndarray:
    """Loss (log scale) and validation PSNR against step, as an (height, width, 3) float image,
    with tick labels, axis titles and a legend."""
    image = np.empty((height, width, 3), np.float32)
    image[:] = BACKGROUND
    left, right, top, bottom = 58, width - 50, 30, height - 40
    x_max = max(total_steps or 0, max(steps, default=1), max(val_steps or [1]), 1)

    def to_x(s: np.ndarray) -> np.ndarray:
        return left + (right - left) * np.asarray(s, float) / x_max

    for tick in nice_ticks(0, x_max, 8):  # vertical grid + bottom ticks
        x = int(round(to_x(tick)))
        image[top:bottom, x] = GRID
        image[bottom:bottom + 6, x] = AXIS
        label = tick_text(tick)
        draw_text(image, label, x - text_width(label) // 2, bottom + 9, colour=AXIS)
    draw_text(image, "STEP", (left + right - text_width("STEP")) // 2, bottom + 24, colour=AXIS)
    draw_text(image, "TRAINING LOSS (LOG)", left, 8, colour=LOSS_COLOUR)
    if val_steps and val_psnr:
        legend = "VALIDATION PSNR (DB)"
        draw_text(image, legend, right - text_width(legend), 8, colour=PSNR_COLOUR)
    all_losses = np.asarray(losses, float)
    keep = np.isfinite(all_losses) & (all_losses > 0)
    loss, s = all_losses[keep], np.asarray(steps)[keep]
    if len(loss):
        log_loss = np.log10(loss)
        lo, hi = np.floor(log_loss.min()), np.ceil(log_loss.max())
        hi = hi if hi > lo else lo + 1

        def to_y(v: np.ndarray) -> np.ndarray:
            return bottom - (bottom - top) * (v - lo) / (hi - lo)

        for decade in np.arange(lo, hi + 1):  # log grid: decades across, 2x and 5x as left ticks
            y = int(round(to_y(decade)))
            image[y, left:right] = GRID
            image[y, left - 8:left] = AXIS
            label = f"1E{int(decade)}"
            draw_text(image, label, left - 10 - text_width(label), y - 5, colour=LOSS_COLOUR)
            for sub in (np.log10(2), np.log10(5)):
                if decade + sub < hi:
                    image[int(round(to_y(decade + sub))), left - 4:left] = AXIS
        _draw_polyline(image, to_x(s), to_y(log_loss), LOSS_RAW_COLOUR, 1)
        _draw_polyline(image, to_x(s), to_y(_smooth(log_loss, max(len(s) // 25, 1))), LOSS_COLOUR, 2)
    if val_steps and val_psnr:
        psnr = np.asarray(val_psnr, float)
        lo, hi = np.floor(psnr.min()) - 0.5, np.ceil(psnr.max()) + 0.5
        ticks = nice_ticks(lo, hi, 5)

        def to_y_psnr(v: np.ndarray) -> np.ndarray:
            return bottom - (bottom - top) * (v - lo) / (hi - lo)

        for tick in ticks:
            y = int(round(to_y_psnr(tick)))
            image[y, right:right + 6] = PSNR_COLOUR
            draw_text(image, tick_text(round(float(tick), 1)), right + 9, y - 5, colour=PSNR_COLOUR)
        _draw_polyline(image, to_x(val_steps), to_y_psnr(psnr), PSNR_COLOUR, 2)
        for x, y in zip(to_x(val_steps), to_y_psnr(psnr), strict=True):  # markers at each validation
            xi, yi = int(round(x)), int(round(y))
            image[max(yi - 2, 0):yi + 3, max(xi - 2, 0):xi + 3] = PSNR_COLOUR
    image[top:bottom + 1, left] = AXIS
    image[top:bottom + 1, right] = AXIS
    image[bottom, left:right + 1] = AXIS
    return image


def write_loss_curve(path: str | Path, *args, **kwargs) -> Path:
    return write_png(path, draw_loss_curve(*args, **kwargs))


LABEL_BAND = 16  # pixels above the first row for column labels


def contact_sheet(rows: list[list[np.ndarray]], gap: int = 4, background: float = 0.08,
                  column_labels: list[str] | None = None) -> np.ndarray:
    """Lay panels out in rows (e.g. Source | Model | Target), each cell top-left aligned; with
    `column_labels`, each column is named above its first cell."""
    columns = max(len(r) for r in rows)
    col_width = [max((r[c].shape[1] for r in rows if c < len(r)), default=0) for c in range(columns)]
    row_height = [max(p.shape[0] for p in r) for r in rows]
    band = LABEL_BAND if column_labels else 0
    sheet = np.full((band + sum(row_height) + gap * (len(rows) + 1), sum(col_width) + gap * (columns + 1), 3),
                    background, np.float32)
    x = gap
    for c, label in enumerate((column_labels or [])[:columns]):
        draw_text(sheet, label, x, gap + 1)
        x += col_width[c] + gap
    y = gap + band
    for r, row in enumerate(rows):
        x = gap
        for c, panel in enumerate(row):
            sheet[y:y + panel.shape[0], x:x + panel.shape[1]] = panel
            x += col_width[c] + gap
        y += row_height[r] + gap
    return sheet
