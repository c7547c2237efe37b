"""Stage 3 parity: the Ground Truth node group, built by the add-on's operator from the recipe,
renders what the engine exported for a pair frame (both branches), inside the shared crop.

Tolerance: interior pixels (2 px in from the crop edge), max abs 6e-3, mean 1e-3. The difference
comes from Blender's YCC matrices (rounded to 3 decimals, see test_node_parity) and the dataset's
half-float EXR (~1e-3 relative)."""

from __future__ import annotations

import json
from importlib import import_module

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import ADDON_MODULE  # noqa: E402

from ml.dataset import export_dataset  # noqa: E402
from ml.imageio import read_image  # noqa: E402
from ml.job import Crop, Job, Pair, Plate  # noqa: E402
from ml.sample import generate_sample  # noqa: E402


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("gt_sample")
    info = generate_sample(out, seed=5, frames=6, width=192, height=108)
    return info, json.loads((out / "truth" / "truth.json").read_text())


@pytest.mark.parametrize("branch", ["chroma", "spatial"])
def test_ground_truth_node_group_matches_exported_target(addon, sample, tmp_path, branch):
    info, truth = sample
    warps = {r["frame"]: r["M"] for r in truth["reference_frames"]}
    frame = info.first_frame + 1
    job = Job(name="gt", work_dir=str(tmp_path), branch=branch,
              source=Plate(path=info.source_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              reference=Plate(path=info.reference_pattern, first_frame=info.first_frame, last_frame=info.last_frame),
              pairs=[Pair(source_frame=frame, reference_frame=frame)],
              crop=Crop(enabled=True, x=12, y=16, width=168, height=76))
    job.alignment.solves = {str(frame): warps[frame]}
    manifest = export_dataset(job, out_dir=tmp_path / "ds")
    exported = read_image(tmp_path / "ds" / manifest["pairs"][0]["target"])

    recipe = import_module(ADDON_MODULE + ".addon.recipe")
    render_tree = import_module(ADDON_MODULE + ".addon.compositor_render").render_tree
    scene = bpy.context.scene
    recipe.job_into_recipe(job, scene.film_recovery)
    assert bpy.ops.film_recovery.build_node_trees(view="ground_truth") == {"FINISHED"}
    tree = scene.compositing_node_group
    # The shared crop is one node group used by both branches.
    crop_users = [n for n in tree.nodes if n.bl_idname == "CompositorNodeGroup" and n.node_tree.name == "FR Crop"]
    assert len(crop_users) == 2 and crop_users[0].node_tree == crop_users[1].node_tree
    rendered = render_tree(scene, tree, frame, job.crop.width, job.crop.height)[..., :3]
    assert rendered.shape == exported.shape
    diff = np.abs(rendered - exported)[2:-2, 2:-2]
    assert diff.max() < 6e-3 and diff.mean() < 1e-3, (diff.max(), diff.mean())
    # Building again updates in place: no duplicate groups.
    count = len(bpy.data.node_groups)
    assert bpy.ops.film_recovery.build_node_trees(view="input") == {"FINISHED"}
    assert len(bpy.data.node_groups) == count
