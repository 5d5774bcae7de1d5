"""Shared helpers for tests on real media: generated scenes, ffprobe, interval checks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

FFPROBE = shutil.which("ffprobe")


def ffprobe(path: Path) -> dict:
    """Stream, format and first-frame facts of a media file, straight from ffprobe."""
    assert FFPROBE, "ffprobe missing: scripts/test.sh installs Debian's ffmpeg"
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(out.stdout)
    frames = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame,pts_time,pict_type",
            "-read_intervals",
            "%+#3",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    info["first_frames"] = json.loads(frames.stdout)["frames"]
    return info


def assert_valid_clip(path: Path, start: float, end: float, codec: str = "h264") -> None:
    """A clip plays from its first frame, starts at 0 and lasts the span it reports."""
    info = ffprobe(path)
    [video] = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert video["codec_name"] == codec, video["codec_name"]
    assert len(info["streams"]) == 1, "audio or other streams were not dropped"
    first = info["first_frames"][0]
    assert first["key_frame"] == 1, f"{path.name} does not start on a keyframe: {first}"
    assert float(info["format"]["start_time"]) == 0.0, info["format"]["start_time"]
    duration = float(info["format"]["duration"])
    assert abs(duration - (end - start)) < 0.08, (
        f"{path.name}: file lasts {duration:.3f} s, reports {end - start:.3f} s"
    )


def overlaps(a: tuple[float, float], b: tuple[float, float], slack: float = 0.0) -> bool:
    return a[0] < b[1] + slack and b[0] < a[1] + slack
