"""Shared helpers for tests on real media: generated scenes, ffprobe, interval checks."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

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


MOTION = (2.0, 4.5)  # s: a bright block crosses the frame, nothing else moves


def make_video(
    path: Path,
    *,
    codec: str = "libx264",
    size: tuple[int, int] = (320, 240),
    fps: int = 10,
    seconds: float = 6.0,
    bframes: int = 0,
    fmt: str | None = None,
    audio: str | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """A static noisy scene with one block moving during MOTION; optional audio beside it."""
    w, h = size
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        gop = f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes={bframes}"
        if codec == "libx264":
            # b-pyramid none: B-frames are never references (see empty_disposable_frames)
            params = gop + ":b-pyramid=none:sliced-threads=0"
            video.options = {"x264-params": params, "preset": "veryfast", "threads": "1"}
        elif codec == "libx265":
            params = gop + ":log-level=error:frame-threads=1:pools=none"
            video.options = {"x265-params": params, "preset": "ultrafast"}
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=16000)
            sound.layout = "mono"
        rng = np.random.default_rng(7)
        base = rng.integers(60, 90, (h, w), dtype=np.uint8)
        chroma = np.full((h // 2, w), 128, np.uint8)
        samples = 16000 // fps
        for i in range(int(seconds * fps)):
            luma = base.copy()
            t = i / fps
            if MOTION[0] <= t < MOTION[1]:
                x0 = int((t - MOTION[0]) / (MOTION[1] - MOTION[0]) * (w - w // 5))
                luma[h // 3 : h // 3 + h // 5, x0 : x0 + w // 5] = 220
            frame = av.VideoFrame.from_ndarray(np.vstack([luma, chroma]), format="yuv420p")
            if pix_fmt != "yuv420p":
                frame = frame.reformat(format=pix_fmt)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
            if sound is not None:
                pcm = np.zeros((1, samples), np.float32 if audio == "aac" else np.int16)
                chunk = av.AudioFrame.from_ndarray(
                    pcm, format="fltp" if audio == "aac" else "s16", layout="mono"
                )
                chunk.sample_rate, chunk.pts = 16000, i * samples
                out.mux(sound.encode(chunk))
        out.mux(video.encode())
        if sound is not None:
            out.mux(sound.encode())
    return path
