"""`env`: what this interpreter can do (library versions, torch devices). The add-on's
"Check interpreter" button runs it."""

from __future__ import annotations

import importlib
import platform
import sys

HELP = "report this Python's libraries and compute devices (torch, CUDA, MPS)"
NEEDS_JOB = False


def add_arguments(parser) -> None:
    pass


def describe_environment() -> dict:
    info: dict = {"python": sys.version.split()[0], "executable": sys.executable,
                  "platform": platform.platform()}
    for name in ("numpy", "OpenImageIO", "PyOpenColorIO", "OpenEXR"):
        try:
            module = importlib.import_module(name)
            info[name] = getattr(module, "__version__", None) or getattr(module, "VERSION", "present")
        except ImportError:
            info[name] = None
    try:
        import torch
    except ImportError:
        info.update(torch=None, devices=["cpu"], cuda=False, mps=False)
        return info
    devices = ["cpu"]
    cuda = torch.cuda.is_available()
    if cuda:
        devices += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if mps:
        devices.append("mps")
    info.update(torch=torch.__version__, devices=devices, cuda=cuda, mps=mps)
    return info


def run(args, job, reporter) -> None:
    reporter.result(**describe_environment())
