"""Decoded frames to JPEG files, with PyAV's MJPEG encoder (no image library needed)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter

JPEG_QSCALE = 3  # MJPEG quantiser: 2 is near-lossless, 5 visibly soft; 3 keeps detail for search


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size with the longest side at most `max_side`, aspect kept, even dimensions."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def prepare(
    frame: av.VideoFrame, max_side: int, reformatter: VideoReformatter | None = None
) -> av.VideoFrame:
    """The frame at JPEG size and format; cheap (no copy) when it is already small enough.

    A caller that prepares many frames passes its own `reformatter`, which keeps the scaler
    set up between frames (half the cost of a fresh one each time)."""
    w, h = target_size(frame.width, frame.height, max_side)
    if (w, h) == (frame.width, frame.height) and frame.format.name in ("yuv420p", "yuvj420p"):
        return frame
    if reformatter is not None:
        return reformatter.reformat(frame, width=w, height=h, format="yuvj420p")
    return frame.reformat(width=w, height=h, format="yuvj420p")


def encode_jpeg(frame: av.VideoFrame, max_side: int) -> bytes:
    """`frame` (resized to `max_side`) as a baseline JPEG."""
    frame = prepare(frame, max_side)
    if frame.format.name != "yuvj420p":
        frame = frame.reformat(format="yuvj420p")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = frame.width, frame.height
    ctx.pix_fmt = "yuvj420p"
    ctx.thread_count = 1  # a thread pool per image cost ~10 MB of peak memory to save ~4 ms
    ctx.time_base = Fraction(1, 25)
    ctx.qmin = ctx.qmax = JPEG_QSCALE
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def write_file(data: bytes, path: Path) -> None:
    """`data` at `path`, fsync'd."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_jpeg(frame: av.VideoFrame, path: Path, max_side: int) -> None:
    """Encode `frame` (resized to `max_side`) as a baseline JPEG at `path`."""
    write_file(encode_jpeg(frame, max_side), path)


class JpegImages:
    """Keyframe candidates kept as JPEGs (~0.1 MB; the picture itself at 1280x720 is 1.4 MB,
    times the pool's 8)."""

    def __init__(self, max_side: int) -> None:
        self.max_side = max_side
        self.reformatter = VideoReformatter()

    def prepare(self, image: av.VideoFrame | bytes) -> bytes:
        if isinstance(image, bytes):
            return image
        return encode_jpeg(prepare(image, self.max_side, self.reformatter), self.max_side)

    def image(self, kept: bytes) -> bytes:
        return kept
