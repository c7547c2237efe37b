"""Recovery networks and inference: YCbCr agreement with the numpy engine, untouched channels,
padding to the network multiple, tiled inference, safe (pickle-free) model files."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # robust when other processes share the cores

from skimage import data, transform  # noqa: E402

from ml import colour  # noqa: E402
from ml.errors import FilmRecoveryError  # noqa: E402
from ml.neural.checkpoint import load_model, save_model  # noqa: E402
from ml.neural.models import build_model, frame_coords, model_config, rgb_to_ycbcr, ycbcr_to_rgb  # noqa: E402
from ml.neural.predict import predict_batch_tensor, predict_frame, predict_ycbcr  # noqa: E402


def _photo(height: int, width: int) -> np.ndarray:
    image = data.astronaut().astype(np.float32) / 255.0
    return transform.resize(image, (height, width), anti_aliasing=True).astype(np.float32)


def _active_model(kind: str, branch: str, size: str = "tiny", position: bool = False):
    """A model whose zero-initialised output layer is randomised, so it changes its channels."""
    torch.manual_seed(1)
    model = build_model(model_config(kind, size, branch, position=position))
    head = model.core.head if kind == "unet" else model.core.coefficients
    torch.nn.init.normal_(head.weight, std=0.05)
    return model.eval()


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


def test_torch_ycbcr_matches_engine_numpy():
    rgb = _photo(24, 32)
    mine = rgb_to_ycbcr(_to_tensor(rgb))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(mine, colour.rgb_to_ycbcr(rgb), atol=2e-6)
    back = ycbcr_to_rgb(rgb_to_ycbcr(_to_tensor(rgb)))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(back, rgb, atol=2e-6)


@pytest.mark.parametrize("kind", ["unet", "bilateral"])
@pytest.mark.parametrize("branch,kept,changed", [("chroma", [0], [1, 2]), ("spatial", [1, 2], [0])])
def test_untouched_channels_are_the_sources_own(kind, branch, kept, changed):
    model = _active_model(kind, branch)
    rgb = _photo(45, 61)
    source = rgb_to_ycbcr(_to_tensor(rgb))
    out = predict_ycbcr(model, source)
    assert torch.equal(out[:, kept], source[:, kept])  # bit for bit
    assert (out[:, changed] - source[:, changed]).abs().max() > 1e-3  # and the model did act
    frame = predict_frame(model, {}, rgb, "cpu")
    assert frame.shape == rgb.shape and frame.dtype == np.float32
    np.testing.assert_allclose(colour.rgb_to_ycbcr(frame)[..., kept], colour.rgb_to_ycbcr(rgb)[..., kept],
                               atol=2e-6)


@pytest.mark.parametrize("kind", ["unet", "bilateral"])
def test_fresh_model_is_the_identity(kind):
    model = build_model(model_config(kind, "tiny", "chroma")).eval()
    rgb = _photo(40, 40)
    # keep_source: the model's own output (clean would also reduce a chroma model's colour grain)
    np.testing.assert_allclose(predict_frame(model, {}, rgb, "cpu", grain="keep_source"), rgb, atol=2e-6)


def test_chroma_model_starts_from_a_3d_lut_that_matches_the_baseline_and_travels_with_its_weights(tmp_path):
    from ml.baseline import BaselineFit, apply_baseline, identity_lut

    # A shot's grade as the baseline would fit it: a cast and a gamma, not linear along any axis.
    nodes = identity_lut(17)
    lut = np.clip(nodes ** np.array([1.3, 0.9, 1.1]) * np.array([0.95, 1.0, 0.85]) + np.array([0.03, 0.0, 0.06]),
                  0.0, 1.0).astype(np.float32)
    fit = BaselineFit("lut", "display", lut)
    model = build_model(model_config("bilateral", "tiny", "chroma")).eval()
    assert model.config.colour_lut and model.grade is not None
    assert build_model(model_config("unet", "tiny", "spatial")).grade is None
    model.grade.load(torch.from_numpy(lut))
    rgb = _photo(33, 47)
    rgb[:3] += 0.2  # some values outside the LUT's cube: clamped, as apply_baseline does
    batch = torch.cat([_to_tensor(rgb), _to_tensor(np.ascontiguousarray(rgb[::-1]))])  # two frames at once
    graded = model.grade(batch).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(graded[0], apply_baseline(rgb, fit), atol=2e-6)
    np.testing.assert_allclose(graded[1], apply_baseline(rgb[::-1], fit), atol=2e-6)
    # A fresh (zero-residual) model is the grade in Cb and Cr, and keeps the Source's luma bit for bit.
    source = rgb_to_ycbcr(_to_tensor(rgb))
    out = predict_ycbcr(model, source)
    assert torch.equal(out[:, :1], source[:, :1])
    expected = colour.rgb_to_ycbcr(apply_baseline(rgb, fit))[..., 1:]
    np.testing.assert_allclose(out[0, 1:].permute(1, 2, 0).numpy(), expected, atol=2e-6)
    path = save_model(tmp_path / "graded.safetensors", model, {"branch": "chroma", "colour": {"ycbcr": "bt709-full"}})
    loaded, _ = load_model(path, "cpu")
    assert torch.equal(loaded.grade.table, model.grade.table)


@pytest.mark.parametrize("kind", ["unet", "bilateral"])
def test_odd_frame_equals_padded_frame_cropped_back(kind):
    model = _active_model(kind, "chroma")
    multiple = model.config.multiple
    rgb = _photo(37, 53)  # not a multiple of 4 or 8
    source = rgb_to_ycbcr(_to_tensor(rgb))
    ph, pw = -37 % multiple, -53 % multiple
    padded = torch.nn.functional.pad(source, (0, pw, 0, ph), mode="reflect")
    assert padded.shape[-1] % multiple == 0 and padded.shape[-2] % multiple == 0
    with torch.no_grad():
        whole = model(source)
        reference = model(padded)[..., :37, :53]
    assert whole.shape == source.shape
    torch.testing.assert_close(whole, reference, rtol=0, atol=1e-6)
    # A frame smaller than the padding still works (replicate instead of reflect).
    with torch.no_grad():
        assert model(source[..., :3, :5]).shape == (1, 3, 3, 5)


def test_tiled_inference_matches_whole_frame_without_seams():
    model = _active_model("unet", "chroma")
    rgb = _photo(120, 152)
    whole = predict_frame(model, {}, rgb, "cpu")
    tiled = predict_frame(model, {}, rgb, "cpu", tile=64, overlap=24)
    change = np.abs(colour.rgb_to_ycbcr(whole) - colour.rgb_to_ycbcr(rgb))[..., 1:].mean()
    error = np.abs(colour.rgb_to_ycbcr(tiled) - colour.rgb_to_ycbcr(whole))[..., 1:]
    assert change > 2e-3
    assert error.max() < 0.1 * change, (error.max(), change)
    # Without feathered overlap the seams show: the blend is what removes them.
    hard = predict_frame(model, {}, rgb, "cpu", tile=64, overlap=0)
    assert np.abs(colour.rgb_to_ycbcr(hard) - colour.rgb_to_ycbcr(whole))[..., 1:].max() > 3 * error.max()


def test_frame_coords_of_a_crop_are_the_frames_own():
    whole = frame_coords(60, 80)
    crop = frame_coords(20, 30, origin=(10, 25), frame_size=(60, 80))
    assert torch.equal(crop, whole[..., 10:30, 25:55])
    assert whole.min() > -1 and whole.max() < 1


@pytest.mark.parametrize("kind", ["unet", "bilateral"])
def test_position_aware_model_uses_position_and_tiles_without_seams(kind):
    model = _active_model(kind, "chroma", position=True)
    rgb = np.full((96, 128, 3), 0.4, np.float32)  # flat colour: any change across it comes from position
    out = predict_frame(model, {}, rgb, "cpu")
    cbcr = colour.rgb_to_ycbcr(out)[..., 1:]
    assert np.abs(cbcr[:, :16].mean((0, 1)) - cbcr[:, -16:].mean((0, 1))).max() > 1e-4
    if kind == "bilateral":
        return  # its grid is laid per input; it runs whole-frame (cheap even at 4K), never tiled
    photo = _photo(96, 128)
    whole = predict_frame(model, {}, photo, "cpu")
    tiled = predict_frame(model, {}, photo, "cpu", tile=64, overlap=24)
    change = np.abs(colour.rgb_to_ycbcr(whole) - colour.rgb_to_ycbcr(photo))[..., 1:].mean()
    assert np.abs(colour.rgb_to_ycbcr(tiled) - colour.rgb_to_ycbcr(whole))[..., 1:].max() < 0.1 * change


def test_predict_batch_tensor_matches_predict_frame():
    model = _active_model("bilateral", "chroma")
    rgb = _photo(32, 48)
    batch = torch.stack([_to_tensor(rgb)[0], _to_tensor(rgb[::-1].copy())[0]])
    out = predict_batch_tensor(model, batch)
    assert out.shape == batch.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), predict_frame(model, {}, rgb, "cpu", grain="keep_source"),
                               atol=1e-6)


def test_the_source_alone_score_follows_the_grain_choice():
    """shot_score.predict_pair (the per-shot scores and the report's from-the-Source-alone figure)
    applies job.output.grain as `infer` does: the same pixels as predict_frame under each choice."""
    from pathlib import Path

    from ml.dataset_io import DatasetPair
    from ml.neural.shot_score import predict_pair

    model = _active_model("bilateral", "chroma")
    rgb = _photo(40, 56)
    pair = DatasetPair("pair", Path("input.exr"), Path("target.exr"), True, rgb, rgb)
    kept, clean = (predict_pair(model, {}, pair, "cpu", grain) for grain in ("keep_source", "clean"))
    np.testing.assert_allclose(kept, predict_frame(model, {}, rgb, "cpu", grain="keep_source"), atol=1e-6)
    np.testing.assert_allclose(clean, predict_frame(model, {}, rgb, "cpu", grain="clean"), atol=1e-6)
    assert np.abs(clean - kept).max() > 1e-4


_LOAD_WATCHING_PICKLE = """
import sys
from pathlib import Path
calls = []
# Any unpickling resolves classes through pickle.find_class (an audit event); torch.load is a Python
# function in torch/serialization.py, seen by the profiler. Neither may happen while loading a model.
sys.addaudithook(lambda event, args: calls.append(event) if event == "pickle.find_class" else None)
def watch(frame, event, arg):
    if event == "call" and frame.f_code.co_filename.endswith("serialization.py") and frame.f_code.co_name == "load":
        calls.append("torch.load")
from ml.neural.checkpoint import load_model
sys.setprofile(watch)
model, metadata = load_model(sys.argv[1], "cpu")
sys.setprofile(None)
print(metadata["model"]["kind"], ",".join(calls) or "no-pickle")
"""


def test_model_files_round_trip_without_pickle(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    model = _active_model("unet", "spatial")
    path = save_model(tmp_path / "m.safetensors", model, {"branch": "spatial", "colour": {"ycbcr": "bt709-full"}})
    assert path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then JSON
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _LOAD_WATCHING_PICKLE, str(path)], cwd=root, capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["unet", "no-pickle"], done.stdout + done.stderr
    loaded, metadata = load_model(path, "cpu")
    assert metadata["branch"] == "spatial" and metadata["model"]["kind"] == "unet"
    rgb = _photo(32, 32)
    np.testing.assert_array_equal(predict_frame(loaded, metadata, rgb, "cpu"), predict_frame(model, {}, rgb, "cpu"))


def test_damaged_model_files_are_rejected_by_name(tmp_path):
    model = _active_model("unet", "chroma")
    path = save_model(tmp_path / "m.safetensors", model, {})
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(FilmRecoveryError, match="truncated") as info:
        load_model(path)
    assert str(path) in str(info.value)
    flipped = bytearray(blob)
    flipped[-100] ^= 0xFF  # one damaged byte in the weights
    path.write_bytes(bytes(flipped))
    with pytest.raises(FilmRecoveryError, match="checksum") as info:
        load_model(path)
    assert str(path) in str(info.value)
    path.write_bytes(blob[:50])  # and safetensors itself refuses it once the sidecar is gone
    path.with_suffix(".json").write_text(json.dumps({"schema": "film_recovery.model", "schema_version": 1,
                                                      "model": model.config.to_dict()}))
    with pytest.raises(FilmRecoveryError, match="safetensors") as info:
        load_model(path)
    assert str(path) in str(info.value)
    path.with_suffix(".json").unlink()
    with pytest.raises(FilmRecoveryError, match="sidecar is missing"):
        load_model(path)
