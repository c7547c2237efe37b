"""Contact sheet of the pair table: one row per pair, Source | Reference | structure difference.

The Reference is resampled onto the Source raster (the alignment matrix when given, else the
conform), so the third column shows what the guide asks the artist to judge: geometry, not
colour (normalised luma, boosted). Each row has a text label drawn with a tiny built-in 3x5
bitmap font; a JSON sidecar repeats the layout and the pairs so tools need not read pixels.
The layout is fixed: width = 3 thumbnails + 4 gutters, each row = label strip + thumbnail + gutter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import warp
from .bitmap_font import FONT_SCALE, draw_text
from .curation import FrameLoader, conform_to_matrix, load_parallel, resize, warp_onto
from .imageio import atomic_path, write_png
from .job import Conform, Pair
from .primitives import luma

THUMB_WIDTH = 240
GUTTER = 8
LABEL_HEIGHT = 5 * FONT_SCALE + 4
BACKGROUND = 0.12
NO_DATA = (0.35, 0.0, 0.0)   # difference column where the Reference does not cover the Source
COLUMNS = ("source", "reference", "difference")

@dataclass
class SheetLayout:
    n_rows: int
    thumb_width: int
    thumb_height: int
    gutter: int = GUTTER
    label_height: int = LABEL_HEIGHT

    @property
    def width(self) -> int:
        return 3 * self.thumb_width + 4 * self.gutter

    @property
    def row_height(self) -> int:
        return self.label_height + self.thumb_height + self.gutter

    @property
    def height(self) -> int:
        return self.gutter + self.n_rows * self.row_height

    def label_top(self, row: int) -> int:
        return self.gutter + row * self.row_height

    def thumb_top(self, row: int) -> int:
        return self.label_top(row) + self.label_height

    def column_left(self, column: int) -> int:
        return self.gutter + column * (self.thumb_width + self.gutter)


def sheet_layout(n_pairs: int, source_size: tuple[int, int], thumb_width: int = THUMB_WIDTH) -> SheetLayout:
    """The layout for `n_pairs` rows of Source frames of `source_size` (width, height)."""
    sw, sh = source_size
    return SheetLayout(n_pairs, thumb_width, max(1, round(thumb_width * sh / sw)))


def structure_difference_image(source: np.ndarray, reference: np.ndarray, valid: np.ndarray,
                               gain: float = 0.5) -> np.ndarray:
    """|normalised luma(Source) - normalised luma(Reference)| * gain as grey; colour is ignored."""
    def normalise(plane: np.ndarray) -> np.ndarray:
        values = plane[valid]
        if values.size < 2:
            return plane * 0.0
        return (plane - values.mean()) / max(float(values.std()), 1e-6)

    diff = np.clip(np.abs(normalise(luma(source)) - normalise(luma(reference))) * gain, 0.0, 1.0)
    out = np.repeat(diff[..., None], 3, axis=2).astype(np.float32)
    out[~valid] = NO_DATA
    return out


def row_label(pair: Pair) -> str:
    state = "" if pair.accepted else " REJECTED"
    name = f"{pair.label} " if pair.label else ""
    return f"{name}SRC {pair.source_frame} REF {pair.reference_frame} SHOT {pair.shot or '-'} " \
           f"{pair.timecode}{state}".strip()


def render_contact_sheet(pairs: Sequence[Pair], load_source: FrameLoader, load_reference: FrameLoader, *,
                         matrices: Mapping[int, Sequence[float] | np.ndarray] | None = None,
                         conform: Conform | None = None, pixel_aspects: tuple[float, float] = (1.0, 1.0),
                         thumb_width: int = THUMB_WIDTH, workers: int = 4) -> tuple[np.ndarray, SheetLayout]:
    """The sheet as float RGB and its layout. `matrices` maps Source frame -> Reference px -> Source
    px (the alignment); pairs without one use the conform."""
    if not pairs:
        raise ValueError("a contact sheet needs at least one pair")

    def thumbs(pair: Pair) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
        source = load_source(pair.source_frame)
        reference = load_reference(pair.reference_frame)
        sh, sw = source.shape[:2]
        rh, rw = reference.shape[:2]
        tw, th = thumb_width, max(1, round(thumb_width * sh / sw))
        given = (matrices or {}).get(pair.source_frame)
        full = warp.as_matrix(given) if given is not None else \
            conform_to_matrix(conform, (sw, sh), (rw, rh), pixel_aspects)
        ref_thumb, valid = warp_onto(reference, warp.resize_matrix((sw, sh), (tw, th)) @ full, tw, th)
        return resize(source, tw, th), ref_thumb, valid, (sw, sh)

    rows = load_parallel(lambda i: pairs[i], range(len(pairs)), lambda pair, _: thumbs(pair), workers)
    layout = sheet_layout(len(pairs), rows[0][3], thumb_width)
    canvas = np.full((layout.height, layout.width, 3), BACKGROUND, np.float32)
    for row, (pair, (src, ref, valid, _)) in enumerate(zip(pairs, rows, strict=True)):
        top = layout.thumb_top(row)
        th = min(layout.thumb_height, src.shape[0])
        for column, image in enumerate((src, ref, structure_difference_image(src, ref, valid))):
            left = layout.column_left(column)
            canvas[top:top + th, left:left + layout.thumb_width] = image[:th]
        draw_text(canvas, row_label(pair), layout.gutter, layout.label_top(row) + 2)
    return canvas, layout


def write_contact_sheet(path: str | os.PathLike, pairs: Sequence[Pair], load_source: FrameLoader,
                        load_reference: FrameLoader, **options) -> tuple[Path, Path]:
    """Write the sheet as PNG and `<name>.json` beside it (layout and pair per row), atomically."""
    canvas, layout = render_contact_sheet(pairs, load_source, load_reference, **options)
    path = Path(path)
    write_png(path, canvas)
    sidecar = path.with_suffix(".json")
    payload = {"schema": "film_recovery.contact_sheet", "version": 1, "image": path.name,
               "width": layout.width, "height": layout.height, "columns": list(COLUMNS),
               "thumb_width": layout.thumb_width, "thumb_height": layout.thumb_height,
               "gutter": layout.gutter, "label_height": layout.label_height,
               "rows": [{"top": layout.thumb_top(i), "text": row_label(p), **asdict(p)}
                        for i, p in enumerate(pairs)]}
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path, sidecar
