"""The recipe as compositor node groups the artist can see and tweak.

Groups (all names start with "FR "): Ingest (plate -> display-referred domain + neutral
pre-balance), Align (Reference -> Source raster: keyed Corner Pin for solves, keyed Transform for
manual fixes, a keyed Auto/Manual dissolve), Crop (ONE group datablock used by both branches),
Ground Truth (YCC channel shuffle) and Review (A/B wipe, difference). `build_recipe_tree` wires
them into the scene's compositor tree.

Builders are idempotent: they find their group by name, keep its nodes (by node name), relink
and re-key it from the settings. The recipe is the source of truth: keys a builder owns are
replaced on every rebuild.

Pixel parity with the engine (tests/test_node_parity.py measures it):
- Image nodes read the plates as Non-Color, so file values reach the Ingest group untouched, and
  EXR renders are not view-transformed, so rendered values are the engine's values.
- Ingest 'aces2065-1' = Convert Colorspace ACES2065-1 -> scene_linear, then Convert to Display
  (display Rec.1886, view ACES 1.3 = "ACES 1.3 Rec.1886": the ACES 1.0 SDR-video output
  transform, the same OCIO builtin the engine's pinned studio config uses).
- Blender places an image smaller or larger than the canvas at the integer lower-left offset
  floor((W - w) / 2), floor((H - h) / 2); Transform pivots on the canvas centre; Corner Pin maps
  the corners of its input's pixel edges, in coordinates normalised to that input (y up), and
  keeps its input's size. `placement_matrix`, `corner_pin_corners` and `transform_values`
  convert the engine's matrices (top-left origin, pixel centres at integers) accordingly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import bpy
import numpy as np

from ..ml import warp
from .colorspace import set_colorspace

INGEST = "FR Ingest"
ALIGN = "FR Align"
CROP = "FR Crop"
GROUND_TRUTH = "FR Ground Truth"
REVIEW = "FR Review"
RECIPE_TREE = "FR Recipe"

# Convert to Display settings that reproduce the engine's ACES 1.3 Rec.709 (BT.1886) output transform.
ACES_DISPLAY = "Rec.1886"
ACES_VIEW = "ACES 1.3"

VIEWS: tuple[str, ...] = ("ground_truth", "input", "reference", "input_vs_ground_truth", "alignment_wipe",
                          "alignment_difference")
CORNERS = ("Upper Left", "Upper Right", "Lower Left", "Lower Right")
_TRANSFORM_INPUTS = ("X", "Y", "Angle", "Scale")
_CROP_INPUTS = ("X", "Y", "Width", "Height")


@dataclass
class RecipeSettings:
    """Everything the node groups need, in the engine's conventions (job.json's shapes).

    Matrices are 9 row-major floats mapping Reference pixels to Source pixels (top-left origin).
    `solves` / `manual` keys are frame numbers (int or digit strings) to key per frame; any other
    key (e.g. "global") sets an unkeyed value used on every frame. Without any solve, the
    Reference is placed by the conform settings.
    """

    source_ingest: str = "display"
    reference_ingest: str = "display"
    balance_enabled: bool = False
    balance_gain: Sequence[float] = (1.0, 1.0, 1.0)
    balance_offset: Sequence[float] = (0.0, 0.0, 0.0)
    conform_mode: str = "fit"
    conform_scale: tuple[float, float] = (1.0, 1.0)
    conform_offset: tuple[float, float] = (0.0, 0.0)
    solves: Mapping[int | str, Sequence[float]] = field(default_factory=dict)
    manual: Mapping[int | str, Sequence[float]] = field(default_factory=dict)
    use_manual: Iterable[int] = ()
    crop_enabled: bool = False
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    crop_keys: Sequence[tuple[int, int, int, int, int]] = ()
    crop_bypass: bool = False
    branch: str = "chroma"
    view: str = "ground_truth"
    wipe: float = 0.5
    source_frames: tuple[int, int] = (1, 1)
    reference_frames: tuple[int, int] = (1, 1)
    reference_frame_offset: int = 0

    @classmethod
    def from_job(cls, job: Any, **overrides: Any) -> RecipeSettings:
        """Settings from an ml.job.Job (the scene recipe); UI-only fields via `overrides`."""
        crop = job.crop
        pairs_offset = {p.reference_frame - p.source_frame for p in job.pairs}
        values: dict[str, Any] = dict(
            source_ingest=job.source.ingest,
            reference_ingest=job.reference.ingest,
            balance_enabled=job.balance.enabled,
            balance_gain=tuple(job.balance.gain),
            balance_offset=tuple(job.balance.offset),
            conform_mode=job.conform.mode,
            conform_scale=(job.conform.scale_x, job.conform.scale_y),
            conform_offset=(job.conform.offset_x, job.conform.offset_y),
            solves=dict(job.alignment.solves),
            manual=dict(job.alignment.manual),
            use_manual=list(job.alignment.use_manual),
            crop_enabled=crop.enabled,
            crop=(crop.x, crop.y, crop.width, crop.height),
            crop_keys=[(k.frame, k.x, k.y, k.width, k.height) for k in crop.keys],
            branch=job.branch,
            source_frames=(job.source.first_frame, job.source.last_frame),
            reference_frames=(job.reference.first_frame, job.reference.last_frame),
            reference_frame_offset=pairs_offset.pop() if len(pairs_offset) == 1 else 0,
        )
        values.update(overrides)
        return cls(**values)


# --- matrix conversions (pure numpy; sizes are (width, height)) -----------------------------------

def placement_matrix(size: tuple[int, int], canvas_size: tuple[int, int]) -> np.ndarray:
    """Top-left pixel coordinates of an image -> those of the canvas Blender places it on.

    Blender puts the image's lower-left corner at the integer offset floor((W-w)/2),
    floor((H-h)/2) from the canvas' lower-left (it never resamples to centre odd differences).
    """
    (w, h), (cw, ch) = size, canvas_size
    ox = (cw - w) // 2
    oy = ch - h - (ch - h) // 2
    return warp.translation(ox, oy)


def _flip_about_centre(size: tuple[int, int]) -> np.ndarray:
    """Top-left pixel coordinates -> Blender's centred coordinates (origin at the centre, y up)."""
    w, h = size
    return np.array([[1.0, 0.0, -(w - 1) / 2.0], [0.0, -1.0, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def align_domain_size(reference_size: tuple[int, int], source_size: tuple[int, int]) -> tuple[int, int]:
    """The raster the Align group warps on: the Source's, or the Reference's when it is larger.

    A Reference no larger than the Source is first placed on the Source raster (no resampling);
    one larger in both dimensions is warped on its own raster so nothing of it is cut off first.
    In the mixed case (wider but shorter) it is placed on the Source raster, losing what lies
    outside it before the warp.
    """
    rw, rh = reference_size
    sw, sh = source_size
    return (rw, rh) if rw >= sw and rh >= sh else (sw, sh)


def domain_matrix(m: Sequence[float] | np.ndarray, reference_size: tuple[int, int],
                  source_size: tuple[int, int]) -> np.ndarray:
    """The engine matrix M (Reference px -> Source px) as a warp within the Align domain."""
    domain = align_domain_size(reference_size, source_size)
    ref_in_domain = placement_matrix(reference_size, domain)
    domain_on_source = placement_matrix(domain, source_size)
    return np.linalg.inv(domain_on_source) @ warp.as_matrix(m) @ np.linalg.inv(ref_in_domain)


def corner_pin_corners(m: Sequence[float] | np.ndarray, reference_size: tuple[int, int],
                       source_size: tuple[int, int]) -> dict[str, tuple[float, float]]:
    """Corner Pin inputs (normalised to the Align domain, y up) that reproduce M exactly."""
    dw, dh = align_domain_size(reference_size, source_size)
    md = domain_matrix(m, reference_size, source_size)
    pts = warp.homography_corners(md, dw, dh)  # UL, UR, LR, LL in top-left pixel coordinates
    order = {"Upper Left": 0, "Upper Right": 1, "Lower Right": 2, "Lower Left": 3}
    return {name: (float((pts[i, 0] + 0.5) / dw), float(1.0 - (pts[i, 1] + 0.5) / dh))
            for name, i in order.items()}


def transform_values(m: Sequence[float] | np.ndarray, reference_size: tuple[int, int],
                     source_size: tuple[int, int]) -> tuple[dict[str, float], float]:
    """Transform node inputs (X, Y in pixels, Angle in radians, Scale) closest to M.

    Exact for a similarity; otherwise the least-squares similarity through the four corners.
    Also returns the largest corner error in pixels, so a caller can warn when it is not exact.
    """
    domain = align_domain_size(reference_size, source_size)
    md = domain_matrix(m, reference_size, source_size)
    flip = _flip_about_centre(domain)
    centred = flip @ md @ np.linalg.inv(flip)  # Blender: p' = s R(angle) p + t, about the centre
    dw, dh = domain
    src = np.array([[-dw / 2, -dh / 2], [dw / 2, -dh / 2], [dw / 2, dh / 2], [-dw / 2, dh / 2]])
    dst = np.stack(warp.apply_matrix(centred, src[:, 0], src[:, 1]), axis=1)
    # Least squares for [a -b tx; b a ty]: rows (x, -y, 1, 0) and (y, x, 0, 1).
    rows = np.zeros((8, 4))
    rows[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(4), np.zeros(4)]
    rows[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(4), np.ones(4)]
    a, b, tx, ty = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)[0]
    fitted = rows @ np.array([a, b, tx, ty])
    error = float(np.abs(fitted - dst.reshape(-1)).max())
    values = {"X": float(tx), "Y": float(ty), "Angle": math.atan2(b, a), "Scale": math.hypot(a, b)}
    return values, error


# --- small helpers for idempotent building -------------------------------------------------------

def _socket(sockets: Any, identifier: str) -> Any:
    """A node socket by identifier (Mix/Math nodes reuse names across data types)."""
    for sock in sockets:
        if sock.identifier == identifier:
            return sock
    raise KeyError(identifier)


def _group(name: str) -> bpy.types.NodeTree:
    group = bpy.data.node_groups.get(name)
    if group is not None and group.bl_idname != "CompositorNodeTree":
        group.name = name + " (old)"
        group = None
    if group is None:
        group = bpy.data.node_groups.new(name, "CompositorNodeTree")
    return group


def _sockets(group: bpy.types.NodeTree) -> list[bpy.types.NodeTreeInterfaceSocket]:
    """The group's interface sockets (its items that are not panels)."""
    interface = group.interface
    assert interface is not None  # every node group has one; the stubs mark it optional
    return [item for item in interface.items_tree if isinstance(item, bpy.types.NodeTreeInterfaceSocket)]


def _interface(group: bpy.types.NodeTree,
               spec: Sequence[tuple[Literal["INPUT", "OUTPUT"], str, str, Any]]) -> None:
    """Make the group's interface exactly `spec`: (in_out, name, socket_type, default)."""
    interface = group.interface
    assert interface is not None
    wanted = {(in_out, name) for in_out, name, _, _ in spec}
    for socket in _sockets(group):
        if (socket.in_out, socket.name) not in wanted:
            interface.remove(socket)
    for in_out, name, socket_type, default in spec:
        item = next((i for i in _sockets(group) if i.in_out == in_out and i.name == name), None)
        if item is not None and item.socket_type != socket_type:
            interface.remove(item)
            item = None
        if item is None:
            item = interface.new_socket(name, in_out=in_out, socket_type=socket_type)
        if default is not None and hasattr(item, "default_value"):
            item.default_value = default


class _Nodes:
    """Find-or-create nodes by name; links are rebuilt; nodes not asked for are removed."""

    def __init__(self, group: bpy.types.NodeTree):
        self.group = group
        self.keep: set[str] = set()
        group.links.clear()

    def add(self, bl_idname: str, name: str, location: tuple[float, float], label: str = "") -> Any:
        node = self.group.nodes.get(name)
        if node is not None and node.bl_idname != bl_idname:
            self.group.nodes.remove(node)
            node = None
        if node is None:
            node = self.group.nodes.new(bl_idname)
            node.name = name
        node.label = label or name
        node.location = location
        self.keep.add(node.name)
        return node

    def mix(self, name: str, location: tuple[float, float], blend: str = "MIX", factor: float = 1.0,
            clamp_result: bool = False, label: str = "") -> Any:
        node = self.add("ShaderNodeMix", name, location, label)
        node.data_type = "RGBA"
        node.blend_type = blend
        node.clamp_result = clamp_result
        node.clamp_factor = True
        _socket(node.inputs, "Factor_Float").default_value = factor
        return node

    def link(self, output: Any, input: Any) -> None:
        self.group.links.new(output, input)

    def finish(self) -> None:
        for node in list(self.group.nodes):
            if node.name not in self.keep:
                self.group.nodes.remove(node)


def _mix_in(node: Any, which: str) -> Any:
    return _socket(node.inputs, {"A": "A_Color", "B": "B_Color", "Factor": "Factor_Float"}[which])


def _mix_out(node: Any) -> Any:
    return _socket(node.outputs, "Result_Color")


# --- keyframes (they live on the node group's own animation data) --------------------------------

def _clear_keys(group: bpy.types.NodeTree, node_names: Iterable[str]) -> None:
    """Remove the F-curves of the named nodes' sockets (the builder re-keys them)."""
    from bpy_extras import anim_utils

    ad = group.animation_data
    if ad is None or ad.action is None:
        return
    # The stub says this returns None; it returns the slot's channelbag, or None when there is none.
    bag = anim_utils.animdata_get_channelbag_for_assigned_slot(ad)  # type: ignore[func-returns-value]
    if bag is None:
        return
    prefixes = tuple(f'nodes["{name}"].' for name in node_names)
    for fc in [fc for fc in bag.fcurves if fc.data_path.startswith(prefixes)]:
        bag.fcurves.remove(fc)


def _key(group: bpy.types.NodeTree, socket: Any, keys: Sequence[tuple[int, Any]],
         interpolation: Literal["CONSTANT", "LINEAR"]) -> None:
    """Key `socket.default_value` at each (frame, value); scalar or vector values.

    Call `_clear_keys` for the node first: keys are added to what is there.
    """
    ad = group.animation_data or group.animation_data_create()
    if ad.action is None:
        ad.action = bpy.data.actions.new(f"{group.name} Keys")
    path = socket.path_from_id("default_value")
    first = keys[0][1]
    size = len(first) if isinstance(first, (tuple, list, np.ndarray)) else 0
    for index in range(max(size, 1)):
        fc = ad.action.fcurve_ensure_for_datablock(group, path, index=index)
        for frame, value in keys:
            point = fc.keyframe_points.insert(frame, float(value[index] if size else value), options={"FAST"})
            point.interpolation = interpolation
        fc.update()


def _frame_items(mapping: Mapping[int | str, Sequence[float]]) -> tuple[list[tuple[int, Any]], Any]:
    """(frame-keyed items sorted by frame, the unkeyed value or None)."""
    keyed: list[tuple[int, Any]] = []
    static = None
    for key, value in mapping.items():
        if isinstance(key, int) or (isinstance(key, str) and key.lstrip("-").isdigit()):
            keyed.append((int(key), value))
        else:
            static = value
    keyed.sort(key=lambda kv: kv[0])
    return keyed, static


# --- groups --------------------------------------------------------------------------------------

def build_ingest_group() -> bpy.types.NodeTree:
    """FR Ingest: plate -> display-referred domain, then out = in * Gain + Offset per channel.

    Inputs: Image, ACES2065-1 (on: apply the ACES 1.3 Rec.709 2.4 output transform; off: the
    plate is already display-referred and passes through), Gain, Offset (per channel, the
    neutral pre-balance; leave 1 / 0 on the Reference branch).
    """
    group = _group(INGEST)
    _interface(group, [
        ("INPUT", "Image", "NodeSocketColor", (0.0, 0.0, 0.0, 1.0)),
        ("INPUT", "ACES2065-1", "NodeSocketBool", False),
        ("INPUT", "Gain", "NodeSocketVector", (1.0, 1.0, 1.0)),
        ("INPUT", "Offset", "NodeSocketVector", (0.0, 0.0, 0.0)),
        ("OUTPUT", "Image", "NodeSocketColor", None),
    ])
    n = _Nodes(group)
    gin = n.add("NodeGroupInput", "Group Input", (-900, 0))
    to_linear = n.add("CompositorNodeConvertColorSpace", "ACES2065-1 to Working", (-650, 120),
                      "ACES2065-1 → working space")
    to_linear.from_color_space = "ACES2065-1"
    to_linear.to_color_space = "scene_linear"
    odt = n.add("CompositorNodeConvertToDisplay", "Output Transform", (-380, 120),
                "ACES 1.3 Rec.709 (BT.1886 2.4) output transform")
    odt.display_settings.display_device = ACES_DISPLAY
    odt.view_settings.view_transform = ACES_VIEW
    odt.view_settings.look = "None"
    odt.inputs["Invert"].default_value = False
    switch = n.add("CompositorNodeSwitch", "Ingest Preset", (-120, 0), "Display | ACES2065-1")
    balance = n.add("ShaderNodeVectorMath", "Balance", (120, 0), "Neutral pre-balance: in × Gain + Offset")
    balance.operation = "MULTIPLY_ADD"
    gout = n.add("NodeGroupOutput", "Group Output", (360, 0))
    n.link(gin.outputs["Image"], to_linear.inputs["Image"])
    n.link(to_linear.outputs["Image"], odt.inputs["Image"])
    n.link(gin.outputs["ACES2065-1"], switch.inputs["Switch"])
    n.link(gin.outputs["Image"], switch.inputs["Off"])
    n.link(odt.outputs["Image"], switch.inputs["On"])
    n.link(switch.outputs["Image"], balance.inputs[0])
    n.link(gin.outputs["Gain"], balance.inputs[1])
    n.link(gin.outputs["Offset"], balance.inputs[2])
    n.link(balance.outputs["Vector"], gout.inputs["Image"])
    n.finish()
    return group


def build_align_group(reference_size: tuple[int, int], source_size: tuple[int, int],
                      solves: Mapping[int | str, Sequence[float]] | None = None,
                      manual: Mapping[int | str, Sequence[float]] | None = None,
                      use_manual: Iterable[int] = (),
                      fallback: Sequence[float] | np.ndarray | None = None) -> bpy.types.NodeTree:
    """FR Align: the Reference on the Source raster (inputs Reference, Source; output Image).

    Auto path: Corner Pin keyed per solved frame (any motion model, exact). Manual path:
    Transform keyed per manual frame (a non-similarity manual matrix gets its closest
    similarity). "Auto / Manual" is the guide's Dissolve: 0 = auto, 1 = manual, keyed per frame
    (constant) for the frames in `use_manual`. `fallback` (default: identity) is used where a
    path has no matrix at all. Sizes are (width, height) in pixels.
    """
    solves = solves or {}
    manual = manual or {}
    fallback_m = warp.as_matrix(fallback if fallback is not None else np.eye(3))
    group = _group(ALIGN)
    _interface(group, [
        ("INPUT", "Reference", "NodeSocketColor", (0.0, 0.0, 0.0, 1.0)),
        ("INPUT", "Source", "NodeSocketColor", (0.0, 0.0, 0.0, 1.0)),
        ("OUTPUT", "Image", "NodeSocketColor", None),
    ])
    n = _Nodes(group)
    gin = n.add("NodeGroupInput", "Group Input", (-900, 0))
    pin = n.add("CompositorNodeCornerPin", "Auto", (-380, 160), "Auto (solve): Corner Pin")
    move = n.add("CompositorNodeTransform", "Manual", (-380, -160), "Manual: Transform")
    dissolve = n.mix("Auto / Manual", (-100, 0), factor=0.0, label="Auto / Manual (0 = auto, 1 = manual)")
    raster = n.mix("Source Raster", (140, 0), label="On the Source raster")
    gout = n.add("NodeGroupOutput", "Group Output", (380, 0))
    for node in (pin, move):
        node.inputs["Interpolation"].default_value = "Bilinear"
        node.inputs["Extension X"].default_value = "Clip"
        node.inputs["Extension Y"].default_value = "Clip"

    if align_domain_size(reference_size, source_size) == tuple(source_size):
        pad = n.mix("Place on Source", (-650, 0), label="Reference on the Source raster (no resampling)")
        n.link(gin.outputs["Source"], _mix_in(pad, "A"))
        n.link(gin.outputs["Reference"], _mix_in(pad, "B"))
        warped_input = _mix_out(pad)
    else:
        warped_input = gin.outputs["Reference"]
    n.link(warped_input, pin.inputs["Image"])
    n.link(warped_input, move.inputs["Image"])
    n.link(pin.outputs["Image"], _mix_in(dissolve, "A"))
    n.link(move.outputs["Image"], _mix_in(dissolve, "B"))
    n.link(gin.outputs["Source"], _mix_in(raster, "A"))
    n.link(_mix_out(dissolve), _mix_in(raster, "B"))
    n.link(_mix_out(raster), gout.inputs["Image"])
    n.finish()

    _clear_keys(group, ("Auto", "Manual", "Auto / Manual"))

    keyed, static = _frame_items(solves)
    corners = [(f, corner_pin_corners(m, reference_size, source_size)) for f, m in keyed]
    base = corner_pin_corners(static if static is not None else fallback_m, reference_size, source_size)
    for name in CORNERS:
        pin.inputs[name].default_value = base[name]
        if corners:
            _key(group, pin.inputs[name], [(f, c[name]) for f, c in corners], "LINEAR")

    keyed, static = _frame_items(manual)
    if static is None and not keyed and solves:
        # No manual fix yet: start the manual path from the auto solve's closest similarity.
        skeyed, sstatic = _frame_items(solves)
        static = sstatic if sstatic is not None else skeyed[0][1]
    params = [(f, transform_values(m, reference_size, source_size)[0]) for f, m in keyed]
    base_t = transform_values(static if static is not None else fallback_m, reference_size, source_size)[0]
    for name in _TRANSFORM_INPUTS:
        move.inputs[name].default_value = base_t[name]
        if params:
            _key(group, move.inputs[name], [(f, p[name]) for f, p in params], "LINEAR")

    manual_frames = sorted(set(int(f) for f in use_manual))
    factor = _mix_in(dissolve, "Factor")
    factor.default_value = 0.0
    if manual_frames:
        chosen = set(manual_frames)
        switch_keys = {}
        for f in manual_frames:
            switch_keys[f] = 1.0
            for g in (f - 1, f + 1):
                if g not in chosen:
                    switch_keys[g] = 0.0
        _key(group, factor, sorted(switch_keys.items()), "CONSTANT")
    return group


def build_crop_group(crop: tuple[int, int, int, int],
                     keys: Sequence[tuple[int, int, int, int, int]] = ()) -> bpy.types.NodeTree:
    """FR Crop: (x, y, width, height) in Source pixels from the lower-left, like job.Crop.

    One datablock is used by both branches, so editing (or keying) it edits both. `keys` are
    (frame, x, y, width, height) for an animated crop; each key holds until the next (a subtitle
    appears or goes on a frame), exactly like the engine's `ml.crop.crop_at_frame`.
    Bypass it while solving by muting its group nodes (`set_crop_bypass`).
    """
    group = _group(CROP)
    _interface(group, [
        ("INPUT", "Image", "NodeSocketColor", (0.0, 0.0, 0.0, 1.0)),
        ("OUTPUT", "Image", "NodeSocketColor", None),
    ])
    n = _Nodes(group)
    gin = n.add("NodeGroupInput", "Group Input", (-400, 0))
    node = n.add("CompositorNodeCrop", "Crop", (-150, 0), "Shared crop (Source px from lower-left)")
    gout = n.add("NodeGroupOutput", "Group Output", (100, 0))
    n.link(gin.outputs["Image"], node.inputs["Image"])
    n.link(node.outputs["Image"], gout.inputs["Image"])
    n.finish()
    node.inputs["Alpha Crop"].default_value = False
    _clear_keys(group, ("Crop",))
    for name, value in zip(_CROP_INPUTS, crop, strict=True):
        node.inputs[name].default_value = int(value)
    if keys:
        ordered = sorted(keys, key=lambda k: k[0])
        for i, name in enumerate(_CROP_INPUTS):
            _key(group, node.inputs[name], [(k[0], int(k[i + 1])) for k in ordered], "CONSTANT")
    return group


def build_ground_truth_group() -> bpy.types.NodeTree:
    """FR Ground Truth: both branches to YCC with identical chains, channels shuffled, back to RGB.

    Inputs Source, Reference, Spatial (off: chroma target = Source Y + Reference CbCr;
    on: spatial target = Reference Y + Source CbCr). Outputs Ground Truth (clamped to 0..1) and
    Input (the Source as the model sees it).
    """
    group = _group(GROUND_TRUTH)
    _interface(group, [
        ("INPUT", "Source", "NodeSocketColor", (0.0, 0.0, 0.0, 1.0)),
        ("INPUT", "Reference", "NodeSocketColor", (0.0, 0.0, 0.0, 1.0)),
        ("INPUT", "Spatial", "NodeSocketBool", False),
        ("OUTPUT", "Ground Truth", "NodeSocketColor", None),
        ("OUTPUT", "Input", "NodeSocketColor", None),
    ])
    n = _Nodes(group)
    gin = n.add("NodeGroupInput", "Group Input", (-800, 0))
    seps = {}
    for i, branch in enumerate(("Source", "Reference")):
        sep = n.add("CompositorNodeSeparateColor", f"{branch} YCC", (-550, 150 - 300 * i), f"{branch} → YCbCr")
        sep.mode = "YCC"
        sep.ycc_mode = "ITUBT709"
        n.link(gin.outputs[branch], sep.inputs["Image"])
        seps[branch] = sep
    combines = {}
    for i, (name, y_from, c_from) in enumerate((("Chroma", "Source", "Reference"),
                                                ("Spatial", "Reference", "Source"))):
        comb = n.add("CompositorNodeCombineColor", f"{name} Target", (-250, 150 - 300 * i),
                     f"{name}: {y_from} Y + {c_from} CbCr")
        comb.mode = "YCC"
        comb.ycc_mode = "ITUBT709"
        n.link(seps[y_from].outputs[0], comb.inputs[0])
        n.link(seps[c_from].outputs[1], comb.inputs[1])
        n.link(seps[c_from].outputs[2], comb.inputs[2])
        combines[name] = comb
    switch = n.add("CompositorNodeSwitch", "Branch", (0, 0), "Chroma | Spatial")
    clamp = n.mix("Clamp", (220, 0), factor=0.0, clamp_result=True, label="Light clamp 0..1")
    gout = n.add("NodeGroupOutput", "Group Output", (450, 0))
    n.link(gin.outputs["Spatial"], switch.inputs["Switch"])
    n.link(combines["Chroma"].outputs["Image"], switch.inputs["Off"])
    n.link(combines["Spatial"].outputs["Image"], switch.inputs["On"])
    n.link(switch.outputs["Image"], _mix_in(clamp, "A"))
    n.link(switch.outputs["Image"], _mix_in(clamp, "B"))
    n.link(_mix_out(clamp), gout.inputs["Ground Truth"])
    n.link(gin.outputs["Source"], gout.inputs["Input"])
    n.finish()
    return group


def build_review_group() -> bpy.types.NodeTree:
    """FR Review: A | B wipe (A left of Wipe, B right) or |A - B| (Difference on)."""
    group = _group(REVIEW)
    _interface(group, [
        ("INPUT", "A", "NodeSocketColor", (0.0, 0.0, 0.0, 1.0)),
        ("INPUT", "B", "NodeSocketColor", (0.0, 0.0, 0.0, 1.0)),
        ("INPUT", "Difference", "NodeSocketBool", False),
        ("INPUT", "Wipe", "NodeSocketFloat", 0.5),
        ("OUTPUT", "Image", "NodeSocketColor", None),
    ])
    for item in _sockets(group):
        if item.name == "Wipe" and isinstance(item, bpy.types.NodeTreeInterfaceSocketFloat):
            item.min_value, item.max_value = 0.0, 1.0
    n = _Nodes(group)
    gin = n.add("NodeGroupInput", "Group Input", (-700, 0))
    position = n.add("ShaderNodeCombineXYZ", "Wipe Position", (-450, 200))
    position.inputs["Y"].default_value = 0.5
    split = n.add("CompositorNodeSplit", "Wipe", (-200, 150), "A | B wipe")
    split.inputs["Rotation"].default_value = math.pi / 2.0
    diff = n.mix("Difference", (-200, -150), blend="DIFFERENCE", label="|A - B|")
    switch = n.add("CompositorNodeSwitch", "Mode", (50, 0), "Wipe | Difference")
    gout = n.add("NodeGroupOutput", "Group Output", (280, 0))
    n.link(gin.outputs["Wipe"], position.inputs["X"])
    n.link(position.outputs["Vector"], split.inputs["Position"])
    # Rotated 90 degrees, Split shows its first image left of Position and its second right of it.
    n.link(gin.outputs["A"], split.inputs[2])
    n.link(gin.outputs["B"], split.inputs[3])
    n.link(gin.outputs["A"], _mix_in(diff, "A"))
    n.link(gin.outputs["B"], _mix_in(diff, "B"))
    n.link(gin.outputs["Difference"], switch.inputs["Switch"])
    n.link(split.outputs["Image"], switch.inputs["Off"])
    n.link(_mix_out(diff), switch.inputs["On"])
    n.link(switch.outputs["Image"], gout.inputs["Image"])
    n.finish()
    return group


# --- the recipe tree ----------------------------------------------------------------------------

def _group_node(n: _Nodes, group: bpy.types.NodeTree, name: str, location: tuple[float, float]) -> Any:
    node = n.add("CompositorNodeGroup", name, location)
    node.node_tree = group
    return node


def _image_node(n: _Nodes, name: str, image: bpy.types.Image, location: tuple[float, float],
                frames: tuple[int, int], scene_offset: int) -> Any:
    """An Image node reading `image` as raw values; a sequence's file frame = scene frame + offset."""
    node = n.add("CompositorNodeImage", name, location)
    node.image = image
    set_colorspace(image, "Non-Color")
    if image.source in {"SEQUENCE", "MOVIE"}:
        first, last = frames
        node.frame_duration = max(1, last - first + 1)
        node.frame_start = first - scene_offset
        node.frame_offset = first - 1
        node.use_cyclic = False
        node.use_auto_refresh = True
    return node


def image_size(image: bpy.types.Image) -> tuple[int, int]:
    """(width, height) of an image; for a sequence whose frame is not loaded, read its file's header."""
    width, height = int(image.size[0]), int(image.size[1])
    if width and height:
        return width, height
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(bpy.path.abspath(image.filepath, library=image.library))
    if inp is None:
        return 0, 0
    try:
        return int(inp.spec().width), int(inp.spec().height)
    finally:
        inp.close()


def crop_active(settings: RecipeSettings) -> bool:
    """Whether the shared crop applies (enabled, a real rectangle, not bypassed)."""
    return (settings.crop_enabled and not settings.crop_bypass
            and (bool(settings.crop_keys) or (settings.crop[2] > 0 and settings.crop[3] > 0)))


def set_crop_bypass(tree: bpy.types.NodeTree, bypass: bool) -> None:
    """Mute (bypass) or unmute both instances of the shared crop in a recipe tree."""
    for node in tree.nodes:
        if isinstance(node, bpy.types.CompositorNodeGroup) and node.node_tree is not None \
                and node.node_tree.name == CROP:
            node.mute = bypass


def build_recipe_tree(scene: bpy.types.Scene, source_image: bpy.types.Image,
                      reference_image: bpy.types.Image,
                      settings: RecipeSettings | Mapping[str, Any]) -> bpy.types.NodeTree:
    """Build (or update) "FR Recipe" and make it the scene's compositor.

    Source -> Ingest -> Crop ─┐
    Reference -> Ingest -> Align (on the Source raster) -> Crop ─┴-> Ground Truth -> Group Output
    with two Review instances (alignment: Source vs aligned Reference; Input vs Ground Truth).
    `settings.view` picks what the Group Output shows. Both images are set to Non-Color (raw
    file values; the Ingest group does the colour). The scene's frame is the Source frame.
    """
    if not isinstance(settings, RecipeSettings):
        settings = RecipeSettings(**dict(settings))
    if settings.view not in VIEWS:
        raise ValueError(f"unknown view {settings.view!r}; one of {', '.join(VIEWS)}")
    if settings.branch not in ("chroma", "spatial"):
        raise ValueError(f"unknown branch {settings.branch!r}; 'chroma' or 'spatial'")
    source_size = image_size(source_image)
    reference_size = image_size(reference_image)
    if 0 in source_size or 0 in reference_size:
        raise ValueError("an image has no pixels (missing file?): "
                         f"Source {source_image.filepath!r} {source_size}, "
                         f"Reference {reference_image.filepath!r} {reference_size}")

    ingest = build_ingest_group()
    fallback = warp.conform_matrix(settings.conform_mode, reference_size, source_size,
                                   scale=settings.conform_scale, offset=settings.conform_offset)
    align = build_align_group(reference_size, source_size, settings.solves, settings.manual,
                              settings.use_manual, fallback=fallback)
    crop = build_crop_group(tuple(settings.crop), settings.crop_keys)  # type: ignore[arg-type]
    truth = build_ground_truth_group()
    review = build_review_group()

    tree = _group(RECIPE_TREE)
    _interface(tree, [("OUTPUT", "Image", "NodeSocketColor", None)])
    n = _Nodes(tree)
    src = _image_node(n, "Source", source_image, (-1300, 250), settings.source_frames, 0)
    ref = _image_node(n, "Reference", reference_image, (-1300, -250), settings.reference_frames,
                      settings.reference_frame_offset)
    ingest_s = _group_node(n, ingest, "Ingest Source", (-1050, 250))
    ingest_r = _group_node(n, ingest, "Ingest Reference", (-1050, -250))
    align_r = _group_node(n, align, "Align", (-800, -250))
    crop_s = _group_node(n, crop, "Crop Source", (-550, 250))
    crop_r = _group_node(n, crop, "Crop Reference", (-550, -250))
    truth_n = _group_node(n, truth, "Ground Truth", (-250, 0))
    review_align = _group_node(n, review, "Review Alignment", (-250, -400))
    review_truth = _group_node(n, review, "Review Ground Truth", (50, -200))
    gout = n.add("NodeGroupOutput", "Group Output", (350, 0))

    ingest_s.inputs["ACES2065-1"].default_value = settings.source_ingest == "aces2065-1"
    ingest_r.inputs["ACES2065-1"].default_value = settings.reference_ingest == "aces2065-1"
    balance = settings.balance_enabled
    ingest_s.inputs["Gain"].default_value = tuple(settings.balance_gain) if balance else (1.0, 1.0, 1.0)
    ingest_s.inputs["Offset"].default_value = tuple(settings.balance_offset) if balance else (0.0, 0.0, 0.0)
    ingest_r.inputs["Gain"].default_value = (1.0, 1.0, 1.0)
    ingest_r.inputs["Offset"].default_value = (0.0, 0.0, 0.0)
    truth_n.inputs["Spatial"].default_value = settings.branch == "spatial"
    for node in (review_align, review_truth):
        node.inputs["Wipe"].default_value = float(settings.wipe)
    review_align.inputs["Difference"].default_value = settings.view == "alignment_difference"
    review_truth.inputs["Difference"].default_value = False

    n.link(src.outputs["Image"], ingest_s.inputs["Image"])
    n.link(ref.outputs["Image"], ingest_r.inputs["Image"])
    n.link(ingest_r.outputs["Image"], align_r.inputs["Reference"])
    n.link(ingest_s.outputs["Image"], align_r.inputs["Source"])
    n.link(ingest_s.outputs["Image"], crop_s.inputs["Image"])
    n.link(align_r.outputs["Image"], crop_r.inputs["Image"])
    n.link(crop_s.outputs["Image"], truth_n.inputs["Source"])
    n.link(crop_r.outputs["Image"], truth_n.inputs["Reference"])
    n.link(crop_s.outputs["Image"], review_align.inputs["A"])
    n.link(crop_r.outputs["Image"], review_align.inputs["B"])
    n.link(truth_n.outputs["Input"], review_truth.inputs["A"])
    n.link(truth_n.outputs["Ground Truth"], review_truth.inputs["B"])
    shown = {
        "ground_truth": truth_n.outputs["Ground Truth"],
        "input": truth_n.outputs["Input"],
        "reference": crop_r.outputs["Image"],
        "input_vs_ground_truth": review_truth.outputs["Image"],
        "alignment_wipe": review_align.outputs["Image"],
        "alignment_difference": review_align.outputs["Image"],
    }[settings.view]
    n.link(shown, gout.inputs["Image"])
    n.finish()
    set_crop_bypass(tree, not crop_active(settings))
    scene.compositing_node_group = tree
    return tree
