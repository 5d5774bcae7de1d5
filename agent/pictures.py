"""What the detector sees, as pictures to tune by (`ipc-agent tune`, `replay --debug`).

- `frame.png`: a frame of the scene with the configured mask polygons (outlined, shaded) and a
  grid labelled in the normalised 0..1 coordinates masks are written in, so a mask can be read
  off the picture;
- `heatmap.png`: where motion was seen over the run (how often each spot was part of a motion
  verdict), over the dimmed frame, the masked area shaded blue.

And for `replay --debug`: `debug.mp4`, the recording at the analysis rate with the pixels the
detector saw moving in red, the mask shaded, and a bar along the top: grey idle, blue inside a
clip, red while its motion event lasts, with the media time.

The detector runs on every analysed frame (no compressed-domain gate), with the camera's
settings and mask. Pictures go through PyAV's own PNG and H.264 encoders: no new dependency.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from agent.capture.motion import MotionDetector, rasterize
from agent.config import CameraConfig

GRID = 10  # grid lines every 1/GRID of the picture
MASK_TINT = np.array([40, 90, 255], np.float32)  # blue
MOVING_TINT = np.array([255, 40, 40], np.float32)  # red

# A 3x5 bitmap font for the labels: digits, point, minus, "s".
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001010010010", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "s": "000011010001110", " ": "000000000000000",
}  # fmt: skip


def text(img: np.ndarray, s: str, x: int, y: int, scale: int, color=(255, 255, 255)) -> None:
    """Draw `s` with its top-left corner at (x, y), on a dark box so it reads on any scene."""
    h, w = img.shape[:2]
    x1, y1 = min(x + (4 * len(s) + 1) * scale, w), min(y + 7 * scale, h)
    if x1 <= x or y1 <= y:
        return
    img[y:y1, x:x1] //= 3
    for i, ch in enumerate(s):
        bits = np.array([c == "1" for c in _GLYPHS.get(ch, _GLYPHS[" "])]).reshape(5, 3)
        glyph = np.kron(bits, np.ones((scale, scale), bool))
        gx, gy = x + (1 + 4 * i) * scale, y + scale
        gh, gw = min(glyph.shape[0], h - gy), min(glyph.shape[1], w - gx)
        if gh > 0 and gw > 0:
            img[gy : gy + gh, gx : gx + gw][glyph[:gh, :gw]] = color


def line(img: np.ndarray, p0, p1, color, width: int = 1) -> None:
    """A straight line between two (x, y) pixel points."""
    h, w = img.shape[:2]
    n = int(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1]))) + 1
    xs = np.linspace(p0[0], p1[0], n).round().astype(int)
    ys = np.linspace(p0[1], p1[1], n).round().astype(int)
    for d in range(-(width // 2), width - width // 2):
        for yy, xx in ((ys + d, xs), (ys, xs + d)):
            ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
            img[yy[ok], xx[ok]] = color


def draw_grid(img: np.ndarray) -> None:
    h, w = img.shape[:2]
    scale = max(2, min(w, h) // 180)
    for i in range(1, GRID):
        x, y = round(i * w / GRID), round(i * h / GRID)
        img[:, x] = img[:, x] // 2 + 127
        img[y, :] = img[y, :] // 2 + 127
    for i in range(GRID + 1):
        label = f"{i / GRID:.1f}"
        x = min(round(i * w / GRID), w - (4 * len(label) + 1) * scale)
        text(img, label, x, 0, scale)  # x along the top
        y = min(round(i * h / GRID), h - 7 * scale)
        if i:
            text(img, label, 0, y, scale)  # y down the left side


def draw_mask(img: np.ndarray, mask, inside: np.ndarray | None = None) -> None:
    h, w = img.shape[:2]
    if not mask:
        return
    inside = rasterize(mask, w, h) if inside is None else inside
    img[inside] = (0.55 * img[inside] + 0.45 * MASK_TINT).astype(np.uint8)
    for poly in mask:
        pts = [(x * (w - 1), y * (h - 1)) for x, y in poly]
        for a, b in zip(pts, pts[1:] + pts[:1], strict=True):
            line(img, a, b, (255, 255, 0), max(1, w // 640))


def write_png(img: np.ndarray, path: Path) -> None:
    codec = av.CodecContext.create("png", "w")
    codec.height, codec.width = img.shape[:2]
    codec.pix_fmt = "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    data = b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])
    path.write_bytes(data)


def heat_colours(share: np.ndarray) -> np.ndarray:
    """0..1 -> black, red, yellow, white (a 'hot' colour map), as float RGB 0..255."""
    s = np.clip(share, 0.0, 1.0)[..., None]
    return 255.0 * np.clip(np.concatenate([3 * s, 3 * s - 1, 3 * s - 2], axis=-1), 0.0, 1.0)


def upscale(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of a small 2-D array to (h, w)."""
    ys = (np.arange(h) * a.shape[0] // h).clip(0, a.shape[0] - 1)
    xs = (np.arange(w) * a.shape[1] // w).clip(0, a.shape[1] - 1)
    return a[ys[:, None], xs[None, :]]


def analysed_frames(url: str, cam: CameraConfig, seconds: float | None) -> Iterator:
    """(t, frame, luma) at the camera's analysis rate, for `seconds` (None: to the end)."""
    from agent.capture.decoder import luma_plane

    options = {"rtsp_transport": cam.transport} if url.startswith("rtsp") else {}
    interval, due, t0 = 1.0 / cam.motion.detect_fps, -math.inf, None
    with av.open(url, options=options, timeout=cam.timeout) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base)
            t0 = t if t0 is None else t0
            if seconds is not None and t - t0 > seconds:
                return
            if t >= due:  # the pipeline's schedule (session.py's _due)
                due = max(due + interval, t - interval)
                yield t, frame, luma_plane(frame)


def tune(url: str, out: Path, cam: CameraConfig, seconds: float | None = None) -> dict:
    """Run the detector over `url`; write frame.png and heatmap.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    det: MotionDetector | None = None
    counts: np.ndarray | None = None
    analysed = with_motion = 0
    still = last = None
    for t, frame, luma in analysed_frames(url, cam, seconds):
        if det is None or det.size != (frame.width, frame.height):
            det = MotionDetector(cam.motion, frame.width, frame.height, cam.mask)
            counts = np.zeros(det.shape, np.float32)
            analysed = with_motion = 0
        r = det.analyse(luma, t)
        last = frame
        if r.warming_up or r.global_change:
            continue
        analysed += 1
        if r.motion and det.moving is not None:
            counts += det.moving
            with_motion += 1
        elif still is None or r.t - still[0] >= 5.0:
            still = (r.t, frame)  # a recent view with nothing moving
    if det is None or last is None or counts is None:
        raise ValueError(f"{url}: no frame could be decoded")
    view = (still[1] if still else last).to_ndarray(format="rgb24")
    h, w = view.shape[:2]
    inside = rasterize(cam.mask, w, h) if cam.mask else None
    picture = view.copy()
    draw_mask(picture, cam.mask, inside)
    draw_grid(picture)
    write_png(picture, out / "frame.png")
    share = counts / max(analysed, 1)
    peak = float(share.max())
    heat = upscale(share / peak if peak > 0 else share, h, w)
    base = view.astype(np.float32) * 0.35
    alpha = np.clip(heat * 4, 0, 1)[..., None]  # weak motion shows too
    hot = (base * (1 - alpha) + heat_colours(heat) * alpha).astype(np.uint8)
    draw_mask(hot, cam.mask, inside)
    draw_grid(hot)
    write_png(hot, out / "heatmap.png")
    return {
        "frame": str(out / "frame.png"),
        "heatmap": str(out / "heatmap.png"),
        "analysed": analysed,
        "with_motion": with_motion,
        "peak_share": round(peak, 4),  # the most active spot moved in this share of frames
    }


def debug_video(video: Path, out: Path, cam: CameraConfig, clips: list[dict]) -> Path:
    """`debug.mp4` in `out`: the analysed frames annotated (see the module docstring)."""
    path = out / "debug.mp4"
    det: MotionDetector | None = None
    inside = None
    rate = Fraction(cam.motion.detect_fps).limit_denominator(1000)
    with av.open(str(path), "w", format="mp4") as dst:
        stream = None
        for i, (t, frame, luma) in enumerate(analysed_frames(str(video), cam, None)):
            if det is None or det.size != (frame.width, frame.height):
                det = MotionDetector(cam.motion, frame.width, frame.height, cam.mask)
                inside = rasterize(cam.mask, frame.width, frame.height) if cam.mask else None
            r = det.analyse(luma, t)
            img = frame.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            if stream is None:
                stream = dst.add_stream("libx264", rate=rate, options={"crf": "23"})
                stream.width, stream.height, stream.pix_fmt = w // 2 * 2, h // 2 * 2, "yuv420p"
            if r.motion and det.moving is not None:
                red = upscale(det.moving, h, w)
                img[red] = (0.4 * img[red] + 0.6 * MOVING_TINT).astype(np.uint8)
            draw_mask(img, cam.mask, inside)
            in_clip = any(c["start"] <= t < c["end"] for c in clips)
            in_event = any(c["event_start"] <= t <= c["event_end"] for c in clips)
            bar = max(6, h // 30)
            img[:bar] = (200, 40, 40) if in_event else (40, 90, 220) if in_clip else (90, 90, 90)
            text(img, f"{t:.1f}s", 2, 0, max(1, bar // 7))
            out_frame = av.VideoFrame.from_ndarray(img[: h // 2 * 2, : w // 2 * 2], "rgb24")
            out_frame.pts = i
            out_frame.time_base = 1 / rate
            dst.mux(stream.encode(out_frame))
        if stream is not None:
            dst.mux(stream.encode(None))
    return path
