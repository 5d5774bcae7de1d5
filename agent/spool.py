"""The SQLite spool: the catalog of every clip, and the contract between capture and delivery.

Capture adds a row per finished clip in state `pending`; delivery (a later stage) drains rows
through its own states. What must survive a crash lives here and nowhere else. Rows come out
as frozen `ClipRow`s, their JSON columns decoded here and nowhere else.

Durability: WAL journal with `synchronous=FULL`, so a committed row survives a power cut. A clip
is published in this order: files written under `*.tmp` names and fsync'd → row committed →
files renamed to their final names → directory fsync'd. A crash at any point leaves either
`.tmp` files with no row (partial work: removed at start-up) or a row whose files still carry
`.tmp` names (complete, fsync'd: renamed at start-up). Nothing catalogued is lost. The repairs
(start-up recovery, clips cut while the wall clock was unset) are in `agent/spool_repair.py`.

Paths in rows are relative to the data directory, so the directory can move.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import sqlite_utils

from agent import layout
from agent.timestamps import utc_iso

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class State(str, Enum):
    """Where a clip is on its way to the cloud; stored as these very strings."""

    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    REGISTERED = "registered"
    INDEXED = "indexed"
    FAILED = "failed"
    DROPPED = "dropped"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


STATES = tuple(State)
LOCAL_STATES = (State.PENDING, State.UPLOADING)  # states whose files must be on disk

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

# What delivery does next with a row in each state; the delivery loop claims rows by these.
TO_UPLOAD = (State.PENDING, State.UPLOADING)
TO_REGISTER = (State.UPLOADED,)
TO_INDEX = (State.REGISTERED,)
NOT_IN_CLOUD = (State.PENDING, State.UPLOADING, State.UPLOADED)
STOP_RECORDING = "recording_stopped"  # meta key: why capture must cut no clips (disk guard)
# A wall clock before this (2020-01-01) was never set: a box without an RTC boots at 1970.
# Clips cut then are named and dated again from the boot clock once NTP has set it (retime).
CLOCK_FLOOR = 1_577_836_800.0


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


@dataclass(frozen=True)
class KeyframeFile:
    path: str  # relative to the data directory
    t: float  # camera timeline, seconds


@dataclass(frozen=True)
class ClipRow:
    """A catalogued clip as the spool holds it (fields in column order); paths relative.

    The JSON columns are decoded once, here. A column that does not decode (a damaged row)
    raises its error where it is used, as reading it would: the rest of the row stays usable.
    """

    id: int
    clip_id: str
    camera: str
    state: State
    started_at: str
    start_wall: float
    media_start: float
    media_end: float
    duration: float
    event_start: float
    event_end: float
    clip_path: str
    clip_bytes: int
    _keyframes: tuple[KeyframeFile, ...] | str  # str: the column's text, undecodable
    codec: str
    width: int
    height: int
    frames: int
    peak_score: float
    mean_score: float
    created_at: float
    updated_at: float
    keyframe_bytes: int
    attempts: int
    next_attempt_at: float
    last_error: str | None
    last_error_at: float | None
    reason: str | None
    clip_key: str | None
    _keyframe_keys: tuple[str, ...] | str | None
    media_id: str | None
    index_status: str | None
    uploaded_at: float | None
    registered_at: float | None
    indexed_at: float | None
    local_deleted: bool
    start_boot: float | None
    boot_id: str | None

    @property
    def keyframes(self) -> tuple[KeyframeFile, ...]:
        return _decoded(self._keyframes, _keyframe_files)

    @property
    def keyframe_keys(self) -> tuple[str, ...] | None:
        return _decoded(self._keyframe_keys, tuple)

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> ClipRow:
        values = {k: v for k, v in columns.items() if k not in ("keyframes", "keyframe_keys")}
        values.update(state=State(values["state"]), local_deleted=bool(values["local_deleted"]))
        keys = columns["keyframe_keys"]
        return cls(
            **values,
            _keyframes=_decode(columns["keyframes"], _keyframe_files),
            _keyframe_keys=None if keys is None else _decode(keys, tuple),
        )

    def as_json(self) -> dict[str, Any]:
        """The row as JSON-ready data, column by column (what `queue --json` prints)."""
        out = {f.name.lstrip("_"): getattr(self, f.name) for f in dataclasses.fields(self)}
        keys = self.keyframe_keys
        out.update(
            state=self.state.value,
            keyframes=[dataclasses.asdict(k) for k in self.keyframes],
            keyframe_keys=None if keys is None else list(keys),
            local_deleted=int(self.local_deleted),
        )
        return out


def _keyframe_files(items: list[dict[str, Any]]) -> tuple[KeyframeFile, ...]:
    return tuple(KeyframeFile(**k) for k in items)


def _decode(text: str, shape: Any) -> Any:
    """A JSON column in `shape`, or its text when it does not decode (see `_decoded`)."""
    try:
        return shape(json.loads(text))
    except (ValueError, TypeError):
        return text


def _decoded(value: Any, shape: Any) -> Any:
    return shape(json.loads(value)) if isinstance(value, str) else value


@dataclass
class Recovery:
    renamed: list[str] = dataclasses.field(default_factory=list)  # complete files, rename cut
    removed: list[str] = dataclasses.field(default_factory=list)  # partial files, no row
    missing: list[str] = dataclasses.field(default_factory=list)  # clip_ids whose files vanished


def _clip_rows(cur: sqlite3.Cursor) -> Iterator[ClipRow]:
    cols = [d[0] for d in cur.description]
    for values in cur:
        yield ClipRow.from_columns(dict(zip(cols, values)))


def _marks(values: tuple | list | set) -> str:
    return ", ".join("?" * len(values))


def _columns(rec: ClipRecord, relative: Any, now: float) -> dict[str, Any]:
    """The new row for `rec`, committed at `now`."""
    boot, boot_id = boot_clock()
    duration = rec.media_end - rec.media_start
    # The boot clock at the first frame, for `retime`: from the wall clock, unless that
    # was set (NTP) while the clip was cut; then from the clip's length (it just ended).
    since_start = now - rec.start_wall
    if not 0 <= since_start <= duration + 120:
        since_start = duration
    keyframes = [{"path": relative(p), "t": round(t, 3)} for p, t in rec.keyframes]
    return {
        "clip_id": rec.clip_id,
        "camera": rec.camera,
        "state": State.PENDING.value,
        "started_at": utc_iso(rec.start_wall),
        "start_wall": rec.start_wall,
        "media_start": rec.media_start,
        "media_end": rec.media_end,
        "duration": duration,
        "event_start": rec.event_start,
        "event_end": rec.event_end,
        "clip_path": relative(rec.clip_path),
        "clip_bytes": rec.clip_bytes,
        "keyframe_bytes": rec.keyframe_bytes,
        "keyframes": json.dumps(keyframes),
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


def _check(state: str) -> str:
    if state not in STATES:
        raise ValueError(f"unknown spool state {state!r}")
    return str(state)


class Spool:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)  # clips: no peeking
        self.path = layout.spool_db(self.data_dir)
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

    def files(self, row: ClipRow) -> list[Path]:
        """The clip's video, then its keyframes, as absolute paths."""
        return [self.absolute(row.clip_path)] + [self.absolute(k.path) for k in row.keyframes]

    def _write(self, sql: str, args: Any) -> sqlite3.Cursor:
        with self.db.conn:
            return self.db.conn.execute(sql, args)

    def _select(self, where: str, args: Any, order: str = "id") -> Iterator[ClipRow]:
        cur = self.db.execute(f"SELECT * FROM clips WHERE {where} ORDER BY {order}", args)
        return _clip_rows(cur)

    def add(self, rec: ClipRecord) -> int:
        """Catalogue a finished clip (its files fsync'd under .tmp names); returns the row id."""
        row = _columns(rec, self.relative, time.time())
        sql = f"INSERT INTO clips ({', '.join(row)}) VALUES ({_marks(row)})"
        return int(self._write(sql, list(row.values())).lastrowid)

    def row(self, row_id: int) -> ClipRow | None:
        return next(self._select("id = ?", [row_id]), None)

    def by_media_id(self, media_id: str) -> ClipRow | None:
        return next(self._select("media_id = ?", [media_id]), None)

    def rows(self, state: str | None = None, camera: str | None = None) -> Iterator[ClipRow]:
        where, args = ["1"], []
        if state:
            where.append("state = ?")
            args.append(str(state))
        if camera:
            where.append("camera = ?")
            args.append(camera)
        return self._select(" AND ".join(where), args)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in STATES}
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM clips GROUP BY state"):
            out[state] = n
        return out

    def unset_clock_rows(self) -> list[ClipRow]:
        """Clips cut while the wall clock was unset that have not gone to the cloud yet."""
        return list(self._select("start_wall < ? AND clip_key IS NULL", [CLOCK_FLOOR]))

    def rename(
        self, row: ClipRow, clip_id: str, clip_path: Path, keyframes: list[Path], start_wall: float
    ) -> bool:
        """Give a row a new name, files and start time (`retime`); False if it changed since."""
        moved = [{"path": self.relative(p), "t": k.t} for k, p in zip(row.keyframes, keyframes)]
        cur = self._write(
            "UPDATE clips SET clip_id = ?, clip_path = ?, keyframes = ?, start_wall = ?, "
            "started_at = ?, updated_at = ? WHERE id = ? AND clip_id = ?",
            [
                clip_id,
                self.relative(clip_path),
                json.dumps(moved),
                start_wall,
                utc_iso(start_wall),
                time.time(),
                row.id,
                row.clip_id,
            ],
        )
        return cur.rowcount == 1

    def set_state(self, row_id: int, state: str, *, reason: str | None = None) -> None:
        self._write(
            "UPDATE clips SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
            (_check(state), reason, time.time(), row_id),
        )

    # -- delivery ------------------------------------------------------------------------------

    def next_due(
        self,
        states: tuple[str, ...],
        now: float,
        skip: set[int],
        newest: bool = False,
        latest: float | None = None,
    ) -> ClipRow | None:
        """The oldest (or newest) row in `states` whose next attempt is due, not in `skip`.

        A retry set for after `latest` (no backoff is that long) was set by a wall clock
        that ran ahead and has been put back since: it is due now, not hours later.
        """
        # Not "id NOT IN (NULL)" for an empty set: that is never true in SQL.
        taboo = f" AND id NOT IN ({_marks(skip)})" if skip else ""
        order = "DESC" if newest else "ASC"
        where = f"state IN ({_marks(states)}) AND (next_attempt_at <= ? OR next_attempt_at > ?)"
        args = [*map(str, states), now, now + 1e12 if latest is None else latest, *skip]
        rows = self._select(where + taboo, args, f"start_wall {order}, id {order} LIMIT 1")
        return next(rows, None)

    def advance(self, row_id: int, from_states: tuple[str, ...], state: str, **fields: Any) -> bool:
        """Move a row on if it is still in one of `from_states`; resets the retry bookkeeping.
        A list or tuple field (`keyframe_keys`) is stored as JSON.

        The guard makes every step idempotent: a step re-run after a crash, or raced by a
        `queue retry`, changes nothing twice.
        """
        values = {"state": _check(state), "updated_at": time.time(), "attempts": 0}
        values["next_attempt_at"] = 0
        for k, v in fields.items():
            values[k] = json.dumps(list(v)) if isinstance(v, (list, tuple)) else v
        sets = ", ".join(f"{k} = ?" for k in values)
        cur = self._write(
            f"UPDATE clips SET {sets} WHERE id = ? AND state IN ({_marks(from_states)})",
            [*values.values(), row_id, *map(str, from_states)],
        )
        return cur.rowcount == 1

    def defer(self, row_id: int, error: str, retry_at: float) -> None:
        """A retryable failure: count it, remember why, try again at `retry_at`."""
        now = time.time()
        self._write(
            "UPDATE clips SET attempts = attempts + 1, last_error = ?, last_error_at = ?, "
            "next_attempt_at = ?, updated_at = ? WHERE id = ?",
            (error, now, retry_at, now, row_id),
        )

    def requeue(self, row_ids: list[int] | None = None) -> int:
        """Failed rows (all, or these ids) go back to the step they failed at. Returns count."""
        where = "state = 'failed'"
        args: list[Any] = []
        if row_ids is not None:
            where += f" AND id IN ({_marks(row_ids) or 'NULL'})"
            args = list(row_ids)
        cur = self._write(
            "UPDATE clips SET state = CASE WHEN media_id IS NOT NULL THEN 'registered' "
            "WHEN clip_key IS NOT NULL THEN 'uploaded' ELSE 'pending' END, "
            f"reason = NULL, attempts = 0, next_attempt_at = 0, updated_at = ? WHERE {where}",
            [time.time(), *args],
        )
        return cur.rowcount

    def bytes_not_in_cloud(self) -> int:
        cur = self.db.execute(
            f"SELECT COALESCE(SUM(clip_bytes + keyframe_bytes), 0) FROM clips "
            f"WHERE state IN ({_marks(NOT_IN_CLOUD)}) AND local_deleted = 0",
            [s.value for s in NOT_IN_CLOUD],
        )
        return int(cur.fetchone()[0])

    def oldest(self, states: tuple[str, ...], *, local: bool = True) -> ClipRow | None:
        where = f"state IN ({_marks(states)})" + (" AND local_deleted = 0" if local else "")
        return next(self._select(where, list(map(str, states)), "start_wall, id LIMIT 1"), None)

    def mark_local_deleted(
        self, row_id: int, *, state: str | None = None, reason: str | None = None
    ) -> None:
        sets = "local_deleted = 1, updated_at = ?"
        args: list[Any] = [time.time()]
        if state:
            sets += ", state = ?, reason = ?"
            args += [str(state), reason]
        self._write(f"UPDATE clips SET {sets} WHERE id = ?", [*args, row_id])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._write("DELETE FROM meta WHERE key = ?", [key])
        else:
            self._write(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )


# -- figures for the status model: aggregates, no row leaves the database ----------------------


def oldest_created(spool: Spool, states: tuple[State, ...]) -> float | None:
    """When the oldest clip still in one of `states` was catalogued (epoch s), or None."""
    sql = f"SELECT MIN(created_at) FROM clips WHERE state IN ({_marks(states)})"
    return spool.db.execute(sql, [str(s) for s in states]).fetchone()[0]


def registered_since(spool: Spool, since: float) -> int:
    sql = "SELECT COUNT(*) FROM clips WHERE registered_at >= ?"
    return int(spool.db.execute(sql, [since]).fetchone()[0])


def latest_error(spool: Spool) -> tuple[str, str, float] | None:
    """The clip whose step failed last: (clip_id, the error, epoch s), or None."""
    return spool.db.execute(
        "SELECT clip_id, last_error, last_error_at FROM clips WHERE last_error_at IS NOT NULL "
        "ORDER BY last_error_at DESC LIMIT 1"
    ).fetchone()


def clips_since(spool: Spool, since: float) -> dict[str, int]:
    """How many clips each camera has cut that start at `since` or later."""
    rows = spool.db.execute(
        "SELECT camera, COUNT(*) FROM clips WHERE start_wall >= ? GROUP BY camera", [since]
    )
    return dict(rows.fetchall())
