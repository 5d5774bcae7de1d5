"""Delivery's second stage: uploaded rows → search-library media, then their index job polled.

A row goes `uploaded → registered → indexed`. The MediaId is derived from device, camera and
clip, so a clip can never become two media. An insert whose answer is not a success (an error
we do not know to be refused before it ran, a timeout, a reset, a 5xx: the insert may have
taken effect) is settled by asking the library whether the MediaId is there
(QueryMediaIndexJob, a documented read): there → registered; not there → retried or failed
with the service's own message. No error code is trusted to mean "already exists" (the API
reference lists none for it). The index job is then polled slowly until it succeeds or fails.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.config import CloudSettings
from agent.deliver.answers import Paused, server_wait
from agent.deliver.ice import (
    IceAuthError,
    IceClient,
    IceCredentialsError,
    IceError,
    IceNotFound,
    IceThrottled,
)
from agent.deliver.library import INDEX_TYPE
from agent.spool import TO_INDEX, TO_REGISTER, ClipRow, Spool, State

log = logging.getLogger(__name__)

INDEX_CHECKS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # s between index-job polls


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


class Registrar:
    """Registers uploaded clips in the search library and follows their index jobs."""

    def __init__(
        self,
        cloud: CloudSettings,
        device_id: str,
        clock: Callable[[], float],
        index_checks: tuple[float, ...] = INDEX_CHECKS,
    ) -> None:
        self.cloud = cloud
        self.device_id = device_id
        self.clock = clock
        self.index_checks = index_checks

    def register(self, spool: Spool, ice: IceClient, row: ClipRow) -> None:
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
            State.REGISTERED,
            media_id=mid,
            registered_at=now,
            next_attempt_at=now + self.index_checks[0],
        )

    def check_index(self, spool: Spool, ice: IceClient, row: ClipRow) -> None:
        try:
            jobs = ice.query_media_index_job(self.cloud.search_lib, row.media_id)
        except IceError as exc:
            if not exc.retryable:
                self._check_library(ice, exc)
            raise
        now = self.clock()
        if jobs.succeeded:
            spool.advance(row.id, TO_INDEX, State.INDEXED, index_status="Success", indexed_at=now)
        elif jobs.failed:
            spool.advance(
                row.id,
                TO_INDEX,
                State.FAILED,
                index_status="Fail",
                reason="the search library's index job failed",
            )
            log.error("clip %s: index job failed in %s", row.clip_id, self.cloud.search_lib)
        else:
            checks = self.index_checks
            wait = checks[min(row.attempts + 1, len(checks) - 1)]
            spool.defer(row.id, "index job still running", now + wait)

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
