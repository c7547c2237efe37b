"""Training engine on a tiny synthetic chroma dataset (photographs with faded, cast colour as
Input, the clean photographs as Ground Truth): learning, exact resume, checkpoints, errors."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # robust when other processes share the cores

from skimage import data, transform  # noqa: E402

from ml import cli  # noqa: E402
from ml.colour import rgb_to_ycbcr, ycbcr_to_rgb  # noqa: E402
from ml.errors import Cancelled, FilmRecoveryError  # noqa: E402
from ml.events import Reporter  # noqa: E402
from ml.imageio import read_image, write_exr  # noqa: E402
from ml.job import Job, Training, save_job  # noqa: E402
from ml.neural.checkpoint import list_checkpoints, load_model  # noqa: E402
from ml.neural.train import learning_rate_at, plan_steps, train  # noqa: E402
from ml.plots import AXIS, LABEL_BAND, LOSS_COLOUR, PSNR_COLOUR, contact_sheet, draw_loss_curve  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def make_dataset(folder: Path, size: int = 64, holdout: tuple[int, ...] = (4,)) -> Path:
    """Five 64x64 pairs; the last is held out. Input = Y kept, CbCr faded to half plus a cast."""
    pairs = []
    for i, name in enumerate(PHOTOS):
        image = getattr(data, name)().astype(np.float32) / 255.0
        h, w = image.shape[:2]
        s = min(h, w)
        square = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        clean = transform.resize(square, (size, size), anti_aliasing=True).astype(np.float32)
        faded = rgb_to_ycbcr(clean)
        faded[..., 1:] = faded[..., 1:] * 0.5 + np.array([0.03, -0.02], np.float32)
        pair = f"pair_{1001 + i}"
        write_exr(folder / "input" / f"{pair}.exr", ycbcr_to_rgb(faded))
        write_exr(folder / "target" / f"{pair}.exr", clean)
        pairs.append({"name": pair, "source_frame": 1001 + i, "reference_frame": 1001 + i,
                      "input": f"input/{pair}.exr", "target": f"target/{pair}.exr", "holdout": i in holdout})
    manifest = {"schema": "film_recovery.dataset", "version": 1, "branch": "chroma", "pairs": pairs,
                "preview": pairs[0]["input"], "crop": {}, "colour": {"domain": "display"}, "rejected": []}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dataset"))


def make_job(tmp_path: Path, **training) -> Job:
    settings = dict(model="unet", size="tiny", steps=20, batch=4, crop_size=32, device="cpu", seed=3,
                    checkpoint_every=5, validate_every=10, preview_every=10)
    settings.update(training)
    return Job(work_dir=str(tmp_path / "work"), training=Training(**settings))


def events_of(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_loss_falls_and_model_beats_the_source(tmp_path, dataset):
    stream = io.StringIO()
    # From the Source's own colour: from the baseline grade, this dataset is solved at step 0 (below).
    job = make_job(tmp_path, steps=120, validate_every=40, preview_every=60, checkpoint_every=40,
                   start_from_grade=False)
    result = train(job, Reporter(stream), dataset_dir=dataset)
    events = events_of(stream)
    _, last_checkpoint = list_checkpoints(job.work_path("train", "checkpoints"))[-1]
    history = json.loads(last_checkpoint.with_suffix(".json").read_text())["training_state"]["loss_history"]
    losses = [loss for _, loss in history]
    assert len(losses) == 120  # one curve point per step at this length
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    metric = [e for e in events if e["type"] == "metric" and e["name"] == "val_psnr"]
    assert [m["step"] for m in metric] == [40, 80, 120]
    assert metric[-1]["split"] == "holdout" and metric[-1]["channels"] == "CbCr"
    assert metric[-1]["value"] > metric[-1]["source_psnr"] + 3.0  # a real gain over the untouched Source
    assert result.completed and result.steps == 120
    assert result.metrics["gain_db"] > 3.0 and result.metrics["best_step"] in (40, 80, 120)
    progress = [e for e in events if e["type"] == "progress"][-1]
    assert {"steps_per_s", "eta_s", "crops_per_s", "lr", "epoch"} <= set(progress)
    previews = {e["kind"]: Path(e["path"]) for e in events if e["type"] == "preview"}
    assert previews["contact_sheet"].exists() and previews["loss_curve"].exists()
    sheet = read_image(str(previews["contact_sheet"]))
    assert sheet.shape[1] > 3 * 32 and sheet.shape[0] > 4 * 32  # 3 columns, 4 crops + the preview frame
    assert Path(result.out_dir) == job.work_path("train")
    assert [s for s, _ in list_checkpoints(job.work_path("train", "checkpoints"))] == [80, 120]
    model, metadata = load_model(result.best_model)
    assert metadata["branch"] == "chroma" and metadata["predicted_channels"] == ["Cb", "Cr"]
    assert metadata["colour"] == {"domain": "display", "ycbcr": "bt709-full"}
    assert len(metadata["dataset_hash"]) == 64 and len(metadata["recipe_hash"]) == 64
    assert metadata["metrics"]["best_psnr"] == pytest.approx(result.metrics["best_psnr"])


@pytest.mark.parametrize("augment", [False, True])
def test_resume_after_cancel_matches_an_uninterrupted_run(tmp_path, dataset, augment):
    job = make_job(tmp_path, steps=14, augment=augment)
    straight = train(job, Reporter(io.StringIO()), dataset_dir=dataset, out_dir=tmp_path / "straight")

    def cancel_at_8(step: int) -> None:
        if step == 8:
            raise Cancelled("test cancel")

    stream = io.StringIO()
    with pytest.raises(Cancelled):
        train(job, Reporter(stream), dataset_dir=dataset, out_dir=tmp_path / "resumed", after_step=cancel_at_8)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed" / "checkpoints")] == [5, 8]
    stream = io.StringIO()
    resumed = train(job, Reporter(stream), dataset_dir=dataset, out_dir=tmp_path / "resumed")
    assert any("Resuming from step 8" in e.get("text", "") for e in events_of(stream))
    a, _ = load_model(straight.final_model)
    b, _ = load_model(resumed.final_model)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert resumed.metrics["val_psnr"] == straight.metrics["val_psnr"]


def test_resume_rejects_a_corrupted_checkpoint_by_name(tmp_path, dataset):
    job = make_job(tmp_path, steps=10)
    out = tmp_path / "out"
    train(job, Reporter(io.StringIO()), dataset_dir=dataset, out_dir=out)
    _, latest = list_checkpoints(out / "checkpoints")[-1]
    latest.write_bytes(latest.read_bytes()[:-64])
    longer = dataclasses.replace(job, training=dataclasses.replace(job.training, steps=15))
    with pytest.raises(FilmRecoveryError) as info:
        train(longer, Reporter(io.StringIO()), dataset_dir=dataset, out_dir=out)
    assert str(latest) in str(info.value) and "truncated" in str(info.value)
    # Starting over clears the damaged checkpoints.
    result = train(longer, Reporter(io.StringIO()), dataset_dir=dataset, out_dir=out, resume=False)
    assert result.completed and result.steps == 15


def test_resume_refuses_a_different_model(tmp_path, dataset):
    out = tmp_path / "out"
    train(make_job(tmp_path, steps=5), Reporter(io.StringIO()), dataset_dir=dataset, out_dir=out)
    with pytest.raises(FilmRecoveryError, match="--no-resume"):
        train(make_job(tmp_path, steps=10, size="small"), Reporter(io.StringIO()), dataset_dir=dataset,
              out_dir=out)
    # Checkpoints of a run from before the starting grade (or with it switched): the switch is named.
    with pytest.raises(FilmRecoveryError, match="Start From Grade on .* Or: .*--no-resume"):
        train(make_job(tmp_path, steps=10, start_from_grade=False), Reporter(io.StringIO()), dataset_dir=dataset,
              out_dir=out)


def test_bilateral_model_trains_and_runs(tmp_path, dataset):
    job = make_job(tmp_path, model="bilateral", steps=80, validate_every=80, preview_every=80,
                   checkpoint_every=80, learning_rate=5e-3)
    result = train(job, Reporter(io.StringIO()), dataset_dir=dataset)
    assert result.metrics["gain_db"] > 5.0, result.metrics
    model, metadata = load_model(result.final_model)
    assert metadata["model"]["kind"] == "bilateral"


def test_initial_weights_fine_tune(tmp_path, dataset):
    first = train(make_job(tmp_path, steps=60, validate_every=60, start_from_grade=False), Reporter(io.StringIO()),
                  dataset_dir=dataset, out_dir=tmp_path / "first")
    stream = io.StringIO()
    job = make_job(tmp_path, steps=1, validate_every=1, init_weights=first.final_model, start_from_grade=False)
    tuned = train(job, Reporter(stream), dataset_dir=dataset, out_dir=tmp_path / "tuned")
    fresh = train(make_job(tmp_path, steps=1, validate_every=1, start_from_grade=False), Reporter(io.StringIO()),
                  dataset_dir=dataset, out_dir=tmp_path / "fresh")
    assert tuned.metrics["val_psnr"] > fresh.metrics["val_psnr"] + 2.0
    wrong = make_job(tmp_path, steps=1, size="small", init_weights=first.final_model)
    with pytest.raises(FilmRecoveryError, match="Initial Weights") as info:
        train(wrong, Reporter(io.StringIO()), dataset_dir=dataset, out_dir=tmp_path / "wrong")
    assert first.final_model in str(info.value)
    graded = make_job(tmp_path, steps=1, init_weights=first.final_model)  # the first model has no starting grade
    with pytest.raises(FilmRecoveryError, match="Start From Grade off"):
        train(graded, Reporter(io.StringIO()), dataset_dir=dataset, out_dir=tmp_path / "graded")


def test_dataset_problems_name_the_file(tmp_path, dataset):
    job = make_job(tmp_path)
    with pytest.raises(FilmRecoveryError, match="manifest.json not found"):
        train(job, Reporter(io.StringIO()), dataset_dir=tmp_path / "nowhere")

    broken = make_dataset(tmp_path / "missing")
    (broken / "target" / "pair_1003.exr").unlink()
    with pytest.raises(FilmRecoveryError, match="file not found") as info:
        train(job, Reporter(io.StringIO()), dataset_dir=broken)
    assert "pair_1003.exr" in str(info.value)

    mismatch = make_dataset(tmp_path / "mismatch")
    write_exr(mismatch / "target" / "pair_1002.exr", np.zeros((60, 64, 3), np.float32))
    with pytest.raises(FilmRecoveryError, match="64x64 but Target is 64x60") as info:
        train(job, Reporter(io.StringIO()), dataset_dir=mismatch)
    assert "pair_1002.exr" in str(info.value)

    nan = make_dataset(tmp_path / "nan")
    frame = read_image(str(nan / "input" / "pair_1001.exr"))
    frame[5, 7] = np.nan
    write_exr(nan / "input" / "pair_1001.exr", frame)
    with pytest.raises(FilmRecoveryError, match="NaN") as info:
        train(job, Reporter(io.StringIO()), dataset_dir=nan)
    assert "pair_1001.exr" in str(info.value)

    manifest = json.loads((dataset / "manifest.json").read_text())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({**manifest, "pairs": []}))
    with pytest.raises(FilmRecoveryError, match="no pairs"):
        train(job, Reporter(io.StringIO()), dataset_dir=empty)


def test_cli_train_command(tmp_path, dataset, capsys):
    job = make_job(tmp_path, steps=500)
    job.dataset_dir = str(dataset)
    save_job(job, tmp_path / "job.json")
    code = cli.main(["--json", "train", str(tmp_path / "job.json"), "--steps", "3", "--no-resume"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0, lines[-1]
    assert lines[-1]["type"] == "result" and lines[-1]["steps"] == 3 and lines[-1]["completed"]
    assert Path(lines[-1]["final_model"]).exists() and Path(lines[-1]["best_model"]).exists()
    assert any("3 steps" in e.get("text", "") for e in lines)


def test_steps_from_epochs_and_schedule():
    assert plan_steps(2000, 0, 8, 6) == (2000, pytest.approx(2000 * 8 / 6))
    assert plan_steps(2000, 100, 8, 6) == (75, pytest.approx(100.0))  # ceil(100 x 6 / 8)
    lrs = [learning_rate_at(s, 1000, 1e-3) for s in range(1000)]
    assert lrs[0] < lrs[49] == pytest.approx(1e-3)  # warm-up over 50 steps
    assert lrs[-1] < 0.05e-3 and all(a >= b for a, b in zip(lrs[49:], lrs[50:], strict=False))


def test_loss_curve_draws_both_series_and_labels_itself():
    image = draw_loss_curve(list(range(1, 101)), list(np.geomspace(0.1, 0.01, 100)), [50, 100], [30.0, 35.0],
                            total_steps=200)
    assert image.shape == (380, 640, 3)
    left, right, top, bottom = 58, 640 - 50, 30, 380 - 40  # the plot area (ml.plots.draw_loss_curve)
    orange = np.all(np.isclose(image, LOSS_COLOUR), axis=2)
    cyan = np.all(np.isclose(image, PSNR_COLOUR), axis=2)
    plot = (slice(top, bottom), slice(left + 1, right))
    assert orange[plot].sum() > 200 and cyan[plot].sum() > 100
    rows, cols = np.nonzero(orange[plot])
    assert cols.max() + left < 640 * 0.6  # 100 of 200 steps: the curve stops half way
    assert rows[cols.argmin()] < rows[cols.argmax()]  # falling loss goes down the picture
    # Labels: the legend above the plot in each series' colour, loss decades left of the plot,
    # PSNR ticks right of it, step numbers and the axis title under it.
    assert orange[:top - 4].any() and cyan[:top - 4].any()
    assert orange[top:bottom, :left - 8].any() and cyan[top:bottom, right + 8:].any()
    axis = np.all(np.isclose(image, AXIS), axis=2)
    assert axis[bottom + 9:bottom + 20, left:right].sum() > 50 and axis[bottom + 22:, left:right].any()


def test_training_contact_sheet_names_its_columns():
    panels = [[np.full((20, 30, 3), v, np.float32) for v in (0.2, 0.5, 0.8)]]
    plain, labelled = contact_sheet(panels), contact_sheet(panels, column_labels=["SOURCE", "MODEL", "TARGET"])
    assert labelled.shape[0] == plain.shape[0] + LABEL_BAND and labelled.shape[1] == plain.shape[1]
    band = labelled[:LABEL_BAND]
    for c in range(3):  # text in each column's band, the cells themselves moved down unchanged
        x0 = 4 + c * 34
        assert (band[:, x0:x0 + 30] > 0.5).any()
        np.testing.assert_array_equal(labelled[LABEL_BAND + 4:LABEL_BAND + 24, x0:x0 + 30], panels[0][c])


def test_sigterm_stops_between_steps_and_writes_a_checkpoint(tmp_path, dataset):
    import signal
    import subprocess
    import sys
    import time

    job = make_job(tmp_path, steps=100000, checkpoint_every=100000, validate_every=100000,
                   preview_every=100000)
    job.dataset_dir = str(dataset)
    save_job(job, tmp_path / "job.json")
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-m", "ml", "--json", "train", str(tmp_path / "job.json")],
                               cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    try:
        for line in process.stdout:  # wait until it is really training
            if json.loads(line).get("type") == "progress":
                break
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        rest = process.stdout.read()
        assert process.wait(timeout=30) == 130
        assert time.monotonic() - sent < 10
    finally:
        process.kill()
    messages = [json.loads(line) for line in rest.splitlines()]
    assert any("checkpoint written" in e.get("text", "") for e in messages)
    assert messages[-1]["type"] == "error" and messages[-1]["cancelled"]
    (step, _), = list_checkpoints(job.work_path("train", "checkpoints"))
    assert step > 0


def test_two_process_data_parallel_on_cpu(tmp_path, dataset):
    """`torchrun --nproc_per_node 2` (gloo on the CPU): one result, rank 0 writes the files."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent

    def torchrun(folder: Path):
        folder.mkdir()
        job = make_job(folder, steps=6, validate_every=3, checkpoint_every=3, preview_every=6)
        job.dataset_dir = str(dataset)
        save_job(job, folder / "job.json")
        return job, subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                    "--standalone", "-m", "ml", "--json", "train", str(folder / "job.json")],
                                   cwd=root, capture_output=True, text=True, timeout=120,
                                   env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})

    job, done = torchrun(tmp_path / "first")
    # gloo's transport once aborted a rank natively (SIGABRT) in a CI run on 2 loaded cores, and the
    # same test passed on three reruns: one fresh try for that only, so a real failure still fails.
    if done.returncode != 0 and "SIGABRT" in done.stderr:
        job, done = torchrun(tmp_path / "second")
    assert done.returncode == 0, done.stderr[-4000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = [e for e in events if e["type"] == "result"]
    assert len(results) == 1 and results[0]["steps"] == 6
    assert any("x2" in e.get("text", "") for e in events)
    assert [s for s, _ in list_checkpoints(job.work_path("train", "checkpoints"))] == [3, 6]


def test_without_holdout_pairs_it_says_so(tmp_path):
    folder = make_dataset(tmp_path / "all_train", size=48, holdout=())
    stream = io.StringIO()
    result = train(make_job(tmp_path, steps=3), Reporter(stream), dataset_dir=folder)
    warnings = [e["text"] for e in events_of(stream) if e.get("level") == "warning"]
    assert any("No held-out pairs" in text for text in warnings)
    assert result.metrics["validation_split"] == "train"


def test_a_block_coded_references_dataset_teaches_only_its_coarse_colour(tmp_path):
    """#14: a dataset whose Reference shows coding blocks (manifest `coding_blocks`) trains on the
    difference blurred at its blocks (`guide.coding_block_sigma`): a target error that flips from
    block to block costs next to nothing; an error in its colour as a whole costs as before."""
    import torch

    from ml.neural.train import _reconstruction_loss

    folder = make_dataset(tmp_path / "blocky")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["coding_blocks"] = True
    for entry in manifest["pairs"]:
        entry["matrix"] = [1.5, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0, 0.0, 1.0]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    stream = io.StringIO()
    train(make_job(tmp_path, steps=2), Reporter(stream=stream), dataset_dir=folder)
    sigma = 1.5 * 0.75 * 8  # the warp's scale x 0.75 x the 8 px block
    assert any(e["type"] == "message" and "coding blocks" in e["text"] and f"{sigma:.1f} px" in e["text"]
               for e in events_of(stream))

    grid = torch.arange(64) // 8 % 2
    blocks = (0.05 * (2.0 * ((grid[:, None] + grid[None, :]) % 2) - 1.0)).expand(1, 2, 64, 64)  # 8 px blocks
    cast = torch.full((1, 2, 64, 64), 0.02)
    out = torch.zeros(1, 2, 64, 64)
    assert _reconstruction_loss(out, blocks, "charbonnier", 1.0, sigma) < 0.2 * _reconstruction_loss(
        out, blocks, "charbonnier", 1.0)
    assert float(_reconstruction_loss(out, cast, "charbonnier", 1.0, sigma)) == pytest.approx(
        float(_reconstruction_loss(out, cast, "charbonnier", 1.0)), rel=0.05)


def test_an_sd_references_dataset_teaches_only_colour_as_coarse_as_its_scale(tmp_path):
    """#14: a Reference coarser than the Source (pairs warped at 2x, no coding blocks) is learnt only
    below the baseline's band (`baseline.dataset_band_sigma`), as its baseline is fitted."""
    folder = make_dataset(tmp_path / "sd")
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["pairs"]:
        entry["matrix"] = [2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    stream = io.StringIO()
    train(make_job(tmp_path, steps=2), Reporter(stream=stream), dataset_dir=folder)
    assert any(e["type"] == "message" and "coarser than the Source" in e["text"] and "2.0 px" in e["text"]
               for e in events_of(stream))


def test_a_chroma_model_starts_from_the_shots_baseline_grade(tmp_path, dataset):
    """#14: before the first step the chroma model is the shot's baseline (the same fit the `baseline`
    stage makes with this seed): its step-0 validation equals the numpy baseline's on the held-out
    pair, the starting grade is a best-model candidate, and the saved model carries the LUT."""
    from ml.baseline import apply_baseline, fit_from_dataset
    from ml.dataset_io import load_dataset

    stream = io.StringIO()
    job = make_job(tmp_path, model="bilateral", steps=10, validate_every=10)
    result = train(job, Reporter(stream), dataset_dir=dataset)
    metrics = {e["step"]: e for e in events_of(stream) if e["type"] == "metric" and e["name"] == "val_psnr"}
    assert sorted(metrics) == [0, 10]
    assert any("baseline grade" in e.get("text", "") for e in events_of(stream))

    loaded = load_dataset(dataset)
    fit = fit_from_dataset(loaded, seed=job.training.seed)
    (held_out,) = loaded.holdout_pairs
    error = rgb_to_ycbcr(apply_baseline(held_out.input, fit))[..., 1:] - rgb_to_ycbcr(held_out.target)[..., 1:]
    assert metrics[0]["value"] == pytest.approx(-10.0 * np.log10(np.mean(error ** 2)), abs=0.01)
    assert metrics[0]["value"] > metrics[0]["source_psnr"] + 10.0  # this dataset's fade is a global grade
    model, _ = load_model(result.final_model)
    np.testing.assert_allclose(model.grade.table.numpy(), fit.params, atol=1e-6)

    # A UNet from the grade trains at a quarter of the learning rate (it swung at the full rate), and says so.
    stream = io.StringIO()
    train(make_job(tmp_path, steps=4, validate_every=4, learning_rate=2e-3), Reporter(stream), dataset_dir=dataset,
          out_dir=tmp_path / "unet")
    rates = [e["lr"] for e in events_of(stream) if e["type"] == "progress" and "lr" in e]
    assert rates and max(rates) <= 0.25 * 2e-3 + 1e-12
    assert any("quarter of the learning rate" in e.get("text", "") for e in events_of(stream))
