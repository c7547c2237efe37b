"""Inference on the full Source: recombination with the Source's own channels, padding and tiles,
provenance, the archival round trip, resume, refusing to overwrite, damaged frames and cancel.

A tiny UNet is trained for a few steps on a synthetic chroma dataset (tests/test_train.py's);
the Source plate is a short sequence of faded photographs at an odd size."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from skimage import data, transform  # noqa: E402

from ml import cli  # noqa: E402
from ml.colour import aces2065_to_display, rgb_to_ycbcr, ycbcr_to_rgb  # noqa: E402
from ml.errors import FilmRecoveryError  # noqa: E402
from ml.events import Reporter  # noqa: E402
from ml.imageio import read_header, read_image, write_exr  # noqa: E402
from ml.ingest import source_frame  # noqa: E402
from ml.job import Balance, Job, Output, Plate, Training, save_job  # noqa: E402
from ml.neural.checkpoint import load_model  # noqa: E402
from ml.neural.infer import (  # noqa: E402
    InferOptions,
    PipelineSettings,
    check_output_locations,
    infer_frame,
    output_patterns,
    run_inference,
    select_frames,
)
from ml.neural.models import build_model, model_config  # noqa: E402
from ml.neural.train import train  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIRST, LAST = 1001, 1006
HEIGHT, WIDTH = 45, 67  # odd: the model pads to its multiple
HALF_TOLERANCE = 2e-3  # half floats near 1.0 step by 4.9e-4; Y from RGB halves adds a little


def make_dataset(folder: Path, size: int = 64) -> Path:
    """Five 64x64 chroma pairs (as tests/test_train.py): Input = Y kept, CbCr faded with a cast."""
    pairs = []
    for i, name in enumerate(("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")):
        image = getattr(data, name)().astype(np.float32) / 255.0
        h, w = image.shape[:2]
        s = min(h, w)
        clean = transform.resize(image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s],
                                 (size, size), anti_aliasing=True).astype(np.float32)
        pair = f"pair_{1001 + i}"
        write_exr(folder / "input" / f"{pair}.exr", fade(clean))
        write_exr(folder / "target" / f"{pair}.exr", clean)
        pairs.append({"name": pair, "source_frame": 1001 + i, "reference_frame": 1001 + i,
                      "input": f"input/{pair}.exr", "target": f"target/{pair}.exr", "holdout": i == 4})
    manifest = {"schema": "film_recovery.dataset", "version": 1, "branch": "chroma", "pairs": pairs,
                "preview": pairs[0]["input"], "crop": {}, "colour": {"domain": "display"}, "rejected": []}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def fade(clean: np.ndarray) -> np.ndarray:
    faded = rgb_to_ycbcr(clean)
    faded[..., 1:] = faded[..., 1:] * 0.5 + np.array([0.03, -0.02], np.float32)
    return ycbcr_to_rgb(faded)


def faded_photo(name: str, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    image = getattr(data, name)().astype(np.float32) / 255.0
    return fade(transform.resize(image, (height, width), anti_aliasing=True).astype(np.float32))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny chroma UNet, 40 steps: enough to move its CbCr away from the Source's."""
    root = tmp_path_factory.mktemp("trained")
    dataset = make_dataset(root / "dataset")
    job = Job(work_dir=str(root / "work"), training=Training(model="unet", size="tiny", steps=40, batch=4,
                                                             crop_size=32, device="cpu", seed=3, checkpoint_every=40,
                                                             validate_every=40, preview_every=1000))
    return Path(train(job, Reporter(io.StringIO()), dataset_dir=dataset).final_model)


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plates")
    names = ("astronaut", "coffee", "chelsea", "rocket", "astronaut", "coffee")
    for frame, name in zip(range(FIRST, LAST + 1), names, strict=True):
        write_exr(folder / f"source.{frame:04d}.exr", faded_photo(name))
    return folder / "source.####.exr"


def make_job(tmp_path: Path, plate: Path, model: Path, **output) -> Job:
    return Job(name="shot", work_dir=str(tmp_path / "work"), source=Plate(str(plate), FIRST, LAST),
               model_path=str(model), output=Output(**{"review": "png", **output}))


def events_of(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def outputs_of(job: Job, frame: int) -> dict[str, Path]:
    return {kind: pattern.parent / pattern.name.replace("####", f"{frame:04d}")
            for kind, pattern in output_patterns(job).items()}


def random_model(branch: str, position: bool = False):
    """An untrained tiny UNet with a non-zero head, so it changes its branch's channels."""
    torch.manual_seed(0)
    model = build_model(model_config("unet", "tiny", branch, position=position)).eval()
    with torch.no_grad():
        model.core.head.weight.normal_(0.0, 0.05)
    return model, {"colour": {"ycbcr": "bt709-full"}}


@pytest.mark.parametrize("branch, kept", [("chroma", [0]), ("spatial", [1, 2])])
def test_recombination_keeps_the_source_channels(branch, kept):
    model, metadata = random_model(branch)
    source = faded_photo("coffee")
    out = infer_frame(model, metadata, source)
    assert out.shape == source.shape and out.dtype == np.float32
    src_ycc, out_ycc = rgb_to_ycbcr(source), rgb_to_ycbcr(out)
    assert np.abs(out_ycc[..., kept] - src_ycc[..., kept]).max() < 1e-6
    changed = [c for c in range(3) if c not in kept]
    assert np.abs(out_ycc[..., changed] - src_ycc[..., changed]).mean() > 1e-3  # the model did something
    # A degrained model input still delivers the un-degrained Source's kept channels (its grain).
    grainy = source + np.random.default_rng(1).normal(0.0, 0.02, source.shape).astype(np.float32)
    out = infer_frame(model, metadata, source, kept=grainy)
    assert np.abs(rgb_to_ycbcr(out)[..., kept] - rgb_to_ycbcr(grainy)[..., kept]).max() < 1e-6


def test_a_frames_colour_smoothing_reaches_the_output_through_the_device_path():
    """#14: `infer_frame` takes a frame's colour smoothing (`GuideFrame.colour_smoothing`) as inference
    does: with the grain choice `clean` that share of the colour follows the luma (its finest chroma
    detail drops), the luma stays the Source's; with `keep_source` it is left alone."""
    torch.manual_seed(0)
    model = build_model(model_config("unet", "tiny", "chroma", guided=True)).eval()
    metadata = {"colour": {"ycbcr": "bt709-full"}}
    source = faded_photo("coffee")
    source = np.clip(source + np.random.default_rng(3).normal(0.0, 0.02, source.shape), 0, 1).astype(np.float32)
    guide = np.concatenate([source, np.ones((*source.shape[:2], 1), np.float32)], axis=2)
    outputs = {(grain, smoothing): infer_frame(model, metadata, source, settings=PipelineSettings(grain=grain),
                                               guide=guide, detail=(2.0, 0.0, smoothing))
               for grain in ("clean", "keep_source") for smoothing in (0.0, 1.0)}

    def finest_chroma(image: np.ndarray) -> float:
        chroma = rgb_to_ycbcr(image)[..., 1:]
        return float(np.abs(np.diff(chroma, axis=1)).mean())

    assert finest_chroma(outputs["clean", 1.0]) < 0.8 * finest_chroma(outputs["clean", 0.0])
    np.testing.assert_allclose(rgb_to_ycbcr(outputs["clean", 1.0])[..., 0], rgb_to_ycbcr(source)[..., 0], atol=1e-5)
    np.testing.assert_array_equal(outputs["keep_source", 1.0], outputs["keep_source", 0.0])
    # A frame's fine weight is the share of its finer colour that is grain: where the Reference does not
    # cover (the right half), that share of the prediction's colour follows the luma.
    width = source.shape[1]
    half = guide.copy()
    half[:, width // 2:, 3] = 0.0
    kept, taken = (infer_frame(model, metadata, source, guide=half, detail=(2.0, weight, 0.0)) for weight in (0.0, 1.0))
    right = slice(width // 2 + 8, None)
    assert finest_chroma(taken[:, right]) < 0.8 * finest_chroma(kept[:, right])


def test_grain_is_told_from_the_prediction_before_the_references_coding_errors_correct_it():
    """#14: against a Reference whose colour carries coding blocks (which the guide's correction
    brings into the prediction), inference still finds a grainy tinted page's finer colour to be grain
    from the prediction before that correction, and makes it follow the luma whole, as a frame told
    to (colour smoothing 1) is; a colour photograph's stays."""
    from ml.sample import add_film_grain

    torch.manual_seed(0)
    model = build_model(model_config("unet", "tiny", "chroma", guided=True)).eval()
    with torch.no_grad():
        model.core.head.weight.zero_()  # the prediction is the Source's own colour, as an early model's
    metadata = {"colour": {"ycbcr": "bt709-full"}}
    rng = np.random.default_rng(4)
    size = 240
    page = transform.resize(data.text().astype(np.float32) / 255.0, (size, size), anti_aliasing=True)
    page = (page[..., None] * np.array([0.95, 0.8, 0.6], np.float32)).astype(np.float32)
    photo = transform.resize(data.astronaut().astype(np.float32) / 255.0, (size, size), anti_aliasing=True)
    blocks = rng.normal(0.0, 0.02, (size // 16, size // 16, 2)).astype(np.float32).repeat(16, 0).repeat(16, 1)

    def outputs(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        source = add_film_grain(picture.astype(np.float32), rng, 0.06, chroma_ratio=0.4)
        small = transform.resize(picture, (size * 3 // 4,) * 2, anti_aliasing=True)  # an HD Reference
        reference = rgb_to_ycbcr(transform.resize(small, (size, size), order=1).astype(np.float32))
        reference[..., 1:] += blocks
        guide = np.concatenate([np.clip(ycbcr_to_rgb(reference), 0, 1), np.ones((size, size, 1), np.float32)], axis=2)
        return tuple(infer_frame(model, metadata, source, guide=guide, detail=(0.66, 0.0, smoothing))
                     for smoothing in (0.0, 1.0))

    measured, smoothed = outputs(page)
    np.testing.assert_allclose(measured, smoothed, atol=1e-5)
    measured, smoothed = outputs(photo)
    assert np.abs(measured - smoothed).mean() > 1e-3


@pytest.mark.parametrize("position", [False, True])
def test_odd_sizes_and_tiles_match_the_whole_frame(position):
    model, metadata = random_model("chroma", position)
    source = faded_photo("astronaut", 75, 101)  # neither side a multiple of 4
    whole = infer_frame(model, metadata, source)
    tiled = infer_frame(model, metadata, source, settings=PipelineSettings(tile=48, overlap=24))
    change = np.abs(whole - source).max()
    assert change > 1e-2
    diff = np.abs(tiled - whole)
    assert diff.max() < 0.05 * change and diff.mean() < 0.005 * change  # no seams
    assert np.abs(rgb_to_ycbcr(tiled)[..., 0] - rgb_to_ycbcr(source)[..., 0]).max() < 1e-6


def test_frame_selection_and_plate_folders_are_refused(tmp_path, plate, trained):
    job = make_job(tmp_path, plate, trained)
    assert select_frames(job) == list(range(FIRST, LAST + 1))
    assert select_frames(job, "1002-1005") == [1002, 1003, 1004, 1005]
    chunks = [select_frames(job, "", f"{k}/4") for k in range(1, 5)]
    assert sum(chunks, []) == list(range(FIRST, LAST + 1)) and all(chunks)
    with pytest.raises(FilmRecoveryError, match="outside the Source range"):
        select_frames(job, "990-1002")
    inside = dataclasses.replace(job, work_dir=str(plate.parent.parent))
    plate_job = dataclasses.replace(inside, source=Plate(str(Path(inside.work_dir) / "infer" / "display" /
                                                             "shot.####.exr"), FIRST, LAST))
    with pytest.raises(FilmRecoveryError, match="Source plate folder"):
        check_output_locations(plate_job, output_patterns(plate_job))


def test_outputs_provenance_round_trip_resume_and_damage(tmp_path, plate, trained):
    job = make_job(tmp_path, plate, trained)
    stream = io.StringIO()
    result = run_inference(job, Reporter(stream), InferOptions(encode_workers=2, decode_workers=2))
    assert result.written == list(range(FIRST, LAST + 1)) and not result.skipped
    assert set(result.stages) == {"decode", "preprocess", "model", "colour", "encode"}
    assert result.as_dict()["frame_range"] == [FIRST, LAST]
    events = events_of(stream)
    progress = [e for e in events if e["type"] == "progress" and e["done"] > 0]
    assert len(progress) == 6 and progress[-1]["done"] == 6 and {"fps", "eta_s"} <= set(progress[-1])
    assert any(e["type"] == "preview" and e["path"].endswith(".png") for e in events)

    _, metadata = load_model(trained)
    for frame in range(FIRST, LAST + 1):
        paths = outputs_of(job, frame)
        assert all(p.exists() for p in paths.values())
        header = read_header(paths["aces"])
        assert header["film_recovery:model_hash"] == metadata["weights"]["sha256"]
        assert header["film_recovery:checkpoint_step"] == 40
        assert header["film_recovery:dataset_hash"] == metadata["dataset_hash"]
        assert header["film_recovery:recipe_hash"] == result.recipe_hash
        assert header["film_recovery:source_frame"] == frame
        assert header["film_recovery:source_file"] == str(plate).replace("####", f"{frame:04d}")
        assert header["film_recovery:engine_version"] and header["film_recovery:ocio_config"].startswith("ocio://")
        assert header["colorInteropID"] == "lin_ap0_scene"
        assert read_header(paths["display"])["colorInteropID"] == "g24_rec709_display"

    # The display EXR keeps the Source's Y (half precision); the model changed CbCr.
    source = read_image(str(plate).replace("####", "1002"))
    display = read_image(outputs_of(job, 1002)["display"])
    assert np.abs(rgb_to_ycbcr(display)[..., 0] - rgb_to_ycbcr(source)[..., 0]).max() < HALF_TOLERANCE
    assert np.abs(rgb_to_ycbcr(display)[..., 1:] - rgb_to_ycbcr(source)[..., 1:]).mean() > 2e-3
    # Archival ACES2065-1 through the output transform gives the display frame back.
    back = aces2065_to_display(read_image(outputs_of(job, 1002)["aces"]))
    err = np.abs(back - np.clip(display, 0.0, 1.0))
    assert err.mean() < 1e-3 and np.percentile(err, 99) < 5e-3
    review = read_image(outputs_of(job, 1002)["review"])
    assert np.abs(review - np.clip(display, 0, 1)).max() < 1.0 / 255 + 1e-3

    # Resume: two missing display frames and one truncated archival frame are written, nothing else.
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for f in range(FIRST, LAST + 1) for p in outputs_of(job, f).values()}
    outputs_of(job, 1002)["display"].unlink()
    outputs_of(job, 1004)["display"].unlink()
    damaged = outputs_of(job, 1005)["aces"]
    damaged.write_bytes(damaged.read_bytes()[:-200])
    job_file = save_job(job, tmp_path / "job.json")
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        assert cli.main(["--json", "infer", str(job_file), "--encode-workers", "2", "--decode-workers", "2"]) == 0
    finally:
        sys.stdout = sys_stdout
    events = events_of(out)
    final = [e for e in events if e["type"] == "result"][-1]
    assert final["written"] == [1002, 1004, 1005] and final["skipped"] == [1001, 1003, 1006]
    assert final["outputs"]["aces"].endswith("aces/shot.####.exr") and final["frame_range"] == [FIRST, LAST]
    assert any("damaged" in e.get("text", "") for e in events)
    rewritten = {outputs_of(job, 1002)["display"], outputs_of(job, 1004)["display"], damaged}
    for path, stamp in before.items():
        now = (path.stat().st_ino, path.stat().st_mtime_ns)
        assert (now != stamp) == (path in rewritten), path
    assert read_image(damaged).shape == (HEIGHT, WIDTH, 3)
    assert not list(job.work_path("infer").rglob("*.part*"))


@pytest.mark.parametrize("degrain", [0.0, 1.5])
def test_the_run_feeds_the_model_the_training_chain(tmp_path, plate, trained, degrain):
    """The half Source frames go to the device as stored; the pre-balance and the training degrain
    run there. Either way the model sees `source_frame`'s pixels (degrained as in training) and the
    kept channels are the plate's: the written frames equal one frame recovered from the host chain."""
    job = make_job(tmp_path, plate, trained, review="none", aces_exr=False)
    job = dataclasses.replace(job, balance=Balance(enabled=True, gain=[1.07, 0.96, 1.02], offset=[0.01, -0.004, 0.0]),
                              cleanup=dataclasses.replace(job.cleanup, source_degrain=degrain))
    run_inference(job, Reporter(io.StringIO()), InferOptions(frames=[1003], encode_workers=2, decode_workers=1))
    model, metadata = load_model(trained)
    balanced = source_frame(job, 1003, balanced=True)
    model_input = source_frame(job, 1003, balanced=True, degrained=True)
    expected = infer_frame(model, metadata, model_input, kept=balanced).astype(np.float16).astype(np.float32)
    written = read_image(outputs_of(job, 1003)["display"])
    if degrain == 0:
        assert np.array_equal(written, expected)
    else:  # device and numpy degrain agree to float32 rounding: at most one half-float step apart
        np.testing.assert_allclose(written, expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("strength", [0.6, 1.5, 3.0])
def test_device_degrain_matches_the_numpy_degrain(strength):
    from ml.cleanup import degrain
    from ml.neural.models import degrain_ycbcr

    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(0.5, 0.2, (37, 53, 3)), 0, 1).astype(np.float32)
    on_host = rgb_to_ycbcr(degrain(image, strength))
    tensor = torch.from_numpy(rgb_to_ycbcr(image)).permute(2, 0, 1)[None]
    on_device = degrain_ycbcr(tensor, strength)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(on_device, on_host, atol=2e-6, rtol=0)


def test_refuses_to_overwrite_another_models_frames(tmp_path, plate, trained):
    job = make_job(tmp_path, plate, trained, review="none")
    run_inference(job, Reporter(io.StringIO()), InferOptions(frames=[1001, 1002], encode_workers=2))
    target = outputs_of(job, 1001)["display"]
    stamp = target.stat().st_mtime_ns
    display = read_image(target)
    lut_aces = read_image(outputs_of(job, 1001)["aces"])
    # The exact OCIO archival path is another recipe: its frames would replace these.
    exact = InferOptions(frames=[1001, 1002], archival="ocio", encode_workers=2)
    with pytest.raises(FilmRecoveryError, match="--overwrite"):
        run_inference(job, Reporter(io.StringIO()), exact)
    assert target.stat().st_mtime_ns == stamp
    result = run_inference(job, Reporter(io.StringIO()), dataclasses.replace(exact, overwrite=True))
    assert result.written == [1001, 1002] and target.stat().st_mtime_ns != stamp
    assert read_header(outputs_of(job, 1001)["aces"])["film_recovery:archival_transform"] == "ocio"
    # The device LUT is as good as the exact OCIO inverse, within the LUT's interpolation error
    # (both miss the dark saturated colours the output transform cannot produce).
    expected = np.clip(display, 0.0, 1.0)
    lut_err = np.abs(aces2065_to_display(lut_aces) - expected)
    exact_err = np.abs(aces2065_to_display(read_image(outputs_of(job, 1001)["aces"])) - expected)
    assert np.median(lut_err) < 5e-4 and lut_err.mean() < exact_err.mean() + 1e-3
    assert np.percentile(lut_err, 99) < np.percentile(exact_err, 99) + 3e-3


def test_cancel_leaves_no_partial_files(tmp_path, trained):
    folder = tmp_path / "plates"
    write_exr(folder / "source.1001.exr", faded_photo("chelsea", 256, 384))
    last = 1400
    for frame in range(1002, last + 1):  # one picture, many frames: cheap to make, slow to infer
        os.link(folder / "source.1001.exr", folder / f"source.{frame:04d}.exr")
    job = make_job(tmp_path, folder / "source.####.exr", trained)
    job = dataclasses.replace(job, source=dataclasses.replace(job.source, last_frame=last))
    job_file = save_job(job, tmp_path / "job.json")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "ml", "--json", "infer", str(job_file), "--encode-workers", "2",
                                "--decode-workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        if event["type"] == "progress" and event["done"] >= 3:
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert '"cancelled": true' in out
    infer_dir = job.work_path("infer")
    assert not [p for p in infer_dir.rglob("*") if ".part" in p.name]
    written = sorted((infer_dir / "display").glob("shot.*.exr"))
    assert 3 <= len(written) < last - 1000
    for path in written:
        assert read_image(path).shape == (256, 384, 3)
