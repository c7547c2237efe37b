"""Pixel parity: the compositor node groups render what the engine computes for the same frame.

Real bpy 5.0.1 renders (conftest points HOME at a temp folder before bpy is imported), the
node-group module as installed from the extension zip, and the engine (`ml`) as the reference.
Images are small photographs (96x64) so the whole file stays fast on 2 cores.

Tolerances (measured values in brackets, bpy 5.0.1 CPU compositor):
- identity and display ingest, balance: max 1e-6 [0.0]
- ACES2065-1 ingest vs ml.colour.aces2065_to_display (PyOpenColorIO, pinned studio config):
  max 5e-5 [1.4e-6], also with ACEScg as the working space [9.5e-7]
- Align (Corner Pin and Transform) vs ml.warp.warp_to_source, on Source pixels whose bilinear
  taps are all inside the Reference, eroded by 2 px (Corner Pin anti-aliases its plane edge):
  max 1e-4, mean 2e-6 [max 4.1e-6, mean 2.3e-7]. Within 2 px of a Corner Pin plane edge the
  anti-aliasing differs by up to 0.07 (not an alignment error).
- crop: exact [0.0]
- Ground Truth vs the node model (ml.colour's Blender YCC matrices): max 1e-5 [3e-7];
  vs the engine's exact BT.709 recombination: max 1.5e-3, mean 3e-4 [max 5.9e-4, mean 1.9e-4 on
  these photos; up to 1.4e-3 on random colours] (Blender's YCC matrices are rounded to 3 decimals)
"""

from __future__ import annotations

from importlib import import_module

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
oiio = pytest.importorskip("OpenImageIO")

from conftest import ADDON_MODULE, _ensure_installed  # noqa: E402

from ml import colour, warp  # noqa: E402
from ml.primitives import luma  # noqa: E402

W, H = 96, 64


@pytest.fixture(scope="module")
def fr(extension_zip):
    """(nodes module, render_tree) from the installed extension."""
    _ensure_installed(extension_zip)
    nodes = import_module(ADDON_MODULE + ".addon.nodes")
    render = import_module(ADDON_MODULE + ".addon.compositor_render")
    return nodes, render.render_tree


@pytest.fixture(autouse=True)
def empty_blend():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield


def photo(h: int, w: int, name: str = "astronaut") -> np.ndarray:
    from skimage import data, transform

    img = getattr(data, name)().astype(np.float32) / 255.0
    return transform.resize(img, (h, w), anti_aliasing=True).astype(np.float32)


def faded(img: np.ndarray) -> np.ndarray:
    """Chroma damage: desaturated towards luma and a warm cast (detail intact)."""
    y = luma(img)[..., None]
    return np.clip(y + 0.35 * (img - y) + np.array([0.04, 0.0, -0.03], np.float32), 0, 1).astype(np.float32)


def save(path, img: np.ndarray):
    """A full-float RGB EXR (no half rounding), loaded as a bpy image."""
    out = oiio.ImageOutput.create(str(path))
    out.open(str(path), oiio.ImageSpec(img.shape[1], img.shape[0], 3, oiio.FLOAT))
    out.write_image(np.ascontiguousarray(img, dtype=np.float32))
    out.close()
    return bpy.data.images.load(str(path))


def test_tree(output_socket_of):
    """A compositor tree whose Group Output shows `output_socket_of(tree)`."""
    tree = bpy.data.node_groups.new("Test", "CompositorNodeTree")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    out = tree.nodes.new("NodeGroupOutput")
    tree.links.new(output_socket_of(tree), out.inputs["Image"])
    return tree


test_tree.__test__ = False  # a helper, not a test


def image_node(tree, image):
    image.colorspace_settings.name = "Non-Color"
    node = tree.nodes.new("CompositorNodeImage")
    node.image = image
    return node


def group_node(tree, group, **inputs):
    node = tree.nodes.new("CompositorNodeGroup")
    node.node_tree = group
    for name, value in inputs.items():
        if hasattr(value, "is_output"):
            tree.links.new(value, node.inputs[name])
        else:
            node.inputs[name].default_value = value
    return node


def use_working_space(name: str) -> None:
    if bpy.data.colorspace.working_space != name:
        assert bpy.ops.wm.set_working_color_space(working_space=name) == {"FINISHED"}
    assert bpy.data.colorspace.working_space == name


def rgb(a: np.ndarray) -> np.ndarray:
    return a[..., :3]


def align_pixels(m: np.ndarray, ref_shape, erode: int = 2) -> np.ndarray:
    """Source pixels whose bilinear taps all fall inside the Reference, `erode` px away from the
    Reference's edge and from the raster's border (where Corner Pin anti-aliases its plane edge)."""
    mask = warp.valid_mask(m, ref_shape, (H, W))
    mask[:erode] = mask[-erode:] = False
    mask[:, :erode] = mask[:, -erode:] = False
    for _ in range(erode):
        inner = mask.copy()
        inner[1:] &= mask[:-1]
        inner[:-1] &= mask[1:]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        mask = inner
    return mask


@pytest.mark.parametrize("working_space", ["Linear Rec.709", "ACEScg"])
def test_identity_passthrough(fr, tmp_path, working_space):
    _, render = fr
    use_working_space(working_space)
    # Out-of-range values too: nothing may be clamped or colour-managed on the way.
    img = photo(H, W) * 1.4 - 0.1
    image = save(tmp_path / "in.exr", img)
    tree = test_tree(lambda t: image_node(t, image).outputs["Image"])
    scene = bpy.context.scene
    scene.render.image_settings.file_format = "PNG"
    scene.render.resolution_x, scene.frame_current = 333, 7
    out = render(scene, tree, 3, W, H)
    assert out.shape == (H, W, 4) and out.dtype == np.float32
    assert np.abs(rgb(out) - img).max() <= 1e-6
    # the scene is left as it was
    assert scene.render.image_settings.file_format == "PNG" and scene.render.resolution_x == 333
    assert scene.frame_current == 7 and scene.compositing_node_group is None


@pytest.mark.parametrize("working_space", ["Linear Rec.709", "ACEScg"])
def test_ingest_display_passes_and_aces_matches_engine_ocio(fr, tmp_path, working_space):
    nodes, render = fr
    use_working_space(working_space)
    display = photo(H, W)
    aces = colour.display_to_aces2065(display)  # a plausible ACES2065-1 master of the photo
    aces[:8, :8] = [[4.0, 0.5, 0.02]]  # bright and saturated, beyond the display's range
    ingest = nodes.build_ingest_group()
    scene = bpy.context.scene

    disp_img = save(tmp_path / "display.exr", display)
    tree = test_tree(lambda t: group_node(t, ingest, Image=image_node(t, disp_img).outputs["Image"]).outputs[0])
    assert np.abs(rgb(render(scene, tree, 1, W, H)) - display).max() <= 1e-6

    aces_img = save(tmp_path / "aces.exr", aces)
    tree = test_tree(lambda t: group_node(t, ingest, Image=image_node(t, aces_img).outputs["Image"],
                                          **{"ACES2065-1": True}).outputs[0])
    out = rgb(render(scene, tree, 1, W, H))
    expected = colour.aces2065_to_display(aces)
    assert np.abs(out - expected).max() <= 5e-5
    assert np.abs(out - display).max() > 0.01 or np.abs(aces - display).max() > 0.1  # it did something


def test_balance_gain_offset(fr, tmp_path):
    nodes, render = fr
    img = photo(H, W, "coffee")
    gain, offset = (1.12, 0.93, 1.2), (0.01, -0.02, 0.035)
    image = save(tmp_path / "in.exr", img)
    ingest = nodes.build_ingest_group()
    tree = test_tree(lambda t: group_node(t, ingest, Image=image_node(t, image).outputs["Image"],
                                          Gain=gain, Offset=offset).outputs[0])
    out = rgb(render(bpy.context.scene, tree, 1, W, H))
    expected = img * np.array(gain, np.float32) + np.array(offset, np.float32)
    assert np.abs(out - expected).max() <= 1e-6


def similarity_matrix(ref_size):
    """Conform-fit the Reference, then scale, rotate 4 degrees and shift: a similarity."""
    return warp.similarity(1.06, 4.0, 2.3, -1.4, centre=((W - 1) / 2, (H - 1) / 2)) @ \
        warp.conform_matrix("fit", ref_size, (W, H))


def perspective_matrix(ref_size):
    return np.array([[1.02, 0.03, -2.0], [-0.02, 0.99, 1.5], [2e-4, -1.5e-4, 1.0]]) @ \
        warp.resize_matrix(ref_size, (W, H))


@pytest.mark.parametrize("ref_size", [(96, 64), (47, 31), (121, 81)], ids=["same", "smaller-odd", "larger"])
def test_align_matches_engine_warp(fr, tmp_path, ref_size):
    """Frame 10: perspective solve (Corner Pin); 11: similarity solve; 12: manual Transform."""
    nodes, render = fr
    rw, rh = ref_size
    reference = photo(rh, rw, "chelsea")
    source = save(tmp_path / "source.exr", faded(photo(H, W, "chelsea")))
    ref_img = save(tmp_path / "reference.exr", reference)
    m_persp, m_sim = perspective_matrix(ref_size), similarity_matrix(ref_size)
    m_manual = warp.translation(1.7, -0.6) @ m_sim
    settings = nodes.RecipeSettings(
        solves={"10": warp.matrix_to_list(m_persp), "11": warp.matrix_to_list(m_sim)},
        manual={12: warp.matrix_to_list(m_manual)}, use_manual=[12], view="reference")
    scene = bpy.context.scene
    tree = nodes.build_recipe_tree(scene, source, ref_img, settings)
    assert scene.compositing_node_group == tree
    for frame, m in ((10, m_persp), (11, m_sim), (12, m_manual)):
        out = rgb(render(scene, tree, frame, W, H))
        expected = warp.warp_to_source(reference, m, (H, W))
        inside = align_pixels(m, (rh, rw))
        assert inside.mean() > 0.6
        err = np.abs(out - expected)[inside]
        assert err.max() <= 1e-4 and err.mean() <= 2e-6, (frame, err.max(), err.mean())


def test_transform_values_round_trip(fr):
    """The Transform node's parameters reproduce a similarity exactly; others report their error."""
    nodes, _ = fr
    for ref_size in ((96, 64), (48, 32), (121, 81)):
        values, error = nodes.transform_values(similarity_matrix(ref_size), ref_size, (W, H))
        assert error < 1e-6 and values["Scale"] > 0
        _, error = nodes.transform_values(perspective_matrix(ref_size), ref_size, (W, H))
        assert error > 0.1


def test_shared_crop_is_one_group_and_crops_like_the_job(fr, tmp_path):
    nodes, render = fr
    source = photo(H, W, "astronaut")
    src_img = save(tmp_path / "source.exr", source)
    ref_img = save(tmp_path / "reference.exr", photo(H, W, "astronaut"))
    x, y, cw, ch = 10, 6, 40, 30
    settings = nodes.RecipeSettings(crop_enabled=True, crop=(x, y, cw, ch), view="input",
                                    crop_keys=[(20, x, y, cw, ch), (30, 30, 20, cw, ch)])
    scene = bpy.context.scene
    tree = nodes.build_recipe_tree(scene, src_img, ref_img, settings)
    crops = [n for n in tree.nodes if n.bl_idname == "CompositorNodeGroup" and n.node_tree.name == nodes.CROP]
    assert len(crops) == 2 and crops[0].node_tree == crops[1].node_tree
    assert [n.name for n in bpy.data.node_groups].count(nodes.CROP) == 1

    def job_crop(img, cx, cy):  # job.Crop: Source pixels from the LOWER-left; arrays have row 0 at the top
        return img[H - cy - ch:H - cy, cx:cx + cw]

    assert np.array_equal(rgb(render(scene, tree, 20, cw, ch)), job_crop(source, x, y))
    assert np.array_equal(rgb(render(scene, tree, 30, cw, ch)), job_crop(source, 30, 20))  # animated
    # Editing the one datablock moves both branches' crops: the Reference view follows.
    settings.view = "reference"
    tree = nodes.build_recipe_tree(scene, src_img, ref_img, settings)
    assert np.array_equal(rgb(render(scene, tree, 30, cw, ch)), job_crop(source, 30, 20))
    nodes.set_crop_bypass(tree, True)
    assert all(n.mute for n in crops)
    assert np.abs(rgb(render(scene, tree, 30, W, H)) - source).max() <= 1e-6


@pytest.mark.parametrize("branch", ["chroma", "spatial"])
def test_ground_truth_matches_engine_recombination(fr, tmp_path, branch):
    nodes, render = fr
    clean = photo(H, W, "coffee")
    if branch == "chroma":  # Source: detail intact, colour faded; Reference: colour intact
        source, reference = faded(clean), np.clip(clean * 0.97 + 0.01, 0, 1)
    else:  # Source: colour fine, detail soft; Reference: sharp
        from skimage.filters import gaussian

        source = gaussian(clean, sigma=1.5, channel_axis=-1).astype(np.float32)
        reference = np.clip(clean * 0.95 + 0.02, 0, 1).astype(np.float32)
    src_img = save(tmp_path / "source.exr", source)
    ref_img = save(tmp_path / "reference.exr", reference)
    settings = nodes.RecipeSettings(branch=branch, view="ground_truth")
    tree = nodes.build_recipe_tree(bpy.context.scene, src_img, ref_img, settings)
    out = rgb(render(bpy.context.scene, tree, 1, W, H))

    y_from, c_from = (source, reference) if branch == "chroma" else (reference, source)
    engine = colour.ycbcr_to_rgb(np.concatenate(
        [colour.rgb_to_ycbcr(y_from)[..., :1], colour.rgb_to_ycbcr(c_from)[..., 1:]], axis=-1))
    engine = np.clip(engine, 0.0, 1.0)
    model = np.clip(colour.blender_ycc_to_rgb(np.concatenate(
        [colour.rgb_to_blender_ycc(y_from)[..., :1], colour.rgb_to_blender_ycc(c_from)[..., 1:]], axis=-1)), 0, 1)
    assert np.abs(out - model).max() <= 1e-5
    err = np.abs(out - engine)
    assert err.max() <= 1.5e-3 and err.mean() <= 3e-4, (err.max(), err.mean())
    assert out.min() >= 0.0 and out.max() <= 1.0

    unclamped = (engine > 0.002).all(-1) & (engine < 0.998).all(-1)
    got = colour.rgb_to_ycbcr(out)[unclamped]
    if branch == "chroma":  # target Y is the Source's Y
        assert np.abs(got[:, 0] - colour.rgb_to_ycbcr(source)[unclamped][:, 0]).max() <= 1.5e-3
    else:  # target CbCr is the Source's CbCr
        assert np.abs(got[:, 1:] - colour.rgb_to_ycbcr(source)[unclamped][:, 1:]).max() <= 1.5e-3
    # and the other channels come from the Reference, which differs: the shuffle is real
    assert np.abs(out - source).mean() > 0.01


def test_review_wipe_and_difference(fr, tmp_path):
    nodes, render = fr
    a, b = photo(H, W, "astronaut"), photo(H, W, "coffee")
    ia, ib = save(tmp_path / "a.exr", a), save(tmp_path / "b.exr", b)
    review = nodes.build_review_group()
    scene = bpy.context.scene
    tree = test_tree(lambda t: group_node(t, review, A=image_node(t, ia).outputs["Image"],
                                          B=image_node(t, ib).outputs["Image"], Wipe=0.5).outputs[0])
    out = rgb(render(scene, tree, 1, W, H))
    assert np.array_equal(out[:, :W // 2 - 1], a[:, :W // 2 - 1])
    assert np.array_equal(out[:, W // 2 + 1:], b[:, W // 2 + 1:])
    next(n for n in tree.nodes if n.bl_idname == "CompositorNodeGroup").inputs["Difference"].default_value = True
    out = rgb(render(scene, tree, 1, W, H))
    assert np.abs(out - np.abs(a - b)).max() <= 1e-6


def test_builders_are_idempotent_and_rekey(fr, tmp_path):
    nodes, _ = fr
    src_img = save(tmp_path / "source.exr", photo(H, W))
    ref_img = save(tmp_path / "reference.exr", photo(H // 2, W // 2))
    m1 = warp.matrix_to_list(similarity_matrix((W // 2, H // 2)))
    m2 = warp.matrix_to_list(warp.translation(3, 0) @ similarity_matrix((W // 2, H // 2)))
    settings = nodes.RecipeSettings(solves={5: m1, 9: m1}, manual={"7": m1}, use_manual=[7],
                                    crop_enabled=True, crop=(4, 4, 80, 50), crop_keys=[(5, 4, 4, 80, 50)])
    scene = bpy.context.scene
    tree = nodes.build_recipe_tree(scene, src_img, ref_img, settings)

    def census():
        groups = sorted(g.name for g in bpy.data.node_groups)
        per_group = {g.name: (len(g.nodes), len(g.links), len(g.interface.items_tree)) for g in bpy.data.node_groups}
        return groups, per_group, len(bpy.data.actions)

    before = census()
    assert before[0] == sorted([nodes.INGEST, nodes.ALIGN, nodes.CROP, nodes.GROUND_TRUTH, nodes.REVIEW,
                                nodes.RECIPE_TREE])
    assert nodes.build_recipe_tree(scene, src_img, ref_img, settings) == tree
    assert census() == before

    from bpy_extras import anim_utils

    align = bpy.data.node_groups[nodes.ALIGN]

    def corner_keys():
        bag = anim_utils.animdata_get_channelbag_for_assigned_slot(align.animation_data)
        return {(fc.data_path, fc.array_index): [tuple(k.co) for k in fc.keyframe_points]
                for fc in bag.fcurves if fc.data_path.startswith('nodes["Auto"]')}

    first = corner_keys()
    assert len(first) == 8 and all(len(v) == 2 for v in first.values())
    settings.solves = {5: m2}  # a new solve replaces the old keys instead of adding to them
    nodes.build_recipe_tree(scene, src_img, ref_img, settings)
    second = corner_keys()
    assert census() == before
    assert all(len(v) == 1 and v[0][0] == 5 for v in second.values()) and second != first


def test_sequences_follow_the_scene_frame_and_reference_offset(fr, tmp_path):
    """Scene frame = Source frame; the Reference frame is Source frame + the pairs' offset."""
    nodes, render = fr
    shades = {f: np.full((H, W, 3), 0.1 * f, np.float32) for f in range(1, 6)}
    for f, img in shades.items():
        save(tmp_path / f"src.{f:04d}.exr", img)
        save(tmp_path / f"ref.{f:04d}.exr", img * 0.5)
    bpy.data.images.remove(bpy.data.images["src.0005.exr"])  # (save() loads each file)
    src_img = bpy.data.images.load(str(tmp_path / "src.0002.exr"), check_existing=True)
    ref_img = bpy.data.images.load(str(tmp_path / "ref.0003.exr"), check_existing=True)
    src_img.source = ref_img.source = "SEQUENCE"
    settings = nodes.RecipeSettings(source_frames=(2, 4), reference_frames=(3, 5), reference_frame_offset=1,
                                    view="input")
    scene = bpy.context.scene
    tree = nodes.build_recipe_tree(scene, src_img, ref_img, settings)
    assert np.allclose(rgb(render(scene, tree, 3, W, H)), 0.3, atol=1e-6)
    settings.view = "reference"  # identity alignment by default (same size, conform fit)
    tree = nodes.build_recipe_tree(scene, src_img, ref_img, settings)
    assert np.allclose(rgb(render(scene, tree, 3, W, H)), 0.5 * 0.4, atol=1e-6)


def test_alignment_difference_view_and_settings_from_job(fr, tmp_path):
    nodes, render = fr
    from ml import job as schema

    job = schema.Job(branch="spatial")
    job.source.ingest = "aces2065-1"
    job.pairs = [schema.Pair(source_frame=10, reference_frame=12), schema.Pair(source_frame=20, reference_frame=22)]
    job.alignment.solves = {"10": [1, 0, 2, 0, 1, 0, 0, 0, 1]}
    job.crop = schema.Crop(enabled=True, x=1, y=2, width=30, height=20, keys=[schema.CropKey(5, 1, 2, 30, 20)])
    settings = nodes.RecipeSettings.from_job(job, view="alignment_difference")
    assert settings.branch == "spatial" and settings.source_ingest == "aces2065-1"
    assert settings.reference_frame_offset == 2 and settings.solves["10"][2] == 2
    assert settings.crop == (1, 2, 30, 20) and settings.crop_keys == [(5, 1, 2, 30, 20)]

    img = photo(H, W)
    a, b = save(tmp_path / "a.exr", img), save(tmp_path / "b.exr", img)
    tree = nodes.build_recipe_tree(bpy.context.scene, a, b, nodes.RecipeSettings(view="alignment_difference"))
    assert np.abs(rgb(render(bpy.context.scene, tree, 1, W, H))).max() <= 1e-6
    with pytest.raises(ValueError, match="unknown view"):
        nodes.build_recipe_tree(bpy.context.scene, a, b, nodes.RecipeSettings(view="nope"))
