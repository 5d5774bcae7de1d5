"""The agent's live state: one JSON model, served on a Unix socket, printed by `ipc-agent status`.

The model (typed and assembled in agent/service/model.py; documented in the README; keys are
only ever added):
- `daemon`: running, pid, uptime_s, version
- `config`: source (the file, "+ the fleet documents"), version ("local", or the documents
  applied, e.g. "group:east@7 device:gw1@3")
- `cameras[]`: name, state, pid, worker, restarts, last_restart_reason, codec, width, height,
  fps, bitrate_kbps, last_frame_age_s, last_motion, clips_today, last_error, detect_on,
  substream (null without detect_url; else state, last_error, codec, width, height)
- `uploader`: null without [cloud]; else pid, restarts, last_restart_reason, cloud_reachable,
  offline_reason, last_error, last_error_at, drops
- `queue`: counts (per spool state), bytes_pending, oldest_pending_age_s, registered_today,
  last_error ({clip_id, message, at}), dropped
- `disk`: data_dir, used_bytes (spool files), free_bytes
- `fleet`: enabled, group, documents ({target: {version, applied_at}}), last_check,
  last_error (fetching), last_rejection ({target, version, reason, at} or null)

Times are ISO-8601 UTC to the millisecond (`2026-12-07T01:02:03.250Z`, agent/timestamps.py).
`ipc-agent status --prometheus` prints the numbers of the same model as Prometheus text.

When the daemon is down, `status` builds the same model from the config and the spool alone,
with `daemon.running` false and every camera `stopped` (its fields unknown so far null, width
and height 0).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.service.model import StatusModel

log = logging.getLogger(__name__)

SOCKET_NAME = "status.sock"
WIDTH = 80  # the table's columns; longer lines wrap (indented), nothing is ever cut
#: offline_reasons that are an outage (agent/deliver/answers.py OUTAGE, THROTTLED); any other
#: reason (credentials rejected, a bucket or library that does not exist) is a pause.
OUTAGE_REASONS = ("cloud unreachable", "cloud is throttling")


def fetch(data_dir: Path, timeout: float = 1.0) -> dict[str, Any] | None:
    """The running daemon's model, or None when nothing answers on its socket."""
    path = data_dir / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return None


class StatusServer:
    """Answers every connection on `data_dir/status.sock` with the model as JSON, then closes."""

    def __init__(self, data_dir: Path, model: Callable[[], StatusModel]) -> None:
        self.path = data_dir / SOCKET_NAME
        self.model = model
        self.path.unlink(missing_ok=True)  # left by an unclean stop

        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    body = json.dumps(outer.model().as_dict()).encode()
                except Exception:  # noqa: BLE001 - status must answer even when a part fails
                    log.exception("status model failed")
                    body = json.dumps({"error": "status model failed; see the log"}).encode()
                self.request.sendall(body)

        self.server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        self.server.daemon_threads = True
        os.chmod(self.path, 0o660)  # the service user and its group (operators) only
        self.thread = threading.Thread(target=self.server.serve_forever, name="status", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)


# -- the table ------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}TB"


def wrap(line: str, width: int = WIDTH) -> list[str]:
    """`line` in lines of at most `width` columns, continuations indented under its text.

    Breaks at spaces where it can, inside a word (a URL, a path) where it must; no character
    is lost, so an error's cause at its end ("... (401)") is always shown.
    """
    if len(line) <= width:
        return [line]
    indent = " " * min(len(line) - len(line.lstrip(" ")) + 2, width // 2)
    return textwrap.wrap(
        line,
        width,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
        drop_whitespace=True,
    ) or [line]


def render(model: dict[str, Any]) -> str:
    """The model as a table for people; every line fits 80 columns, long ones wrap."""
    d = model["daemon"]
    lines = []
    if d["running"]:
        lines.append(f"ipc-agent {d['version']}: running, pid {d['pid']}, up {_age(d['uptime_s'])}")
    else:
        lines.append(f"ipc-agent {d['version']}: DAEMON NOT RUNNING; showing the spool only")
    lines.append(f"config version {model['config']['version']}, from {model['config']['source']}")
    lines.append("")
    lines.append(
        f"{'camera':<14}{'state':<13}{'video':<15}{'fps':>5}{'kbit/s':>8}"
        f"{'frame':>7}{'clips':>6}{'restarts':>9}"
    )
    for c in model["cameras"]:
        video = f"{c.get('codec') or '-'} {c['width']}x{c['height']}" if c.get("width") else "-"
        fps = f"{c['fps']:.1f}" if c.get("fps") is not None else "-"
        kbps = f"{c['bitrate_kbps']:.0f}" if c.get("bitrate_kbps") is not None else "-"
        lines.append(
            f"{c['name'][:13]:<14}{c['state'][:12]:<13}{video[:14]:<15}{fps:>5}"
            f"{kbps:>8}{_age(c.get('last_frame_age_s')):>7}{c['clips_today']:>6}"
            f"{c['restarts']:>9}"
        )
        for key in ("last_restart_reason", "last_error"):
            if c.get(key):
                lines.append(f"  {key.replace('_', ' ')}: {c[key]}")
        sub = c.get("substream")
        if sub:
            size = (
                f" {sub.get('codec') or '-'} {sub['width']}x{sub['height']}"
                if sub.get("width")
                else ""
            )
            on = "the sub-stream" if c.get("detect_on") == "sub" else "the main stream"
            lines.append(f"  sub-stream: {sub['state']}{size}; detection on {on}")
            if sub.get("last_error") and sub["state"] != "streaming":
                lines.append(f"  sub-stream error: {sub['last_error']}")
    q = model.get("queue")
    if q:
        counts = ", ".join(f"{n} {s}" for s, n in q["counts"].items() if n) or "empty"
        lines.append("")
        lines.append(f"spool: {counts}")
        lines.append(
            f"  pending {_size(q['bytes_pending'])}, oldest "
            f"{_age(q['oldest_pending_age_s'])}, registered today "
            f"{q['registered_today']}, dropped {q['dropped']}"
        )
        if q.get("last_error"):
            e = q["last_error"]
            lines.append(f"  last error {e['at']}: {e['message']}")
    else:  # no spool.db yet: nothing recorded here so far
        lines += ["", f"spool: none yet (no clip recorded in {model['disk']['data_dir']})"]
    u = model.get("uploader")
    if u:
        reachable = u.get("cloud_reachable")
        reason = u.get("offline_reason")
        reach = {True: "reachable", False: "UNREACHABLE", None: "unknown"}[reachable]
        if reachable is False and reason and reason not in OUTAGE_REASONS:
            reach = "DELIVERY PAUSED"  # an operator must act: credentials, bucket, library
        why = f" ({reason})" if reason else ""
        lines.append(
            f"cloud: {reach}{why}; uploader pid {u.get('pid')}, restarts {u.get('restarts', 0)}"
        )
        if reachable is False and u.get("last_error"):
            lines.append(f"  last error: {u['last_error']}")
    disk = model["disk"]
    lines.append(
        f"disk: {_size(disk['used_bytes'])} used, {_size(disk['free_bytes'])} free, "
        f"in {disk['data_dir']}"
    )
    fleet = model.get("fleet") or {}
    if fleet.get("enabled"):
        checked = fleet.get("last_check") or "not yet"
        lines.append(f"fleet: group {fleet.get('group') or '-'}, last check {checked}")
        if fleet.get("last_error"):
            lines.append(f"  CANNOT FETCH: {fleet['last_error']}")
    rejection = fleet.get("last_rejection")
    if rejection:
        version = f"@{rejection['version']}" if rejection.get("version") is not None else ""
        lines.append(f"  REFUSED {rejection['target']}{version} at {rejection['at']}:")
        lines.append(f"    {rejection['reason']}")
    return "\n".join(part for line in lines for part in wrap(line))


# -- Prometheus --------------------------------------------------------------------------------


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(model: dict[str, Any]) -> str:
    """The model's numbers in Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, doc: str, samples: list[tuple[dict, Any]]) -> None:
        out.append(f"# HELP ipc_agent_{name} {doc}")
        out.append(f"# TYPE ipc_agent_{name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            out.append(
                f"ipc_agent_{name}{{{text}}} {float(value):g}"
                if text
                else f"ipc_agent_{name} {float(value):g}"
            )

    d = model["daemon"]
    metric("up", "gauge", "1 while the daemon runs", [({}, 1 if d["running"] else 0)])
    metric("uptime_seconds", "gauge", "daemon uptime", [({}, d.get("uptime_s"))])
    metric(
        "info",
        "gauge",
        "agent and config version",
        [({"version": d["version"], "config_version": model["config"]["version"]}, 1)],
    )
    cams = model["cameras"]
    states = ("connecting", "streaming", "reconnecting", "auth-failed", "stalled", "stopped")
    metric(
        "camera_state",
        "gauge",
        "1 for the camera's current state",
        [
            ({"camera": c["name"], "state": st}, int(c["state"] == st))
            for c in cams
            for st in sorted({*states, c["state"]})
        ],
    )
    for name, key, doc, kind in (
        ("camera_restarts_total", "restarts", "restarts of the camera's process", "counter"),
        ("camera_fps", "fps", "frames per second received", "gauge"),
        ("camera_bitrate_kbps", "bitrate_kbps", "kbit/s received", "gauge"),
        ("camera_last_frame_age_seconds", "last_frame_age_s", "age of the last frame", "gauge"),
        ("camera_clips_today", "clips_today", "clips cut since local midnight", "gauge"),
    ):
        metric(name, kind, doc, [({"camera": c["name"]}, c.get(key)) for c in cams])
    q = model.get("queue")
    if q:
        metric(
            "spool_clips",
            "gauge",
            "clips per spool state",
            [({"state": st}, n) for st, n in q["counts"].items()],
        )
        metric(
            "spool_pending_bytes", "gauge", "bytes not yet in the cloud", [({}, q["bytes_pending"])]
        )
        metric(
            "spool_oldest_pending_seconds",
            "gauge",
            "age of the oldest clip not in the cloud",
            [({}, q["oldest_pending_age_s"])],
        )
        metric(
            "clips_registered_today",
            "gauge",
            "clips registered since local midnight",
            [({}, q["registered_today"])],
        )
    u = model.get("uploader")
    if u and u.get("cloud_reachable") is not None:
        metric(
            "cloud_reachable",
            "gauge",
            "1 when the cloud answers",
            [({}, int(bool(u["cloud_reachable"])))],
        )
    disk = model["disk"]
    metric("disk_used_bytes", "gauge", "bytes of clips in the data dir", [({}, disk["used_bytes"])])
    metric(
        "disk_free_bytes",
        "gauge",
        "free bytes on the data dir's filesystem",
        [({}, disk["free_bytes"])],
    )
    fleet = model.get("fleet") or {}
    metric(
        "fleet_document_version",
        "gauge",
        "version of each fleet document applied",
        [({"target": t}, v.get("version")) for t, v in (fleet.get("documents") or {}).items()],
    )
    metric(
        "fleet_rejection",
        "gauge",
        "1 while the last fleet document was refused",
        [({}, int(bool(fleet.get("last_rejection"))))],
    )
    return "\n".join(out) + "\n"
