"""Delivery: spool rows → OSS objects → search-library media, exactly once, offline-safe.

The loop claims rows and runs the stages: agent/deliver/uploader.py (`pending → uploading →
uploaded`), agent/deliver/registrar.py (`uploaded → registered → indexed`), and beside them
agent/deliver/retention.py (the disk guard). Every step is guarded in SQLite (`Spool.advance`
only moves a row that is still where the step expects it), so a crash anywhere resumes at the
step it was in.

Retries (agent/deliver/answers.py says what each answer means): a retryable failure defers the
clip with its own exponential backoff and puts the whole loop in an *offline* state: no clip
is tried until the global backoff (capped at `max_backoff`, with jitter) has passed, then
exactly one clip probes. A pause (credentials, bucket, library) waits `max_backoff`, with the
reason in `status`, without failing clips. Whatever a step ends in (even a local file missing
or a bug), the probe is over when the step is, so delivery can never stop while the cloud is
up. One log line per state change, never one per retry.

Order: registrations first (cheap, and they make clips searchable), then index checks, then
uploads oldest first — except that every NEWEST_EVERY-th upload takes the newest clip, so a
long backlog drains without starving fresh events.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import layout
from agent.config import CloudSettings, Config, UploadSettings
from agent.deliver import uploader
from agent.deliver.answers import Paused, Verdict, backoff, judge
from agent.deliver.credentials import CredentialsError, CredentialSource
from agent.deliver.ice import IceClient, IceError
from agent.deliver.oss import OssError, OssUploader
from agent.deliver.registrar import INDEX_CHECKS, Registrar
from agent.deliver.retention import Retention
from agent.spool import TO_INDEX, TO_REGISTER, TO_UPLOAD, ClipRow, Spool, State

log = logging.getLogger(__name__)

NEWEST_EVERY = 4  # one upload pick in this many takes the newest clip instead of the oldest
IDLE_POLL = 1.0  # s between looks at the spool when there is nothing to do
GUARD_EVERY = 2.0  # s between disk checks
UPLOAD, REGISTER, INDEX = "upload", "register", "index"


def _now_in(row: ClipRow) -> tuple[State, ...]:
    """The states a claimed row can be in when its step fails: as claimed, or moved on from
    pending to uploading by the step itself (a guard on the claimed state alone would miss
    it, leaving the clip "uploading" and retried at once, forever)."""
    return (row.state, State.UPLOADING) if row.state == State.PENDING else (row.state,)


@dataclass
class Health:
    """The loop's view of the cloud, shared by its workers."""

    online: bool = True
    retry_at: float = 0.0
    failures: int = 0
    probe: int | None = None  # while offline: the row id of the one clip being tried
    reason: str = ""

    def went_down(self, verdict: Verdict, retry_at: float) -> bool:
        """Count a retryable failure; True when it is news (went offline, or another reason)."""
        news = self.online or verdict.reason != self.reason
        self.failures += 1
        self.retry_at = retry_at
        self.online, self.reason = False, verdict.reason
        return news


class DeliveryLoop:
    """`concurrency` worker threads running the stages, plus the disk guard."""

    def __init__(
        self,
        data_dir: Path,
        device_id: str,
        cloud: CloudSettings,
        upload: UploadSettings,
        *,
        make_oss: Callable[[], OssUploader],
        make_ice: Callable[[], IceClient],
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        index_checks: tuple[float, ...] = INDEX_CHECKS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.device_id = device_id
        self.cloud = cloud
        self.settings = upload
        self.make_oss = make_oss
        self.make_ice = make_ice
        self.clock = clock  # the stages read it through self.now: a test may swap it
        self.rng = rng or random.Random()
        self.index_checks = index_checks
        self.lock = threading.Lock()
        self.inflight: set[int] = set()
        self.health = Health()
        self.picks = 0
        self.last_error: tuple[float, str] | None = None  # (epoch, message)
        self.registrar = Registrar(cloud, device_id, self.now, index_checks)
        self.retention = Retention(self.data_dir, upload, self.now, self.lock, self.inflight)

    def now(self) -> float:
        return self.clock()

    @property
    def drops(self) -> int:
        return self.retention.drops

    def run(self, stop: threading.Event) -> None:
        """Drain the spool until `stop` is set; uploads in flight are left resumable."""
        workers = [
            threading.Thread(target=self._worker, args=(stop,), name=f"upload-{i}", daemon=True)
            for i in range(self.settings.concurrency)
        ]
        for w in workers:
            w.start()
        spool = Spool(self.data_dir)
        try:
            while not stop.is_set():
                self.guard(spool)
                stop.wait(GUARD_EVERY)
        finally:
            spool.close()
        for w in workers:
            w.join()

    def guard(self, spool: Spool) -> None:
        self.retention.guard(spool)

    def _worker(self, stop: threading.Event) -> None:
        spool = Spool(self.data_dir)
        oss, ice = self.make_oss(), self.make_ice()
        try:
            while not stop.is_set():
                try:
                    busy = self.step(spool, oss, ice)
                except Exception as exc:  # noqa: BLE001 - a worker must outlive any one failure
                    # e.g. the spool locked or its disk gone for a moment: the step's row (if
                    # any) is released by step() itself; wait and carry on.
                    log.error("delivery step failed: %s: %s", type(exc).__name__, exc)
                    busy = False
                if not busy:
                    stop.wait(IDLE_POLL)
        finally:
            ice.close()
            spool.close()

    def upload(self, spool: Spool, oss: OssUploader, row: ClipRow) -> None:
        uploader.upload(spool, oss, row, self.cloud, self.device_id, self.now)

    def step(self, spool: Spool, oss: OssUploader, ice: IceClient) -> bool:
        """Do one step for one clip. False when nothing was due."""
        claimed = self._claim(spool)
        if claimed is None:
            return False
        stage, row = claimed
        try:
            if stage == UPLOAD:
                dated = uploader.dated(spool, row, self.clock())
                if dated is None:  # nothing goes up under a 1970 name and date
                    spool.defer(row.id, "the wall clock is not set yet", self.clock() + 5)
                    return True
                row = dated
                self.upload(spool, oss, row)
            elif stage == REGISTER:
                self.registrar.register(spool, ice, row)
            else:
                self.registrar.check_index(spool, ice, row)
            self._succeeded()
        except (OssError, IceError, CredentialsError, Paused) as exc:
            self._failed(spool, row, exc)
        except FileNotFoundError as exc:
            if exc.filename and layout.tmp_path(Path(exc.filename)).exists():
                # Catalogued, but its camera was cut off before renaming the files: the
                # camera's restart (or the agent's) finishes that. Not lost.
                spool.defer(row.id, f"not renamed yet: {exc.filename}", self.clock() + 5)
                return True
            missing = f"local file missing: {exc.filename}"
            spool.advance(row.id, _now_in(row), State.FAILED, reason=missing)
            log.error("clip %s: local file missing (%s); marked failed", row.clip_id, exc.filename)
        except Exception as exc:  # noqa: BLE001 - a bug or a local fault: the clip waits
            # Not the cloud's answer: the clip is tried again later, nothing else changes.
            message = f"{type(exc).__name__}: {exc}"
            wait = backoff(row.attempts, self.settings.max_backoff, self.rng)
            spool.defer(row.id, message, self.clock() + wait)
            log.error("clip %s: delivery step failed: %s; will retry", row.clip_id, message)
        finally:
            with self.lock:
                self.inflight.discard(row.id)
                if self.health.probe == row.id:
                    self.health.probe = None  # whatever it ended in, the probe is over
        return True

    def _claim(self, spool: Spool) -> tuple[str, ClipRow] | None:
        now = self.clock()
        # Retry times are wall-clock times: one further ahead than any backoff was set while
        # the clock ran ahead (then NTP put it back) and is due now, not hours later.
        latest = now + 2 * max(self.settings.max_backoff, *self.index_checks, 5.0)
        with self.lock:
            h = self.health
            if not h.online and ((now < h.retry_at <= latest) or h.probe is not None):
                return None  # offline: wait out the backoff, then one probe at a time
            stage, row = UPLOAD, None
            for name, states in ((REGISTER, TO_REGISTER), (INDEX, TO_INDEX)):
                row = spool.next_due(states, now, self.inflight, latest=latest)
                if row:
                    stage = name
                    break
            if row is None:
                newest = self.picks % NEWEST_EVERY == NEWEST_EVERY - 1
                row = spool.next_due(TO_UPLOAD, now, self.inflight, newest, latest)
                if row:
                    self.picks += 1
            if row is None:
                return None
            self.inflight.add(row.id)
            if not h.online:
                h.probe = row.id
            return stage, row

    def _succeeded(self) -> None:
        with self.lock:
            h = self.health
            if not h.online:
                log.warning(
                    "cloud reachable again after %d failed tries; draining the backlog", h.failures
                )
            self.health = Health()

    def _failed(self, spool: Spool, row: ClipRow, exc: Exception) -> None:
        verdict = judge(exc)
        now = self.clock()
        self.last_error = (now, str(exc))
        if not verdict.retryable:
            spool.advance(row.id, _now_in(row), State.FAILED, reason=str(exc))
            log.error("clip %s failed (not retryable): %s", row.clip_id, exc)
            self._succeeded()  # the service answered, about this clip only: it is up
            return
        cap, paused = self.settings.max_backoff, verdict.paused
        clip_wait = cap if paused else backoff(row.attempts, cap, self.rng)
        spool.defer(row.id, str(exc), now + max(clip_wait, verdict.wait))
        with self.lock:
            h = self.health
            wait = cap if paused else backoff(h.failures, cap, self.rng)
            if h.went_down(verdict, now + max(wait, verdict.wait)):
                log.error(
                    "%s: %s; %s, retrying %s",
                    verdict.reason,
                    exc.cause if isinstance(exc, Paused) and exc.cause else exc,
                    "delivery paused" if paused else "clips stay pending",
                    f"every {cap:.0f} s" if paused else f"with backoff (max {cap:.0f} s)",
                )

    def snapshot(self) -> dict[str, Any]:
        """The loop's status as plain data (for the supervisor's status model)."""
        h = self.health
        at, message = self.last_error or (None, None)
        return {
            "cloud_reachable": h.online,
            "offline_reason": h.reason or None,
            "failures": h.failures,
            "drops": self.drops,
            "last_error": message,
            "last_error_at": at,
        }


def from_config(config: Config, credentials: CredentialSource | None = None) -> DeliveryLoop:
    """A delivery loop wired to the configured cloud, credentials from the default chain."""
    cloud = config.cloud
    if cloud is None:
        raise ValueError(f"{config.source}: no [cloud] section; nothing to deliver to")
    source = credentials or CredentialSource()
    data_dir = config.agent.data_dir
    limit = config.upload.bandwidth_limit or None

    def make_oss() -> OssUploader:
        return OssUploader(
            endpoint=cloud.oss_endpoint,
            region=cloud.region,
            bucket=cloud.bucket,
            credentials=source,
            checkpoint_dir=layout.checkpoint_dir(data_dir),
            traffic_limit_bps=limit,
        )

    def make_ice() -> IceClient:
        return IceClient(cloud.ice_endpoint, source.get)

    return DeliveryLoop(
        data_dir, config.agent.device_id, cloud, config.upload, make_oss=make_oss, make_ice=make_ice
    )
