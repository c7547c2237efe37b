"""docs/job-format.md, generated from the schema in ml/job.py so the two cannot drift.

    python -m ml.job_format > docs/job-format.md

A test regenerates the page and compares it with the file.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Literal

from .job import SCHEMA, SCHEMA_VERSION, Job


def _type_text(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type_text(item)}"
    if origin is dict:
        _, item = typing.get_args(tp)
        return f"object of {_type_text(item)}"
    if dataclasses.is_dataclass(tp):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return {int: "integer", float: "number", bool: "true/false", str: "text"}.get(tp, str(tp))


def _range_text(meta: Any) -> str:
    parts = []
    if meta.get("choices") is not None:
        parts.append("one of " + ", ".join(json.dumps(c) for c in meta["choices"]))
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        parts.append(f"{low:g} to {high:g}")
    elif low is not None:
        parts.append(f"at least {low:g}")
    elif high is not None:
        parts.append(f"at most {high:g}")
    if meta.get("length") is not None:
        parts.append(f"{meta['length']} values")
    return "; ".join(parts)


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{json.dumps(f.default)}`"
    value = f.default_factory()  # type: ignore[misc]
    if dataclasses.is_dataclass(value):
        return "(object)"
    return f"`{json.dumps(value)}`"


def _sections(cls: type, seen: list[type]) -> None:
    if cls in seen:
        return
    seen.append(cls)
    for tp in typing.get_type_hints(cls).values():
        for inner in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(inner):
                _sections(inner, seen)


def job_format_markdown() -> str:
    lines = [
        "# job.json format",
        "",
        "<!-- Generated from ml/job.py by `python -m ml.job_format > docs/job-format.md`; do not edit. -->",
        "",
        f"Every engine command reads a job.json: `schema` is `{SCHEMA}`, `schema_version` {SCHEMA_VERSION}. "
        "`python -m ml init job.json` writes a complete one; the add-on writes one from the scene recipe "
        "for every job. Every field must be present (unknown fields are refused), except those marked *added*: "
        "a job file written before them takes their default. Loading checks each "
        "field's type and range below (NaN and Inf are never accepted); `python -m ml validate job.json` "
        "and every command also check the job as a whole before any work: every plate frame present, "
        "accepted pairs inside the plates and unique, warps invertible, the crop inside the Source raster.",
        "",
    ]
    classes: list[type] = []
    _sections(Job, classes)
    for cls in classes:
        hints = typing.get_type_hints(cls)
        title = "Job (the top level)" if cls is Job else cls.__name__
        lines += [f"## {title}", ""]
        if cls is not Job and cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            lines += [" ".join(cls.__doc__.split()), ""]
        lines += ["| field | type | range | default | meaning |", "|---|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            lines.append(f"| `{f.name}` | {_type_text(hints[f.name])} | {_range_text(f.metadata)} | "
                         f"{_default_text(f)} | {f.metadata.get('doc', '')}"
                         f"{' *Added:* may be absent (the default).' if f.metadata.get('added') else ''} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(job_format_markdown(), end="")
