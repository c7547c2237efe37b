"""`python -m ml <command> [job.json] [options]`: the engine's command line.

Events go to stdout as JSON lines (for the add-on and farm wrappers) or, with --human or on a
terminal, as a progress bar. Exit codes: 0 ok, 2 bad input (the message says what to fix),
3 parity QC failed, 130 cancelled, 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from .errors import Cancelled, FilmRecoveryError
from .events import Reporter, install_cancel_handler

# name -> module under ml.commands. Order is the order of the workflow.
COMMANDS = [
    "init", "validate", "env", "sample",     # set-up
    "qc", "balance", "conform",              # Stage 0: ingest
    "suggest", "match", "pairs",             # Stage 1: pairs
    "align",                                 # Stage 2: alignment and shared crop
    "dataset",                               # Stage 3: ground truth
    "train",                                 # training
    "infer",                                 # inference on the full Source
    "baseline", "evaluate",                  # comparison and report
    "run",                                   # the whole sequence above on one job.json
    "reel", "plan", "score", "farm",         # film scale: shot plan, per-shot scores, farm runs
]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_QC_FAILED, EXIT_CANCELLED = 0, 1, 2, 3, 130


def _command_module(name: str):
    return importlib.import_module(f".commands.{name.replace('-', '_')}", __package__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml",
        description="Film Recovery engine. Each command reads a job.json (the add-on writes one; "
                    "`init` makes one) and prints JSON-lines events, or a progress bar with --human.")
    parser.add_argument("--human", action="store_true", help="progress bar and readable messages "
                        "instead of JSON lines (the default on a terminal)")
    parser.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name in COMMANDS:
        module = _command_module(name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        if module.NEEDS_JOB:
            cmd.add_argument("job", help="path to job.json")
        module.add_arguments(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    human = args.human or (sys.stdout.isatty() and not args.json)
    reporter = Reporter(human=human)
    install_cancel_handler()
    module = _command_module(args.command)
    try:
        job = None
        if module.NEEDS_JOB:
            from .job import load_job
            from .validation import require_valid_job

            job = load_job(args.job)
            if args.command != "validate":  # validate lists every problem itself
                require_valid_job(job, args.command)
        module.run(args, job, reporter)
        return EXIT_OK
    except FilmRecoveryError as exc:
        reporter.error(exc.as_event())
        return exc.exit_code
    except OSError as exc:  # disk full, permissions, a file where a folder should be
        where = exc.filename or "file system"
        reporter.error(FilmRecoveryError(f"{exc.strerror or exc}.", where=str(where),
                                         fix="Check the path, free disk space and write permission.").as_event())
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        reporter.error({"type": "error", "message": "Cancelled; outputs in flight were discarded.",
                        "cancelled": True})
        return EXIT_CANCELLED
    except Exception as exc:  # an engine bug: keep the traceback for the report
        reporter.error({"type": "error", "message": f"Unexpected failure: {exc!r}",
                        "traceback": traceback.format_exc()})
        return EXIT_FAILED
