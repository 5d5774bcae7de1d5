"""Camera streams through PyAV: open, read, time, reconnect. Hides PyAV from the rest.

A `Source` yields `Connection`s; each connection yields `MediaPacket`s on one continuous
session timeline. What real cameras do to timestamps is absorbed here: a first packet without
pts, missing dts, backward jumps and resets (a camera reboot, a file looping), long forward
gaps (lost packets). Each of these is glued so that media time keeps increasing, and the packet
after the jump carries `discontinuity=True` so the pipeline can close the clip cleanly.

Live sources reconnect forever: quick first retries (0.5 s, 1 s, 2 s ...) capped at the
camera's `reconnect_max` (default 5 s: a camera that comes back streams again within seconds,
and polling a LAN camera that often costs nothing), with jitter; wrong credentials are retried
slowly (30 s doubling to 5 min) so a camera does not lock the account out. A live stream with
no packet for `timeout` s is `stalled` at once: a packet FFmpeg hands over after that silence
(its RTSP demuxer flushes what it held when its own timeout fires) is not yielded as a frame.
Every error names its cause: timeout, refused, DNS, 401/403/404, unsupported codec, corrupt
data. File sources replay through the same code, paced at native rate when `realtime` is set.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import av

from agent.config import CameraConfig, redact

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
AUTH_BACKOFF_START = 30.0
AUTH_BACKOFF_CAP = 300.0
HEALTHY_AFTER = 10.0  # s of streaming after which the backoff starts over
JUMP_FRAMES = 50  # a forward timestamp gap longer than this many frame intervals is a jump
JUMP_MIN = 2.0  # ... and never shorter than this many seconds
WALL_DRIFT = 2.0  # s a live stream may run late of the host clock before wall time re-anchors
WALL_WINDOW = 60.0  # s of media over which a live stream's wall-clock offset is estimated
SUPPORTED_CODECS = ("h264", "hevc")


@dataclass
class MediaPacket:
    """A demuxed video packet with timing the rest of the pipeline can trust."""

    packet: av.Packet
    t: float  # media seconds, monotonic over the whole session (jumps already glued)
    time_base: float  # seconds per tick of pts, dts and duration
    pts: int  # ticks, continuous like `t`
    dts: int
    duration: int  # ticks; estimated when the camera leaves it out
    key: bool
    wall: float | None  # UTC epoch seconds this packet was captured at
    discontinuity: bool = False  # timestamps jumped just before this packet (glued in `t`)
    seq: int = 0  # position in its connection: consecutive packets differ by 1


class SourceError(Exception):
    """A stream could not be opened or read; the message is safe to log (no secrets)."""


class AuthError(SourceError):
    """The camera refused our credentials."""


class UnsupportedStream(SourceError):
    """The input has no video stream we can record (no video, or a codec we do not support)."""


@dataclass
class Connection:
    container: av.container.InputContainer
    stream: av.video.stream.VideoStream
    packets: Iterator[MediaPacket]

    @property
    def codec(self) -> str:
        return self.stream.codec_context.name

    @property
    def size(self) -> tuple[int, int]:
        return self.stream.codec_context.width, self.stream.codec_context.height


def file_path(url: str) -> Path:
    return Path(url[len("file://") :]) if url.startswith("file://") else Path(url)


def open_input(url: str, *, transport: str = "tcp", timeout: float = 10.0):
    """Open a stream or file; raise SourceError subclasses with redacted messages that name
    the cause (see :func:`open_error`)."""
    is_file = "://" not in url or url.startswith("file://")
    target = str(file_path(url)) if is_file else url
    options = {}
    if not is_file and url.startswith("rtsp"):
        options = {
            "rtsp_transport": transport,
            "allowed_media_types": "video",
            "timeout": str(int(timeout * 1_000_000)),
        }
    started = time.monotonic()
    try:
        if is_file:
            container = av.open(target, options=options)
        else:
            container = av.open(target, options=options, timeout=(timeout, timeout))
    except (av.FFmpegError, OSError) as exc:
        raise open_error(url, exc, time.monotonic() - started, timeout, is_file) from None
    if not container.streams.video:
        container.close()
        raise UnsupportedStream(f"{redact(url)}: no video stream")
    stream = container.streams.video[0]
    if stream.codec_context.name not in SUPPORTED_CODECS:
        name = stream.codec_context.name
        container.close()
        raise UnsupportedStream(
            f"{redact(url)}: video codec {name!r} is not supported (H.264 or H.265 only)"
        )
    stream.codec_context.thread_count = 1  # one camera, one core at most: no frame threads
    return container, stream


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return redact(str(text))


def _resolves(url: str) -> bool:
    """Does the URL's host name resolve? (Asked only after an open failed with EIO, which is
    what FFmpeg reports a failed name lookup as.)"""
    try:
        host = urlsplit(url).hostname
        if not host:
            return True
        socket.getaddrinfo(host, None)
    except (OSError, ValueError, UnicodeError):
        return False
    return True


def open_error(
    url: str, exc: BaseException, elapsed: float, timeout: float, is_file: bool
) -> SourceError:
    """The SourceError for a failed open, naming the real cause.

    FFmpeg's own words mislead: a camera that accepts the connection and then says nothing
    (frozen, or a wrong port) ends in "Invalid data found when processing input" once the
    timeout fires, and a name that does not resolve is a bare "Input/output error".
    """
    where = redact(url)
    if isinstance(exc, av.error.HTTPUnauthorizedError):
        return AuthError(f"{where}: the camera rejected the credentials (401)")
    if isinstance(exc, av.error.HTTPForbiddenError):
        return AuthError(f"{where}: the camera refused access to this stream (403)")
    code = getattr(exc, "errno", None)
    if isinstance(exc, av.error.HTTPNotFoundError):
        why = "the camera has no such stream (404); check the path"
    elif is_file:
        invalid = isinstance(exc, av.error.InvalidDataError)
        why = "corrupt or not a video file" if invalid else _reason(exc)
    elif (
        isinstance(exc, av.error.ExitError) or elapsed >= timeout - 0.25 or code == errno.ETIMEDOUT
    ):
        why = f"no answer within {timeout:g} s (timed out)"
    elif code == errno.ECONNREFUSED:
        why = "connection refused (nothing listens on that port)"
    elif code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        why = "host unreachable (no route)"
    elif code == errno.EIO and not _resolves(url):
        why = f"cannot resolve the host name {urlsplit(url).hostname!r} (DNS)"
    elif isinstance(exc, av.error.InvalidDataError):
        why = f"corrupt data, not a stream FFmpeg can read ({_reason(exc)})"
    else:
        why = _reason(exc)
    return SourceError(f"{where}: cannot open: {why}")


def retry_delay(backoff: float) -> float:
    """The wait before the next attempt: `backoff` less up to a quarter, so cameras that fail
    together do not retry in step, and the cap is the longest wait there is."""
    return random.uniform(0.75 * backoff, backoff)


def stalled(waited: float, timeout: float, first: bool) -> bool:
    """Did the demuxer wait `timeout` s or more for this packet? Only the wait inside FFmpeg
    counts: the time we spent on the previous packet (a slow disk, say) is not the camera's.
    A connection's first packet waits for FFmpeg's probing, which its open timeout covers."""
    return not first and waited >= timeout


class Timeline:
    """Maps each connection's raw timestamps onto one continuous session timeline."""

    def __init__(self) -> None:
        self.offset = 0  # ticks added to raw timestamps (in the current time base)
        self.time_base: float | None = None
        self.last_dts: int | None = None  # session ticks
        self.interval = 0  # typical frame interval, ticks
        self.anchored = False  # has this connection's offset been set from a real timestamp?

    def begin(self, time_base: float) -> None:
        """A new connection: its first packet continues from the last one, whatever its raw ts."""
        if self.time_base is not None and self.last_dts is not None and time_base != self.time_base:
            self.last_dts = round(self.last_dts * self.time_base / time_base)
            self.interval = round(self.interval * self.time_base / time_base)
        self.time_base = time_base
        self.anchored = False

    def place(self, pts: int | None, dts: int | None, duration: int) -> tuple[int, int, int, bool]:
        """Session (pts, dts, duration, discontinuity) for a packet's raw timestamps."""
        assert self.time_base is not None, "begin() a connection first"
        raw = dts if dts is not None else pts
        # Until an interval is learnt (never, for a stream without any timestamps: a raw .h264
        # file) the packet's own duration is the step; one tick would put every frame at t=0.
        step = max(self.interval or duration, 1)
        following = 0 if self.last_dts is None else self.last_dts + step
        jump = False
        if raw is None:  # no timestamp at all (some cameras' first frame): one interval on
            new_dts = following
        elif not self.anchored:
            new_dts = following
            self.offset = new_dts - raw
            self.anchored = True
        else:
            new_dts = raw + self.offset
            assert self.last_dts is not None
            gap = new_dts - self.last_dts
            limit = max(JUMP_MIN / self.time_base, JUMP_FRAMES * step)
            if abs(gap) > limit:  # camera reboot, loop, lost seconds: glue and flag
                new_dts = following
                self.offset = new_dts - raw
                jump = True
            elif gap <= 0:  # a repeated or slightly reordered timestamp: keep dts increasing
                new_dts = self.last_dts + 1
            else:
                self.interval = gap if not self.interval else round(0.9 * self.interval + 0.1 * gap)
        new_pts = new_dts if pts is None else max(pts + self.offset, new_dts)
        self.last_dts = new_dts
        return new_pts, new_dts, duration or step, jump


class WallClock:
    """Wall-clock time of a live stream's packets, from their media times and arrival times.

    A packet cannot arrive before it was captured, and most arrive within a few ms, so the
    capture time of media time t is `t + offset`, offset being the least `arrival - t` over the
    last WALL_WINDOW s of media: the promptest packet's. The first packets of a connection come
    in a burst, held back by FFmpeg's stream probing (~1.8 s at 15 fps); anchoring on the first
    packet, as this did before, made every wall time that much late for the whole connection.
    The window lets the estimate follow a camera clock that runs slow against the host's; a
    packet later than the estimate by more than WALL_DRIFT (the host clock jumped forward, a
    stall) starts the estimate over. Wall times never go backwards unless the host clock does.
    """

    def __init__(self, window: float = WALL_WINDOW, drift: float = WALL_DRIFT) -> None:
        self.window = window
        self.drift = drift
        self._least: deque[tuple[float, float]] = deque()  # (t, offset), offsets increasing

    def reset(self) -> None:
        """A timestamp discontinuity: what came before says nothing about what follows."""
        self._least.clear()

    def place(self, t: float, arrival: float) -> float:
        offset = arrival - t
        least = self._least
        if least and offset - least[0][1] > self.drift:
            least.clear()
        while least and least[-1][1] >= offset:
            least.pop()
        least.append((t, offset))
        while least[0][0] < t - self.window:
            least.popleft()
        return t + least[0][1]


class Source:
    """All connections to one camera, for as long as it is wanted."""

    def __init__(self, cam: CameraConfig, stop: threading.Event) -> None:
        self.cam = cam
        self.stop = stop
        self.is_file = cam.is_file
        self.timeline = Timeline()
        self.state = "connecting"
        self.last_error: str | None = None
        self.corrupt_packets = 0
        # Files only: wall time = wall_origin + session time, when set. Two recordings of one
        # scene (a main and a sub-stream) then share one clock exactly, however their reading
        # is scheduled; live streams are always anchored on arrival.
        self.wall_origin: float | None = None

    def connections(self) -> Iterator[Connection]:
        """Yield live connections until stopped (files: until the end, unless looping)."""
        backoff = BACKOFF_START
        cap = max(self.cam.reconnect_max, BACKOFF_START)
        while not self.stop.is_set():
            try:
                container, stream = open_input(
                    self.cam.url, transport=self.cam.transport, timeout=self.cam.timeout
                )
            except SourceError as exc:
                if self.is_file:
                    self.state = "unsupported" if isinstance(exc, UnsupportedStream) else "failed"
                    self.last_error = str(exc)
                    raise
                # Wrong credentials or a stream we cannot record need a person: retry slowly.
                slow = isinstance(exc, (AuthError, UnsupportedStream))
                self.state = {AuthError: "auth-failed", UnsupportedStream: "unsupported"}.get(
                    type(exc), "reconnecting"
                )
                self.last_error = str(exc)
                if slow:
                    backoff = max(backoff, AUTH_BACKOFF_START)
                delay = retry_delay(backoff)
                log.warning("%s; retrying in %.1f s", exc, delay)
                self.stop.wait(delay)
                backoff = min(backoff * 2, AUTH_BACKOFF_CAP if slow else cap)
                continue
            self.state = "streaming"
            started = time.monotonic()
            try:
                self.timeline.begin(float(stream.time_base))
                yield Connection(container, stream, self._packets(container, stream))
            finally:
                container.close()
            if self.stop.is_set():
                break
            if self.is_file and not self.cam.loop:
                self.state = "finished"
                return
            if time.monotonic() - started >= HEALTHY_AFTER:
                backoff = BACKOFF_START
            if not self.is_file:
                # "stalled" stays until the next attempt says more (streaming, or its error).
                if self.state != "stalled":
                    self.state = "reconnecting"
                delay = retry_delay(backoff)
                log.warning(
                    "%s: stream %s (%s); reconnecting in %.1f s",
                    redact(self.cam.url),
                    "stalled" if self.state == "stalled" else "lost",
                    self.last_error or "end of stream",
                    delay,
                )
                self.stop.wait(delay)
                backoff = min(backoff * 2, cap)
        self.state = "stopped"

    def _stalled(self) -> None:
        self.last_error = f"no packet for {self.cam.timeout:g} s"
        self.state = "stalled"

    def _packets(self, container, stream) -> Iterator[MediaPacket]:
        tb = float(stream.time_base)
        pace = self.is_file and self.cam.realtime
        anchor_wall = anchor_t = anchor_mono = None  # files: the clock is the file's own timing
        clock = WallClock()  # live streams
        self.last_error = None
        demux = container.demux(stream)
        seq = 0
        while not self.stop.is_set():
            asked = time.monotonic()
            try:
                pkt = next(demux)
            except StopIteration:
                return
            except av.error.ExitError:
                self._stalled()
                return
            except av.FFmpegError as exc:
                if isinstance(exc, av.error.InvalidDataError) and self.is_file:
                    # A corrupt file region: the demuxer cannot go on from here.
                    self.corrupt_packets += 1
                    self.state = "failed"
                    self.last_error = f"{redact(self.cam.url)}: corrupt data: {_reason(exc)}"
                    raise SourceError(self.last_error) from None
                kind = "corrupt data" if isinstance(exc, av.error.InvalidDataError) else "read"
                self.last_error = f"{kind}: {_reason(exc)}"
                return
            waited = time.monotonic() - asked
            if not self.is_file and stalled(waited, self.cam.timeout, seq == 0):
                # What FFmpeg hands over after `timeout` s of silence is what its RTSP demuxer
                # held when its own timeout fired, not a live frame: the stream is stalled.
                self._stalled()
                return
            if pkt.size == 0:
                continue  # flush/empty packets carry nothing to record
            if pkt.is_corrupt:
                self.corrupt_packets += 1
            pts, dts, dur, jump = self.timeline.place(pkt.pts, pkt.dts, pkt.duration or 0)
            t = dts * tb
            if not self.is_file:
                if jump:
                    clock.reset()
                wall = clock.place(t, time.time())
            else:
                if anchor_wall is None or jump:
                    anchor_wall, anchor_t, anchor_mono = time.time(), t, time.monotonic()
                    if self.wall_origin is not None:
                        anchor_wall = self.wall_origin + t
                wall = anchor_wall + (t - anchor_t)
                if pace:
                    delay = anchor_mono + (t - anchor_t) - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        return
            yield MediaPacket(
                packet=pkt,
                t=t,
                time_base=tb,
                pts=pts,
                dts=dts,
                duration=dur,
                key=bool(pkt.is_keyframe),
                wall=wall,
                discontinuity=jump,
                seq=seq,
            )
            seq += 1
