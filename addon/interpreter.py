"""Which Python runs engine jobs, and what it can do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The folder that holds the bundled `ml` package (the extension's root).
ENGINE_ROOT = Path(__file__).resolve().parent.parent


def engine_env() -> dict[str, str]:
    """Environment for engine subprocesses: the bundled `ml` first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ENGINE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def resolve_python(configured: str) -> str:
    """The configured interpreter if set, else Blender's own Python."""
    if configured:
        return configured
    return sys.executable


def check_python(python: str, timeout: float = 120.0) -> dict:
    """Run `python -m ml env` and return what it reports (raises RuntimeError with the reason)."""
    if not Path(python).exists():
        raise RuntimeError(f"{python}: no such interpreter. Set 'Torch Python' in the preferences.")
    done = subprocess.run([python, "-m", "ml", "--json", "env"], capture_output=True, text=True,
                          env=engine_env(), cwd=str(ENGINE_ROOT), timeout=timeout, check=False)
    for line in done.stdout.splitlines():
        event = json.loads(line)
        if event.get("type") == "result":
            return event
    raise RuntimeError(f"{python} could not run the engine: {done.stderr.strip()[-300:]}")


def describe(report: dict) -> str:
    torch = report.get("torch")
    lines = [f"Python {report.get('python')} ({report.get('executable')})",
             f"torch {torch}" if torch else "torch: not installed (training and inference need it)",
             f"OpenEXR {report['OpenEXR']}" if report.get("OpenEXR")
             else "OpenEXR: not installed (EXRs go through OpenImageIO: about 2x the CPU per frame)",
             "devices: " + ", ".join(report.get("devices", []))]
    return "\n".join(lines)
