"""Running a plan on a farm: Dask distributed (an embedded local cluster or a running scheduler), or
serially in this process, with the same tasks.

Every task is one engine command (`python -m ml ...`) in a subprocess on the worker, so the engine
stays bpy-free and a worker needs only this repository and a Python with torch. The graph per unit
is dataset -> train -> score; when a unit's score arrives, this process (the only writer of
plan.json) decides the shot fallbacks (`ml.plan.decide_fallbacks`), submits the new units, and
submits the inference chunks of every shot whose model is now settled, each depending on its
unit's tasks. Dask passes the dependencies as futures, so a chunk never starts before its model.

Tasks are idempotent. A finished task leaves a marker (`<unit>/done/<task>.json`) with a signature
of its command and of the unit's job.json; a task whose marker matches and whose outputs exist is
skipped. Below that the engine resumes by itself: `train` from its last checkpoint (bit-exact on
the CPU), `infer` skips frames this model already wrote, `dataset` writes a fresh export that swaps
in whole. A failed task is retried (`retries`); a worker that dies mid-task takes its subprocess
with it (Linux: the child gets SIGKILL when its worker thread goes) and the scheduler runs the task
again elsewhere, where it resumes. Each task's output goes to `<unit>/logs/<task>.log`.

Progress is JSON lines through the reporter: `{"type": "progress", "stage": "farm", "done": tasks
done, "total": tasks known, "frames_done", "frames_total", "running": [...]}` about every second
and at every finished task, so the add-on's job runner shows it like any other engine job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FilmRecoveryError
from .events import Reporter
from .imageio import atomic_path
from .plan import Plan, Task, decide_fallbacks, infer_tasks, load_plan, save_plan, unit_tasks, write_unit_jobs

ENGINE_ROOT = Path(__file__).resolve().parents[1]
HEARTBEAT_S = 1.0


class FarmFailed(FilmRecoveryError):
    """Some tasks failed after their retries; the rest of the plan ran."""

    exit_code = 1


# --------------------------------------------------------------------------- one task (on a worker)

def _safe(task_id: str) -> str:
    return task_id.replace(":", "__").replace("/", "_")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started us dies (Linux), so a killed
    worker does not leave its engine process running on."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def _file_hash(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def task_command(spec: dict[str, Any], python: str | None = None) -> list[str]:
    """The command line of a task spec, with this machine's Python (torchrun for gpus > 1 trains)."""
    from .plan import torchrun_launcher

    python = python or sys.executable
    if spec["kind"] == "train" and spec["gpus"] > 1:
        return [*torchrun_launcher(spec["gpus"], python), *spec["argv"]]
    return [python, "-m", "ml", "--json", *spec["argv"]]


def task_signature(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([spec["kind"], spec["argv"], spec["gpus"],
                                      _file_hash(spec["unit_job"])]).encode()).hexdigest()


def run_task(spec: dict[str, Any], _after: Any = None) -> dict[str, Any]:
    """Run one task spec (`FarmRun.spec`) in a subprocess; skip it when its marker says it is done.
    Raises RuntimeError with the engine's error when the command fails (Dask retries it)."""
    started = time.monotonic()
    worker = _worker_name()
    marker = Path(spec["marker"])
    signature = task_signature(spec)
    if marker.exists() and all(Path(p).exists() for p in spec["outputs"]):
        try:
            earlier = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            earlier = {}
        if earlier.get("signature") == signature:
            return {"task": spec["id"], "skipped": True, "worker": worker, "seconds": 0.0,
                    "result": earlier.get("result", {})}
    argv = [a for a in spec["argv"]]
    if spec["kind"] == "train" and marker.exists():
        argv.append("--no-resume")  # an earlier, finished training of another recipe: start over
    command = task_command({**spec, "argv": argv})
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ENGINE_ROOT), *filter(None, [env.get("PYTHONPATH", "")])])
    if spec.get("threads"):
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(spec["threads"])
    gpu = (spec.get("gpu_map") or {}).get(worker)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    running = Path(spec["running"])
    with atomic_path(running) as tmp:
        tmp.write_text(json.dumps({"task": spec["id"], "worker": worker, "host": socket.gethostname(),
                                   "pid": os.getpid(), "started": time.time()}), encoding="utf-8")
    log = Path(spec["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                   text=True, cwd=str(ENGINE_ROOT), env=env, preexec_fn=_die_with_parent)
        stdout, stderr = process.communicate()
    finally:
        with contextlib.suppress(OSError):
            running.unlink()
    with atomic_path(log) as tmp:
        tmp.write_text(f"$ {' '.join(command)}\n# worker {worker}, exit {process.returncode}\n{stdout}\n{stderr}",
                       encoding="utf-8")
    events = []
    for line in stdout.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if line.startswith("{"):
                events.append(json.loads(line))
    if process.returncode != 0:
        errors = [e.get("message", "") for e in events if e.get("type") == "error"]
        tail = errors[-1] if errors else (stderr.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
        raise RuntimeError(f"{spec['id']} failed on {worker} (exit {process.returncode}): {tail} [log: {log}]")
    result = next((e for e in reversed(events) if e.get("type") == "result"), {})
    result = {k: v for k, v in result.items() if k in ("dataset_dir", "best_model", "final_model", "steps", "scores",
                                                       "written", "skipped", "frames", "pairs")}
    seconds = time.monotonic() - started
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps({"task": spec["id"], "signature": signature, "worker": worker,
                                   "seconds": seconds, "result": result}), encoding="utf-8")
    return {"task": spec["id"], "skipped": False, "worker": worker, "seconds": seconds, "result": result}


# --------------------------------------------------------------------------- executors

class SerialExecutor:
    """Runs each task in this process's thread, in submission order (dependencies come first)."""

    name = "serial"

    def __init__(self) -> None:
        self.queue: list[tuple[Task, dict]] = []
        self.failed: set[str] = set()

    def submit(self, task: Task, spec: dict, after: Sequence[str]) -> None:
        self.queue.append((task, spec))

    @property
    def pending(self) -> int:
        return len(self.queue)

    def wait(self, timeout: float) -> list[tuple[str, dict | None, str]]:
        if not self.queue:
            return []
        task, spec = self.queue.pop(0)
        if any(a in self.failed for a in task.after):
            self.failed.add(task.id)
            return [(task.id, None, "a task it needs failed")]
        for _attempt in range(spec["retries"] + 1):
            try:
                return [(task.id, run_task(spec), "")]
            except RuntimeError as exc:
                error = str(exc)
        self.failed.add(task.id)
        return [(task.id, None, error)]

    def close(self) -> None:
        pass


class DaskExecutor:
    """Submits tasks to a Dask cluster; dependencies travel as futures, so Dask holds a task until
    the tasks it needs are done. GPU tasks ask for the `GPU` resource when the workers offer it."""

    name = "dask"

    def __init__(self, client, retries: int, owned_cluster=None):
        self.client, self.retries, self.cluster = client, retries, owned_cluster
        self.futures: dict[str, Any] = {}
        self.ids: dict[str, str] = {}  # future key -> task id
        self.open: set = set()
        workers = client.scheduler_info().get("workers", {})
        self.gpu_workers = any("GPU" in (w.get("resources") or {}) for w in workers.values())
        self.token = hashlib.sha256(f"{time.time()}:{os.getpid()}".encode()).hexdigest()[:8]

    def submit(self, task: Task, spec: dict, after: Sequence[str]) -> None:
        deps = [self.futures[a] for a in after if a in self.futures]
        resources = {"GPU": task.gpus} if (self.gpu_workers and task.gpus) else None
        future = self.client.submit(run_task, spec, deps, key=f"fr-{_safe(task.id)}-{self.token}", pure=False,
                                    retries=self.retries, resources=resources)
        self.futures[task.id] = future
        self.ids[future.key] = task.id
        self.open.add(future)

    @property
    def pending(self) -> int:
        return len(self.open)

    def wait(self, timeout: float) -> list[tuple[str, dict | None, str]]:
        from distributed import wait

        if not self.open:
            return []
        done, _ = wait(list(self.open), timeout=timeout, return_when="FIRST_COMPLETED")
        out = []
        for future in done:
            self.open.discard(future)
            task_id = self.ids[future.key]
            if future.status == "finished":
                out.append((task_id, future.result(), ""))
            else:
                exc = future.exception()
                out.append((task_id, None, str(exc) or repr(exc)))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def _wait_timeout(executor, timeout):
    try:
        return executor.wait(timeout)
    except TimeoutError:
        return []


def connect(scheduler: str = "", local: int = 2, local_gpus: str = "", timeout: float = 30.0):
    """A Dask client: to `scheduler` (tcp://host:port), or to an embedded LocalCluster of `local`
    single-thread workers in this process (each task is a subprocess anyway)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise FilmRecoveryError("Dask distributed is not installed in this Python.", where="farm",
                                fix="pip install 'dask[distributed]' (or run with --serial).") from exc
    if scheduler:
        try:
            return Client(scheduler, timeout=timeout), None
        except (OSError, TimeoutError) as exc:
            raise FilmRecoveryError(f"cannot reach the Dask scheduler ({exc}).", where=scheduler,
                                    fix="Start it (`dask scheduler`) and its workers, or use --local N.") from exc
    if local < 1:
        raise FilmRecoveryError(f"{local} local workers.", where="--local", fix="Ask for 1 or more.")
    # Workers as threads of this process, talking in-process (no sockets): every task is a subprocess.
    cluster = LocalCluster(n_workers=local, threads_per_worker=1, processes=False, dashboard_address=None)
    return Client(cluster, timeout=timeout), cluster


# --------------------------------------------------------------------------- the run

@dataclass
class FarmRun:
    """Runs a plan (all units, or `units`) on an executor and keeps plan.json up to date."""

    plan_path: Path
    reporter: Reporter
    retries: int = 2
    units: list[str] = field(default_factory=list)
    decide: bool = True
    local_gpus: dict[str, str] = field(default_factory=dict)
    threads: int = 0  # CPU threads per task (OMP_NUM_THREADS); 0: the engine's own choice

    def __post_init__(self) -> None:
        self.plan_path = Path(self.plan_path).resolve()
        self.plan: Plan = load_plan(self.plan_path)
        unknown = [u for u in self.units if u not in {x.id for x in self.plan.units}]
        if unknown:
            raise FilmRecoveryError(f"no unit {unknown[0]!r} in the plan.", where="--unit",
                                    fix=f"Pick from {', '.join(u.id for u in self.plan.units)}.")
        self.tasks: dict[str, Task] = {}
        self.finished: dict[str, dict] = {}
        self.failed: dict[str, str] = {}
        self.frames_done = 0
        self._last_beat = 0.0

    # -- specs --------------------------------------------------------------------------------
    def spec(self, task: Task) -> dict[str, Any]:
        unit_dir = self.plan.unit_dir(task.unit)
        outputs = {"dataset": [str(unit_dir / "dataset" / "manifest.json")],
                   "train": [str(self.plan.model_path(task.unit))],
                   "score": [str(self.plan.scores_path(task.unit))]}.get(task.kind, [])
        return {"id": task.id, "kind": task.kind, "argv": task.argv, "gpus": task.gpus,
                "unit_job": str(self.plan.unit_job_path(task.unit)),
                "marker": str(unit_dir / "done" / f"{_safe(task.id)}.json"),
                "running": str(self.plan.folder / "farm" / "running" / f"{_safe(task.id)}.json"),
                "log": str(unit_dir / "logs" / f"{_safe(task.id)}.log"), "outputs": outputs,
                "retries": self.retries, "gpu_map": self.local_gpus, "threads": self.threads}

    def chosen(self, unit_id: str) -> bool:
        unit = self.plan.unit(unit_id)
        return not self.units or unit_id in self.units or unit.parent in self.units

    # -- progress -----------------------------------------------------------------------------
    def frames_total(self) -> int:
        return sum(s.frames for s in self.plan.shots if self.chosen(s.group_unit))

    def running(self) -> list[dict]:
        out = []
        for path in sorted((self.plan.folder / "farm" / "running").glob("*.json")):
            with contextlib.suppress(OSError, json.JSONDecodeError):
                out.append(json.loads(path.read_text(encoding="utf-8")))
        return [r for r in out if r.get("task") in self.tasks and r.get("task") not in self.finished]

    def report(self, force: bool = False, message: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        done, total = len(self.finished) + len(self.failed), len(self.tasks)
        frames_total = self.frames_total()
        running = self.running()
        text = message or (f"tasks {done}/{total}, frames {self.frames_done}/{frames_total}"
                           + (f"; running {', '.join(r['task'] for r in running)}" if running else ""))
        self.reporter.progress(done, max(total, 1), "farm", text, tasks_done=done, tasks_total=total,
                               frames_done=self.frames_done, frames_total=frames_total,
                               running=[{"task": r["task"], "worker": r.get("worker", "")} for r in running])

    # -- the loop -----------------------------------------------------------------------------
    def submit(self, executor, tasks: list[Task]) -> None:
        for task in tasks:
            if task.id in self.tasks:
                continue
            self.tasks[task.id] = task
            executor.submit(task, self.spec(task), task.after)

    def settled_shots(self, unit_id: str) -> list:
        """Shots whose model is this unit's, now that the unit is scored (or cannot fall back)."""
        return [s for s in self.plan.shots if s.model_unit == unit_id]

    def run(self, executor) -> dict[str, Any]:
        started = time.monotonic()
        write_unit_jobs(self.plan)
        for unit in list(self.plan.units):
            if self.chosen(unit.id):
                self.submit(executor, unit_tasks(self.plan, unit))
        self.report(force=True, message=f"{len(self.tasks)} task(s) submitted to {executor.name}")
        while executor.pending:
            for task_id, outcome, error in _wait_timeout(executor, HEARTBEAT_S):
                self.handle(executor, task_id, outcome, error)
                self.report(force=True)
            self.report()
        save_plan(self.plan, self.plan_path)
        self.report(force=True)
        summary = {"plan": str(self.plan_path), "executor": executor.name,
                   "seconds": round(time.monotonic() - started, 3), "tasks": len(self.tasks),
                   "done": len(self.finished), "skipped": sum(1 for r in self.finished.values() if r.get("skipped")),
                   "failed": self.failed, "frames_done": self.frames_done, "frames_total": self.frames_total(),
                   "fallbacks": self.plan.fallbacks,
                   "units": {u.id: u.status for u in self.plan.units},
                   "workers": sorted({r.get("worker", "") for r in self.finished.values()})}
        if self.failed:
            first = next(iter(self.failed))
            raise FarmFailed(f"{len(self.failed)} task(s) failed; first: {self.failed[first]}", where=first,
                             fix="Read the task's log, fix the cause and run `ml farm` again: finished tasks "
                                 "are reused.")
        return summary

    def handle(self, executor, task_id: str, outcome: dict | None, error: str) -> None:
        task = self.tasks[task_id]
        unit = self.plan.unit(task.unit)
        if outcome is None:
            self.failed[task_id] = error
            unit.status = "failed"
            self.reporter.message(f"task {task_id} failed: {error}", "error")
            save_plan(self.plan, self.plan_path)
            return
        self.finished[task_id] = outcome
        if task.kind == "dataset" and unit.status == "planned":
            unit.status = "dataset"
        elif task.kind == "train" and unit.status in ("planned", "dataset"):
            unit.status = "trained"
        elif task.kind == "score":
            scores = json.loads(self.plan.scores_path(unit.id).read_text(encoding="utf-8"))
            added = decide_fallbacks(self.plan, unit.id, scores) if self.decide else []
            for new in added:
                decision = next(d for d in self.plan.fallbacks if d["unit"] == new.id)
                self.reporter.message(f"shot {decision['shot']}: {decision['reason']}; it gets its own model "
                                      f"(unit {new.id}).", "warning")
            if added:
                write_unit_jobs(self.plan)
                for new in added:
                    self.submit(executor, unit_tasks(self.plan, new))
            for shot in self.settled_shots(unit.id):
                self.submit(executor, infer_tasks(self.plan, shot))
            self._maybe_done(unit.id)
        elif task.kind == "infer":
            self.frames_done += task.frames
            shot = self.plan.shot(task.shot)
            if all(t in self.finished for t in self.tasks if t.startswith(f"{unit.id}:infer:{shot.name}:")):
                shot.status = "inferred"
            self._maybe_done(unit.id)
        save_plan(self.plan, self.plan_path)

    def _maybe_done(self, unit_id: str) -> None:
        unit = self.plan.unit(unit_id)
        infers = [t for t in self.tasks if t.startswith(f"{unit_id}:infer:")]
        if unit.status == "scored" and all(t in self.finished for t in infers):
            unit.status = "done"


def run_one_task(plan_path: str | os.PathLike, task_id: str, reporter: Reporter, retries: int = 0) -> dict:
    """One task of the plan, by id, through the same idempotent runner (Flamenco's exec commands)."""
    from .plan import plan_tasks

    farm = FarmRun(Path(plan_path), reporter, retries=retries, decide=False)
    tasks = {t.id: t for t in plan_tasks(farm.plan)}
    if task_id not in tasks:
        raise FilmRecoveryError(f"no task {task_id!r} in the plan.", where="--task",
                                fix=f"Pick one of {', '.join(list(tasks)[:6])}...")
    write_unit_jobs(farm.plan)
    return run_task(farm.spec(tasks[task_id]))


def decide_from_scores(plan_path: str | os.PathLike) -> list[str]:
    """Read every unit's scores.json and decide the fallbacks (after a farm that ran the score tasks,
    e.g. Flamenco); returns the units added."""
    plan = load_plan(plan_path)
    added = []
    for unit in list(plan.units):
        path = plan.scores_path(unit.id)
        if path.exists() and unit.status in ("planned", "dataset", "trained", "scored"):
            added += [u.id for u in decide_fallbacks(plan, unit.id, json.loads(path.read_text(encoding="utf-8")))]
    write_unit_jobs(plan)
    save_plan(plan, plan_path)
    return added


# --------------------------------------------------------------------------- Flamenco

FLAMENCO_JOB_TYPE = "film-recovery"  # the file name of farm/flamenco/film_recovery.js in the Manager's scripts/


def flamenco_submission(plan_path: str | os.PathLike, python: str = "python3", engine_root: str = "",
                        name: str = "", priority: int = 50, retries: int = 0) -> dict[str, Any]:
    """The body of `POST /api/v3/jobs` for the Film Recovery job type: the plan's tasks as they stand
    (the units and fallbacks decided so far; `ml farm plan.json --decide` adds fallbacks from scores)."""
    from .plan import plan_tasks

    plan = load_plan(plan_path)
    write_unit_jobs(plan)
    tasks = [{"id": t.id, "kind": t.kind, "unit": t.unit, "after": t.after, "frames": t.frames}
             for t in plan_tasks(plan)]
    return {"name": name or f"Film Recovery {plan.name}", "type": FLAMENCO_JOB_TYPE, "priority": int(priority),
            "submitter_platform": sys.platform if sys.platform != "win32" else "windows",
            "settings": {"plan": str(Path(plan_path).resolve()), "python": python,
                         "engine_root": engine_root or str(ENGINE_ROOT), "tasks": json.dumps(tasks),
                         "retries": int(retries)},
            "metadata": {"project": plan.name, "scope": plan.scope, "units": str(len(plan.units))}}


def submit_to_flamenco(manager_url: str, submission: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    """POST the submission to a Flamenco Manager (`<url>/api/v3/jobs`); returns the Manager's answer.
    (Not run against a live Manager in this project's tests: none can run here.)"""
    import urllib.error
    import urllib.request

    url = manager_url.rstrip("/") + "/api/v3/jobs"
    if not manager_url.startswith(("http://", "https://")):
        raise FilmRecoveryError(f"{manager_url!r} is not an http(s) URL.", where="Flamenco Manager URL",
                                fix="Give the Manager's address, e.g. http://flamenco-manager:8080.")
    request = urllib.request.Request(url, data=json.dumps(submission).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise FilmRecoveryError(f"the Manager refused the job (HTTP {exc.code}: {detail}).", where=url,
                                fix="Check that farm/flamenco/film_recovery.js is in the Manager's scripts/ folder "
                                    "and the Manager was restarted.") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise FilmRecoveryError(f"cannot reach the Flamenco Manager ({exc}).", where=url,
                                fix="Check the Manager URL and that the Manager is running.") from exc
