"""`qc`: parity QC of Source and Reference; the report goes to work_dir/qc/qc.json."""

from __future__ import annotations

from ..errors import QCFailed
from ..qc import qc_report_path, run_qc, write_qc_report

HELP = ("parity QC of Source and Reference (sizes, frames, channels, 0-1 range, NaN/Inf, flicker, "
        "splice flashes, cast); writes work_dir/qc/qc.json; exits 3 when a check fails")
NEEDS_JOB = True


def add_arguments(parser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="frame reader threads (default: 2 x cores)")


def run(args, job, reporter) -> None:
    report = run_qc(job, reporter, threads=args.threads)
    path = write_qc_report(report, qc_report_path(job))
    for item in report["findings"]:
        if item["status"] != "pass":
            reporter.message(item["message"], level="error" if item["status"] == "fail" else "warning")
    reporter.result(status=report["status"], findings=report["findings"], path=str(path))
    failed = [item for item in report["findings"] if item["status"] == "fail"]
    if failed:  # exit 3: a pipeline script can tell, and later stages refuse until it is fixed
        problem, _, fix = failed[0]["message"].partition(" Fix: ")
        raise QCFailed(f"parity QC failed ({len(failed)} check{'s' if len(failed) > 1 else ''}): {problem}",
                       where=str(path), fix=fix or "Repair the plates or the recipe, then run QC again.")
