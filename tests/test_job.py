"""job.json: round trip, and clear errors that name the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml.errors import JobFileError
from ml.job import Job, Pair, job_from_dict, job_to_dict, load_job, save_job

ROOT = Path(__file__).resolve().parent.parent


def test_round_trip_keeps_every_field(tmp_path):
    job = Job(name="reel2_sh010", work_dir=str(tmp_path), branch="spatial")
    job.pairs = [Pair(source_frame=1003, reference_frame=1005, accepted=False, reason="splice")]
    job.alignment.solves = {"1003": [1, 0, 2, 0, 1, 3, 0, 0, 1]}
    job.balance.gain = [1.2, 0.8, 1.0]
    path = save_job(job, tmp_path / "job.json")
    loaded = load_job(path)
    # Numbers come back as the add-on stores them (32-bit), every other field as it was.
    assert _close(job_to_dict(loaded), job_to_dict(job))
    assert loaded.balance.gain == [pytest.approx(1.2, rel=1e-7), pytest.approx(0.8, rel=1e-7), 1.0]
    assert load_job(save_job(loaded, tmp_path / "again.json")) == loaded  # and stay so
    assert not list(tmp_path.glob("*.part*"))


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return set(a) == set(b) and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-7)
    return a == b


def test_both_front_doors_read_the_same_numbers(tmp_path):
    """The add-on stores a recipe's numbers as 32-bit floats (Blender's float properties); the command
    line writes full doubles. Read back, both give every stage the same values, so the doors make
    the same decisions (a 29.97 fps or 10:11 pixel aspect a few units in the 8th digit apart once
    moved an alignment solve and the crop by a pixel)."""
    import struct

    def blender(x: float) -> float:
        return struct.unpack("f", struct.pack("f", x))[0]

    cli, addon = Job(name="a", work_dir=str(tmp_path)), Job(name="a", work_dir=str(tmp_path))
    cli.reference.fps, cli.reference.pixel_aspect, cli.training.learning_rate = 30000 / 1001, 10 / 11, 0.002
    addon.reference.fps, addon.reference.pixel_aspect = blender(30000 / 1001), blender(10 / 11)
    addon.training.learning_rate = blender(0.002)
    assert cli != addon
    assert load_job(save_job(cli, tmp_path / "cli.json")) == load_job(save_job(addon, tmp_path / "addon.json"))


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d.update(schema_version=99), "job.schema_version"),
    (lambda d: d["training"].pop("steps"), "job.training.steps"),
    (lambda d: d["training"].update(steps="many"), "job.training.steps"),
    (lambda d: d["source"].update(ingest="sRGB"), "job.source.ingest"),
    (lambda d: d.update(pairs=[{"source_frame": 1}]), "job.pairs[0]"),
    (lambda d: d["alignment"]["solves"].update({"1001": ["x"]}), "job.alignment.solves.1001[0]"),
    (lambda d: d.update(colour="x"), "job"),
])
def test_bad_fields_are_named(mutate, where):
    data = job_to_dict(Job())
    mutate(data)
    with pytest.raises(JobFileError) as info:
        job_from_dict(data)
    assert info.value.where.startswith(where), info.value.describe()


def test_a_job_file_from_before_an_added_field_takes_its_default():
    """`training.start_from_grade` came after job files were in use: a file without it loads with the
    default, a file with it keeps its value; fields not marked added stay required (above)."""
    data = job_to_dict(Job())
    data["training"].pop("start_from_grade")
    assert job_from_dict(data).training.start_from_grade is True
    data["training"]["start_from_grade"] = False
    assert job_from_dict(data).training.start_from_grade is False
    data["training"]["start_from_grade"] = "no"
    with pytest.raises(JobFileError) as info:
        job_from_dict(data)
    assert info.value.where == "job.training.start_from_grade"
    data = job_to_dict(Job())
    data["output"].pop("fine_colour")  # the guide's fine colour choice came later too
    assert job_from_dict(data).output.fine_colour == "auto"
    data["output"]["fine_colour"] = "grain"
    with pytest.raises(JobFileError) as info:
        job_from_dict(data)
    assert info.value.where == "job.output.fine_colour"


def test_bool_is_not_an_int():
    data = job_to_dict(Job())
    data["training"]["steps"] = True
    with pytest.raises(JobFileError, match="expected int"):
        job_from_dict(data)


def test_unreadable_and_invalid_json(tmp_path):
    with pytest.raises(JobFileError, match="cannot read"):
        load_job(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(JobFileError, match="line 1"):
        load_job(broken)


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "ml", "--json", *args], cwd=cwd, capture_output=True,
                          text=True)


def test_cli_help_lists_commands():
    done = subprocess.run([sys.executable, "-m", "ml", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0
    for command in ("init", "validate", "env", "sample"):
        assert command in done.stdout


def test_cli_init_then_validate_names_missing_plate(tmp_path):
    job_path = tmp_path / "job.json"
    assert _cli("init", str(job_path), "--frames", "1001-1010").returncode == 0
    done = _cli("validate", str(job_path))
    assert done.returncode == 2
    event = json.loads(done.stdout.strip().splitlines()[-1])
    assert event["type"] == "error" and event["where"] == "job.source.path" and event["fix"]


def test_cli_bad_schema_version_exits_2_with_readable_error(tmp_path):
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps({**job_to_dict(Job()), "schema_version": 7}))
    done = _cli("validate", str(job_path))
    assert done.returncode == 2
    event = json.loads(done.stdout.strip().splitlines()[-1])
    assert "unknown schema version 7" in event["message"]


def test_cli_human_mode_draws_a_bar(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ml", "--human", "init", str(tmp_path / "j.json")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0
    assert '"job"' in done.stdout and not done.stdout.startswith('{"type"')


def test_a_dataset_recipe_recorded_in_doubles_matches_the_same_job_read_as_32_bit(tmp_path):
    """Manifests written before job files were read as 32-bit hold doubles; the same recipe read now
    is not a change (no forced re-export), a real change still is."""
    from ml.dataset import dataset_recipe, recipe_changes

    job = Job(name="a", work_dir=str(tmp_path))
    job.reference.fps, job.reference.pixel_aspect = 30000 / 1001, 10 / 11
    job.alignment.solves = {"1001": [1.0101531835548483, 0.01, 0.6955025665437848, -0.01, 1.01, -1.647, 0, 0, 1]}
    recorded = dataset_recipe(job)  # as an older export wrote it
    read_now = load_job(save_job(job, tmp_path / "job.json"))
    assert read_now.reference.fps != job.reference.fps  # 32-bit now
    assert recipe_changes(recorded, dataset_recipe(read_now)) == []
    read_now.reference.fps = 25.0
    assert recipe_changes(recorded, dataset_recipe(read_now)) == ["reference.fps"]
