"""ruff over the whole repository with pyproject.toml's rules (style, imports, bugbear, and the complexity,
branch, statement and argument-count limits), so `.ci/run` fails on a lint error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes_with_the_complexity_rules():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    # the rules are on: a function with nine arguments is refused
    probe = "def nine(a, b, c, d, e, f, g, h, i):\n    return a\n"
    refused = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", "ml/probe.py",
                              "-"], cwd=ROOT, input=probe, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "PLR0913" in refused.stdout, refused.stdout
