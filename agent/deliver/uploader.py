"""Delivery: spool rows → OSS objects → search-library media, exactly once, offline-safe.

Each clip walks `pending → uploading → uploaded → registered → indexed`; every step is guarded
in SQLite (`Spool.advance` only moves a row that is still where the step expects it), so a
crash anywhere resumes at the step it was in:
- uploading: objects already on OSS with the same size and CRC-64 are not sent again, and a
  multipart upload resumes from its checkpoint under `data_dir/oss-checkpoints`;
- registering: the MediaId is derived from device, camera and clip, so a clip can never become
  two media. An insert whose answer is not a success (an error we do not know to be refused
  before it ran, a timeout, a reset, a 5xx: the insert may have taken effect) is settled by
  asking the library whether the MediaId is there (QueryMediaIndexJob, a documented read):
  there → registered; not there → retried or failed with the service's own message. No
  error code is trusted to mean "already exists" (the API reference lists none for it);
- indexing: the index job is polled slowly until it succeeds or fails.

Retries: a retryable failure (network, 5xx, throttling, timeouts) defers the clip with its own
exponential backoff and puts the whole uploader in an *offline* state: no clip is tried until
the global backoff (capped at `max_backoff`, with jitter) has passed, then exactly one clip
probes. A wait the service asks for (``x-acs-retry-after``, OSS's ``Retry-After``) is honoured.
Rejected credentials, and errors that concern the whole bucket or library (``NoSuchBucket``,
a search library or index that does not exist, checked with QuerySearchLib) *pause* delivery
the same way, at `max_backoff`, with the reason in `status`, without failing clips (an
operator fixes the cause; the backlog must survive that). Other errors fail the clip with the
service's message. Whatever a step ends in (even a local file missing or a bug), the probe
is over when the step is, so delivery can never stop while the cloud is up. One log line
per state change, never one per retry.

Order: registrations first (cheap, and they make clips searchable), then index checks, then
uploads oldest first — except that every NEWEST_EVERY-th upload takes the newest clip, so a
long backlog drains without starving fresh events.

Disk guard: over `max_spool_bytes` (not yet in the cloud) or under `min_free_bytes` free, local
copies of registered clips go first, then `on_full`: `drop_oldest` deletes the oldest pending
clip's video (row and keyframes stay, state `dropped` with the reason), `stop_recording`
tells capture to cut no new clips until there is room again.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import layout
from agent.config import CloudSettings, Config, UploadSettings
from agent.deliver.credentials import CredentialsError, CredentialSource
from agent.deliver.ice import (
    IceAuthError,
    IceClient,
    IceCredentialsError,
    IceError,
    IceNotFound,
    IceThrottled,
)
from agent.deliver.oss import OssError, OssUploader
from agent.spool import (
    CLOCK_FLOOR,
    STOP_RECORDING,
    TO_INDEX,
    TO_REGISTER,
    TO_UPLOAD,
    ClipRow,
    Spool,
    boot_clock,
)
from agent.spool_repair import retime

log = logging.getLogger(__name__)

NEWEST_EVERY = 4  # one upload pick in this many takes the newest clip instead of the oldest
IDLE_POLL = 1.0  # s between looks at the spool when there is nothing to do
INDEX_CHECKS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # s between index-job polls
GUARD_EVERY = 2.0  # s between disk checks
#: OSS codes that concern the whole bucket, not one object: pause, do not fail clips one by one.
OSS_BUCKET_CODES = {"NoSuchBucket", "InvalidBucketName", "UserDisable"}
OSS_THROTTLING_CODES = {"SlowDown", "TooManyRequests", "QpsLimitExceeded"}
INDEX_TYPE = "mm"  # the library's index an IPC search needs (agent/deliver/library.py)
#: `offline_reason`s that are an outage (the cloud does not answer as it should); any other
#: reason is a pause an operator must act on. agent/service/status.py shows them apart.
OUTAGE = "cloud unreachable"
THROTTLED = "cloud is throttling"
MAX_SERVER_WAIT = 600.0  # s: the longest retry-after we honour (a garbled one must not stall us)
OSS_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "SecurityTokenExpired",
    "InvalidSecurityToken",
}


def media_id(device_id: str, camera: str, clip_id: str) -> str:
    """32 hex chars, the same for the same clip forever: the key to registering it once."""
    return hashlib.md5(f"{device_id}/{camera}/{clip_id}".encode()).hexdigest()


def msg_body(row: ClipRow, device_id: str) -> dict[str, Any]:
    """What maps a search hit back to a camera and a moment, and lets searches filter.

    ICE's MsgBody carries a `title` and three custom fields only (`strField1`, `strField2`,
    `intField1`), which SearchMediaByHybrid can filter on: the camera, where the clip came
    from, and the epoch second the clip starts.
    """
    start = row.start_wall
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    return {
        "title": f"{row.camera} {local}",
        "customFields": {
            "strField1": row.camera,
            "strField2": f"{device_id}/{row.clip_id}",
            "intField1": int(start),
        },
    }


def _now_in(row: ClipRow) -> tuple[str, ...]:
    """The states a claimed row can be in when its step fails: as claimed, or moved on from
    pending to uploading by the step itself (a guard on the claimed state alone would miss
    it, leaving the clip "uploading" and retried at once, forever)."""
    return (row.state, "uploading") if row.state == "pending" else (row.state,)


def backoff(attempts: int, cap: float, rng: random.Random) -> float:
    """Exponential (1 s, 2 s, 4 s ...) capped, with jitter so a fleet does not retry in step."""
    return min(cap, 2.0 ** max(attempts, 0)) * rng.uniform(0.5, 1.0)


def server_wait(exc: BaseException) -> float:
    """The wait the service asked for with its answer (s; 0 when none), at most MAX_SERVER_WAIT."""
    wait = getattr(exc, "retry_after", None)
    return min(float(wait), MAX_SERVER_WAIT) if wait and wait > 0 else 0.0


class Paused(Exception):
    """A cause that concerns the whole bucket or library: delivery pauses with `reason`
    (shown in status), no clip fails for it, and it is tried again at `max_backoff`."""

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        self.reason = reason
        self.cause = cause
        super().__init__(f"{reason}: {cause}" if cause is not None else reason)


def bucket_wide(exc: OssError, bucket: str) -> Paused | None:
    """The pause an OSS error calls for when it concerns the bucket, else None."""
    if exc.code in OSS_BUCKET_CODES:
        return Paused(f"bucket {bucket}: {exc.code}", exc)
    return None


@dataclass
class Health:
    """The uploader's view of the cloud, shared by its workers."""

    online: bool = True
    retry_at: float = 0.0
    failures: int = 0
    probe: int | None = None  # while offline: the row id of the one clip being tried
    reason: str = ""


class Uploader:
    """The delivery loop: `concurrency` worker threads plus the disk guard."""

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
        self.upload = upload
        self.make_oss = make_oss
        self.make_ice = make_ice
        self.clock = clock
        self.rng = rng or random.Random()
        self.index_checks = index_checks
        self.lock = threading.Lock()
        self.inflight: set[int] = set()
        self.health = Health()
        self.picks = 0
        self.drops = 0
        self.last_error: tuple[float, str] | None = None  # (epoch, message)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Drain the spool until `stop` is set; uploads in flight are left resumable."""
        workers = [
            threading.Thread(target=self._worker, args=(stop,), name=f"upload-{i}", daemon=True)
            for i in range(self.upload.concurrency)
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

    def step(self, spool: Spool, oss: OssUploader, ice: IceClient) -> bool:
        """Do one step for one clip. False when nothing was due."""
        claimed = self._claim(spool)
        if claimed is None:
            return False
        stage, row = claimed
        try:
            if stage == "upload" and row.start_wall < CLOCK_FLOOR:
                fresh = self._retime(spool, row)
                if fresh is None:  # nothing goes up under a 1970 name and date
                    spool.defer(row.id, "the wall clock is not set yet", self.clock() + 5)
                    return True
                row = fresh
                if row.start_wall < CLOCK_FLOOR and row.state == "pending":
                    log.warning(
                        "clip %s was cut while the wall clock was unset and the gateway has "
                        "rebooted since: its real time is lost; it goes up dated %s",
                        row.clip_id,
                        row.started_at,
                    )
            if stage == "upload":
                self._upload(spool, oss, row)
            elif stage == "register":
                self._register(spool, ice, row)
            else:
                self._check_index(spool, ice, row)
            self._succeeded()
        except (OssError, IceError, CredentialsError, Paused) as exc:
            self._failed(spool, row, exc)
        except FileNotFoundError as exc:
            if exc.filename and layout.tmp_path(Path(exc.filename)).exists():
                # Catalogued, but its camera was cut off before renaming the files: the
                # camera's restart (or the agent's) finishes that. Not lost.
                spool.defer(row.id, f"not renamed yet: {exc.filename}", self.clock() + 5)
                return True
            spool.advance(
                row.id, _now_in(row), "failed", reason=f"local file missing: {exc.filename}"
            )
            log.error("clip %s: local file missing (%s); marked failed", row.clip_id, exc.filename)
        except Exception as exc:  # noqa: BLE001 - a bug or a local fault: the clip waits
            # Not the cloud's answer: the clip is tried again later, nothing else changes.
            message = f"{type(exc).__name__}: {exc}"
            spool.defer(
                row.id,
                message,
                self.clock() + backoff(row.attempts, self.upload.max_backoff, self.rng),
            )
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
        latest = now + 2 * max(self.upload.max_backoff, *self.index_checks, 5.0)
        with self.lock:
            h = self.health
            if not h.online and ((now < h.retry_at <= latest) or h.probe is not None):
                return None  # offline: wait out the backoff, then one probe at a time
            stage, row = "upload", None
            for name, states in (("register", TO_REGISTER), ("index", TO_INDEX)):
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

    # -- the steps -----------------------------------------------------------------------------

    def _retime(self, spool: Spool, row: ClipRow) -> ClipRow | None:
        """A clip cut while the wall clock was unset (a box without RTC boots at 1970), named
        and dated again from the boot clock once the wall clock is set. The row as it is
        now, or None while it must wait (clock still unset, files being published)."""
        boot, boot_id = boot_clock()
        if row.start_boot is None or row.boot_id != boot_id:
            return row  # cut before a reboot: its real time is lost, it goes as it is
        now = self.clock()
        if now < CLOCK_FLOOR:
            return None
        start = now - (boot - row.start_boot)
        if start < CLOCK_FLOOR:
            return row  # no better time to give it
        try:
            new_id = retime(spool, row, start)
        except OSError as exc:  # a full disk, say: try again later
            log.warning("clip %s: cannot rename it yet: %s", row.clip_id, exc)
            return None
        if new_id is None:
            return None
        log.warning(
            "clip %s was cut while the wall clock was unset; renamed %s (from the boot clock)",
            row.clip_id,
            new_id,
        )
        return spool.row(row.id)

    def _upload(self, spool: Spool, oss: OssUploader, row: ClipRow) -> None:
        # A first try cannot find its objects on OSS; a clip already "uploading" was cut off
        # (crash, outage) and checks what is there first, so nothing is sent twice.
        first_try = spool.advance(row.id, ("pending",), "uploading")
        put = oss.upload_file if first_try else oss.ensure_uploaded
        clip_key, kf_keys = layout.keys_for(row, self.cloud.prefix, self.device_id)
        keyframes = [spool.absolute(k.path) for k in row.keyframes]
        try:
            for path, key in zip(keyframes, kf_keys):
                put(key, path)
            put(clip_key, spool.absolute(row.clip_path))
        except OssError as exc:
            raise bucket_wide(exc, self.cloud.bucket) or exc from None
        spool.advance(
            row.id,
            ("uploading",),
            "uploaded",
            clip_key=clip_key,
            keyframe_keys=kf_keys,
            uploaded_at=self.clock(),
        )

    def _register(self, spool: Spool, ice: IceClient, row: ClipRow) -> None:
        mid = media_id(self.device_id, row.camera, row.clip_id)
        bucket = self.cloud.bucket
        images = [f"oss://{bucket}/{k}" for k in row.keyframe_keys or ()]
        try:
            ice.insert_media(
                self.cloud.search_lib,
                self.cloud.namespace,
                mid,
                f"oss://{bucket}/{row.clip_key}",
                images,
                msg_body(row, self.device_id),
            )
        except (IceThrottled, IceAuthError, IceCredentialsError):
            raise  # refused before the insert ran (flow control, signature, credentials)
        except IceError as exc:
            # Whatever the answer says (a duplicate in any words, a timeout, a reset, a 5xx),
            # the insert may have taken effect: the library says whether it did.
            if not self._media_there(ice, mid, exc):
                if not exc.retryable:
                    self._check_library(ice, exc)
                raise
            log.info(
                "clip %s: media %s is in the library (the insert answered %s); registered",
                row.clip_id,
                mid,
                exc.code or type(exc).__name__,
            )
        now = self.clock()
        spool.advance(
            row.id,
            TO_REGISTER,
            "registered",
            media_id=mid,
            registered_at=now,
            next_attempt_at=now + self.index_checks[0],
        )

    def _media_there(self, ice: IceClient, mid: str, exc: IceError) -> bool:
        """Whether the library has `mid`, after an insert answered `exc`. A failed read leaves
        it open: a retryable error carrying both answers."""
        try:
            return ice.media_exists(self.cloud.search_lib, mid)
        except IceError as check:
            raise IceError(
                f"{exc}; whether it took effect is not known yet ({check})",
                code=exc.code,
                request_id=exc.request_id,
                status=exc.status,
                retryable=True,
                retry_after=max(server_wait(exc), server_wait(check)) or None,
            ) from None

    def _check_library(self, ice: IceClient, exc: IceError) -> None:
        """Raise Paused when `exc` came from a library (or its index) that does not exist:
        asked with QuerySearchLib, not guessed from the error code."""
        name = self.cloud.search_lib
        try:
            lib = ice.query_search_lib(name)
        except IceNotFound:
            raise Paused(
                f"search library {name} does not exist (ipc-agent cloud init creates it)", exc
            ) from None
        except IceError:
            return  # cannot tell: the clip's own error stands
        if lib.index(INDEX_TYPE) is None:
            raise Paused(
                f"search library {name} has no {INDEX_TYPE} index (ipc-agent cloud init adds it)",
                exc,
            )

    def _check_index(self, spool: Spool, ice: IceClient, row: ClipRow) -> None:
        try:
            jobs = ice.query_media_index_job(self.cloud.search_lib, row.media_id)
        except IceError as exc:
            if not exc.retryable:
                self._check_library(ice, exc)
            raise
        now = self.clock()
        if jobs.succeeded:
            spool.advance(row.id, TO_INDEX, "indexed", index_status="Success", indexed_at=now)
        elif jobs.failed:
            spool.advance(
                row.id,
                TO_INDEX,
                "failed",
                index_status="Fail",
                reason="the search library's index job failed",
            )
            log.error("clip %s: index job failed in %s", row.clip_id, self.cloud.search_lib)
        else:
            checks = self.index_checks
            wait = checks[min(row.attempts + 1, len(checks) - 1)]
            spool.defer(row.id, "index job still running", now + wait)

    # -- outcomes ------------------------------------------------------------------------------

    def _succeeded(self) -> None:
        with self.lock:
            h = self.health
            if not h.online:
                log.warning(
                    "cloud reachable again after %d failed tries; draining the backlog", h.failures
                )
            self.health = Health()

    def _failed(self, spool: Spool, row: ClipRow, exc: Exception) -> None:
        # Any 403 is "not allowed": a proxy's HTML page carries no OSS code, and failing
        # clips for it would need every one re-queued by hand once the cause is fixed.
        auth = isinstance(exc, (IceAuthError, IceCredentialsError, CredentialsError)) or (
            isinstance(exc, OssError) and (exc.code in OSS_AUTH_CODES or exc.status == 403)
        )
        paused = isinstance(exc, Paused) or auth
        retryable = paused or getattr(exc, "retryable", False)
        now = self.clock()
        self.last_error = (now, str(exc))
        if not retryable:
            spool.advance(row.id, _now_in(row), "failed", reason=str(exc))
            log.error("clip %s failed (not retryable): %s", row.clip_id, exc)
            self._succeeded()  # the service answered, about this clip only: it is up
            return
        cap = self.upload.max_backoff
        wait = server_wait(exc)
        clip_wait = cap if paused else backoff(row.attempts, cap, self.rng)
        spool.defer(row.id, str(exc), now + max(clip_wait, wait))
        with self.lock:
            h = self.health
            h.failures += 1
            h.retry_at = now + max(cap if paused else backoff(h.failures - 1, cap, self.rng), wait)
            if isinstance(exc, Paused):
                reason = exc.reason
            elif auth:
                reason = "credentials rejected"
            elif (
                isinstance(exc, IceThrottled)
                or getattr(exc, "code", "") in OSS_THROTTLING_CODES
                or getattr(exc, "status", None) == 429
            ):
                reason = THROTTLED
            else:
                reason = OUTAGE
            if h.online or reason != h.reason:
                what = "delivery paused" if paused else "clips stay pending"
                log.error(
                    "%s: %s; %s, retrying %s",
                    reason,
                    exc.cause if isinstance(exc, Paused) and exc.cause else exc,
                    what,
                    f"every {cap:.0f} s" if paused else f"with backoff (max {cap:.0f} s)",
                )
            h.online, h.reason = False, reason

    def snapshot(self) -> dict[str, Any]:
        """The uploader's status as plain data (for the supervisor's status model)."""
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

    # -- disk guard ----------------------------------------------------------------------------

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
                    self._retime(spool, row)
                finally:
                    with self.lock:
                        self.inflight.discard(row.id)
        keep = self.upload.keep_local_hours * 3600
        while (row := spool.oldest(("registered", "indexed"))) and (
            row.registered_at + keep <= now or self._over(spool)
        ):
            self._delete_local(spool, row, keyframes=True)
        stopped = spool.get_meta(STOP_RECORDING)
        while self._over(spool):
            if self.upload.on_full == "stop_recording":
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
            self._delete_local(spool, victim, keyframes=False, state="dropped", reason=reason)
            self.drops += 1
            log.error("clip %s %s (%d dropped so far)", victim.clip_id, reason, self.drops)
        if stopped:
            spool.set_meta(STOP_RECORDING, None)
            log.warning("disk has room again; recording resumes")

    def _over(self, spool: Spool) -> bool:
        free = shutil.disk_usage(self.data_dir).free
        return (
            spool.bytes_not_in_cloud() > self.upload.max_spool_bytes
            or free < self.upload.min_free_bytes
        )

    def _limit_text(self, spool: Spool) -> str:
        free = shutil.disk_usage(self.data_dir).free
        return (
            f"{spool.bytes_not_in_cloud() / 1e6:.1f} MB not yet uploaded (max "
            f"{self.upload.max_spool_bytes / 1e6:.1f} MB), {free / 1e6:.1f} MB free (min "
            f"{self.upload.min_free_bytes / 1e6:.1f} MB)"
        )

    @staticmethod
    def _oldest_pending(spool: Spool):
        for row in spool.rows(state="pending"):
            if not row.local_deleted:
                yield row

    @staticmethod
    def _delete_local(
        spool: Spool,
        row: ClipRow,
        *,
        keyframes: bool,
        state: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Row first, then files: a crash in between is finished by Spool.recover."""
        spool.mark_local_deleted(row.id, state=state, reason=reason)
        paths = spool.files(row)
        for p in paths if keyframes else paths[:1]:
            p.unlink(missing_ok=True)


def from_config(config: Config, credentials: CredentialSource | None = None) -> Uploader:
    """An uploader wired to the configured cloud, credentials from the default chain."""
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
            checkpoint_dir=data_dir / "oss-checkpoints",
            traffic_limit_bps=limit,
        )

    def make_ice() -> IceClient:
        return IceClient(cloud.ice_endpoint, source.get)

    return Uploader(
        data_dir, config.agent.device_id, cloud, config.upload, make_oss=make_oss, make_ice=make_ice
    )
