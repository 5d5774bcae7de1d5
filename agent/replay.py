"""`ipc-agent replay`: the capture pipeline on a recording, as fast as possible, into a folder.

Never touches the spool or the data directory, so it is safe beside a live agent; it is the
tool users tune their motion and clip settings with.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

from agent import layout
from agent.capture.pipeline import CameraPipeline, FinishedClip
from agent.capture.source import SourceError, file_path
from agent.config import CameraConfig, Config


class ReplayError(Exception):
    """The recording cannot be replayed; the message says why."""


class DirectorySink:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.count = 0

    def name_clip(self, camera: str, start: float, start_wall: float | None) -> tuple[str, Path]:
        self.count += 1
        cid = f"{camera}_{self.count:03d}"
        return cid, self.out_dir / f"{cid}{layout.VIDEO_SUFFIX}"

    def deliver(self, clip: FinishedClip) -> None:
        clip.publish()

    def refusal(self) -> str | None:
        return None


def clip_summary(clip: FinishedClip) -> dict[str, Any]:
    f = clip.file
    return {
        "camera": clip.camera,
        "clip_id": clip.clip_id,
        "start": round(f.start, 3),
        "end": round(f.end, 3),
        "duration": round(f.end - f.start, 3),
        "event_start": round(clip.event_start, 3),
        "event_end": round(clip.event_end, 3),
        "clip": str(f.path),
        "frames": f.frames,
        "bytes": f.bytes,
        "keyframes": [str(k.path) for k in clip.keyframes],
        "keyframe_times": [round(k.t, 3) for k in clip.keyframes],
        "peak_score": round(clip.peak_score, 5),
    }


def replay_camera(video: Path, config: Config, camera: str | None) -> CameraConfig:
    """The camera settings a replay uses: a named camera's, or the defaults."""
    if camera is not None:
        base = config.camera(camera)
    else:
        base = CameraConfig(name="replay", url=str(video), motion=config.motion, clip=config.clip)
    # A recording is one stream: detection runs on it, not on a camera's live sub-stream.
    return dataclasses.replace(base, url=str(video), detect_url="", realtime=False, loop=False)


def replay(
    video: Path,
    out_dir: Path,
    config: Config | None = None,
    camera: str | None = None,
    on_clip=None,
) -> list[dict[str, Any]]:
    """Cut `video` into clips under `out_dir`; returns one summary dict per clip, in order."""
    config = config or Config()
    path = file_path(str(video))
    if not path.is_file():
        raise ReplayError(f"{video}: no such file")
    cam = replay_camera(path, config, camera)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []

    def collect(clip: FinishedClip) -> None:
        summary = clip_summary(clip)
        results.append(summary)
        if on_clip:
            on_clip(summary)

    pipe = CameraPipeline(cam, DirectorySink(out_dir), threading.Event(), on_clip=collect)
    try:
        pipe.run()
    except SourceError as exc:
        raise ReplayError(str(exc)) from None
    if pipe.stats.packets == 0:
        raise ReplayError(f"{video}: no video packets could be read")
    if pipe.stats.frames_decoded == 0:
        raise ReplayError(f"{video}: no frame could be decoded ({pipe.stats.decode_errors} errors)")
    return results
