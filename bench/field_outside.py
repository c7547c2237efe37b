"""Shots outside the field corpus, through both front doors: a check that what was built on the
corpus holds on pictures and damage combinations it never saw (other scikit-image photographs,
other mixes of the corpus's damage). The corpus gains a kind when one of these finds a defect
(`low_structure` and `flat_blocky` came from here); these stay outside it, so they are not what the
defaults were fitted on.

    .venv/bin/python bench/field_outside.py --out /tmp/outside [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import field  # noqa: E402
import field_corpus as corpus  # noqa: E402
from field_corpus import (  # noqa: E402
    COOL_NIGHT_GRADE,
    HEAVY_GRAIN,
    IDENTITY_GRADE,
    TEAL_ORANGE_GRADE,
    Kind,
    ReferenceSpec,
    SourceSpec,
    _skimage_rgb,
    _tint,
)

TITLE = "## Field corpus: shots outside it"
RESULTS_MD = field.ROOT / "bench" / "results" / "field_outside.md"

PHOTOS = {"tinted_text": ("text", 15), "tinted_horse": ("horse", 16), "tinted_clock": ("clock", 12),
          "tinted_cell": ("cell", 13), "tinted_page": ("page", 14), "tinted_phantom": ("shepp_logan_phantom", 21)}
OUTSIDE_SEED_BASE = 100  # their seed indices (`field_corpus.seed_index`), apart from the corpus's; a new kind
# goes at the end of KINDS, so the others keep their seeds (and pictures)
# Colour photographs used as they are (a low-key one darkened): name -> (scikit-image photo, maker).
COLOUR_PHOTOS = {
    "low_key_cat": ("cat", lambda: np.clip(0.45 * _skimage_rgb("cat") ** 1.3, 0.0, 1.0).astype(np.float32)),
    "logo_on_grey": ("logo", lambda: (0.05 + 0.9 * _skimage_rgb("logo")).astype(np.float32)),
    "cat": ("cat", lambda: _skimage_rgb("cat")),
}
# Photographs whose grey levels are lifted into the picture range before tinting: (offset, scale).
LIFTS = {"horse": (0.2, 0.6), "shepp_logan_phantom": (0.05, 0.9)}
KINDS = [
    Kind("x_text_speedup_grain", "chroma", "tinted_text",
         "printed text; heavy grain; SD PAL 25 fps speed-up Reference, anamorphic, 4:2:0",
         source=SourceSpec(damage={"grain": HEAVY_GRAIN}),
         reference=ReferenceSpec(size_2k=(720, 576), pixel_aspect=64 / 45, fps=25.0, cadence="pal_speedup",
                                 chroma_420=True),
         settings={"reference.fps": 25.0, "reference.pixel_aspect": 64 / 45}),
    Kind("x_horse_letterbox_flat", "chroma", "tinted_horse",
         "a flat two-tone silhouette; letterboxed Reference in a teal-orange grade; flat grey edge",
         source=SourceSpec(edge="grey"),
         reference=ReferenceSpec(size_2k=(1536, 1152), framing="letterbox", grade=TEAL_ORANGE_GRADE)),
    Kind("x_clock_pulldown_drift", "chroma", "tinted_clock",
         "NTSC 3:2 pulldown, letterboxed 4:2:0 Reference; an uneven fade drifting over the shot; vignette",
         source=SourceSpec(fade_drift=1.0, vignette=(0.1, 0.3)),
         reference=ReferenceSpec(size_2k=(720, 486), pixel_aspect=10 / 11, fps=30000 / 1001, cadence="pulldown",
                                 framing="letterbox", chroma_420=True),
         settings={"reference.fps": 30000 / 1001, "reference.pixel_aspect": 10 / 11}),
    Kind("x_cell_panscan_subs", "chroma", "tinted_cell",
         "pan-and-scan PAL Reference with burned-in subtitles in a teal-orange grade; flicker",
         source=SourceSpec(flicker=0.04),
         reference=ReferenceSpec(size_2k=(720, 576), pixel_aspect=16 / 15, framing="pan_scan", subtitles=True,
                                 grade=TEAL_ORANGE_GRADE),
         settings={"reference.pixel_aspect": 16 / 15}),
    Kind("x_page_turn_blocky", "chroma", "tinted_page",
         "a printed page; a turning Reference with blocky compression (full-resolution chroma); dark edges",
         source=SourceSpec(edge="dark"),
         reference=ReferenceSpec(turn_max_deg=0.3, compression=0.03)),
    Kind("x_phantom_blocky_pal", "chroma", "tinted_phantom",
         "flat shapes on black; SD PAL anamorphic 4:2:0 Reference with blocky compression; vignette and fade drift",
         source=SourceSpec(fade_drift=1.0, vignette=(0.1, 0.3)),
         reference=ReferenceSpec(size_2k=(720, 576), pixel_aspect=64 / 45, chroma_420=True, compression=0.04),
         settings={"reference.pixel_aspect": 64 / 45}),
    Kind("x_cat_night_pulldown", "chroma", "low_key_cat",
         "a low-key cat (fur); heavy grain; flicker; NTSC 3:2 pulldown letterboxed 4:2:0 Reference in a cool "
         "night grade",
         source=SourceSpec(damage={"grain": HEAVY_GRAIN}, flicker=0.04),
         reference=ReferenceSpec(size_2k=(720, 486), pixel_aspect=10 / 11, fps=30000 / 1001, cadence="pulldown",
                                 framing="letterbox", chroma_420=True, grade=COOL_NIGHT_GRADE),
         settings={"reference.fps": 30000 / 1001, "reference.pixel_aspect": 10 / 11}),
    Kind("x_logo_pillar_subs", "chroma", "logo_on_grey",
         "flat graphic colours; 4:3 Source; pillarboxed 16:9 Reference with subtitles; dark edges",
         aspect="4:3", source=SourceSpec(edge="dark"),
         reference=ReferenceSpec(size_2k=(1920, 1080), framing="pillarbox", subtitles=True)),
    Kind("x_spatial_cat", "spatial", "cat",
         "spatial: a soft (1.8 px), heavily grainy cat (fur); a sharper Reference that turns",
         source=SourceSpec(damage={"saturation": 1.0, "dye_loss": [0.0, 0.0, 0.0], "black_lift": [0.04] * 3,
                                   "white_point": 0.97, "grain": HEAVY_GRAIN}, soften_sigma=1.8),
         reference=ReferenceSpec(size_2k=(2048, 1152), grade=dict(IDENTITY_GRADE), softness=0.3, turn_max_deg=0.2),
         settings={"branch": "spatial"}),
    Kind("x_cut_pulldown", "chroma", "cat",
         "a cut halfway, from a cat (fur) to a tinted clock; NTSC 3:2 pulldown letterboxed 4:2:0 Reference, "
         "its fields blended across the cut",
         cut_to="tinted_clock", cut_at=7,
         reference=ReferenceSpec(size_2k=(720, 486), pixel_aspect=10 / 11, fps=30000 / 1001, cadence="pulldown",
                                 framing="letterbox", chroma_420=True),
         settings={"reference.fps": 30000 / 1001, "reference.pixel_aspect": 10 / 11}),
    Kind("x_fast_pan_pulldown", "chroma", "cat",
         "a fast pan (6 Source px a frame, four times the others') over a cat (fur); NTSC 3:2 pulldown "
         "letterboxed 4:2:0 Reference, so its combed and blended frames mix two quite different pictures",
         pan_px_per_frame=6.0,
         reference=ReferenceSpec(size_2k=(720, 486), pixel_aspect=10 / 11, fps=30000 / 1001, cadence="pulldown",
                                 framing="letterbox", chroma_420=True),
         settings={"reference.fps": 30000 / 1001, "reference.pixel_aspect": 10 / 11}),
]


def register() -> None:
    """Make the outside kinds known to the corpus generator (seeded apart from the corpus's own)."""
    for name, (photo, seed) in PHOTOS.items():
        corpus.PHOTO_SOURCES[name] = (photo,)
        offset, scale = LIFTS.get(photo, (0.0, 1.0))
        corpus.PHOTO_MAKERS[name] = (lambda p=photo, s=seed, o=offset, k=scale: _tint(o + k * _skimage_rgb(p), s))
    for name, (photo, make) in COLOUR_PHOTOS.items():
        corpus.PHOTO_SOURCES[name] = (photo,)
        corpus.PHOTO_MAKERS[name] = make
    for index, kind in enumerate(KINDS):
        corpus.KINDS[kind.name] = kind
        corpus.OUTSIDE_SEEDS[kind.name] = OUTSIDE_SEED_BASE + index


def section(result: dict) -> str:
    """The field table of these shots, under this section's title and a note on what they are."""
    table = field.markdown(result)
    body = table.split("\n", 1)[1] if table.startswith(field.SECTION_TITLE) else table
    body = body.replace(f"`bench/field.py` ran {field._kinds_run(result)} of the field corpus (`bench/field_corpus.py`, ",
                        f"`bench/field_outside.py` ran {len(result['shots'])} shots outside the field corpus (")
    intro = ("Pictures and damage combinations the field corpus does not have (`bench/field_outside.py`), "
             "run like the corpus. They check that what was built and tuned on the corpus holds elsewhere; "
             "where one found a defect, the fix was made and the corpus gained a kind for it (`low_structure`: "
             "alignment and the guide read a grainy SD shot's structure where the Reference has none; "
             "`flat_blocky`, from x_phantom_blocky_pal: the guide took a blocky Reference's finer colour, coding "
             "blocks and all, where the Source's was grain; `intertitle`, from x_text_speedup_grain: printed text "
             "under grain, whose finer colour is grain although its luma follows the Reference's). x_text_speedup_grain "
             "also found that a frame with no Reference partner kept its colour grain (`GuidePlanner.shot_colour_smoothing`). "
             "x_cut_pulldown cuts to another picture under a pulldown Reference whose fields straddle the cut: the "
             "product's curation finds the cut and keeps its pairs away from it. x_fast_pan_pulldown pans four times "
             "as fast under a pulldown Reference, so its combed and blended frames mix two quite different pictures; "
             "it found that the guide read a soft picture's 4:2:0 chroma as full (`guide.is_half_chroma`).")
    return f"{TITLE}\n\n{intro}\n{body}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--doors", default=",".join(field.DOORS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--write-docs", action="store_true", help=f"store the section ({TITLE}) in docs/benchmarks.md")
    parser.add_argument("--rescore", action="store_true",
                        help="score the work folders of the run in --out again (`field.rescore`); the doors are not run")
    args = parser.parse_args(argv)
    register()
    if args.rescore:
        result = field.rescore_folder(args.out)
    else:
        harness = field.HarnessSettings(steps=args.steps, lean_outputs=True)
        result = field.run_field(args.out, "small", [k.name for k in KINDS], doors=tuple(args.doors.split(",")),
                                 harness=harness, log=lambda text: print(text, file=sys.stderr, flush=True))
    text = section(result)
    print(text)
    if args.write_docs:
        field.store_section(text, RESULTS_MD, TITLE)
    (Path(args.out) / "outside.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
