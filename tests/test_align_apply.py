"""`align --apply` puts into job.json exactly what the add-on's Solve Alignment puts into the scene,
and `dataset` refuses an alignment that was solved but never applied, or pairs that have no warp
while the Reference sits on another raster, naming the command to run."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from skimage.transform import resize

from ml import warp
from ml.alignment_apply import (
    APPLY_COMMAND,
    apply_alignment_result,
    require_alignment_applied,
    same_solves,
    solves_digest,
)
from ml.dataset import export_dataset
from ml.errors import FilmRecoveryError
from ml.imageio import write_exr
from ml.job import Crop, Job, Pair, Plate, job_to_dict, load_job, save_job

ROOT = Path(__file__).resolve().parent.parent
H, W = 192, 256
FRAMES = (1001, 1002, 1003)
SHOT = warp.similarity(1.01, 0.6, 3.0, -2.0, (W / 2, H / 2))  # Reference -> Source, on one raster


def _write_plates(folder: Path, reference_size: tuple[int, int] = (W, H)) -> Job:
    """A faded Source and a graded Reference (of `reference_size`) of one photo, 3 frames."""
    base = resize(skimage.data.astronaut().astype(np.float32) / 255.0, (2 * H, 2 * W), anti_aliasing=True)
    crop_from_base = warp.translation(-W / 2, -H / 2)
    rng = np.random.default_rng(0)
    for f in FRAMES:
        source = warp.warp_to_source(base.astype(np.float32), SHOT @ crop_from_base, (H, W))
        source = np.clip(0.3 + 0.5 * source * np.float32([1.0, 0.7, 0.9]) + rng.normal(0, 0.01, source.shape), 0, 1)
        reference = np.clip(warp.warp_to_source(base.astype(np.float32), crop_from_base, (H, W)) ** 0.8, 0, 1)
        if reference_size != (W, H):
            reference = resize(reference, (reference_size[1], reference_size[0]), anti_aliasing=True)
        write_exr(folder / f"src.{f:04d}.exr", source.astype(np.float32))
        write_exr(folder / f"ref.{f:04d}.exr", reference.astype(np.float32))
    return Job(name="t", work_dir=str(folder / "work"),
               source=Plate(path=str(folder / "src.####.exr"), first_frame=FRAMES[0], last_frame=FRAMES[-1]),
               reference=Plate(path=str(folder / "ref.####.exr"), first_frame=FRAMES[0], last_frame=FRAMES[-1]),
               pairs=[Pair(source_frame=f, reference_frame=f) for f in FRAMES])


def _ml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml", "--json", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _result(done: subprocess.CompletedProcess) -> dict:
    return next(json.loads(line) for line in done.stdout.splitlines() if '"type": "result"' in line)


def assert_same_job(a: Job, b: Job) -> None:
    """Field by field; floats to the add-on's float32 storage."""
    def walk(x, y, where):
        if isinstance(x, dict):
            assert set(x) == set(y), where
            for k in x:
                walk(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, list):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{where}[{i}]")
        elif isinstance(x, float) or isinstance(y, float):
            assert x == pytest.approx(y, rel=1e-5, abs=1e-6), where
        else:
            assert x == y, where

    walk(job_to_dict(a), job_to_dict(b), "job")


# ----------------------------------------------------------------------------- the rules

def _result_payload() -> dict:
    return {"solves": {"1001": warp.matrix_to_list(SHOT), "1003": warp.matrix_to_list(SHOT)},
            "pairs": [{"source_frame": 1001, "align_score": 0.12, "misaligned": False},
                      {"source_frame": 1002, "align_score": None, "misaligned": True},
                      {"source_frame": 1003, "align_score": 0.8, "misaligned": True}],
            "crop": {"enabled": True, "x": 8, "y": 6, "width": 240, "height": 180, "keys": []}}


def test_apply_alignment_result_follows_the_addon_rules():
    job = Job(pairs=[Pair(source_frame=f, reference_frame=f) for f in FRAMES])
    job.pairs[2].compromises = "soft"
    job.alignment.solves = {"global": [1, 0, 0, 0, 1, 0, 0, 0, 1.0], "1002": [1, 0, 5, 0, 1, 0, 0, 0, 1.0]}
    applied = apply_alignment_result(job, _result_payload())
    assert set(applied.alignment.solves) == {"1001", "1003"}  # replaced, not merged
    assert [p.align_score for p in applied.pairs] == [0.12, -1.0, 0.8]
    assert [p.compromises for p in applied.pairs] == ["", "misaligned", "soft, misaligned"]
    assert (applied.crop.enabled, applied.crop.x, applied.crop.y, applied.crop.width, applied.crop.height) == \
        (True, 8, 6, 240, 180)
    assert job.alignment.solves.keys() == {"global", "1002"} and not job.crop.enabled  # the input is untouched
    again = apply_alignment_result(applied, _result_payload())
    assert [p.compromises for p in again.pairs] == ["", "misaligned", "soft, misaligned"]  # added once

    # An artist's crop wins; an empty proposal is never taken.
    job.crop = Crop(enabled=True, x=20, y=20, width=100, height=100)
    assert apply_alignment_result(job, _result_payload()).crop == job.crop
    job.crop = Crop()
    empty = {**_result_payload(), "crop": {"x": 0, "y": 0, "width": 0, "height": 0}}
    assert not apply_alignment_result(job, empty).crop.enabled


def test_same_solves_allows_float32_storage_only():
    solves = {"1001": warp.matrix_to_list(SHOT @ warp.translation(123.456, -78.9))}
    as_stored = {k: np.float32(v).astype(float).tolist() for k, v in solves.items()}
    assert same_solves(solves, as_stored)
    nudged = {"1001": list(solves["1001"])}
    nudged["1001"][2] += 1e-3  # a thousandth of a pixel: another solve
    assert not same_solves(solves, nudged)
    assert not same_solves(solves, {**solves, "global": solves["1001"]})
    assert solves_digest(solves) == solves_digest(json.loads(json.dumps(solves)))


# ----------------------------------------------------------------------------- the command line

def test_align_without_apply_is_refused_by_dataset_and_apply_fixes_it(tmp_path):
    job = _write_plates(tmp_path)
    save_job(job, tmp_path / "job.json")

    done = _ml("align", str(tmp_path / "job.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _result(done)["applied"] is False
    assert load_job(tmp_path / "job.json").alignment.solves == {}  # plain align leaves the job alone
    with pytest.raises(FilmRecoveryError, match="solved .* but never applied") as refused:
        export_dataset(load_job(tmp_path / "job.json"))
    assert APPLY_COMMAND in str(refused.value) and "align.json" in str(refused.value)

    done = _ml("align", str(tmp_path / "job.json"), "--apply")
    assert done.returncode == 0, done.stdout + done.stderr
    written = json.loads((tmp_path / "work" / "align" / "align.json").read_text())
    applied = load_job(tmp_path / "job.json")
    assert written["solves_sha256"] == solves_digest(written["solves"])
    assert same_solves(applied.alignment.solves, written["solves"])  # read back as 32-bit, as the add-on stores them
    assert set(written["solves"]) == {*map(str, FRAMES), "global"}
    proposal = written["crop"]
    assert applied.crop.enabled and proposal["width"] > 0
    assert (applied.crop.x, applied.crop.y, applied.crop.width, applied.crop.height) == \
        (proposal["x"], proposal["y"], proposal["width"], proposal["height"])
    assert [p.align_score for p in applied.pairs] == [pytest.approx(p["align_score"], rel=1e-7) for p in written["pairs"]]
    assert all(0 <= p.align_score < 0.5 for p in applied.pairs)
    # The same decisions the engine function makes on the job as it was.
    assert_same_job(applied, apply_alignment_result(job, written))

    manifest = export_dataset(applied)
    assert [p["matrix_source"] for p in manifest["pairs"]] == ["auto"] * 3


def test_pairs_without_a_warp_on_another_raster_are_refused(tmp_path):
    job = _write_plates(tmp_path, reference_size=(W // 2, H // 2))  # e.g. an SD Reference
    with pytest.raises(FilmRecoveryError, match="1001, 1002, 1003 have no alignment") as refused:
        export_dataset(job)
    text = str(refused.value)
    assert "128x96" in text and "256x192" in text and APPLY_COMMAND in text
    assert not (tmp_path / "work" / "dataset").exists()  # refused before writing anything

    # Any warp counts: a global solve, or a manual key switched on for the one frame left.
    job.alignment.solves = {"1001": warp.matrix_to_list(warp.resize_matrix((128, 96), (W, H))),
                            "1002": warp.matrix_to_list(warp.resize_matrix((128, 96), (W, H)))}
    with pytest.raises(FilmRecoveryError, match=r"pair\(s\) 1003 have no alignment"):
        require_alignment_applied(job, job.pairs)
    job.alignment.manual = {"1003": job.alignment.solves["1001"]}
    job.alignment.use_manual = [1003]
    require_alignment_applied(job, job.pairs)
    job.alignment = dataclasses.replace(job.alignment, solves={"global": job.alignment.solves["1001"]},
                                        manual={}, use_manual=[])
    require_alignment_applied(job, job.pairs)


def test_pairs_align_could_not_solve_are_refused_with_why_and_a_fix_that_is_not_align_again(tmp_path):
    """A Reference of other content (a wrong reel, a bad sync): `align --apply` fails every solve and
    warns; `dataset` then says that align ran and why it failed, and points at the manual warp and
    the pairs, not at running align again."""
    job = _write_plates(tmp_path, reference_size=(W // 2, H // 2))
    other = resize(skimage.data.coffee().astype(np.float32) / 255.0, (H // 2, W // 2), anti_aliasing=True)
    for f in FRAMES:
        write_exr(tmp_path / f"ref.{f:04d}.exr", other.astype(np.float32))
    save_job(job, tmp_path / "job.json")
    done = _ml("align", str(tmp_path / "job.json"), "--apply")
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [json.loads(line)["text"] for line in done.stdout.splitlines()
                if '"level": "warning"' in line and "No frame could be aligned" in line]
    assert warnings and "Key Manual Warp" in warnings[0][:110] and "correlation" in warnings[0]
    with pytest.raises(FilmRecoveryError, match="have no alignment") as refused:
        export_dataset(load_job(tmp_path / "job.json"))
    text = str(refused.value)
    assert "`align` ran and could not solve them: frame 1001" in text and "correlation" in text
    assert "Key Manual Warp" in text and APPLY_COMMAND not in text


def test_pairs_without_a_warp_on_the_source_raster_are_allowed(tmp_path):
    job = _write_plates(tmp_path)  # same size, conform 'fit': the identity
    require_alignment_applied(job, job.pairs)
    job.conform.offset_x = 2.0  # a conform that moves the Reference is not the Source raster
    with pytest.raises(FilmRecoveryError, match="have no alignment"):
        require_alignment_applied(job, job.pairs)


# ----------------------------------------------------------------------------- the add-on

def test_solve_alignment_operator_and_align_apply_make_the_same_job(addon, tmp_path):
    bpy = pytest.importorskip("bpy")
    from importlib import import_module

    recipe = import_module(addon.__name__ + ".addon.recipe")
    job = _write_plates(tmp_path)
    job.pairs[1].compromises = "soft"
    fr = bpy.context.scene.film_recovery
    fr.pairs.clear()
    fr.alignment.solves.clear()
    fr.alignment.manual.clear()
    fr.alignment.use_manual.clear()
    fr.crop.keys.clear()
    recipe.job_into_recipe(job, fr)
    fr.qc_status = ""

    assert bpy.ops.film_recovery.solve_alignment() == {"FINISHED"}
    work = Path(job.work_dir)
    before = load_job(work / "job.json")  # what the operator handed the engine
    align_json = json.loads((work / "align" / "align.json").read_text())
    in_blender = recipe.recipe_to_job(fr)
    assert in_blender.crop.enabled and len(in_blender.alignment.solves) == 4
    assert "soft" in in_blender.pairs[1].compromises
    assert_same_job(in_blender, apply_alignment_result(before, align_json))

    # The command line on the same job.json decides the same.
    cli_job = tmp_path / "cli" / "job.json"
    cli_job.parent.mkdir()
    shutil.copy(work / "job.json", cli_job)
    done = _ml("align", str(cli_job), "--apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_same_job(in_blender, load_job(cli_job))
    require_alignment_applied(in_blender, in_blender.pairs)  # the scene's float32 solves count as applied


def test_solve_alignment_shows_in_the_panel_why_no_frame_could_be_aligned(addon, tmp_path):
    """The add-on's door of the failed-alignment case above: Solve Alignment puts the same warning
    the CLI prints at the top of the Align panel's warnings, advice first."""
    bpy = pytest.importorskip("bpy")
    from importlib import import_module

    recipe = import_module(addon.__name__ + ".addon.recipe")
    job = _write_plates(tmp_path, reference_size=(W // 2, H // 2))
    other = resize(skimage.data.coffee().astype(np.float32) / 255.0, (H // 2, W // 2), anti_aliasing=True)
    for f in FRAMES:
        write_exr(tmp_path / f"ref.{f:04d}.exr", other.astype(np.float32))
    fr = bpy.context.scene.film_recovery
    fr.pairs.clear()
    fr.alignment.solves.clear()
    fr.crop.keys.clear()
    recipe.job_into_recipe(job, fr)
    fr.qc_status = ""
    assert bpy.ops.film_recovery.solve_alignment() == {"FINISHED"}
    first = fr.align_warnings.splitlines()[0]
    assert first.startswith("No frame could be aligned") and "Key Manual Warp" in first[:110], first
    assert len(fr.alignment.solves) == 0
