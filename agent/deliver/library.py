"""The operator's cloud commands: set up the search library, and search it.

Thin over the ICE client; the CLI prints what these return.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from agent.config import CloudSettings
from agent.deliver.ice import (
    Clip,
    IceAuthError,
    IceClient,
    IceCredentialsError,
    IceError,
    SearchLib,
)
from agent.spool import Spool
from agent.timestamps import utc_iso

INDEX_TYPE = "mm"  # the multimodal (large visual model) index that natural-language search uses


def _query(ice: IceClient, name: str) -> SearchLib | None:
    """QuerySearchLib; None when the library is not there. A refusal that is not about the
    library (credentials, throttling, an outage) is raised: it says nothing either way."""
    try:
        return ice.query_search_lib(name)
    except (IceAuthError, IceCredentialsError):
        raise
    except IceError as exc:
        if exc.retryable:
            raise
        return None  # NotExist, or a 400 in words of its own: the create call settles it


def init_library(ice: IceClient, cloud: CloudSettings, level: str) -> list[str]:
    """Create the search library and its index unless they exist. Returns what it did.

    What exists is decided by QuerySearchLib, never by a create call's error code (the API
    reference lists none): a create that fails is followed by another query, and only if
    that does not show the library (or index) is the create's error raised.
    """
    done: list[str] = []
    name = cloud.search_lib
    lib = _query(ice, name)
    if lib is not None:
        done.append(f"search library {name} exists")
    else:
        try:
            ice.create_search_lib(name)
        except IceError:
            lib = _query(ice, name)
            if lib is None:
                raise
            done.append(f"search library {name} exists")
        else:
            done.append(f"search library {name} created")
        lib = lib or ice.query_search_lib(name)
    index = lib.index(INDEX_TYPE)
    if index is None:
        try:
            ice.create_search_index(name, INDEX_TYPE, {"level": level})
        except IceError:
            index = ice.query_search_lib(name).index(INDEX_TYPE)
            if index is None:
                raise
            done.append(f"index {INDEX_TYPE} exists")
        else:
            done.append(f"index {INDEX_TYPE} created (level {level})")
            index = ice.query_search_lib(name).index(INDEX_TYPE)
    else:
        done.append(f"index {INDEX_TYPE} exists")
    readiness = index.readiness if index else None
    state = index.status if index else None
    done.append(
        f"index {INDEX_TYPE}: status {state or '?'}, readiness {readiness or '?'}"
        + ("" if readiness == "Normal" else " (new media are searchable once Normal)")
    )
    return done


@dataclass(frozen=True)
class Match:
    """One matching span of a clip, mapped back to a camera and wall-clock time.

    A hit without a local catalog row (a clip from another gateway in the same library, a
    row purged since) is kept: its MediaId and the span's offsets in the clip are what the
    service gives; camera, clip and wall-clock times are then None.
    """

    media_id: str
    score: float | None
    camera: str | None
    clip_id: str | None
    start: float | None  # epoch seconds of the span's start (None without a local row)
    end: float | None
    clip_path: str | None  # local file, if the gateway still has it
    offset_start: float | None = None  # s into the clip (ClipInfo From)
    offset_end: float | None = None  # ClipInfo To

    def as_dict(self) -> dict:
        return {
            "media_id": self.media_id,
            "score": self.score,
            "camera": self.camera,
            "clip_id": self.clip_id,
            "start": utc_iso(self.start),
            "end": utc_iso(self.end),
            "start_epoch": self.start,
            "end_epoch": self.end,
            "clip": self.clip_path,
            "offset_start": self.offset_start,
            "offset_end": self.offset_end,
            "in_catalog": self.clip_id is not None,
        }


def parse_since(text: str, now: float | None = None) -> float:
    """Epoch seconds from "2h", "30m", "1d" (ago) or an ISO date/time (UTC unless it says)."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip())
    if m:
        return now - float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected a duration ago (30m, 2h, 1d) or an ISO time "
            "(2026-11-24 or 2026-11-24T08:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def search(
    ice: IceClient,
    cloud: CloudSettings,
    spool: Spool | None,
    text: str,
    *,
    camera: str | None = None,
    since: float | None = None,
    page: int = 1,
    limit: int = 10,
) -> tuple[int, list[Match]]:
    """Natural-language search; (media matching in the library, this page's matches).

    `camera` and `since` go to the service as CustomFilters (the uploader's MsgBody puts the
    camera in strField1 and the start second in intField1), so what comes back is already
    filtered: every hit is shown, with or without a local row, and the page holds the
    media numbered (page - 1) * limit + 1 onwards of `total`. A media hit without spans
    still gives one Match (offsets None).
    """
    # The uploader's MsgBody puts the camera in strField1 and the start second in intField1.
    filters: dict = {}
    if camera:
        filters["strField1"] = camera
    if since is not None:
        filters["intField1"] = {"gte": int(since)}
    result = ice.search_media_by_hybrid(
        cloud.search_lib,
        text,
        namespace=cloud.namespace,
        page_no=page,
        page_size=limit,
        custom_filters=filters or None,
    )
    matches: list[Match] = []
    for hit in result.hits:
        row = spool.by_media_id(hit.media_id) if spool else None
        base = row.start_wall if row else None
        for clip in hit.clips or (Clip(None, None, None),):
            start = base + clip.start if base is not None and clip.start is not None else None
            end = base + clip.end if base is not None and clip.end is not None else None
            matches.append(
                Match(
                    media_id=hit.media_id,
                    score=clip.score,
                    camera=row.camera if row else None,
                    clip_id=row.clip_id if row else None,
                    start=start,
                    end=end,
                    clip_path=str(spool.absolute(row.clip_path))
                    if row and spool and not row.local_deleted
                    else None,
                    offset_start=clip.start,
                    offset_end=clip.end,
                )
            )
    matches.sort(key=lambda m: -(m.score or 0.0))
    return result.total, matches
