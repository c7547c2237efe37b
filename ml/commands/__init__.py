"""One module per CLI command. Each defines HELP, NEEDS_JOB, add_arguments(parser) and
run(args, job, reporter). Modules import heavy libraries (torch) inside run(), never at the top,
so `python -m ml --help` stays fast and works without torch."""


def require_torch(command: str) -> None:
    """Fail with the fix when this Python has no torch (Blender's own Python usually has none)."""
    import sys

    from ..errors import FilmRecoveryError

    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise FilmRecoveryError(f"torch is not installed in this Python ({sys.executable}).", where=command,
                                fix="Set Preferences > Add-ons > Film Recovery > Torch Python to a Python "
                                    "with torch, or install it there: pip install torch safetensors.") from exc
