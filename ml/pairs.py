"""The pair record: the table of training pairs for traceability (guide: "Maintain a table of
indices/timecodes"; "Record shot IDs, pair indices, and rationale").

Each record is a `job.Pair` plus the Source and Reference frame files and their SHA-256, so a
later run can prove the pairs still point at the same pixels. Tables are written as CSV (for
spreadsheets and editorial) or JSON; both round-trip losslessly. Writes are atomic.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import typing
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import imageio
from .errors import JobFileError
from .imageio import atomic_path, frame_path
from .job import Job, Pair, _convert

SCHEMA = "film_recovery.pairs"
SCHEMA_VERSION = 1


@dataclass
class PairRecord(Pair):
    source_path: str = ""
    reference_path: str = ""
    source_sha256: str = ""      # "" when the file was missing at export
    reference_sha256: str = ""

    def to_pair(self) -> Pair:
        return Pair(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Pair)})


FIELDS = [f.name for f in dataclasses.fields(PairRecord)]
_TYPES = typing.get_type_hints(PairRecord)


def timecode(frame: int, fps: float) -> str:
    """SMPTE non-drop-frame timecode HH:MM:SS:FF of a frame number (frame 0 = 00:00:00:00).
    Fractional rates count at their nominal rate (23.976 -> 24), as non-drop timecode does."""
    rate = max(1, round(fps))
    total = int(frame) % (24 * 3600 * rate)
    seconds, frames = divmod(total, rate)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{frames:02d}"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, or "" when it does not exist (a missing frame is a finding here)."""
    try:
        return imageio.file_sha256(path)
    except FileNotFoundError:
        return ""


def _hash_many(paths: Sequence[str], workers: int = 4) -> list[str]:
    with ThreadPoolExecutor(max_workers=workers) as pool:  # hashlib releases the GIL on big buffers
        return list(pool.map(file_sha256, paths))


def build_records(job: Job, pairs: Sequence[Pair] | None = None, checksums: bool = True) -> list[PairRecord]:
    """Records for `pairs` (default job.pairs): file paths from the plates, timecodes filled in
    where empty (from the Source fps), SHA-256 of both files."""
    pairs = list(job.pairs if pairs is None else pairs)
    records = []
    for pair in pairs:
        fields = dataclasses.asdict(pair)
        if not fields["timecode"]:
            fields["timecode"] = timecode(pair.source_frame, job.source.fps)
        records.append(PairRecord(**fields, source_path=frame_path(job.source.path, pair.source_frame),
                                  reference_path=frame_path(job.reference.path, pair.reference_frame)))
    if checksums and records:
        hashes = _hash_many([r.source_path for r in records] + [r.reference_path for r in records])
        for record, src, ref in zip(records, hashes[:len(records)], hashes[len(records):], strict=True):
            record.source_sha256, record.reference_sha256 = src, ref
    return records


@dataclass
class ChecksumChange:
    source_frame: int
    side: Literal["source", "reference"]
    path: str
    status: Literal["changed", "missing"]
    expected: str
    actual: str


def verify_checksums(records: Sequence[PairRecord], job: Job) -> list[ChecksumChange]:
    """Files that changed or went missing since the records were made. Paths come from the job's
    current plates (so a moved plate with identical frames passes), else from the record."""
    checks: list[tuple[PairRecord, str, str, str]] = []
    for r in records:
        src = frame_path(job.source.path, r.source_frame) if job.source.path else r.source_path
        ref = frame_path(job.reference.path, r.reference_frame) if job.reference.path else r.reference_path
        checks += [(r, "source", src, r.source_sha256), (r, "reference", ref, r.reference_sha256)]
    actual = _hash_many([path for _, _, path, _ in checks])
    changes = []
    for (record, side, path, expected), got in zip(checks, actual, strict=True):
        if not got:
            changes.append(ChecksumChange(record.source_frame, side, path, "missing", expected, ""))  # type: ignore[arg-type]
        elif expected and got != expected:
            changes.append(ChecksumChange(record.source_frame, side, path, "changed", expected, got))  # type: ignore[arg-type]
    return changes


# --- CSV / JSON -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    return str(value)


def _parse_cell(text: str, tp: Any, where: str) -> Any:
    if tp is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise JobFileError(f"expected true or false, got {text!r}.", where=where)
        return text.lower() in ("true", "1", "yes")
    try:
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
    except ValueError:
        raise JobFileError(f"expected a number, got {text!r}.", where=where) from None
    return text


def _record_from_fields(values: dict[str, Any], where: str) -> PairRecord:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise JobFileError(f"unknown column(s) {', '.join(unknown)}.", where=where,
                           fix=f"Columns are: {', '.join(FIELDS)}.")
    for required in ("source_frame", "reference_frame"):
        if required not in values:
            raise JobFileError(f"missing {required}.", where=where, fix="Every pair needs both frame numbers.")
    # Validated with the job schema's own rules (Literal choices, no bool-as-int...).
    return PairRecord(**{name: _convert(value, _TYPES[name], f"{where}.{name}") for name, value in values.items()})


def records_to_csv(records: Iterable[PairRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for record in records:
        writer.writerow([_cell(getattr(record, name)) for name in FIELDS])
    return out.getvalue()


def records_from_csv(text: str, where: str = "pairs.csv") -> list[PairRecord]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = list(reader)
    if not rows:
        raise JobFileError("the table is empty (no header row).", where=where,
                           fix="Export a table with `python -m ml pairs job.json export`.")
    header, records = rows[0], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise JobFileError(f"{len(row)} cells for {len(header)} columns.", where=f"{where}:{number}")
        values = {name: _parse_cell(cell, _TYPES.get(name, str), f"{where}:{number}.{name}")
                  for name, cell in zip(header, row, strict=True)}
        records.append(_record_from_fields(values, f"{where}:{number}"))
    return records


def records_to_json(records: Iterable[PairRecord], job_name: str = "") -> str:
    payload = {"schema": SCHEMA, "version": SCHEMA_VERSION, "job": job_name,
               "pairs": [dataclasses.asdict(r) for r in records]}
    return json.dumps(payload, indent=2, allow_nan=True) + "\n"


def records_from_json(text: str, where: str = "pairs.json") -> list[PairRecord]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobFileError(f"not valid JSON (line {exc.lineno}: {exc.msg}).", where=where) from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise JobFileError(f"not a pair table (schema {SCHEMA!r} expected).", where=where)
    if data.get("version") != SCHEMA_VERSION:
        raise JobFileError(f"unknown version {data.get('version')!r}.", where=where,
                           fix=f"This engine reads version {SCHEMA_VERSION}.")
    pairs = data.get("pairs")
    if not isinstance(pairs, list) or not all(isinstance(p, dict) for p in pairs):
        raise JobFileError("'pairs' must be a list of objects.", where=where)
    return [_record_from_fields(p, f"{where}:pairs[{i}]") for i, p in enumerate(pairs)]


def save_records(path: str | os.PathLike, records: Sequence[PairRecord], job_name: str = "") -> Path:
    """Write a .csv or .json table atomically (the extension picks the format)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        text = records_to_csv(records)
    elif path.suffix.lower() == ".json":
        text = records_to_json(records, job_name)
    else:
        raise JobFileError(f"unknown table format {path.suffix!r}.", where=str(path), fix="Use .csv or .json.")
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return path


def load_records(path: str | os.PathLike) -> list[PairRecord]:
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as handle:  # keep \r inside quoted cells
            text = handle.read()
    except OSError as exc:
        raise JobFileError(f"cannot read ({exc.strerror}).", where=str(path), fix="Check the path.") from exc
    if path.suffix.lower() == ".csv":
        return records_from_csv(text, str(path))
    if path.suffix.lower() == ".json":
        return records_from_json(text, str(path))
    raise JobFileError(f"unknown table format {path.suffix!r}.", where=str(path), fix="Use .csv or .json.")


def same_records(a: Sequence[PairRecord], b: Sequence[PairRecord]) -> bool:
    """Equality that treats NaN align scores as equal (NaN means 'no structure' in align)."""
    def key(r: PairRecord) -> tuple:
        return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in dataclasses.astuple(r))
    return len(a) == len(b) and all(key(x) == key(y) for x, y in zip(a, b, strict=True))
