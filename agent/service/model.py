"""The status model: typed, assembled in one place for the running daemon and for a stopped one.

`assemble` builds it from the config, the spool and, while the daemon runs, what the supervisor
knows of its processes (a `Run` a camera, and one for the uploader); with the daemon down every
camera is `stopped` and has the same fields, unknown ones null. `StatusModel.as_dict` is its
one serialisation (the JSON on the status socket, `ipc-agent status --json`, the fleet
report's health); times are epoch seconds inside and ISO-8601 UTC (agent/timestamps.py) out.
agent/service/status.py documents the fields; keys are only ever added.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from agent import __version__, layout
from agent.config import Config
from agent.config_source import FleetStore
from agent.spool import (
    NOT_IN_CLOUD,
    Spool,
    clips_since,
    latest_error,
    oldest_created,
    registered_since,
)
from agent.timestamps import utc_iso

#: Field metadata: epoch seconds, written as an ISO-8601 UTC time.
TIME = {"time": True}


def fleet_status(
    config: Config, state: dict[str, Any], last_check: float | None, last_error: str | None
) -> dict[str, Any]:
    """The `fleet` part of the status model (and of the report object)."""
    rejection = state.get("last_rejection")
    if rejection:
        rejection = {**rejection, "at": utc_iso(rejection.get("at"))}
    docs = {
        t: {"version": v, "applied_at": utc_iso(state["applied_at"].get(t))}
        for t, v in state.get("versions", {}).items()
    }
    return {
        "enabled": config.fleet.enabled,
        "group": config.fleet.group or None,
        "documents": docs,
        "last_check": utc_iso(last_check),
        "last_error": last_error,
        "last_rejection": rejection,
    }


def plain(value: Any) -> Any:
    """`value` as JSON-ready data: dataclasses as dicts (their TIME fields as ISO text)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: utc_iso(getattr(value, f.name))
            if f.metadata.get("time")
            else plain(getattr(value, f.name))
            for f in fields(value)
        }
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Daemon:
    running: bool
    pid: int | None
    uptime_s: float | None
    version: str = __version__


@dataclass(frozen=True)
class ConfigInfo:
    source: str  # the file, "+ the fleet documents"
    version: str  # "local", or the documents applied, e.g. "group:east@7 device:gw1@3"


@dataclass(frozen=True)
class Substream:
    """A camera's sub-stream (detect_url)."""

    state: str | None
    last_error: str | None
    codec: str | None
    width: int | None
    height: int | None


@dataclass(frozen=True)
class CameraStatus:
    name: str
    state: str
    pid: int | None
    worker: str | None
    restarts: int
    last_restart_reason: str | None
    codec: str | None
    width: int  # 0 while unknown
    height: int
    fps: float | None  # frames received per second (not decoded)
    bitrate_kbps: float | None
    last_frame_age_s: float | None
    last_motion: float | None = field(metadata=TIME)
    clips_today: int
    last_error: str | None
    detect_on: str | None  # "main", or "sub" with detect_url
    substream: Substream | None  # None without detect_url


@dataclass(frozen=True)
class UploaderStatus:
    pid: int | None
    restarts: int
    last_restart_reason: str | None
    cloud_reachable: bool | None
    offline_reason: str | None
    last_error: str | None
    last_error_at: float | None = field(metadata=TIME)
    drops: int


@dataclass(frozen=True)
class ClipError:
    clip_id: str
    message: str
    at: float | None = field(metadata=TIME)


@dataclass(frozen=True)
class QueueStatus:
    counts: dict[str, int]  # clips per spool state
    bytes_pending: int
    oldest_pending_age_s: float | None
    registered_today: int
    last_error: ClipError | None
    dropped: int


@dataclass(frozen=True)
class DiskStatus:
    data_dir: str
    used_bytes: int  # spool files
    free_bytes: int | None


@dataclass(frozen=True)
class StatusModel:
    daemon: Daemon
    config: ConfigInfo
    cameras: list[CameraStatus]
    uploader: UploaderStatus | None  # None without [cloud], or with the daemon down
    queue: QueueStatus | None  # None before the spool exists
    disk: DiskStatus
    fleet: dict[str, Any]  # fleet_status

    def as_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class Run:
    """What the supervisor knows of one camera, or of the uploader: its process, restarts and
    last snapshot (agent/capture/pipeline.py `snapshot`, plus fps and bitrate_kbps; the
    uploader's `snapshot`)."""

    name: str
    state: str = "stopped"
    pid: int | None = None
    worker: str | None = None
    restarts: int = 0
    last_restart_reason: str | None = None
    snapshot: Mapping[str, Any] = field(default_factory=dict)


# -- assembly -----------------------------------------------------------------------------------


def local_midnight(now: float) -> float:
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


def queue_status(spool: Spool, now: float) -> QueueStatus:
    """What the spool says about delivery (cheap aggregate queries)."""
    oldest = oldest_created(spool, NOT_IN_CLOUD)
    registered = registered_since(spool, local_midnight(now))
    err = latest_error(spool)
    counts = spool.counts()
    return QueueStatus(
        counts=counts,
        bytes_pending=spool.bytes_not_in_cloud(),
        oldest_pending_age_s=round(now - oldest, 1) if oldest else None,
        registered_today=registered,
        last_error=ClipError(err[0], err[1], err[2]) if err else None,
        dropped=counts.get("dropped", 0),
    )


def clips_today(spool: Spool, now: float) -> dict[str, int]:
    return clips_since(spool, local_midnight(now))


def disk_status(data_dir: Path) -> DiskStatus:
    used = 0
    clips = layout.clips_dir(data_dir)
    if clips.exists():
        for root, _, files in os.walk(clips):
            for name in files:
                with contextlib.suppress(OSError):
                    used += os.stat(os.path.join(root, name)).st_size
    free = shutil.disk_usage(data_dir).free if data_dir.exists() else None
    return DiskStatus(str(data_dir), used, free)


def camera_status(run: Run, clips: int, now: float) -> CameraStatus:
    snap = run.snapshot
    last_packet = snap.get("last_packet_wall")
    sub = snap.get("substream")
    return CameraStatus(
        name=run.name,
        state=run.state,
        pid=run.pid,
        worker=run.worker,
        restarts=run.restarts,
        last_restart_reason=run.last_restart_reason,
        codec=snap.get("codec") or None,
        width=snap.get("width") or 0,
        height=snap.get("height") or 0,
        fps=snap.get("fps"),
        bitrate_kbps=snap.get("bitrate_kbps"),
        last_frame_age_s=round(now - last_packet, 1) if last_packet else None,
        last_motion=snap.get("last_motion_wall"),
        clips_today=clips,
        last_error=snap.get("last_error"),
        detect_on=snap.get("detect_on"),
        substream=Substream(
            *(sub.get(k) for k in ("state", "last_error", "codec", "width", "height"))
        )
        if sub
        else None,
    )


def uploader_status(run: Run) -> UploaderStatus:
    snap = run.snapshot
    return UploaderStatus(
        pid=run.pid,
        restarts=run.restarts,
        last_restart_reason=run.last_restart_reason,
        cloud_reachable=snap.get("cloud_reachable"),
        offline_reason=snap.get("offline_reason"),
        last_error=snap.get("last_error"),
        last_error_at=snap.get("last_error_at"),
        drops=snap.get("drops", 0),
    )


def assemble(
    config: Config,
    fleet: dict[str, Any],
    *,
    started: float | None = None,
    cameras: Sequence[Run] | None = None,
    uploader: Run | None = None,
) -> StatusModel:
    """The status model. `started`: the running daemon's start (monotonic), None while it is
    down; `cameras`: the supervisor's, else the config's, all stopped; `uploader`: its process,
    if one is supervised."""
    now = time.time()
    data_dir = config.agent.data_dir
    if cameras is None:
        cameras = [Run(c.name) for c in config.cameras]
    spool = Spool(data_dir) if layout.spool_db(data_dir).exists() else None
    try:
        today = clips_today(spool, now) if spool else {}
        queue = queue_status(spool, now) if spool else None
    finally:
        if spool:
            spool.close()
    running = started is not None
    return StatusModel(
        daemon=Daemon(
            running=running,
            pid=os.getpid() if running else None,
            uptime_s=round(time.monotonic() - started, 1) if running else None,
        ),
        config=ConfigInfo(config.source, config.version),
        cameras=[camera_status(run, today.get(run.name, 0), now) for run in cameras],
        uploader=uploader_status(uploader) if uploader is not None else None,
        queue=queue,
        disk=disk_status(data_dir),
        fleet=fleet,
    )


def offline_model(config: Config) -> StatusModel:
    """The status model with the daemon down: config and spool only."""
    fleet = fleet_status(config, FleetStore(config.agent.data_dir).state(), None, None)
    return assemble(config, fleet)
