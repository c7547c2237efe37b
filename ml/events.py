"""Progress and result events, printed as JSON lines (the add-on parses them) or as a bar.

Every engine command reports through a `Reporter`. In JSON mode each event is one line on
stdout: {"type": "progress", "done": 3, "total": 10, "stage": "qc", "message": "..."}.
Types: progress, message, metric, preview, result, error.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from typing import IO, Any

from .errors import Cancelled


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):  # numpy scalars/arrays
        return value.tolist()
    return value


class Reporter:
    """Writes events. `human=True` draws a progress bar on stderr instead of JSON lines."""

    def __init__(self, stream: IO[str] | None = None, human: bool = False):
        self.stream = stream or sys.stdout
        self.human = human
        self._started = time.monotonic()
        self._stage = ""
        self._bar_open = False

    def emit(self, event: dict) -> None:
        if self.human:
            self._emit_human(event)
            return
        clean = {k: _jsonable(v) for k, v in event.items()}
        self.stream.write(json.dumps(clean, default=str) + "\n")
        self.stream.flush()

    def progress(self, done: int, total: int, stage: str, message: str = "", **extra: Any) -> None:
        self.emit({"type": "progress", "stage": stage, "done": int(done), "total": int(total),
                   "message": message, **extra})

    def message(self, text: str, level: str = "info") -> None:
        self.emit({"type": "message", "level": level, "text": text})

    def metric(self, name: str, value: float, **extra: Any) -> None:
        self.emit({"type": "metric", "name": name, "value": float(value), **extra})

    def preview(self, path: str, kind: str) -> None:
        self.emit({"type": "preview", "kind": kind, "path": str(path)})

    def result(self, **payload: Any) -> None:
        self.emit({"type": "result", **payload})

    def error(self, event: dict) -> None:
        self.emit(event)

    def _emit_human(self, event: dict) -> None:
        kind = event.get("type")
        out = sys.stderr
        if kind == "progress":
            if event["stage"] != self._stage:  # ETA per stage, not since the reporter was made
                self._stage, self._started = event["stage"], time.monotonic()
            total = max(event["total"], 1)
            frac = min(event["done"] / total, 1.0)
            width = 30
            filled = int(frac * width)
            elapsed = time.monotonic() - self._started
            eta = elapsed / frac - elapsed if frac > 0 else float("nan")
            eta_text = f" ETA {eta:5.0f}s" if math.isfinite(eta) else ""
            out.write(f"\r{event['stage']:>10} [{'#' * filled}{'.' * (width - filled)}] "
                      f"{event['done']}/{event['total']}{eta_text} {event.get('message', '')[:40]:40}")
            self._bar_open = True
            if event["done"] >= event["total"]:
                out.write("\n")
                self._bar_open = False
        else:
            if self._bar_open:
                out.write("\n")
                self._bar_open = False
            if kind == "message":
                out.write(f"[{event['level']}] {event['text']}\n")
            elif kind == "metric":
                rest = {k: v for k, v in event.items() if k not in ("type", "name", "value")}
                out.write(f"  {event['name']} = {event['value']:.4g} {rest if rest else ''}\n")
            elif kind == "preview":
                out.write(f"  preview ({event['kind']}): {event['path']}\n")
            elif kind == "result":
                payload = {k: v for k, v in event.items() if k != "type"}
                sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
            elif kind == "error":
                out.write(f"ERROR: {event['message']}\n")
        out.flush()


def install_cancel_handler() -> None:
    """Turn SIGTERM (what the add-on's Cancel sends) into a `Cancelled` exception."""

    def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
        raise Cancelled(f"cancelled by signal {signum}")

    signal.signal(signal.SIGTERM, _raise)
