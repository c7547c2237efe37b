"""`farm`: run a plan (ml plan) as a Dask task graph, or serially, with idempotent retried tasks."""

from __future__ import annotations

from pathlib import Path

HELP = ("run plan.json: per unit dataset -> train -> per-shot score (shots that lose get their own unit), "
        "then inference chunks with each shot's model; on an embedded Dask LocalCluster (--local N), a running "
        "scheduler (--scheduler tcp://host:8786) or --serial; finished tasks are reused")
NEEDS_JOB = False


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan.json (from `python -m ml plan job.json`)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", type=int, default=2, help="embedded local Dask cluster of N workers (default 2)")
    where.add_argument("--scheduler", default="", help="a running Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--serial", action="store_true", help="no Dask: run the tasks one after another here")
    parser.add_argument("--local-gpus", default="", help="local cluster: GPU indices for the workers in turn "
                        "(e.g. 0,1 gives worker 1 CUDA_VISIBLE_DEVICES=0, worker 2 =1)")
    parser.add_argument("--unit", action="append", default=[],
                        help="run only this unit (and the shot units it falls back to); repeatable")
    parser.add_argument("--retries", type=int, default=2, help="retries of a failed task (default 2)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per task (OMP_NUM_THREADS; default: the engine's own choice). On a shared "
                             "CPU, 1 thread per task and one task per core is much faster than oversubscribing")
    parser.add_argument("--no-fallback", action="store_true", help="score the units but decide no shot fallbacks")
    parser.add_argument("--task", default="", help="run one task of the plan by id (e.g. sequence:train) and exit "
                        "(what the Flamenco job type's commands run)")
    parser.add_argument("--flamenco", action="store_true",
                        help="print the Flamenco job submission (POST /api/v3/jobs body) for the plan and exit")
    parser.add_argument("--python", default="python3", help="--flamenco: the workers' Python with torch")
    parser.add_argument("--decide", action="store_true",
                        help="decide the shot fallbacks from the units' scores.json files and exit")


def run(args, job, reporter) -> None:
    from ..errors import FilmRecoveryError
    from ..farm import DaskExecutor, FarmRun, SerialExecutor, connect, decide_from_scores, run_one_task

    if args.threads < 0:
        raise FilmRecoveryError(f"{args.threads} threads.", where="--threads", fix="Give 0 (automatic) or more.")
    if args.retries < 0:
        raise FilmRecoveryError(f"{args.retries} retries.", where="--retries", fix="Give 0 or more.")
    if args.task:
        outcome = run_one_task(args.plan, args.task, reporter, args.retries)
        reporter.result(**outcome)
        return
    if args.flamenco:
        from ..farm import flamenco_submission

        reporter.result(**flamenco_submission(args.plan, python=args.python))
        return
    if args.decide:
        added = decide_from_scores(args.plan)
        reporter.result(plan=str(Path(args.plan).resolve()), added_units=added)
        return
    gpus = [g.strip() for g in args.local_gpus.split(",") if g.strip()]
    local_gpus = {}
    farm = FarmRun(Path(args.plan), reporter, retries=args.retries, units=args.unit, decide=not args.no_fallback,
                   threads=args.threads)
    if args.serial:
        executor = SerialExecutor()
    else:
        client, cluster = connect(args.scheduler, args.local)
        if cluster is not None and gpus:
            names = sorted(client.scheduler_info()["workers"].values(), key=lambda w: str(w.get("name")))
            local_gpus = {str(w["name"]): gpus[i % len(gpus)] for i, w in enumerate(names)}
        farm.local_gpus = local_gpus
        executor = DaskExecutor(client, args.retries, cluster)
        reporter.message(f"Dask: {len(client.scheduler_info()['workers'])} worker(s) at "
                         f"{client.scheduler.address}" + (" (GPU resources)" if executor.gpu_workers else ""))
    try:
        summary = farm.run(executor)
    finally:
        executor.close()
    reporter.result(**summary)
