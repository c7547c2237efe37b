"""Pair record (CSV/JSON round trip, checksums, timecode) and the contact sheet layout."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest
from skimage import data, transform

from ml import pairs as table
from ml.contact_sheet import GUTTER, LABEL_HEIGHT, render_contact_sheet, sheet_layout, write_contact_sheet
from ml.errors import JobFileError
from ml.imageio import frame_path, read_image, write_exr
from ml.job import Job, Pair, Plate, save_job

TRICKY = 'comma, "quote", new\nline, cr\r\nlf, tab\t, unicode é→, trailing space '


def _records() -> list[table.PairRecord]:
    return [
        table.PairRecord(source_frame=1001, reference_frame=1003, accepted=True, reason="", timecode="00:00:41:17",
                         shot="1", label="1.01", rationale=TRICKY, reference_type="dvd", compromises="=SUM(A1)",
                         holdout=True, align_score=0.1 + 0.2, source_path="/plates/s.1001.exr",
                         reference_path="/plates/r.1003.exr", source_sha256="ab" * 32, reference_sha256=""),
        table.PairRecord(source_frame=-5, reference_frame=0, accepted=False, reason="near cut at 1013",
                         align_score=float("nan"), reference_type="constructed"),
        table.PairRecord(source_frame=1010, reference_frame=1010, align_score=1e-300, label="  ", shot="010_0040"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_pair_table_round_trip_is_lossless(tmp_path, suffix):
    records = _records()
    path = table.save_records(tmp_path / f"pairs{suffix}", records, "shot")
    back = table.load_records(path)
    assert table.same_records(records, back)
    assert back[0].rationale == TRICKY and back[0].align_score == 0.1 + 0.2 and back[0].holdout is True
    assert back[2].align_score == 1e-300 and back[2].label == "  "
    assert back[0].to_pair() == Pair(**{f.name: getattr(records[0], f.name) for f in dataclasses.fields(Pair)})
    # Saving what was read gives identical bytes.
    again = table.save_records(tmp_path / f"again{suffix}", back, "shot")
    assert again.read_bytes() == path.read_bytes()


def test_table_errors_name_the_cell(tmp_path):
    path = tmp_path / "bad.csv"
    text = table.records_to_csv(_records()[:1]).replace(",dvd,", ",vhs,")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(JobFileError) as err:
        table.load_records(path)
    assert err.value.where.endswith("bad.csv:2.reference_type")
    path.write_text("source_frame,reference_frame,colour\n1,1,red\n", encoding="utf-8")
    with pytest.raises(JobFileError, match="unknown column"):
        table.load_records(path)
    path.write_text("source_frame,accepted\n1,maybe\n", encoding="utf-8")
    with pytest.raises(JobFileError, match="true or false"):
        table.load_records(path)


def test_timecode():
    assert table.timecode(0, 24) == "00:00:00:00"
    assert table.timecode(1001, 24) == "00:00:41:17"
    assert table.timecode(24 * 3600 + 25, 25) == "00:57:37:00"
    assert table.timecode(86399 * 24 + 23, 23.976) == "23:59:59:23"


def _photo_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    photo = transform.resize(data.astronaut().astype(np.float32) / 255.0, (height + 20, width + 10 * n),
                             anti_aliasing=True).astype(np.float32)
    return [photo[10:10 + height, 5 * i:5 * i + width].copy() for i in range(n)]


@pytest.fixture
def plates(tmp_path):
    """Source 1001-1004 at 160x90 and a Reference at 120x68 (graded) on disk, plus a job."""
    frames = _photo_frames(4, 160, 90)
    src, ref = str(tmp_path / "src" / "s.####.exr"), str(tmp_path / "ref" / "r.####.exr")
    for i, frame in enumerate(frames):
        write_exr(frame_path(src, 1001 + i), frame)
        small = transform.resize(frame, (68, 120), anti_aliasing=True).astype(np.float32)
        write_exr(frame_path(ref, 1001 + i), np.clip(small ** 1.4 * [1.1, 0.9, 0.8], 0, 1))
    job = Job(name="t", work_dir=str(tmp_path / "work"),
              source=Plate(path=src, first_frame=1001, last_frame=1004),
              reference=Plate(path=ref, first_frame=1001, last_frame=1004),
              pairs=[Pair(source_frame=1001, reference_frame=1001, shot="1", label="A"),
                     Pair(source_frame=1003, reference_frame=1003, shot="1", label="B", rationale="x")])
    return job, src, ref


def test_checksums_flag_changed_and_missing_files(plates):
    job, src, ref = plates
    records = table.build_records(job)
    assert records[0].timecode == "00:00:41:17" and records[1].rationale == "x"
    assert records[0].source_path == frame_path(src, 1001)
    assert len(records[0].source_sha256) == 64 and records[0].source_sha256 != records[1].source_sha256
    assert table.verify_checksums(records, job) == []
    write_exr(frame_path(ref, 1003), np.zeros((68, 120, 3), np.float32))  # a re-export changed it
    import os

    os.remove(frame_path(src, 1001))
    changes = {(c.source_frame, c.side): c.status for c in table.verify_checksums(records, job)}
    assert changes == {(1003, "reference"): "changed", (1001, "source"): "missing"}


def test_contact_sheet_layout_and_rows(plates, tmp_path):
    job, src, ref = plates
    load_src = lambda f: read_image(frame_path(src, f))  # noqa: E731
    load_ref = lambda f: read_image(frame_path(ref, f))  # noqa: E731
    mismatched = Pair(source_frame=1001, reference_frame=1004, shot="1", label="C", accepted=False)
    rows = job.pairs + [mismatched]
    png, sidecar = write_contact_sheet(tmp_path / "sheet.png", rows, load_src, load_ref, thumb_width=160)
    sheet = read_image(png)
    layout = sheet_layout(3, (160, 90), 160)
    assert sheet.shape == (GUTTER + 3 * (LABEL_HEIGHT + 90 + GUTTER), 3 * 160 + 4 * GUTTER, 3) == \
        (layout.height, layout.width, 3)
    assert sheet_layout(7, (160, 90), 160).height - layout.height == 4 * (LABEL_HEIGHT + 90 + GUTTER)
    meta = json.loads(sidecar.read_text())
    assert [r["source_frame"] for r in meta["rows"]] == [1001, 1003, 1001]
    assert meta["rows"][2]["text"].endswith("REJECTED")
    for row, pair in enumerate(rows):
        top, left = layout.thumb_top(row), layout.column_left(0)
        cell = sheet[top:top + 90, left:left + 160]
        assert np.abs(cell - load_src(pair.source_frame)).max() <= 1.01 / 255  # Source at 1:1
        label = sheet[layout.label_top(row):layout.thumb_top(row), GUTTER:GUTTER + 200]
        assert label.max() > 0.8  # text was drawn
    # Reference column: resampled onto the Source raster (the 120x68 frame fills 160x90).
    ref_cell = sheet[layout.thumb_top(0):layout.thumb_top(0) + 90, layout.column_left(1):layout.column_left(1) + 160]
    assert np.corrcoef(ref_cell.mean(axis=2).ravel(), load_src(1001).mean(axis=2).ravel())[0, 1] > 0.9

    def difference(row: int) -> float:
        top, left = layout.thumb_top(row), layout.column_left(2)
        return float(sheet[top + 10:top + 80, left + 10:left + 150].mean())

    assert difference(2) > 2 * difference(0)  # a wrong Reference frame shows up in the difference


def test_contact_sheet_uses_given_alignment(plates):
    job, src, ref = plates
    load_src = lambda f: read_image(frame_path(src, f))  # noqa: E731
    load_ref = lambda f: read_image(frame_path(ref, f))  # noqa: E731
    shifted = np.array([[160 / 120, 0, 12.0], [0, 90 / 68, 0], [0, 0, 1]])  # 12 px off to the right
    plain, layout = render_contact_sheet(job.pairs[:1], load_src, load_ref, thumb_width=160)
    moved, _ = render_contact_sheet(job.pairs[:1], load_src, load_ref, thumb_width=160, matrices={1001: shifted})
    top, left = layout.thumb_top(0), layout.column_left(2)
    assert moved[top:top + 90, left:left + 160].mean() > plain[top:top + 90, left:left + 160].mean() + 0.05


def _cli(*argv: str) -> list[dict]:
    from ml.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--json", *argv])
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0, events
    return events


def test_pairs_command_export_import_verify_sheet(plates, tmp_path):
    job, src, ref = plates
    job_path = save_job(job, tmp_path / "job.json")
    exported = _cli("pairs", str(job_path), "export", str(tmp_path / "t.csv"))[-1]
    assert exported["pairs"] == 2
    assert _cli("pairs", str(job_path), "verify", str(tmp_path / "t.csv"))[-1]["ok"] is True
    write_exr(frame_path(src, 1003), np.ones((90, 160, 3), np.float32))
    verified = _cli("pairs", str(job_path), "verify", str(tmp_path / "t.csv"))[-1]
    assert not verified["ok"] and [(c["source_frame"], c["status"]) for c in verified["changed"]] == [(1003, "changed")]
    edited = (tmp_path / "t.csv").read_text().replace(",B,x,", ",B,picked by hand,")
    (tmp_path / "t.csv").write_text(edited)
    _cli("pairs", str(job_path), "import", str(tmp_path / "t.csv"))
    from ml.job import load_job

    assert [p.rationale for p in load_job(job_path).pairs] == ["", "picked by hand"]
    sheet = _cli("pairs", str(job_path), "sheet")[-1]
    assert read_image(sheet["sheet"]).shape == (sheet_layout(2, (160, 90), 240).height, 3 * 240 + 4 * GUTTER, 3)
