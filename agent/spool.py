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
    keyframe_bytes  INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0, -- failed tries of the current step
    next_attempt_at REAL NOT NULL DEFAULT 0,   -- epoch seconds; 0 = now
    last_error      TEXT,
    last_error_at   REAL,
    reason          TEXT,                      -- why a row is failed or dropped
    clip_key        TEXT,                      -- OSS object keys, set when uploaded
    keyframe_keys   TEXT,                      -- JSON list
    media_id        TEXT,                      -- search-library MediaId, set when registered
    index_status    TEXT,                      -- the library's index job status
    uploaded_at     REAL,
    registered_at   REAL,
    indexed_at      REAL,
    local_deleted   INTEGER NOT NULL DEFAULT 0 -- 1: the clip's local video is gone (by policy)
);
CREATE INDEX IF NOT EXISTS clips_state ON clips (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS clips_camera ON clips (camera, start_wall);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# What delivery does next with a row in each state; the uploader claims rows by these.
TO_UPLOAD = ("pending", "uploading")
TO_REGISTER = ("uploaded",)
TO_INDEX = ("registered",)
NOT_IN_CLOUD = ("pending", "uploading", "uploaded")
STOP_RECORDING = "recording_stopped"  # meta key: why capture must cut no clips (disk guard)


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
    keyframe_bytes: int
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


def _first(cur: sqlite3.Cursor) -> dict[str, Any] | None:
    """The cursor's first row as a dict of column name to value, or None."""
    values = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], values)) if values else None


def utc_iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


class Spool:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)  # clips: no peeking
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
            "keyframe_bytes": rec.keyframe_bytes,
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

    def row(self, row_id: int) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM clips WHERE id = ?", [row_id])
        return _first(cur)

    def by_media_id(self, media_id: str) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM clips WHERE media_id = ?", [media_id])
        return _first(cur)

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
            yield dict(zip(cols, values))

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
            if row["local_deleted"] and paths[0].exists():
                paths[0].unlink()  # a policy delete cut short: the row already says it is gone
                report.removed.append(self.relative(paths[0]))
            if row["state"] not in LOCAL_STATES or row["local_deleted"]:
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

    # -- delivery ------------------------------------------------------------------------------

    def next_due(
        self, states: tuple[str, ...], now: float, skip: set[int], newest: bool = False
    ) -> dict[str, Any] | None:
        """The oldest (or newest) row in `states` whose next attempt is due, not in `skip`."""
        marks = ", ".join("?" * len(states))
        # Not "id NOT IN (NULL)" for an empty set: that is never true in SQL.
        taboo = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        order = "DESC" if newest else "ASC"
        cur = self.db.execute(
            f"SELECT * FROM clips WHERE state IN ({marks}) AND next_attempt_at <= ?{taboo} "
            f"ORDER BY start_wall {order}, id {order} LIMIT 1",
            [*states, now, *skip],
        )
        return _first(cur)

    def advance(self, row_id: int, from_states: tuple[str, ...], state: str, **fields: Any) -> bool:
        """Move a row on if it is still in one of `from_states`; resets the retry bookkeeping.

        The guard makes every step idempotent: a step re-run after a crash, or raced by a
        `queue retry`, changes nothing twice.
        """
        if state not in STATES:
            raise ValueError(f"unknown spool state {state!r}")
        now = time.time()
        values = {"state": state, "updated_at": now, "attempts": 0, "next_attempt_at": 0, **fields}
        sets = ", ".join(f"{k} = ?" for k in values)
        marks = ", ".join("?" * len(from_states))
        with self.db.conn:
            cur = self.db.conn.execute(
                f"UPDATE clips SET {sets} WHERE id = ? AND state IN ({marks})",
                [*values.values(), row_id, *from_states],
            )
        return cur.rowcount == 1

    def defer(self, row_id: int, error: str, retry_at: float) -> None:
        """A retryable failure: count it, remember why, try again at `retry_at`."""
        now = time.time()
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE clips SET attempts = attempts + 1, last_error = ?, last_error_at = ?, "
                "next_attempt_at = ?, updated_at = ? WHERE id = ?",
                (error, now, retry_at, now, row_id),
            )

    def requeue(self, row_ids: list[int] | None = None) -> int:
        """Failed rows (all, or these ids) go back to the step they failed at. Returns count."""
        where = "state = 'failed'"
        args: list[Any] = []
        if row_ids is not None:
            where += f" AND id IN ({', '.join('?' * len(row_ids)) or 'NULL'})"
            args = list(row_ids)
        now = time.time()
        with self.db.conn:
            cur = self.db.conn.execute(
                "UPDATE clips SET state = CASE WHEN media_id IS NOT NULL THEN 'registered' "
                "WHEN clip_key IS NOT NULL THEN 'uploaded' ELSE 'pending' END, "
                f"reason = NULL, attempts = 0, next_attempt_at = 0, updated_at = ? WHERE {where}",
                [now, *args],
            )
        return cur.rowcount

    def bytes_not_in_cloud(self) -> int:
        marks = ", ".join("?" * len(NOT_IN_CLOUD))
        cur = self.db.execute(
            f"SELECT COALESCE(SUM(clip_bytes + keyframe_bytes), 0) FROM clips "
            f"WHERE state IN ({marks}) AND local_deleted = 0",
            NOT_IN_CLOUD,
        )
        return int(cur.fetchone()[0])

    def oldest(self, states: tuple[str, ...], *, local: bool = True) -> dict[str, Any] | None:
        marks = ", ".join("?" * len(states))
        extra = " AND local_deleted = 0" if local else ""
        cur = self.db.execute(
            f"SELECT * FROM clips WHERE state IN ({marks}){extra} ORDER BY start_wall, id LIMIT 1",
            states,
        )
        return _first(cur)

    def mark_local_deleted(
        self, row_id: int, *, state: str | None = None, reason: str | None = None
    ) -> None:
        sets = "local_deleted = 1, updated_at = ?"
        args: list[Any] = [time.time()]
        if state:
            sets += ", state = ?, reason = ?"
            args += [state, reason]
        with self.db.conn:
            self.db.conn.execute(f"UPDATE clips SET {sets} WHERE id = ?", [*args, row_id])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self.db.conn:
            if value is None:
                self.db.conn.execute("DELETE FROM meta WHERE key = ?", [key])
            else:
                self.db.conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [key, value],
                )
