"""Clips as capture hands them to the spool (ClipRecord), for tests of the spool and of the
commands that read it."""

from __future__ import annotations

from pathlib import Path

from agent.spool import ClipRecord


def record(data_dir: Path, clip_id: str, keyframes: int = 2) -> ClipRecord:
    day = data_dir / "clips" / "cam" / "2026-11-24"
    return ClipRecord(
        clip_id=clip_id,
        camera="cam",
        start_wall=1_795_000_000.25,
        media_start=10.0,
        media_end=20.0,
        event_start=13.0,
        event_end=15.0,
        clip_path=day / f"{clip_id}.mp4",
        clip_bytes=123,
        keyframes=tuple((day / f"{clip_id}_{i}.jpg", 13.0 + i) for i in range(keyframes)),
        keyframe_bytes=2 * keyframes,
        codec="h264",
        width=640,
        height=360,
        frames=150,
        peak_score=0.1,
        mean_score=0.05,
    )
