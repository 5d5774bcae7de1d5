"""The spool on real SQLite files: durable rows, and recovery after an unclean stop."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from agent.spool import ClipRecord, KeyframeFile, Spool, State
from agent.spool_repair import publish_partial, recover, retime
from tests.support.clip_records import record


def files(rec: ClipRecord) -> list[Path]:
    return [rec.clip_path] + [p for p, _ in rec.keyframes]


def write_tmp(rec: ClipRecord) -> None:
    for p in files(rec):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.with_name(p.name + ".tmp").write_bytes(b"x")


def test_rows_are_durable_with_relative_paths_and_wal(tmp_path):
    spool = Spool(tmp_path)
    rec = record(tmp_path, "cam_1")
    spool.add(rec)
    spool.close()
    conn = sqlite3.connect(tmp_path / "spool.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT * FROM clips").fetchone()
    assert row["state"] == "pending" and row["attempts"] == 0
    assert row["clip_path"] == "clips/cam/2026-11-24/cam_1.mp4"
    assert row["started_at"] == "2026-11-18T11:06:40.250Z"
    assert row["duration"] == 10.0
    assert [k["path"] for k in json.loads(row["keyframes"])][1].endswith("cam_1_1.jpg")


def test_rows_come_back_typed_with_their_json_columns_decoded(tmp_path):
    spool = Spool(tmp_path)
    row_id = spool.add(record(tmp_path, "cam_1"))
    row = spool.row(row_id)
    assert row.state is State.PENDING and row.state == "pending" and not row.local_deleted
    assert row.keyframes[1] == KeyframeFile("clips/cam/2026-11-24/cam_1_1.jpg", 14.0)
    assert row.keyframe_keys is None
    assert spool.files(row)[0] == tmp_path / "clips/cam/2026-11-24/cam_1.mp4"
    spool.advance(row_id, (State.PENDING,), State.UPLOADED, keyframe_keys=["k0", "k1"])
    row = spool.row(row_id)
    assert row.state is State.UPLOADED and row.keyframe_keys == ("k0", "k1")
    data = row.as_json()
    assert list(data)[:3] == ["id", "clip_id", "camera"] and data["state"] == "uploaded"
    assert data["keyframes"][0] == {"path": "clips/cam/2026-11-24/cam_1_0.jpg", "t": 13.0}
    assert data["keyframe_keys"] == ["k0", "k1"] and data["local_deleted"] == 0


def test_recover_finishes_a_publish_cut_short_by_a_crash(tmp_path):
    spool = Spool(tmp_path)
    rec = record(tmp_path, "cam_1")
    write_tmp(rec)
    spool.add(rec)  # crash here: committed, not yet renamed
    report = recover(Spool(tmp_path), tmp_path / "clips")
    assert all(p.exists() for p in files(rec))
    assert len(report.renamed) == 3 and not report.missing
    assert next(spool.rows()).state == "pending"


def test_recover_removes_partial_files_of_uncatalogued_clips(tmp_path):
    spool = Spool(tmp_path)
    rec = record(tmp_path, "cam_2")
    write_tmp(rec)  # crash here: files written, no row
    report = recover(spool, tmp_path / "clips")
    assert len(report.removed) == 3
    assert not list((tmp_path / "clips").rglob("*.tmp"))


def test_recover_flags_rows_whose_files_vanished(tmp_path):
    spool = Spool(tmp_path)
    spool.add(record(tmp_path, "cam_3"))
    report = recover(spool, tmp_path / "clips")
    assert report.missing == ["cam_3"]
    row = next(spool.rows())
    assert row.state == "failed" and "missing" in row.reason


def test_counts_cover_every_state(tmp_path):
    spool = Spool(tmp_path)
    spool.add(record(tmp_path, "a"))
    counts = spool.counts()
    assert counts["pending"] == 1 and counts["registered"] == 0


def test_a_clip_cut_before_the_clock_was_set_is_renamed_and_dated_from_the_boot_clock(tmp_path):
    spool = Spool(tmp_path)
    clip_id = "cam_19700101T010005Z_a1b2c3"
    rec = record(tmp_path, clip_id)
    rec = ClipRecord(**{**rec.__dict__, "start_wall": 3605.5})
    moved = [
        p.parent.parent / "1970-01-01" / p.name for p in files(rec)
    ]  # where a 1970 clock files it
    rec = ClipRecord(
        **{
            **rec.__dict__,
            "clip_path": moved[0],
            "keyframes": tuple((p, t) for p, (_, t) in zip(moved[1:], rec.keyframes)),
        }
    )
    write_tmp(rec)
    row_id = spool.add(rec)
    recover(spool, tmp_path / "clips")  # publishes the .tmp files
    [row] = spool.unset_clock_rows()
    assert row.start_boot is not None and row.boot_id
    new_id = retime(spool, row, 1_795_000_000.25)
    assert new_id == "cam_20261118T110640Z_a1b2c3"
    row = spool.row(row_id)
    assert row.clip_id == new_id and row.started_at == "2026-11-18T11:06:40.250Z"
    paths = [row.clip_path] + [k.path for k in row.keyframes]
    assert paths[0] == f"clips/cam/2026-11-18/{new_id}.mp4"
    assert all((tmp_path / p).exists() for p in paths), "renamed files missing"
    assert not any(p.exists() for p in moved), "old names left behind"
    assert spool.unset_clock_rows() == []


def test_recovery_removes_files_no_row_names(tmp_path):
    spool = Spool(tmp_path)
    rec = record(tmp_path, "cam_2")
    write_tmp(rec)
    spool.add(rec)
    stray = tmp_path / "clips" / "cam" / "2026-11-24" / "cam_20261124T000000Z_ffffff.mp4"
    stray.write_bytes(b"left by a rename cut short")
    report = recover(spool, tmp_path / "clips")
    assert not stray.exists() and "clips/cam/2026-11-24/" + stray.name in report.removed
    assert all(p.exists() for p in files(rec)), "a catalogued clip's files were removed"


def test_a_restarted_camera_publishes_its_catalogued_clip_and_removes_partial_ones(tmp_path):
    spool = Spool(tmp_path)
    done = record(tmp_path, "cam_3")  # committed, then the camera was killed before renaming
    write_tmp(done)
    spool.add(done)
    partial = tmp_path / "clips" / "cam" / "2026-11-24" / "cam_4.mp4.tmp"  # killed mid-write
    partial.write_bytes(b"half a clip")
    report = publish_partial(spool, "cam")
    assert all(p.exists() for p in files(done)), "the catalogued clip was not published"
    assert not partial.exists(), "a partial clip was left to fill the disk"
    assert report.removed == ["clips/cam/2026-11-24/cam_4.mp4.tmp"]
