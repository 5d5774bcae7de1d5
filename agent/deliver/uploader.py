"""Delivery's first stage: spool rows → OSS objects (the clip's video and its keyframes).

A row goes `pending → uploading → uploaded`. A first try cannot find its objects on OSS; a row
already `uploading` was cut off (crash, outage) and checks what is there first: objects with
the same size and CRC-64 are not sent again, and a multipart upload resumes from its checkpoint
under `data_dir/oss-checkpoints`. Nothing goes up under a 1970 name and date: a clip cut while
the wall clock was unset is renamed from the boot clock first (agent/spool_repair.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent import layout
from agent.config import CloudSettings
from agent.deliver.answers import bucket_wide
from agent.deliver.oss import OssError, OssUploader
from agent.spool import CLOCK_FLOOR, ClipRow, Spool, State
from agent.spool_repair import repair_clock

log = logging.getLogger(__name__)


def dated(spool: Spool, row: ClipRow, now: float) -> ClipRow | None:
    """The row to upload, renamed and dated from the boot clock first if it was cut while the
    wall clock was unset; None while that must wait (clock still unset, files being published)."""
    if row.start_wall >= CLOCK_FLOOR:
        return row
    fresh = repair_clock(spool, row, now)
    if fresh is not None and fresh.start_wall < CLOCK_FLOOR and fresh.state == State.PENDING:
        log.warning(
            "clip %s was cut while the wall clock was unset and the gateway has "
            "rebooted since: its real time is lost; it goes up dated %s",
            fresh.clip_id,
            fresh.started_at,
        )
    return fresh


def upload(
    spool: Spool,
    oss: OssUploader,
    row: ClipRow,
    cloud: CloudSettings,
    device_id: str,
    clock: Callable[[], float],
) -> None:
    """Put the clip's keyframes, then its video, on OSS; the row becomes `uploaded`."""
    first_try = spool.advance(row.id, (State.PENDING,), State.UPLOADING)
    put = oss.upload_file if first_try else oss.ensure_uploaded
    clip_key, kf_keys = layout.keys_for(row, cloud.prefix, device_id)
    keyframes = [spool.absolute(k.path) for k in row.keyframes]
    try:
        for path, key in zip(keyframes, kf_keys):
            put(key, path)
        put(clip_key, spool.absolute(row.clip_path))
    except OssError as exc:
        raise bucket_wide(exc, cloud.bucket) or exc from None
    spool.advance(
        row.id,
        (State.UPLOADING,),
        State.UPLOADED,
        clip_key=clip_key,
        keyframe_keys=kf_keys,
        uploaded_at=clock(),
    )
