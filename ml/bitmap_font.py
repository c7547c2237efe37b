"""A 3x5 bitmap font for labels on the engine's pictures (contact sheets, loss curves): numpy only,
so Blender's own Python draws the same labels as the torch interpreter."""

from __future__ import annotations

import numpy as np

FONT_SCALE = 2
TEXT = 0.92

# 3x5 glyphs, rows top to bottom, "1" = ink.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001010010",
    "8": "111101111101111", "9": "111101111001111", "A": "010101111101101", "B": "110101110101110",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111", "F": "111100110100100",
    "G": "011100101101011", "H": "101101111101101", "I": "111010010010111", "J": "001001001101010",
    "K": "101101110101101", "L": "100100100100111", "M": "101111111101101", "N": "110101101101101",
    "O": "010101101101010", "P": "110101110100100", "Q": "010101101110011", "R": "110101110101101",
    "S": "011100010001110", "T": "111010010010010", "U": "101101101101111", "V": "101101101101010",
    "W": "101101111111101", "X": "101101010101101", "Y": "101101010010010", "Z": "111001010100111",
    ".": "000000000000010", ",": "000000000010100", ":": "000010000010000", "-": "000000111000000",
    "_": "000000000000111", "/": "001001010100100", "(": "010100100100010", ")": "010001001001010",
    "<": "001010100010001", ">": "100010001010100", "=": "000111000111000", "+": "000010111010000",
    "#": "101111101111101", " ": "000000000000000", "?": "111001010000010",
}
_GLYPH_MASKS = {ch: np.array([int(b) for b in bits], bool).reshape(5, 3) for ch, bits in _GLYPHS.items()}


def text_width(text: str, scale: int = FONT_SCALE) -> int:
    """Pixels `draw_text` covers across for `text` (3 px glyphs, 1 px spacing, times the scale)."""
    return max(len(text) * 4 * scale - scale, 0)


def draw_text(canvas: np.ndarray, text: str, x: int, y: int, scale: int = FONT_SCALE,
              colour: float | tuple[float, float, float] = TEXT) -> None:
    """Draw upper-cased `text` into `canvas` with its top-left at (x, y); clipped at the edge."""
    h, w = canvas.shape[:2]
    for i, ch in enumerate(text.upper()):
        mask = np.kron(_GLYPH_MASKS.get(ch, _GLYPH_MASKS["?"]), np.ones((scale, scale), bool))
        left = x + i * 4 * scale
        if left + mask.shape[1] > w:
            break
        if left < 0 or y < 0:
            continue
        region = canvas[y:y + mask.shape[0], left:left + mask.shape[1]]
        region[mask[:region.shape[0], :region.shape[1]]] = colour
