"""`run`: the whole pipeline on one job.json, stage by stage, deciding what the add-on decides.

Each stage calls that command's own `run` in this process, with the command's own defaults (as
`python -m ml <stage> job.json` would), and then keeps what the add-on's operator keeps:

  qc        parity QC; a hard failure stops the run here (exit 3, as `qc` exits)
  balance   estimate the neutral pre-balance, then enable and write it (`balance --write`)
  suggest   suggest pairs (--scope, default shot) and merge them into job.pairs by Source frame
  align     solve, then apply the solves, pair scores and crop proposal (`align --apply`)
  dataset   build the dataset; job.dataset_dir records where
  train     train (resuming); job.model_path records the best model (else the final one)
  infer, baseline, evaluate   as their commands (evaluate scores against --truth when given)

The job is read again from job.json before every stage, because stages write it. Progress is
forwarded with the stage's name; the first failing stage stops the run with that stage's own
error (and exit code). The result lists the stages run with their times and their own results.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import time
from typing import Any

from ..errors import FilmRecoveryError
from ..events import Reporter
from ..job import Job, Pair, load_job, save_job
from ..validation import require_valid_job

HELP = ("run the pipeline (qc, balance, suggest, align, dataset, train, infer, baseline, evaluate) on one "
        "job.json with the add-on's defaults and decisions; stops at the first stage that fails")
NEEDS_JOB = True

STAGES = ("qc", "balance", "suggest", "align", "dataset", "train", "infer", "baseline", "evaluate")


def add_arguments(parser) -> None:
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated stages, run in workflow order (default: all of "
                             f"{', '.join(STAGES)})")
    parser.add_argument("--scope", choices=["shot", "scene", "sequence"], default="shot",
                        help="pair scope for suggest (the Pairs panel's scope; default shot)")
    parser.add_argument("--truth", default="",
                        help="clean frames for evaluate (e.g. the sample shot's truth/ folder)")


def parse_stages(text: str) -> list[str]:
    """The stages named in `text`, in workflow order; unknown names are refused."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown or not names:
        raise FilmRecoveryError(f"unknown stage(s) {', '.join(unknown) or '(none given)'}.", where="--stages",
                                fix=f"Choose from {','.join(STAGES)}.")
    return [s for s in STAGES if s in names]


class StageReporter(Reporter):
    """Forwards one stage's events to the run's reporter, its progress named after the stage,
    and keeps the stage's result (the run decides with it, as the add-on's on_result does)."""

    def __init__(self, outer: Reporter, stage: str):
        super().__init__(stream=outer.stream, human=outer.human)
        self.outer, self.stage = outer, stage
        self.payload: dict[str, Any] = {}

    def emit(self, event: dict) -> None:
        if event.get("type") == "result":
            self.payload = {k: v for k, v in event.items() if k != "type"}
            return
        if event.get("type") == "progress":
            inner = str(event.get("stage", ""))
            event = {**event, "stage": self.stage if inner in ("", self.stage) else f"{self.stage}: {inner}"}
        self.outer.emit(event)


def stage_arguments(stage: str, job_path: str, extra: list[str]) -> argparse.Namespace:
    """The stage command's arguments with its own defaults, as its command line would parse them."""
    parser = argparse.ArgumentParser(prog=f"python -m ml {stage}")
    parser.add_argument("job")
    importlib.import_module(f"{__package__}.{stage}").add_arguments(parser)
    return parser.parse_args([job_path, *extra])


def merge_pairs(existing: list[Pair], suggested: list[Pair]) -> list[Pair]:
    """The add-on's Suggest Pairs merge: a suggestion replaces the pair of its Source frame, the
    rest are added after; pairs the suggestion does not mention stay."""
    merged = list(existing)
    index = {p.source_frame: i for i, p in enumerate(merged)}
    for pair in suggested:
        if pair.source_frame in index:
            merged[index[pair.source_frame]] = pair
        else:
            index[pair.source_frame] = len(merged)
            merged.append(pair)
    return merged


def _pair(data: dict) -> Pair:
    names = {f.name for f in dataclasses.fields(Pair)}
    return Pair(**{k: v for k, v in data.items() if k in names})


def _extra_arguments(stage: str, args) -> list[str]:
    if stage == "balance":
        return ["--write"]
    if stage == "align":
        return ["--apply"]
    if stage == "suggest":
        return ["--scope", args.scope]
    if stage == "evaluate" and args.truth:
        return ["--truth", args.truth]
    return []


def _after_stage(stage: str, payload: dict, job_path: str) -> None:
    """What the add-on's operator stores after the stage, kept in job.json."""
    if stage == "suggest":
        job = load_job(job_path)
        job.pairs = merge_pairs(job.pairs, [_pair(p) for p in payload.get("pairs", [])])
        if payload.get("reference_fps"):  # a speed-up transfer: every stage maps it frame for frame
            job.reference.fps = payload["reference_fps"]
        save_job(job, job_path)
    elif stage == "dataset" and payload.get("dataset_dir"):
        job = load_job(job_path)
        job.dataset_dir = str(payload["dataset_dir"])
        save_job(job, job_path)
    elif stage == "train":
        model = payload.get("best_model") or payload.get("final_model")
        if model:
            job = load_job(job_path)
            job.model_path = str(model)
            save_job(job, job_path)


def run(args, job: Job, reporter) -> None:
    stages = parse_stages(args.stages)
    job_path = str(args.job)
    done: list[dict[str, Any]] = []
    started = time.monotonic()
    for index, stage in enumerate(stages, start=1):
        reporter.message(f"stage {index}/{len(stages)}: {stage}")
        stage_reporter = StageReporter(reporter, stage)
        stage_started = time.monotonic()
        try:
            module = importlib.import_module(f"{__package__}.{stage}")
            stage_args = stage_arguments(stage, job_path, _extra_arguments(stage, args))
            stage_job = load_job(job_path)
            require_valid_job(stage_job, stage)  # the checks `python -m ml <stage>` makes
            module.run(stage_args, stage_job, stage_reporter)
            _after_stage(stage, stage_reporter.payload, job_path)
        except FilmRecoveryError:
            ran = ", ".join(f"{d['stage']} {d['seconds']:.1f} s" for d in done) or "none"
            reporter.message(f"run stopped at stage '{stage}' (completed: {ran})", level="error")
            raise
        seconds = time.monotonic() - stage_started
        done.append({"stage": stage, "seconds": round(seconds, 3), "result": stage_reporter.payload})
        reporter.metric("stage_seconds", seconds, stage=stage)
    reporter.result(job=job_path, stages=[d["stage"] for d in done],
                    times={d["stage"]: d["seconds"] for d in done},
                    total_seconds=round(time.monotonic() - started, 3),
                    results={d["stage"]: d["result"] for d in done})
