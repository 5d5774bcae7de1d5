"""The live sink: finished clips go into the spool, then their files get their final names."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from agent import layout
from agent.capture.clips import FinishedClip
from agent.spool import STOP_RECORDING, ClipRecord, Spool


class SpoolSink:
    """Files under `{data_dir}/clips/{camera}/{YYYY-MM-DD}/`, one spool row per clip."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def name_clip(self, camera: str, start: float, start_wall: float | None) -> tuple[str, Path]:
        wall = time.time() if start_wall is None else start_wall
        cid = layout.clip_id(camera, wall)
        return cid, layout.clip_path(self.spool.data_dir, camera, cid, wall)

    def refusal(self) -> str | None:
        """Set by the uploader's disk guard under `on_full = "stop_recording"`."""
        return self.spool.get_meta(STOP_RECORDING)

    def deliver(self, clip: FinishedClip) -> None:
        try:
            self._add(clip)
        except sqlite3.OperationalError as exc:  # "database or disk is full", mostly
            raise OSError(f"cannot catalogue it: {exc}") from exc
        clip.publish()  # after the commit: a crash in between is repaired by Spool.recover

    def _add(self, clip: FinishedClip) -> None:
        f = clip.file
        self.spool.add(
            ClipRecord(
                clip_id=clip.clip_id,
                camera=clip.camera,
                start_wall=f.start_wall if f.start_wall is not None else time.time(),
                media_start=f.start,
                media_end=f.end,
                event_start=clip.event_start,
                event_end=clip.event_end,
                clip_path=f.path,
                clip_bytes=f.bytes,
                keyframes=tuple((k.path, k.t) for k in clip.keyframes),
                keyframe_bytes=sum(k.tmp_path.stat().st_size for k in clip.keyframes),
                codec=clip.codec,
                width=clip.width,
                height=clip.height,
                frames=f.frames,
                peak_score=clip.peak_score,
                mean_score=clip.mean_score,
            )
        )
