"""The SQLite spool: the catalog of every clip, and the contract between capture and delivery.

Capture adds a row per finished clip in state `pending`; delivery (a later stage) drains rows
through its own states. What must survive a crash lives here and nowhere else.

Durability: WAL journal with `synchronous=FULL`, so a committed row survives a power cut. A clip
is published in this order: files written under `*.tmp` names and fsync'd → row committed →
files renamed to their final names → directory fsync'd. A crash at any point leaves either
`.tmp` files with no row (partial work: removed at start-up) or a row whose files still carry
`.tmp` names (complete, fsync'd: renamed at start-up). Nothing catalogued is lost.

Paths in rows are relative to the data directory, so the directory can move.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STATES = ("pending", "uploading", "uploaded", "registered", "indexed", "failed", "dropped")
LOCAL_STATES = ("pending", "uploading")  # states whose files must be on disk
TMP_SUFFIX = ".tmp"

SCHEMA = """
CREATE TABLE IF NOT EXISTS clips (
    id              INTEGER PRIMARY KEY,
    clip_id         TEXT NOT NULL UNIQUE,      -- stable name: file stem, object key stem
    camera          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    started_at      TEXT NOT NULL,             -- UTC ISO-8601 of the first frame
    start_wall      REAL NOT NULL,             -- the same, epoch seconds
    media_start     REAL NOT NULL,             -- camera timeline, seconds
    media_end       REAL NOT NULL,
    duration        REAL NOT NULL,
    event_start     REAL NOT NULL,             -- motion within the clip, camera timeline
    event_end       REAL NOT NULL,
    clip_path       TEXT NOT NULL,             -- relative to the data directory
    clip_bytes      INTEGER NOT NULL,
    keyframes       TEXT NOT NULL,             -- JSON [{"path": ..., "t": ...}]
    codec           TEXT NOT NULL,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    frames          INTEGER NOT NULL,
    peak_score      REAL NOT NULL,             -- largest changed fraction of the frame, 0..1
    mean_score      REAL NOT NULL,
    created_at      REAL NOT NULL,             -- epoch seconds the row was committed
    updated_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    reason          TEXT                       -- why a row is failed or dropped
);
CREATE INDEX IF NOT EXISTS clips_state ON clips (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS clips_camera ON clips (camera, start_wall);
"""


@dataclass(frozen=True)
class ClipRecord:
    """What capture knows about a finished clip; paths are final, absolute."""

    clip_id: str
    camera: str
    start_wall: float
    media_start: float
    media_end: float
    event_start: float
    event_end: float
    clip_path: Path
    clip_bytes: int
    keyframes: tuple[tuple[Path, float], ...]
    codec: str
    width: int
    height: int
    frames: int
    peak_score: float
    mean_score: float


@dataclass
class Recovery:
    renamed: list[str] = field(default_factory=list)  # complete files whose rename was cut off
    removed: list[str] = field(default_factory=list)  # partial files of clips never catalogued
    missing: list[str] = field(default_factory=list)  # clip_ids whose files vanished


def utc_iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


class Spool:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / "spool.db"
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=30000")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path}: spool schema {version} is newer than this agent ({SCHEMA_VERSION})"
            )
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.data_dir)

    def absolute(self, rel: str) -> Path:
        return self.data_dir / rel

    def add(self, rec: ClipRecord) -> int:
        """Catalogue a finished clip (its files fsync'd under .tmp names); returns the row id."""
        now = time.time()
        row = {
            "clip_id": rec.clip_id,
            "camera": rec.camera,
            "state": "pending",
            "started_at": utc_iso(rec.start_wall),
            "start_wall": rec.start_wall,
            "media_start": rec.media_start,
            "media_end": rec.media_end,
            "duration": rec.media_end - rec.media_start,
            "event_start": rec.event_start,
            "event_end": rec.event_end,
            "clip_path": self.relative(rec.clip_path),
            "clip_bytes": rec.clip_bytes,
            "keyframes": json.dumps(
                [{"path": self.relative(p), "t": round(t, 3)} for p, t in rec.keyframes]
            ),
            "codec": rec.codec,
            "width": rec.width,
            "height": rec.height,
            "frames": rec.frames,
            "peak_score": rec.peak_score,
            "mean_score": rec.mean_score,
            "created_at": now,
            "updated_at": now,
        }
        with self.db.conn:
            cur = self.db.conn.execute(
                f"INSERT INTO clips ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        return int(cur.lastrowid)

    def rows(self, state: str | None = None, camera: str | None = None) -> Iterator[dict[str, Any]]:
        where, args = [], []
        if state:
            where.append("state = ?")
            args.append(state)
        if camera:
            where.append("camera = ?")
            args.append(camera)
        sql = "SELECT * FROM clips" + (f" WHERE {' AND '.join(where)}" if where else "")
        cur = self.db.execute(sql + " ORDER BY id", args)
        cols = [d[0] for d in cur.description]
        for values in cur:
            yield dict(zip(cols, values, strict=False))

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM clips GROUP BY state"):
            out[state] = n
        return out

    def recover(self, clips_dir: Path) -> Recovery:
        """Make catalog and disk agree after an unclean stop. Run before capture starts."""
        report = Recovery()
        referenced: set[Path] = set()
        for row in self.rows():
            paths = [self.absolute(row["clip_path"])]
            paths += [self.absolute(k["path"]) for k in json.loads(row["keyframes"])]
            referenced.update(p.with_name(p.name + TMP_SUFFIX) for p in paths)
            if row["state"] not in LOCAL_STATES:
                continue
            lost = []
            for p in paths:
                tmp = p.with_name(p.name + TMP_SUFFIX)
                if not p.exists() and tmp.exists():
                    os.replace(tmp, p)
                    report.renamed.append(self.relative(p))
                elif not p.exists():
                    lost.append(self.relative(p))
            if lost:
                report.missing.append(row["clip_id"])
                self.set_state(
                    row["id"], "failed", reason="files missing at start-up: " + ", ".join(lost)
                )
        if clips_dir.exists():
            for tmp in clips_dir.rglob("*" + TMP_SUFFIX):
                if tmp not in referenced:
                    tmp.unlink()
                    report.removed.append(self.relative(tmp))
        for name in report.renamed:
            log.warning("recovered %s (catalogued before an unclean stop)", name)
        for name in report.removed:
            log.warning("removed partial file %s (left by an unclean stop)", name)
        for clip_id in report.missing:
            log.error("clip %s: its files are gone; marked failed", clip_id)
        return report

    def set_state(self, row_id: int, state: str, *, reason: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown spool state {state!r}")
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE clips SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
                (state, reason, time.time(), row_id),
            )
