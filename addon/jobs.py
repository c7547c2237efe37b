"""Engine jobs as subprocesses: one job, two front doors.

`invoke()` (a click in the UI) starts `python -m ml <command> job.json` and polls it from a modal
timer, so Blender stays responsive; ESC or the Cancel button terminates it. `execute()` (scripts,
`blender -b`) runs the same job to the end synchronously, because timers do not fire there.
Reader threads only fill a queue: bpy is touched on the main thread alone.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..ml.errors import FilmRecoveryError
from ..ml.events import Reporter
from ..ml.job import load_job
from ..ml.validation import require_valid_job
from . import interpreter, preferences, recipe

# Seconds a cancelled engine gets to write its checkpoint before it is killed.
CANCEL_GRACE_S = 5.0

if TYPE_CHECKING:
    # The base of operator mixins (this module's EngineJobOperator, the poll checks): to the type checker an
    # Operator, so their calls to report() or poll_message_set() are checked; at run time a plain class, as
    # Blender registers the concrete operators, which name bpy.types.Operator themselves.
    OperatorMixin = bpy.types.Operator
else:
    OperatorMixin = object


class EngineJob:
    """A running `python -m ml` process and the events it has printed."""

    def __init__(self, command: str, job_path: Path | None, args: list[str], python: str):
        self.command = command
        argv = [python, "-m", "ml", "--json", command]
        if job_path is not None:
            argv.append(str(job_path))
        argv += args
        self.argv = argv
        self.events: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self.stderr_tail: list[str] = []
        self.cancelled = False
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, cwd=str(interpreter.ENGINE_ROOT), env=interpreter.engine_env(),
            start_new_session=sys.platform != "win32")
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"type": "message", "level": "info", "text": line}
            self.events.put(event)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-40:]

    def drain(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    @property
    def done(self) -> bool:
        return self.process.poll() is not None and not any(r.is_alive() for r in self._readers)

    def wait(self) -> int:
        code = self.process.wait()
        for reader in self._readers:
            reader.join()
        return code

    def cancel(self) -> None:
        """SIGTERM (the engine discards partial outputs and checkpoints), then kill after a grace period."""
        self.cancelled = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=CANCEL_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_console = Reporter(human=True)

# One engine job at a time per Blender session; the panel and status bar show it.
_active: EngineJob | None = None


def active_job() -> EngineJob | None:
    return _active if _active is not None and not _active.done else None


def start(command: str, job_path: Path | None, args: list[str]) -> EngineJob:
    global _active
    running = active_job()
    if running is not None:
        raise RuntimeError(f"A '{running.command}' job is still running; cancel it or wait.")
    python = interpreter.resolve_python(preferences.get().python_path)
    _active = EngineJob(command, job_path, args, python)
    return _active


def cancel_active() -> bool:
    job = active_job()
    if job is None:
        return False
    job.cancel()
    return True


def apply_event(state: Any, event: dict) -> None:
    """Fold one engine event into the recipe's job_state (main thread only)."""
    state.events_seen += 1
    kind = event.get("type")
    if kind == "progress":
        total = max(int(event.get("total", 1)), 1)
        state.progress = min(float(event.get("done", 0)) / total, 1.0)
        state.stage = str(event.get("stage", ""))
        state.message = f"{event.get('done')}/{event.get('total')} {event.get('message', '')}".strip()
    elif kind == "message":
        state.message = str(event.get("text", ""))
    elif kind == "metric":
        metrics = json.loads(state.metrics or "{}")
        metrics[event["name"]] = event["value"]
        state.metrics = json.dumps(metrics)
    elif kind == "preview":
        state.preview_path = str(event.get("path", ""))
    elif kind == "result":
        state.last_result = json.dumps({k: v for k, v in event.items() if k != "type"})
    elif kind == "error":
        state.last_error = str(event.get("message", "unknown error"))


def _load_preview(event: dict) -> None:
    """Load (or reload) a preview PNG the engine announced, as the image "FR <kind>" the panels show."""
    path, name = event.get("path", ""), f"FR {event.get('kind', 'preview')}"
    if not path.lower().endswith(".png"):
        return
    image = bpy.data.images.get(name)
    try:
        if image is None:
            image = bpy.data.images.load(path)
            image.name = name
        else:
            image.filepath = path
            image.reload()
    except RuntimeError:  # the file went away (a newer preview replaced it); the next one will do
        return
    image.preview_ensure()


def _tag_redraw() -> None:
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"SEQUENCE_EDITOR", "NODE_EDITOR", "STATUSBAR"}:
                area.tag_redraw()


class EngineJobOperator(OperatorMixin):
    """Mixin for operators that run one engine command on the scene's recipe.

    Subclasses set `command` and may override `job_args`, `on_result` and `needs_job`.
    """

    command: str = ""
    needs_job: bool = True
    _timer = None

    def job_args(self, context) -> list[str]:
        return []

    def on_result(self, context, result: dict) -> None:
        """Store what the engine returned into the recipe (main thread)."""

    def _launch(self, context) -> EngineJob | None:
        fr = context.scene.film_recovery
        state = fr.job_state
        try:
            job_path = recipe.write_job_file(fr) if self.needs_job else None
            if job_path is not None:
                # The engine's own checks, before a process starts: a bad recipe fails at once, in the
                # words the engine would use (no frame is decoded; well under a second).
                require_valid_job(load_job(job_path), self.command)
            job = start(self.command, job_path, self.job_args(context))
        except FilmRecoveryError as exc:
            state.last_error = exc.describe()
            self.report({"ERROR"}, f"{self.command}: {exc.describe()}")
            return None
        except (RuntimeError, OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return None
        state.running, state.command, state.stage = True, self.command, self.command
        state.progress, state.message, state.last_error = 0.0, "starting", ""
        state.events_seen, state.exit_code, state.last_result = 0, -1, ""
        return job

    def _pump(self, context, job: EngineJob) -> None:
        fr = context.scene.film_recovery
        for event in job.drain():
            apply_event(fr.job_state, event)
            if bpy.app.background and event.get("type") != "result":
                _console.emit(event)  # batch runs: a progress bar on the terminal
            if event.get("type") == "result":
                self.on_result(context, {k: v for k, v in event.items() if k != "type"})
            elif event.get("type") == "preview":
                _load_preview(event)

    def _finish(self, context, job: EngineJob, code: int) -> set[str]:
        self._pump(context, job)
        state = context.scene.film_recovery.job_state
        state.running, state.exit_code = False, code
        if job.cancelled:
            state.message = "cancelled"
            self.report({"WARNING"}, f"{self.command}: cancelled")
            return {"CANCELLED"}
        if code != 0:
            reason = state.last_error or "\n".join(job.stderr_tail[-5:]) or f"exit code {code}"
            state.last_error = reason
            self.report({"ERROR"}, f"{self.command} failed: {reason}")
            return {"CANCELLED"}
        state.progress = 1.0
        self.report({"INFO"}, f"{self.command}: done. {state.message}")
        return {"FINISHED"}

    def execute(self, context):
        job = self._launch(context)
        if job is None:
            return {"CANCELLED"}
        while not job.done:
            self._pump(context, job)
            time.sleep(0.05)
        return self._finish(context, job, job.wait())

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        job = self._launch(context)
        if job is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = _active
        if job is None:
            return {"CANCELLED"}
        if event.type == "ESC":
            job.cancel()
        if event.type in {"TIMER", "ESC"}:
            self._pump(context, job)
            _tag_redraw()
            if job.done:
                context.window_manager.event_timer_remove(self._timer)
                return self._finish(context, job, job.wait())
        return {"PASS_THROUGH"}


def draw_status(self: bpy.types.Header, context: bpy.types.Context) -> None:
    """Status-bar progress while a job runs."""
    fr = getattr(context.scene, "film_recovery", None)
    layout = self.layout
    if fr is None or not fr.job_state.running or layout is None:
        return
    state = fr.job_state
    layout.progress(factor=state.progress, type="BAR", text=f"Film Recovery {state.stage}: {state.progress:.0%}")
    layout.operator("film_recovery.cancel_job", text="", icon="CANCEL")


def register() -> None:
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister() -> None:
    cancel_active()
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
