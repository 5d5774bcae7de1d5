"""Every name a clip has, made in one place: its id, its files, their `.tmp` names while they
are written, and its objects in the bucket. Pure: names in, names out, no I/O.

The data directory holds `spool.db` (the catalog), `clips/` and `oss-checkpoints/` (multipart
uploads to resume). A clip `{camera}_{YYYYMMDDTHHMMSSZ}_{random}` (UTC start) is, under it,
`clips/{camera}/{YYYY-MM-DD}/{clip_id}.mp4` with keyframes `{clip_id}_{i}.jpg` beside it, and in
the bucket `{prefix}{device_id}/{camera}/{YYYY}/{MM}/{DD}/` + the same file names. A file is
written as `{name}.tmp` and renamed once the spool has its row (see agent/spool.py).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sized
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

TMP_SUFFIX = ".tmp"
VIDEO_SUFFIX = ".mp4"
SPOOL_DB = "spool.db"  # under the data directory, like the next two
CLIPS_DIR = "clips"
CHECKPOINTS_DIR = "oss-checkpoints"
#: The UTC start inside a clip id; `retimed_id` replaces it.
CLIP_STAMP = re.compile(r"_\d{8}T\d{6}Z_")


def clip_id(camera: str, start_wall: float) -> str:
    """`{camera}_{UTC start}_{random}`: sorts by time per camera, unique across restarts."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start_wall))
    return f"{camera}_{stamp}_{secrets.token_hex(3)}"


def retimed_id(old_id: str, start_wall: float) -> str:
    """`old_id` with its start stamp replaced by `start_wall`'s (its random tail kept)."""
    stamp = time.strftime("_%Y%m%dT%H%M%SZ_", time.gmtime(start_wall))
    head, _, tail = old_id.rpartition("_")
    return CLIP_STAMP.sub(stamp, head + "_", count=1) + tail


def day(start_wall: float) -> str:
    """The folder of a clip's day, UTC."""
    return time.strftime("%Y-%m-%d", time.gmtime(start_wall))


def spool_db(data_dir: Path) -> Path:
    return data_dir / SPOOL_DB


def clips_dir(data_dir: Path) -> Path:
    return data_dir / CLIPS_DIR


def checkpoint_dir(data_dir: Path) -> Path:
    """Where OSS multipart uploads keep what they need to resume after a crash."""
    return data_dir / CHECKPOINTS_DIR


def camera_dir(data_dir: Path, camera: str) -> Path:
    return clips_dir(data_dir) / camera


def clip_path(data_dir: Path, camera: str, clip_id: str, start_wall: float) -> Path:
    return camera_dir(data_dir, camera) / day(start_wall) / f"{clip_id}{VIDEO_SUFFIX}"


def keyframe_suffix(i: int) -> str:
    return f"_{i}.jpg"


def keyframe_path(clip: Path, i: int) -> Path:
    """Keyframe `i` of the clip whose video is `clip`: beside it, `{clip_id}_{i}.jpg`."""
    return clip.with_name(clip.stem + keyframe_suffix(i))


def keyframe_tmp_glob(clip: Path) -> str:
    """A glob, in the clip's folder, for its keyframes still under `.tmp` names."""
    return f"{clip.stem}_*.jpg{TMP_SUFFIX}"


def tmp_path(path: Path) -> Path:
    """Where `path` is written until it is published."""
    return path.with_name(path.name + TMP_SUFFIX)


def retimed_path(path: Path, old_id: str, new_id: str, start_wall: float) -> Path:
    """A clip file's name once the clip is `new_id`, filed under `start_wall`'s day."""
    return path.parent.parent / day(start_wall) / path.name.replace(old_id, new_id)


def normalize_prefix(prefix: str) -> str:
    """``""`` or ``"a/b/"``: no leading slash (OSS keys must not start with one), one trailing."""
    prefix = prefix.strip().strip("/")
    return f"{prefix}/" if prefix else ""


def object_key(
    prefix: str,
    device_id: str,
    camera: str,
    start_wall_epoch: float,
    clip_id: str,
    suffix: str,
) -> str:
    """``{prefix}{device_id}/{camera}/{YYYY}/{MM}/{DD}/{clip_id}{suffix}`` (UTC date).

    ``suffix`` is ``".mp4"`` for the clip and ``"_{i}.jpg"`` for keyframe ``i``.  The same
    clip always maps to the same key, which is what makes a repeated upload idempotent.
    """
    for name, value in (("device_id", device_id), ("camera", camera), ("clip_id", clip_id)):
        if not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(f"{name} {value!r} cannot be a single object key segment")
    if not suffix or "/" in suffix:
        raise ValueError(f"suffix {suffix!r} must be non-empty and contain no '/'")
    date = datetime.fromtimestamp(start_wall_epoch, tz=timezone.utc)
    return (
        f"{normalize_prefix(prefix)}{device_id}/{camera}/"
        f"{date:%Y}/{date:%m}/{date:%d}/{clip_id}{suffix}"
    )


class NamedClip(Protocol):
    """What names a clip's objects (a spool row has it)."""

    @property
    def camera(self) -> str: ...
    @property
    def start_wall(self) -> float: ...
    @property
    def clip_id(self) -> str: ...
    @property
    def keyframes(self) -> Sized: ...


def keys_for(clip: NamedClip, prefix: str, device_id: str) -> tuple[str, list[str]]:
    """The object keys of a clip's video and of each of its keyframes."""

    def key(suffix: str) -> str:
        return object_key(prefix, device_id, clip.camera, clip.start_wall, clip.clip_id, suffix)

    return key(VIDEO_SUFFIX), [key(keyframe_suffix(i)) for i in range(len(clip.keyframes))]
