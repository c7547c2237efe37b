"""The HTML report in a real headless Chromium: the 1:1 crops load (inline, no network) and the
A/B wipe moves. Chromium comes from Debian's packages (`bash scripts/dev.sh setup` installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_baseline import write_synthetic_shot

from ml import evaluation as ev
from ml import report as rp
from ml.imageio import read_image
from ml.job import load_job

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: run `bash scripts/dev.sh setup` "
                                "(installs Debian's chromium package) to run the browser test")

RED, GREEN, BLUE = (0.85, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.85)


def _flat(colour, shape=(200, 240)) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.float32), (*shape, 3)).copy()


def _report(tmp_path: Path) -> Path:
    job = load_job(write_synthetic_shot(tmp_path, [1001, 1002], holdout={1002}))
    rng = np.random.default_rng(0)
    reference = np.clip(0.5 + 0.2 * rng.standard_normal((200, 240, 1)), 0, 1).repeat(3, axis=2).astype(np.float32)
    # Source red, baseline blue, model green: which one the screenshot shows where is plain to see.
    comparison = ev.compare("pair_1002", 1002, _flat(RED), _flat(BLUE), _flat(GREEN), reference, "spatial", 120)
    evaluation = ev.EvaluationSet("holdout", "Held-out pairs", [comparison], ev.summarise([comparison]))
    out = tmp_path / "report" / "run"
    rp.write_report(out, job=job, sets=[evaluation], beat_baseline=True, verdict="test", temporal=None,
                    baseline={"kind": "lut", "domain": "display", "fit_rmse": 0.01}, training_log=[], options={})
    return out / "index.html"


def _screenshot(tmp_path: Path, index: Path, wipe: float) -> np.ndarray:
    shot = tmp_path / f"wipe_{wipe:g}.png"
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}",
                    "--virtual-time-budget=3000", "--window-size=900,700", f"--screenshot={shot}",
                    f"{index.as_uri()}#wipe={wipe:g}"], check=True, capture_output=True, timeout=120, env=env)
    return read_image(str(shot))[..., :3]


def _columns(image: np.ndarray, colour) -> np.ndarray:
    """Columns of the screenshot with at least 100 pixels of this colour (the wipe's 1:1 crop)."""
    close = np.abs(image - np.asarray(colour, np.float32)).max(axis=2) < 0.08
    return np.flatnonzero(close.sum(axis=0) >= 100)


def test_wipe_loads_its_images_and_moves(tmp_path):
    index = _report(tmp_path)
    assert "http" not in index.read_text().split("<script>")[1]  # the wipe needs no network
    left = _screenshot(tmp_path, index, 25)
    right = _screenshot(tmp_path, index, 75)
    crop = ev.DETAIL_CROP
    for image, wipe in ((left, 25), (right, 75)):
        red, green = _columns(image, RED), _columns(image, GREEN)
        # Both inline images decoded and drawn at 1:1: A (Source, red) left of the line, B (model, green) right.
        assert len(red) and len(green), f"wipe at {wipe}: the crops did not load"
        assert red.max() < green.min()
        assert abs(len(red) - crop * wipe / 100) <= 3 and abs(len(red) + len(green) - crop) <= 3
    # The line moved by half the crop between the two positions.
    assert abs((len(_columns(right, RED)) - len(_columns(left, RED))) - crop / 2) <= 3
