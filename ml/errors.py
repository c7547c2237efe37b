"""Errors the engine raises for bad input: each names the thing that is wrong and the fix."""

from __future__ import annotations


class FilmRecoveryError(Exception):
    """A problem the user can fix. `where` names the file, frame or field; `fix` says what to do."""

    exit_code = 2  # the CLI's exit code for bad input

    def __init__(self, problem: str, where: str | None = None, fix: str | None = None):
        self.problem = problem
        self.where = where
        self.fix = fix
        super().__init__(self.describe())

    def describe(self) -> str:
        text = f"{self.where}: {self.problem}" if self.where else self.problem
        if self.fix:
            text += f" Fix: {self.fix}"
        return text

    def as_event(self) -> dict:
        return {"type": "error", "message": self.describe(), "where": self.where, "fix": self.fix}


class JobFileError(FilmRecoveryError):
    """job.json is unreadable, of an unknown schema version, or has a missing/mistyped field."""


class InputImageError(FilmRecoveryError):
    """A plate frame is missing, unreadable, of the wrong size, or holds NaN/Inf."""


class QCFailed(FilmRecoveryError):
    """Parity QC found a hard failure: `qc` exits 3 so a pipeline script can tell, later stages refuse."""

    exit_code = 3


class Cancelled(Exception):
    """The job was cancelled (SIGTERM/SIGINT); outputs in flight are discarded."""
