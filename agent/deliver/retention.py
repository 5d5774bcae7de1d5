"""The disk guard and local retention: what stays on the gateway's disk, and for how long.

Local copies of registered clips are deleted `keep_local_hours` after registration. Over
`max_spool_bytes` (not yet in the cloud) or under `min_free_bytes` free, local copies of
registered clips go first, then `on_full`: `drop_oldest` deletes the oldest pending clip's
video (row and keyframes stay, state `dropped` with the reason), `stop_recording` tells capture
to cut no new clips until there is room again. The guard also renames clips cut while the wall
clock was unset once it is set (uploads do their own).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.config import UploadSettings
from agent.spool import CLOCK_FLOOR, STOP_RECORDING, ClipRow, Spool, State
from agent.spool_repair import repair_clock

log = logging.getLogger(__name__)


class Retention:
    """Keeps the spool within its limits. `lock` guards `inflight`, the row ids the delivery
    loop is working on: the guard never deletes or renames one of those."""

    def __init__(
        self,
        data_dir: Path,
        settings: UploadSettings,
        clock: Callable[[], float],
        lock: threading.Lock,
        inflight: set[int],
    ) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.clock = clock
        self.lock = lock
        self.inflight = inflight
        self.drops = 0

    def guard(self, spool: Spool) -> None:
        """Keep the spool within its limits; see the module docstring for the order."""
        now = self.clock()
        if now >= CLOCK_FLOOR:  # clips cut before the clock was set (uploads do their own)
            for row in spool.unset_clock_rows():
                with self.lock:
                    if row.id in self.inflight:
                        continue
                    self.inflight.add(row.id)
                try:
                    repair_clock(spool, row, self.clock())
                finally:
                    with self.lock:
                        self.inflight.discard(row.id)
        keep = self.settings.keep_local_hours * 3600
        while (row := spool.oldest((State.REGISTERED, State.INDEXED))) and (
            row.registered_at + keep <= now or self._over(spool)
        ):
            self._delete_local(spool, row, keyframes=True)
        stopped = spool.get_meta(STOP_RECORDING)
        while self._over(spool):
            if self.settings.on_full == "stop_recording":
                if not stopped:
                    reason = self._limit_text(spool)
                    spool.set_meta(STOP_RECORDING, reason)
                    log.error("disk limit: %s; recording stopped until there is room", reason)
                return
            with self.lock:
                victim = next(
                    (r for r in self._oldest_pending(spool) if r.id not in self.inflight), None
                )
            if victim is None:
                return
            reason = f"dropped to make room: {self._limit_text(spool)}"
            self._delete_local(spool, victim, keyframes=False, state=State.DROPPED, reason=reason)
            self.drops += 1
            log.error("clip %s %s (%d dropped so far)", victim.clip_id, reason, self.drops)
        if stopped:
            spool.set_meta(STOP_RECORDING, None)
            log.warning("disk has room again; recording resumes")

    def _over(self, spool: Spool) -> bool:
        free = shutil.disk_usage(self.data_dir).free
        return (
            spool.bytes_not_in_cloud() > self.settings.max_spool_bytes
            or free < self.settings.min_free_bytes
        )

    def _limit_text(self, spool: Spool) -> str:
        free = shutil.disk_usage(self.data_dir).free
        return (
            f"{spool.bytes_not_in_cloud() / 1e6:.1f} MB not yet uploaded (max "
            f"{self.settings.max_spool_bytes / 1e6:.1f} MB), {free / 1e6:.1f} MB free (min "
            f"{self.settings.min_free_bytes / 1e6:.1f} MB)"
        )

    @staticmethod
    def _oldest_pending(spool: Spool) -> Iterator[ClipRow]:
        for row in spool.rows(state=State.PENDING):
            if not row.local_deleted:
                yield row

    @staticmethod
    def _delete_local(
        spool: Spool,
        row: ClipRow,
        *,
        keyframes: bool,
        state: State | None = None,
        reason: str | None = None,
    ) -> None:
        """Row first, then files: a crash in between is finished by spool_repair.recover."""
        spool.mark_local_deleted(row.id, state=state, reason=reason)
        # A dropped clip keeps its keyframes (and its keyframes column is not even read).
        for p in spool.files(row) if keyframes else [spool.absolute(row.clip_path)]:
            p.unlink(missing_ok=True)
