"""Colour: OCIO transforms against independent references, YCbCr, Blender YCC, LUT bake, writers.

What is checked independently and what is not:
- The AP0/AP1/Rec.709 matrix parts of the pinned config against colour-science and the
  published ACES AP0->AP1 matrix (S-2014-004).
- The ACES 1.0 SDR output transform (RRT + ODT.Academy.Rec709_100nits_dim) is not in
  colour-science. On the neutral axis it reduces to the published CTL tone scales
  (ACESlib.Tonescales: segmented_spline_c5_fwd then segmented_spline_c9_fwd with ODT_48nits),
  Y_2_linCV with the 48 / 0.02 nit cinema range, the dim-surround gamma 0.9811 and the inverse
  BT.1886 (gamma 2.4) encoding; the glow, red modifier and desaturation steps do nothing to
  neutrals. That neutral axis is re-implemented here from the CTL coefficients. Off the neutral
  axis only the round trip through OCIO's own inverse is checked.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from skimage import data

from ml import colour as C
from ml.imageio import read_header, read_image
from ml.primitives import luma  # noqa: E402
from ml.writers import write_archival_exr, write_display_exr, write_review_png


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return (data.astronaut()[::4, ::4] / 255.0).astype(np.float32)


def _colour_science():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour
    return colour


# --- matrices -----------------------------------------------------------------------------

def test_aces2065_to_acescg_matches_colour_science_and_published_matrix():
    colour = _colour_science()
    rng = np.random.default_rng(0)
    aces = rng.uniform(-0.05, 4.0, (500, 3)).astype(np.float32)
    ours = C.convert_colourspace(aces, C.ACES2065_1, C.ACESCG)
    theirs = colour.RGB_to_RGB(aces.astype(np.float64), "ACES2065-1", "ACEScg")
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    published_ap0_to_ap1 = np.array([[1.4514393161, -0.2365107469, -0.2149285693],
                                     [-0.0765537734, 1.1762296998, -0.0996759264],
                                     [0.0083161484, -0.0060324498, 0.9977163014]])
    np.testing.assert_allclose(ours, aces @ published_ap0_to_ap1.T, rtol=1e-4, atol=1e-5)


def test_aces2065_to_linear_rec709_matches_colour_science_bradford():
    colour = _colour_science()
    rng = np.random.default_rng(1)
    aces = rng.uniform(0.0, 2.0, (500, 3)).astype(np.float32)
    ours = C.convert_colourspace(aces, C.ACES2065_1, "Linear Rec.709 (sRGB)")
    theirs = colour.RGB_to_RGB(aces.astype(np.float64), "ACES2065-1", "ITU-R BT.709",
                               chromatic_adaptation_transform="Bradford")
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


def test_unknown_colourspace_names_the_fix():
    with pytest.raises(C.FilmRecoveryError, match="ACES2065-1"):
        C.convert_colourspace(np.zeros((1, 3), np.float32), "Utility - sRGB - Color Picking", C.ACESCG)


# --- the output transform on the neutral axis ---------------------------------------------

_M = np.array([[0.5, -1.0, 0.5], [-1.0, 1.0, 0.5], [0.5, 0.0, 0.0]])
_RRT_LOW = [-4.0, -4.0, -3.1573765773, -0.4852499958, 1.8477324706, 1.8477324706]
_RRT_HIGH = [-0.7185482425, 2.0810307172, 3.6681241237, 4.0, 4.0, 4.0]
_ODT_LOW = [-1.6989700043, -1.6989700043, -1.4779, -1.2291, -0.8648, -0.4480, 0.00518, 0.4511080334,
            0.9113744414, 0.9113744414]
_ODT_HIGH = [0.5154386965, 0.8470437783, 1.1358, 1.3802, 1.5197, 1.5985, 1.6467, 1.6746091357,
             1.6878733390, 1.6878733390]
_HALF_MIN = 2.0 ** -14


def _spline(x: float, low, high, knots: int, min_pt, mid_pt, max_pt, slope_low: float, slope_high: float) -> float:
    """ACESlib.Tonescales segmented_spline_c5_fwd / c9_fwd (same structure, different knot count)."""
    logx = np.log10(max(x, _HALF_MIN))
    lmin, lmid, lmax = np.log10(min_pt[0]), np.log10(mid_pt[0]), np.log10(max_pt[0])
    if logx <= lmin:
        logy = logx * slope_low + (np.log10(min_pt[1]) - slope_low * lmin)
    elif logx < lmid:
        coord = (knots - 1) * (logx - lmin) / (lmid - lmin)
        j = int(coord)
        t = coord - j
        logy = np.dot([t * t, t, 1.0], np.dot(low[j:j + 3], _M))
    elif logx < lmax:
        coord = (knots - 1) * (logx - lmid) / (lmax - lmid)
        j = int(coord)
        t = coord - j
        logy = np.dot([t * t, t, 1.0], np.dot(high[j:j + 3], _M))
    else:
        logy = logx * slope_high + (np.log10(max_pt[1]) - slope_high * lmax)
    return 10.0 ** logy


def _c5(x: float) -> float:
    return _spline(x, _RRT_LOW, _RRT_HIGH, 4, (0.18 * 2.0 ** -15, 0.0001), (0.18, 4.8),
                   (0.18 * 2.0 ** 18, 10000.0), 0.0, 0.0)


def _c9(x: float) -> float:
    return _spline(x, _ODT_LOW, _ODT_HIGH, 8, (_c5(0.18 * 2.0 ** -6.5), 0.02), (_c5(0.18), 4.8),
                   (_c5(0.18 * 2.0 ** 6.5), 48.0), 0.0, 0.04)


def _ctl_neutral_display(aces_grey: float) -> float:
    """ACES 1.0 RRT + ODT.Academy.Rec709_100nits_dim on the neutral axis, from the CTL."""
    nits = _c9(_c5(aces_grey))
    lin = (nits - 0.02) / (48.0 - 0.02)  # Y_2_linCV with CINEMA_WHITE 48, CINEMA_BLACK 0.02
    lin = max(lin, 0.0) ** 0.9811  # darkSurround_to_dimSurround (DIM_SURROUND_GAMMA)
    return min(lin, 1.0) ** (1.0 / 2.4)  # bt1886_r with L_W = 1, L_B = 0


def test_mid_grey_maps_to_the_ctl_code_value():
    ours = C.aces2065_to_display(np.full((1, 3), 0.18, np.float32))[0]
    expected = _ctl_neutral_display(0.18)
    assert abs(expected - 0.38953) < 2e-4  # the CTL value, for the record
    np.testing.assert_allclose(ours, expected, atol=5e-4)


def test_grey_ramp_matches_the_ctl_neutral_axis():
    greys = 0.18 * np.exp2(np.linspace(-8, 6, 57))
    ours = C.aces2065_to_display(np.repeat(greys[:, None], 3, axis=1).astype(np.float32))
    expected = np.array([_ctl_neutral_display(g) for g in greys])
    # OCIO fits the CTL B-splines with its own curve op; agreement within ~1/1000 of full range.
    np.testing.assert_allclose(ours[:, 1], expected, atol=2e-3)
    assert np.ptp(ours, axis=1).max() < 1e-5  # neutrals stay neutral


def test_aces_display_aces_round_trip_for_in_gamut_colours():
    colour = _colour_science()
    rng = np.random.default_rng(2)
    base = rng.uniform(0.6, 1.0, (3000, 3))
    exposure = 0.18 * np.exp2(rng.uniform(-4, 4, (3000, 1)))
    rec709_scene = base / base.mean(axis=1, keepdims=True) * exposure
    aces = colour.RGB_to_RGB(rec709_scene, "ITU-R BT.709", "ACES2065-1",
                             chromatic_adaptation_transform="Bradford").astype(np.float32)
    display = C.aces2065_to_display(aces)
    assert 0.0 < display.min() and display.max() < 1.0  # nothing clipped by the display
    back = C.display_to_aces2065(display)
    relative = np.abs(back - aces).max(axis=1) / np.abs(aces).max(axis=1)
    assert relative.max() < 0.01


def test_display_round_trip_and_strips_match_a_single_pass(photo):
    big = np.tile(photo, (3, 2, 1))  # several OCIO strips
    once = big.reshape(-1, 3).copy()
    C._output_transform_processor(True).applyRGB(once)
    np.testing.assert_array_equal(C.display_to_aces2065(big, refine=0).reshape(-1, 3), once)
    strips = C.display_to_aces2065(big)
    back = C.aces2065_to_display(strips)
    error = np.abs(back - big)
    assert np.median(error) < 1e-4  # the refinement step removes OCIO's approximate red-modifier inverse
    assert np.percentile(error, 99) < 1.0 / 255.0
    assert error.max() < 0.02  # dark, fully saturated colours the ACES 1.0 SDR transform cannot reach


# --- YCbCr ----------------------------------------------------------------------------------

def test_engine_ycbcr_formulae_and_round_trip(photo):
    ycc = C.rgb_to_ycbcr(np.array([[1, 1, 1], [1, 0, 0], [0, 0, 1]], np.float32))
    np.testing.assert_allclose(ycc[0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(ycc[1], [0.2126, -0.2126 / 1.8556, 0.5], atol=1e-6)
    np.testing.assert_allclose(ycc[2], [0.0722, 0.5, -0.0722 / 1.5748], atol=1e-6)
    np.testing.assert_allclose(C.ycbcr_to_rgb(C.rgb_to_ycbcr(photo)), photo, atol=1e-6)
    np.testing.assert_allclose(luma(photo), C.rgb_to_ycbcr(photo)[..., 0], atol=1e-6)


# Measured in bpy 5.0.1: Separate Color (YCC, ITU BT.709) of white and of pure red, Combine Color
# (YCC, ITU BT.709) of (1, 1, 1).
_BLENDER_SEPARATE = {(1.0, 1.0, 1.0): (0.9217451, 0.5019608, 0.5019608),
                     (1.0, 0.0, 0.0): (0.2457451, 0.4009608, 0.9409608),
                     (0.0, 0.0, 0.0): (16 / 255, 128 / 255, 128 / 255)}
_BLENDER_COMBINE = {(1.0, 1.0, 1.0): (1.983949, 0.7189295, 2.144318)}


def test_blender_ycc_formulae_match_measured_node_output(photo):
    for rgb, expected in _BLENDER_SEPARATE.items():
        np.testing.assert_allclose(C.rgb_to_blender_ycc(np.array(rgb, np.float32)), expected, atol=2e-6)
    for ycc, expected in _BLENDER_COMBINE.items():
        np.testing.assert_allclose(C.blender_ycc_to_rgb(np.array(ycc, np.float32)), expected, atol=2e-6)
    ycc = C.rgb_to_ycbcr(photo)
    np.testing.assert_allclose(C.ycbcr_to_blender_ycc(ycc), C.rgb_to_blender_ycc(photo), atol=1e-5)
    blender = C.rgb_to_blender_ycc(photo)
    np.testing.assert_allclose(C.blender_ycc_to_ycbcr(blender), C.rgb_to_ycbcr(C.blender_ycc_to_rgb(blender)),
                               atol=1e-5)
    # Blender's rounded node matrices round-trip to within 5e-4 of the input, not exactly.
    round_trip = C.blender_ycc_to_rgb(C.rgb_to_blender_ycc(photo))
    assert 1e-5 < np.abs(round_trip - photo).max() < 5e-4


_BPY_PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import bpy
    import OpenImageIO as oiio
    values = np.array(json.loads(sys.argv[1]), np.float32)
    mode, out_path = sys.argv[2], sys.argv[3]
    scene = bpy.context.scene
    size = 16  # every pixel holds values[column % len(values)]
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    image = bpy.data.images.new("probe", size, size, alpha=True, float_buffer=True)
    image.colorspace_settings.name = "Non-Color"
    pixels = np.ones((size, size, 4), np.float32)
    pixels[:, :, :3] = values[np.arange(size) % len(values)][None]
    image.pixels.foreach_set(pixels.ravel())
    tree = bpy.data.node_groups.new("probe", "CompositorNodeTree")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    source = tree.nodes.new("CompositorNodeImage")
    source.image = image
    separate = tree.nodes.new("CompositorNodeSeparateColor")
    combine = tree.nodes.new("CompositorNodeCombineColor")
    node = separate if mode == "separate" else combine
    node.mode, node.ycc_mode = "YCC", "ITUBT709"
    output = tree.nodes.new("NodeGroupOutput")
    tree.links.new(source.outputs["Image"], separate.inputs[0])
    for i in range(3):
        tree.links.new(separate.outputs[i], combine.inputs[i])
    tree.links.new(combine.outputs[0], output.inputs[0])
    scene.compositing_node_group = tree
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.filepath = out_path
    bpy.ops.render.render(write_still=True)
""")


@pytest.mark.blender
def test_blender_ycc_formulae_match_a_real_bpy_render(tmp_path):
    pytest.importorskip("bpy")
    values = np.array([[0.5, 0.25, 0.75], [0.2, 0.7, 0.1], [0.9, 0.3, 0.6], [1.0, 1.0, 1.0]], np.float32)
    script = tmp_path / "probe.py"
    script.write_text(_BPY_PROBE)
    results = {}
    for mode in ("separate", "combine"):
        out = tmp_path / f"{mode}.exr"
        subprocess.run([sys.executable, str(script), str(values.tolist()).replace("'", '"'), mode, str(out)],
                       check=True, capture_output=True, timeout=120)
        results[mode] = read_image(str(out))
    tiled = np.broadcast_to(values[np.arange(16) % len(values)][None], (16, 16, 3))
    np.testing.assert_allclose(results["separate"], C.rgb_to_blender_ycc(tiled), atol=2e-6)
    np.testing.assert_allclose(results["combine"], C.blender_ycc_to_rgb(tiled), atol=2e-6)


# --- LUT ------------------------------------------------------------------------------------

def test_lut_apply_is_exact_for_an_identity_lut():
    axis = np.linspace(0, 1, 9, dtype=np.float32)
    identity = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    rng = np.random.default_rng(3)
    rgb = rng.random((1000, 3), dtype=np.float32)
    for method in ("tetrahedral", "trilinear"):
        np.testing.assert_allclose(C.apply_lut3d(rgb, identity, method), rgb, atol=1e-6)


def test_baked_display_to_aces_lut_matches_ocio(photo):
    lut = C.bake_display_to_aces_lut(65)
    assert lut.shape == (65, 65, 65, 3)
    exact = C.display_to_aces2065(photo)
    baked = C.apply_display_to_aces_lut(photo, lut)
    # Judge it where it matters: viewed back through the output transform.
    error = np.abs(C.aces2065_to_display(baked) - C.aces2065_to_display(exact))
    assert error.mean() < 5e-4
    assert np.percentile(error, 99.9) < 4.0 / 255.0
    node = np.array([[0.5, 0.25, 0.75]], np.float32)  # a grid point is reproduced exactly
    np.testing.assert_allclose(C.apply_display_to_aces_lut(node, lut), C.display_to_aces2065(node, refine=2),
                               rtol=1e-5)


# --- writers --------------------------------------------------------------------------------

def test_archival_exr_round_trips_to_display_values(tmp_path, photo):
    path = write_archival_exr(tmp_path / "out.exr", photo, compression="piz",
                              attributes={"film_recovery:model": "model.safetensors"})
    header = read_header(path)
    assert header["colorInteropID"] == "lin_ap0_scene"
    assert header["film_recovery:colourspace"] == "ACES2065-1"
    assert header["film_recovery:model"] == "model.safetensors"
    assert header["compression"] == "piz"
    aces = read_image(str(path))
    assert aces.max() > 0.5  # scene-linear, not display code values
    error = np.abs(C.aces2065_to_display(aces) - photo)
    assert np.percentile(error, 99) < 1.0 / 255.0
    assert error.max() < 0.02


def test_display_exr_and_review_png(tmp_path, photo):
    exr = write_display_exr(tmp_path / "d.exr", photo, compression="zip")
    np.testing.assert_allclose(read_image(str(exr)), photo, atol=5e-4)  # half float
    lossy = write_display_exr(tmp_path / "dwaa.exr", photo, compression="dwaa")
    assert read_header(lossy)["compression"].startswith("dwaa")
    png = write_review_png(tmp_path / "r.png", photo)
    np.testing.assert_allclose(read_image(str(png)), photo, atol=0.5 / 255 + 1e-6)
    with pytest.raises(C.FilmRecoveryError, match="compression"):
        write_display_exr(tmp_path / "x.exr", photo, compression="b44")
