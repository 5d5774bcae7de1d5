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

import contextlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.durable import fsync_dir

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
    local_deleted   INTEGER NOT NULL DEFAULT 0, -- 1: the clip's local video is gone (by policy)
    start_boot      REAL,                      -- CLOCK_BOOTTIME at the first frame, s
    boot_id         TEXT                       -- the boot start_boot counts from
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
# A wall clock before this (2020-01-01) was never set: a box without an RTC boots at 1970.
# Clips cut then are named and dated again from the boot clock once NTP has set it (retime).
CLOCK_FLOOR = 1_577_836_800.0
_CLIP_STAMP = re.compile(r"_\d{8}T\d{6}Z_")


def boot_clock() -> tuple[float, str | None]:
    """Seconds since boot (immune to wall-clock jumps) and the id of this boot."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = None
    return time.clock_gettime(time.CLOCK_BOOTTIME), boot_id


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
        columns = {c[1] for c in self.db.execute("PRAGMA table_info(clips)").fetchall()}
        for name, kind in (("start_boot", "REAL"), ("boot_id", "TEXT")):
            if name not in columns:  # a spool from before these columns
                self.db.execute(f"ALTER TABLE clips ADD COLUMN {name} {kind}")
        if version != SCHEMA_VERSION:  # a write: not on every open (a full disk refuses it)
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
        boot, boot_id = boot_clock()
        duration = rec.media_end - rec.media_start
        # The boot clock at the first frame, for `retime`: from the wall clock, unless that
        # was set (NTP) while the clip was cut; then from the clip's length (it just ended).
        since_start = now - rec.start_wall
        if not 0 <= since_start <= duration + 120:
            since_start = duration
        row = {
            "clip_id": rec.clip_id,
            "camera": rec.camera,
            "state": "pending",
            "started_at": utc_iso(rec.start_wall),
            "start_wall": rec.start_wall,
            "media_start": rec.media_start,
            "media_end": rec.media_end,
            "duration": duration,
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
            "start_boot": boot - since_start,
            "boot_id": boot_id,
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
            referenced.update(paths)
            referenced.update(p.with_name(p.name + TMP_SUFFIX) for p in paths)
            if row["local_deleted"]:
                # A policy delete cut short: the row already says they are gone (a dropped
                # clip keeps its keyframes).
                gone = paths if row["state"] != "dropped" else paths[:1]
                for p in gone:
                    if p.exists():
                        p.unlink()
                        report.removed.append(self.relative(p))
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
            # Final names appear only after their row is committed, so a file no row names is
            # partial work (.tmp) or the old or new name of a retime cut short.
            for path in clips_dir.rglob("*"):
                if path.is_file() and path not in referenced:
                    path.unlink()
                    report.removed.append(self.relative(path))
        for name in report.renamed:
            log.warning("recovered %s (catalogued before an unclean stop)", name)
        for name in report.removed:
            log.warning("removed partial file %s (left by an unclean stop)", name)
        for clip_id in report.missing:
            log.error("clip %s: its files are gone; marked failed", clip_id)
        return report

    def publish_partial(self, camera: str) -> Recovery:
        """Finish what a camera killed mid-clip (its worker) left; run at its start (it writes
        nothing yet). Rows committed before their files were renamed get them renamed; other
        `.tmp` files of the camera are partial clips and are removed, so a camera that keeps
        crashing does not fill the disk before the agent restarts."""
        report = Recovery()
        referenced: set[Path] = set()
        for row in self.rows(camera=camera):
            paths = [self.absolute(row["clip_path"])]
            paths += [self.absolute(k["path"]) for k in json.loads(row["keyframes"])]
            for p in paths:
                tmp = p.with_name(p.name + TMP_SUFFIX)
                referenced.add(tmp)
                if row["state"] in LOCAL_STATES and not p.exists() and tmp.exists():
                    os.replace(tmp, p)
                    report.renamed.append(self.relative(p))
        camera_dir = self.data_dir / "clips" / camera
        if camera_dir.exists():
            for tmp in camera_dir.rglob("*" + TMP_SUFFIX):
                if tmp not in referenced:
                    tmp.unlink(missing_ok=True)
                    report.removed.append(self.relative(tmp))
        for name in report.renamed:
            log.warning("%s: recovered %s (catalogued before the camera was cut off)", camera, name)
        if report.removed:
            log.warning("%s: removed %d partial file(s)", camera, len(report.removed))
        return report

    def unset_clock_rows(self) -> list[dict[str, Any]]:
        """Clips cut while the wall clock was unset that have not gone to the cloud yet."""
        cur = self.db.execute(
            "SELECT * FROM clips WHERE start_wall < ? AND clip_key IS NULL ORDER BY id",
            [CLOCK_FLOOR],
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, values)) for values in cur]

    def retime(self, row: dict[str, Any], start_wall: float) -> str | None:
        """Name and date a clip cut while the wall clock was unset; the new clip_id.

        None (nothing changed) while its files are still being published. Files are linked
        under their new names first, then the row changes, then the old names go: a crash in
        between leaves only names no row knows, which `recover` removes.
        """
        old_id = row["clip_id"]
        stamp = time.strftime("_%Y%m%dT%H%M%SZ_", time.gmtime(start_wall))
        head, _, tail = old_id.rpartition("_")
        new_id = _CLIP_STAMP.sub(stamp, head + "_", count=1) + tail
        if new_id == old_id:
            return None  # the same second: nothing to rename (and linking onto itself loses it)
        day = time.strftime("%Y-%m-%d", time.gmtime(start_wall))
        keyframes = json.loads(row["keyframes"])
        olds = [self.absolute(row["clip_path"])] + [self.absolute(k["path"]) for k in keyframes]
        if any(p.with_name(p.name + TMP_SUFFIX).exists() for p in olds):
            return None  # catalogued a moment ago, renames still to come
        news = [p.parent.parent / day / p.name.replace(old_id, new_id) for p in olds]
        for old, new in zip(olds, news):
            if old.exists():
                new.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):
                    os.link(old, new)
        for d in {p.parent for p in news if p.parent.exists()}:
            fsync_dir(d)
        moved = [{**k, "path": self.relative(p)} for k, p in zip(keyframes, news[1:])]
        with self.db.conn:
            cur = self.db.conn.execute(
                "UPDATE clips SET clip_id = ?, clip_path = ?, keyframes = ?, start_wall = ?, "
                "started_at = ?, updated_at = ? WHERE id = ? AND clip_id = ?",
                [
                    new_id,
                    self.relative(news[0]),
                    json.dumps(moved),
                    start_wall,
                    utc_iso(start_wall),
                    time.time(),
                    row["id"],
                    old_id,
                ],
            )
        if cur.rowcount != 1:
            return None
        for old in olds:
            old.unlink(missing_ok=True)
        for d in {p.parent for p in olds if p.parent.exists()}:
            fsync_dir(d)
        return new_id

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
        self,
        states: tuple[str, ...],
        now: float,
        skip: set[int],
        newest: bool = False,
        latest: float | None = None,
    ) -> dict[str, Any] | None:
        """The oldest (or newest) row in `states` whose next attempt is due, not in `skip`.

        A retry set for after `latest` (no backoff is that long) was set by a wall clock
        that ran ahead and has been put back since: it is due now, not hours later.
        """
        marks = ", ".join("?" * len(states))
        # Not "id NOT IN (NULL)" for an empty set: that is never true in SQL.
        taboo = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        order = "DESC" if newest else "ASC"
        cur = self.db.execute(
            f"SELECT * FROM clips WHERE state IN ({marks}) "
            f"AND (next_attempt_at <= ? OR next_attempt_at > ?){taboo} "
            f"ORDER BY start_wall {order}, id {order} LIMIT 1",
            [*states, now, now + 1e12 if latest is None else latest, *skip],
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
