#!/usr/bin/env python3
"""CPU cost of the capture pipeline against plain decoding, measured in the same run.

For each input (1080p 15 fps ~4 Mbps H.264: a static scene, 15 % motion, continuous motion) it
runs, alternately and `--repeat` times each, in fresh child processes:
  - reference: PyAV decoding every frame single-threaded, nothing else;
  - replay:    `agent.replay.replay` on the same file (demux, decode, detect, cut, keyframes)
               with the default settings: the compressed-domain gate on;
  - full:      the same with `gate = "off"`: every frame decoded.
Each child reports the CPU seconds of its work (process time, all threads) and its peak RSS.
The script prints medians, CPU seconds per second of video, and the ratios replay/reference
and full/reference (each run's ratio against the reference run just before it).
This machine is shared and noisy: compare ratios, not absolute seconds.

Delivery (`--only delivery`): a backlog of `--clips` clips (1 MB video + 4 small JPEGs each)
drained by the uploader (`--concurrency` workers) to the local OSS and ICE test servers
(tests/support/fake_oss.py: moto behind an OSS adapter; tests/support/fake_ice.py), on
loopback. Prints clips per second until every clip is registered, and the uploader's CPU
seconds per clip (this process only; the servers run in their own processes). Needs the test
extras (moto).

Scale (`--only scale`): the real daemon (`python -m agent run`, no [cloud], data_dir in a temp
dir) with N file cameras for each N of `--cameras` (default 1,8,16,32), `realtime = true`,
`loop = true`, on a camera-like input (1080p15 VBR, GOP 2 s, motion 15 %): each camera plays
its own rotation of it (stream copy from another keyframe on), so their events do not
coincide. Measured for `--seconds` after start-up: CPU of the supervisor and its whole process
tree (utime + stime from /proc, sampled at start and end), the supervisor's own CPU, PSS summed
over every agent process (/proc/PID/smaps_rollup, every 2 s; peak), and whether the cameras
keep up: their frame rate and frame age in the status model, how long after its last frame
each clip was written, and the clips cut against each camera's schedule.

Motion daemon (`--only motion-daemon`): the same input served over RTSP by the test server
(tests/support/rtsp.py, needs GStreamer under /usr/bin/python3) to Debian's `motion` (4.5; built-in
defaults but for `event_gap`, which defaults to 60 s and would merge every event; events
logged by its on_event_start/on_event_end hooks) and to the agent (one RTSP camera), both at
once for `--seconds`: CPU (process trees), peak RSS, and the events each finds against the
scene's schedule (on the relay's wall clock).

Sub-stream (`--only substream`): the 15 % motion input at 1080p as the main stream and the
same scene at 640x360 (~500 kbit/s) as the sub-stream (`detect_url`), both file sources read as
fast as possible: the pipeline's CPU (both streams, all threads: demux and cut the main, gate,
decode and detect on the sub, decode the main only for keyframe images) against plain decoding
of every frame of the main stream, alternately `--repeat` times.

Matrix (`--only matrix`): the gate across the encodings cameras ship (ENCODINGS: CBR and capped
VBR, GOP 2 s, 8 s and dynamic 2-10 s, HEVC, 25 fps, B-frames) times three 1080p scenes (static,
motion ~15 %, continuous), `--duration` s each (generated once, cached). Per cell, alternately
`--repeat` times (default 3), in fresh child processes: the reference (every frame decoded
single-threaded), the floor (keyframes only: skip_frame NONKEY), the pipeline with the gate on
and with it off; each a ratio against the reference just before it. Prints per cell the file's
kbit/s, the three ratios, the frames the gated run decoded as % of packets, its gate wakes per
minute, the events gated/off/scheduled and whether the gated ones match the gate-off ones
(starts within 0.2 s, ends within 0.4 s); then the worst cell and the median gate-on ratio per
scene. `--encodings 1,5` or `--encodings HEVC` (indices from 1, or a substring of the name) and
`--scenes static,motion` rerun part of it.

Usage: .venv/bin/python scripts/bench.py
       [--only capture|delivery|scale|motion-daemon|substream|matrix]
       [--repeat 5] [--duration 60] [--clips 1000] [--concurrency 4]
       [--encodings all] [--scenes static,motion,continuous]
       [--cameras 1,4,8,16] [--seconds 300] [--event-gap 5] [--json]
Stdlib and the agent package only (plus the test servers for delivery and motion-daemon).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# tests.support: the generated scenes with known motion, and the local cloud and camera servers.
sys.path.insert(0, str(ROOT))
CACHE = Path(tempfile.gettempdir()) / "ipc-agent-bench"

# Peak RSS from VmHWM: getrusage's ru_maxrss survives fork+exec on Linux, so a child would
# report the parent's high-water mark (the parent just generated 1080p video).
PEAK_RSS = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

CHILD_REFERENCE = (
    PEAK_RSS
    + """
import json, sys, time, av
t0 = time.process_time()
with av.open(sys.argv[1]) as c:
    s = c.streams.video[0]
    s.codec_context.thread_count = 1
    if sys.argv[2:] == ["keyframes"]:  # the floor: keyframes only
        s.codec_context.skip_frame = "NONKEY"
    n = sum(1 for _ in c.decode(s))
cpu = time.process_time() - t0
print(json.dumps({"cpu": cpu, "frames": n, "rss_mb": peak_rss_mb()}))
"""
)

CHILD_REPLAY = (
    PEAK_RSS
    + """
import json, sys, tempfile, time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from agent.config import Config, MotionSettings
from agent.replay import replay
config = Config(motion=MotionSettings(gate=sys.argv[2]))
with tempfile.TemporaryDirectory() as out:
    t0 = time.process_time()
    clips = replay(Path(sys.argv[1]), Path(out), config)
    cpu = time.process_time() - t0
print(json.dumps({"cpu": cpu, "clips": len(clips), "rss_mb": peak_rss_mb()}))
"""
)


CHILD_SUBSTREAM = (
    PEAK_RSS
    + """
import json, sys, tempfile, threading, time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from agent.capture.pipeline import CameraPipeline
from agent.config import CameraConfig
from agent.replay import DirectorySink
cam = CameraConfig(name="bench", url=sys.argv[1], detect_url=sys.argv[2], realtime=False)
with tempfile.TemporaryDirectory() as out:
    pipe = CameraPipeline(cam, DirectorySink(Path(out)), threading.Event())
    t0 = time.process_time()
    pipe.run()
    cpu = time.process_time() - t0
s = pipe.stats
print(json.dumps({"cpu": cpu, "clips": s.clips, "detect_on": s.detect_on,
                  "main_frames_decoded": s.frames_decoded + s.keyframe_frames_decoded,
                  "sub_frames_decoded": pipe.substream.stats.frames_decoded,
                  "rss_mb": peak_rss_mb()}))
"""
)


# The pipeline on one file with the gate on or off (argv[2]); argv[3]: the CameraStats fields
# to report, with defaults (read with getattr: the script outlives a renamed field).
CHILD_PIPELINE = (
    PEAK_RSS
    + """
import json, sys, tempfile, time
from pathlib import Path
from agent.capture.pipeline import CameraPipeline
from agent.config import CameraConfig, MotionSettings
from agent.replay import DirectorySink
cam = CameraConfig(
    name="bench", url=sys.argv[1], realtime=False, motion=MotionSettings(gate=sys.argv[2])
)
events = []
def collect(clip):
    events.append((clip.event_start, clip.event_end))
with tempfile.TemporaryDirectory() as out:
    pipe = CameraPipeline(cam, DirectorySink(Path(out)), on_clip=collect)
    t0 = time.process_time()
    pipe.run()
    cpu = time.process_time() - t0
stats = {k: getattr(pipe.stats, k, d) for k, d in json.loads(sys.argv[3]).items()}
print(json.dumps({"cpu": cpu, "events": events, **stats, "rss_mb": peak_rss_mb()}))
"""
)


def child(code: str, video: Path, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, str(video), *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def inputs(duration: float) -> list[tuple[str, Path]]:
    from tests.support.synth import make_scene

    common = dict(width=1920, height=1080, fps=15, bitrate=4_000_000, duration=duration)
    return [
        ("static", make_scene("busy", CACHE, motion_fraction=0.0, **common).path),
        ("motion 15 %", make_scene("busy", CACHE, motion_fraction=0.15, **common).path),
        ("motion 100 %", make_scene("busy", CACHE, motion_fraction=1.0, **common).path),
    ]


def bench_delivery(clips: int, concurrency: int) -> dict:
    import random
    import threading
    import time

    from agent.config import CloudSettings, UploadSettings
    from agent.deliver.acs import Credentials
    from agent.deliver.credentials import StaticCredentialSource
    from agent.deliver.ice import IceClient
    from agent.deliver.library import init_library
    from agent.deliver.loop import DeliveryLoop
    from agent.deliver.oss import OssUploader
    from agent.spool import ClipRecord, Spool
    from tests.support.fake_ice import FakeIce
    from tests.support.fake_oss import FakeOss

    ak, sk, region, bucket = "LTAI5tBenchKey", "bench-secret", "cn-hangzhou", "bench-bucket"
    source = StaticCredentialSource(Credentials(ak, sk))
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOss(access_key_id=ak, access_key_secret=sk, region=region) as oss,
    ):
        ice = FakeIce(access_key_id=ak, access_key_secret=sk)
        ice.start()
        try:
            data = Path(tmp)
            oss.create_bucket(bucket)
            cloud = CloudSettings(
                region=region,
                bucket=bucket,
                prefix="ipc/",
                oss_endpoint=oss.endpoint,
                ice_endpoint=ice.url,
                search_lib="IPCamera_bench",
                namespace="bench",
            )
            with IceClient(ice.url, source.get) as client:
                init_library(client, cloud, "Shared")
            spool = Spool(data)
            rng = random.Random(0)
            video, jpeg = rng.randbytes(2**20), rng.randbytes(30_000)
            day = data / "clips" / "cam" / "2026-11-24"
            day.mkdir(parents=True)
            print(f"writing {clips} clips ...", file=sys.stderr)
            for i in range(clips):
                cid = f"cam_{i:06d}"
                (day / f"{cid}.mp4").write_bytes(video)
                kfs = []
                for k in range(4):
                    (day / f"{cid}_{k}.jpg").write_bytes(jpeg)
                    kfs.append((day / f"{cid}_{k}.jpg", float(k)))
                spool.add(
                    ClipRecord(
                        clip_id=cid,
                        camera="cam",
                        start_wall=1_795_000_000.0 + i,
                        media_start=0.0,
                        media_end=10.0,
                        event_start=3.0,
                        event_end=5.0,
                        clip_path=day / f"{cid}.mp4",
                        clip_bytes=len(video),
                        keyframes=tuple(kfs),
                        keyframe_bytes=4 * len(jpeg),
                        codec="h264",
                        width=1920,
                        height=1080,
                        frames=150,
                        peak_score=0.1,
                        mean_score=0.05,
                    )
                )
            up = DeliveryLoop(
                data,
                "bench",
                cloud,
                UploadSettings(concurrency=concurrency, keep_local_hours=100),
                make_oss=lambda: OssUploader(
                    endpoint=oss.endpoint,
                    region=region,
                    bucket=bucket,
                    credentials=source,
                    checkpoint_dir=data / "oss-checkpoints",
                ),
                make_ice=lambda: IceClient(ice.url, source.get),
                index_checks=(3600.0,),  # index polls are not what is measured
            )
            stop = threading.Event()
            runner = threading.Thread(target=up.run, args=(stop,))
            print("draining ...", file=sys.stderr)
            wall0, cpu0 = time.monotonic(), time.process_time()
            runner.start()
            while spool.counts()["registered"] < clips:
                failed = spool.counts()["failed"]
                if failed:
                    raise SystemExit(f"{failed} clips failed: {next(spool.rows('failed'))}")
                time.sleep(0.1)  # polling the result; the work happens in the uploader threads
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
            stop.set()
            runner.join()
        finally:
            ice.close()
    return {
        "clips": clips,
        "concurrency": concurrency,
        "seconds": wall,
        "clips_per_s": clips / wall,
        "cpu_s_per_clip": cpu / clips,
        "mb_per_s": clips * (2**20 + 4 * 30_000) / wall / 1e6,
        "cpu_ms_per_mb": cpu * 1000 / (clips * (2**20 + 4 * 30_000) / 1e6),
        "checksum_cpu_ms_per_mb": checksum_costs(),
    }


def checksum_costs(mb: int = 16) -> dict:
    """CPU ms per MB of each checksum path: ours (anycrc's CRC-64, hashlib's MD5), and the
    CRC-64 oss2 computed before we turned it off, through crcmod, with its C extension (a
    machine with a compiler at install time) and without it (pure Python: any gateway
    installed without one, as scripts/install.sh does)."""
    import hashlib
    import importlib
    import os
    import time

    from crcmod import _crcfunpy

    # crcmod's package re-exports a function named crcmod over its module: import by name.
    crcmod_impl = importlib.import_module("crcmod.crcmod")

    from agent.deliver.oss import crc64

    data = os.urandom(mb * 2**20)
    table = crcmod_impl.Crc(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=2**64 - 1).table

    def cost(fn, size: int = len(data)) -> float:
        started = time.process_time()
        fn()
        return (time.process_time() - started) * 1000 / (size / 1e6)

    small = data[: 2 * 2**20]  # pure Python takes seconds per MB: 2 MB is enough to tell
    out = {
        "crc64_anycrc": cost(lambda: crc64(data)),
        "md5_hashlib": cost(lambda: hashlib.md5(data).digest()),
        "crc64_crcmod_pure_python": cost(lambda: _crcfunpy._crc64r(small, 0, table), len(small)),
    }
    if crcmod_impl._usingExtension:
        out["crc64_crcmod_c_extension"] = cost(
            lambda: crcmod_impl.mkCrcFun(
                0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=2**64 - 1
            )(data)
        )
    return out


# ---------------------------------------------------------------- the daemon, measured from /proc


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def proc_tree(root: int) -> list[int]:
    """root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            f = _stat(int(d.name))
            if f is not None:
                children.setdefault(int(f[1]), []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_s(pid: int, *, reaped: bool = True) -> float:
    """utime + stime (+ cutime + cstime of reaped children) of one process, seconds."""
    f = _stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def host_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores, /proc/stat), for context."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def tree_cpu_s(root: int) -> float:
    return sum(cpu_s(p) for p in proc_tree(root))


def peak_rss_of(pid: int) -> float:
    """VmHWM of a live process, MB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Daemon:
    """`ipc-agent run` on a generated config in a temp data_dir (no [cloud])."""

    # An uploader whose cloud refuses every connection (port 9 on loopback): its process is
    # there, with what it imports, and backs off; what it costs in memory is counted.
    UNREACHABLE_CLOUD = (
        '[cloud]\nregion = "cn-shanghai"\nbucket = "bench-bucket"\n'
        'search_lib = "IPCamera_bench"\noss_endpoint = "http://127.0.0.1:9"\n'
        'ice_endpoint = "http://127.0.0.1:9"\n'
    )

    def __init__(
        self,
        tmp: Path,
        cameras: list[tuple[str, str]],
        extra: str = "",
        agent_extra: str = "",
        uploader: bool = False,
    ) -> None:
        self.tmp = tmp
        self.config = tmp / "agent.toml"
        self.extra = extra
        self.agent_extra = agent_extra
        self.cloud = self.UNREACHABLE_CLOUD if uploader else ""
        self.write(cameras)
        self.log = open(tmp / "agent.log", "wb")  # noqa: SIM115 - closed in stop()
        self.launched = time.monotonic()
        env = dict(os.environ)
        if uploader:
            env["ALIBABA_CLOUD_ACCESS_KEY_ID"] = "bench-id"
            env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = "bench-secret"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )

    def write(self, cameras: list[tuple[str, str]]) -> None:
        lines = [
            "[agent]",
            'device_id = "bench"',
            f'data_dir = "{self.tmp / "data"}"',
            'log_level = "warning"',
            self.agent_extra,
            self.cloud,
        ]
        for name, url in cameras:
            lines += ["", "[[cameras]]", f'name = "{name}"', f'url = "{url}"', self.extra]
        self.config.write_text("\n".join(lines) + "\n")

    def status(self) -> dict:
        """The daemon's status model (what `ipc-agent status --json` prints), in-process."""
        from agent.service.status import fetch

        return fetch(self.tmp / "data") or {}

    def wait_streaming(self, n: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"agent exited {self.proc.returncode}: see {self.tmp}/agent.log")
            st = self.status()
            cams = st.get("cameras") or []
            if len(cams) == n and all((c.get("fps") or 0) > 0 for c in cams):
                self.streaming = time.monotonic()
                return st
            time.sleep(1)
        raise SystemExit(f"cameras not all streaming after {timeout:g} s: {self.tmp}/agent.log")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def events(self) -> dict[str, list[tuple[float, float, float]]]:
        """Each camera's events from the spool: wall-clock start and end, and how long after
        the clip's last frame (on the camera's clock) its file was written: the lag."""
        import sqlite3

        db = sqlite3.connect(f"file:{self.tmp / 'data' / 'spool.db'}?mode=ro", uri=True)
        out: dict[str, list[tuple[float, float, float]]] = {}
        rows = db.execute(
            "SELECT camera, start_wall, media_start, media_end, event_start, event_end, "
            "clip_path FROM clips"
        )
        for cam, wall, m0, m1, e0, e1, path in rows:
            try:
                delay = os.stat(self.tmp / "data" / path).st_mtime - (wall + m1 - m0)
            except OSError:
                try:
                    delay = os.stat(path).st_mtime - (wall + m1 - m0)
                except OSError:
                    delay = float("nan")
            out.setdefault(cam, []).append((wall + e0 - m0, wall + e1 - m0, delay))
        db.close()
        return {k: sorted(v) for k, v in out.items()}


def rotated(path: Path, offset: float) -> tuple[Path, float]:
    """`path` by stream copy, starting at its first keyframe at or after `offset` s and going
    on with what came before it: the same recording, its events at other times. Returns the
    copy and where in the original it starts (s)."""
    import av

    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size]
        tb = stream.time_base
        first = packets[0].pts
        cut = next(
            (i for i, p in enumerate(packets) if p.is_keyframe and (p.pts - first) * tb >= offset),
            0,
        )
        at = float((packets[cut].pts - first) * tb)
        out = path.with_name(f"{path.stem}_from{at:.2f}.mp4")
        if out.exists():
            return out, at
        step = packets[1].pts - packets[0].pts
        tmp = out.with_name(out.name + ".tmp")
        with av.open(str(tmp), "w", format="mp4") as dst:
            o = dst.add_stream_from_template(stream)
            for i, p in enumerate(packets[cut:] + packets[:cut]):
                delta = (p.dts if p.dts is not None else p.pts) - p.pts
                p.pts = i * step
                p.dts = p.pts + delta
                p.stream = o
                dst.mux(p)
    tmp.rename(out)
    return out, at


def pss_mb(pid: int) -> float:
    """PSS of a live process, MB: its private pages plus its share of those it shares (the
    libraries, and the forkserver's pages its workers were forked with), so PSS summed over
    processes is the memory they take together."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bench_scale(
    counts: list[int], seconds: float, duration: float, per_worker: int | None, uploader: bool
) -> list[dict]:
    """The real daemon with N file cameras of a camera-like input (1080p15 VBR, GOP 2 s,
    motion ~15 %), each camera its own rotation of it so that their events do not coincide."""
    from tests.support.synth import make_scene

    scene = make_scene(
        "busy",
        CACHE,
        width=1920,
        height=1080,
        fps=15,
        crf=26,
        maxrate=4_000_000,
        gop=30,
        noise=CAMERA_NOISE,
        duration=duration,
        motion_fraction=0.15,
    )
    results = []
    for n in counts:
        # Each camera plays its own rotation; its schedule is the scene's, shifted (an event
        # cut by the rotation's start counts at both ends: `may` allows one more per camera).
        rotations = [rotated(scene.path, i * scene.duration / n) for i in range(n)]
        schedules = [
            sorted((s - at) % scene.duration for s, _ in scene.motion) for _, at in rotations
        ]

        def scheduled(starts: list[float], played: float, early: float) -> int:
            """Events begun `early` s before `played` s of a looped rotation."""
            loops, rest = divmod(max(0.0, played), scene.duration)
            return int(loops) * len(starts) + sum(s + early <= rest for s in starts)

        with tempfile.TemporaryDirectory(prefix="ipc-bench-scale-") as tmp:
            print(f"scale: {n} cameras, {seconds:g} s ...", file=sys.stderr)
            names = [f"cam{i:02d}" for i in range(n)]
            cams = [(c, str(p)) for c, (p, _) in zip(names, rotations, strict=True)]
            agent_extra = f"cameras_per_worker = {per_worker}" if per_worker else ""
            d = Daemon(Path(tmp), cams, "realtime = true\nloop = true", agent_extra, uploader)
            try:
                d.wait_streaming(n, 60 + 10 * n)
                time.sleep(10)  # start-up (imports, first GOPs) is not what is measured
                t0 = time.monotonic()
                cpu0, sup0 = tree_cpu_s(d.proc.pid), cpu_s(d.proc.pid, reaped=False)
                host0 = host_busy_s()
                fps: dict[str, list[float]] = {c: [] for c in names}
                ages, restarts, pss = [], 0, []
                while time.monotonic() < t0 + seconds:
                    time.sleep(min(2.0, max(0.0, t0 + seconds - time.monotonic())))
                    st = d.status()
                    for c in st.get("cameras") or []:
                        fps[c["name"]].append(c.get("fps") or 0.0)
                        ages.append(c.get("last_frame_age_s") or 0.0)
                        restarts = max(restarts, c.get("restarts") or 0)
                    pss.append(sum(pss_mb(p) for p in proc_tree(d.proc.pid)))
                cpu1, sup1 = tree_cpu_s(d.proc.pid), cpu_s(d.proc.pid, reaped=False)
                host1, t1 = host_busy_s(), time.monotonic()
                workers = {c["pid"] for c in st["cameras"] if c.get("pid")}
                up = (st.get("uploader") or {}).get("pid")
                up_pss = pss_mb(up) if up else None
                worker_pss = [pss_mb(p) for p in workers]
                sup_pss = pss_mb(d.proc.pid)
            finally:
                d.stop()
            events = d.events()
        wall = t1 - t0
        # Clips expected from each camera's schedule at the position it played to: between
        # (streaming seen .. stop) and (launch .. stop) seconds of video.
        must = sum(scheduled(sch, t1 - d.streaming - 2, 3) for sch in schedules)
        may = sum(scheduled(sch, t1 - d.launched + 2, 0) + 1 for sch in schedules)
        clips = sum(len(v) for v in events.values())
        delays = [x[2] for v in events.values() for x in v]
        min_fps = min(statistics.mean(v) for v in fps.values())
        # Kept up: frame rate, frame age, every event cut, nothing restarted. The clip delay
        # is reported beside it: a clip's end is settled at the keyframe after it when the
        # gate sleeps through the post-roll, so up to a GOP (2 s here) is by design.
        kept = (
            min_fps >= 0.93 * scene.fps
            and max(ages, default=0) <= 5
            and must <= clips <= may
            and not restarts
        )
        results.append(
            {
                "cameras": n,
                "seconds": wall,
                "cpu_cores": (cpu1 - cpu0) / wall,
                "cpu_per_camera": (cpu1 - cpu0) / wall / n,
                "supervisor_cores": (sup1 - sup0) / wall,
                "host_busy_cores": (host1 - host0) / wall,
                "pss_total_mb": statistics.median(pss),
                "pss_peak_mb": max(pss),
                "pss_per_camera_mb": max(pss) / n,
                "workers": len(workers),
                "max_worker_pss_mb": max(worker_pss, default=0.0),
                "supervisor_pss_mb": sup_pss,
                "uploader_pss_mb": up_pss,
                "per_worker": per_worker,
                "min_camera_fps": min_fps,
                "max_frame_age_s": max(ages, default=None),
                "max_clip_delay_s": max(delays, default=None),
                "clips": clips,
                "clips_expected": [must, may],
                "restarts": restarts,
                "kept_up": kept,
            }
        )
    return results


MOTION_CONF = """\
daemon off
setup_mode off
log_file {tmp}/motion.log
target_dir {tmp}/motion
netcam_url {url}
movie_output off
picture_output off
webcontrol_port 0
stream_port 0
event_gap {gap}
on_event_start echo start %s >> {tmp}/motion-events.txt
on_event_end echo end %s >> {tmp}/motion-events.txt
"""


def match_events(
    truth: list[tuple[float, float]],
    found: list[tuple[float, float]],
    every: list[tuple[float, float]],
    slack: float = 2.0,
) -> dict:
    """Recall against the ground truth, false events, onset delays (s)."""
    hit, delays, false = 0, [], 0
    for t0, t1 in truth:
        m = [s for s, e in found if s <= t1 + slack and e >= t0 - slack]
        if m:
            hit += 1
            delays.append(min(m, key=lambda s: abs(s - t0)) - t0)
    for s, e in found:
        if not any(s <= t1 + slack and e >= t0 - slack for t0, t1 in every):
            false += 1
    return {
        "truth": len(truth),
        "found": hit,
        "false": false,
        "onset_s": statistics.median(delays) if delays else None,
    }


def bench_motion_daemon(seconds: float, duration: float, event_gap: int) -> list[dict]:
    import shutil
    import signal

    from tests.support.synth import make_scene

    if shutil.which("motion") is None:
        raise SystemExit("the Motion daemon is not installed: apt-get install motion")
    from tests.support.rtsp import RtspServer

    scene = make_scene(
        "busy",
        CACHE,
        width=1920,
        height=1080,
        fps=15,
        bitrate=4_000_000,
        duration=duration,
        motion_fraction=0.15,
    )
    with (
        tempfile.TemporaryDirectory(prefix="ipc-bench-motion-") as tmp_s,
        RtspServer({"/cam": scene.path}) as server,
    ):
        # The relay (ffmpeg -re -stream_loop -1) starts just before READY: scene time 0.
        relay0 = time.time()
        tmp = Path(tmp_s)
        (tmp / "motion").mkdir()
        url = server.url("/cam")
        (tmp / "motion.conf").write_text(MOTION_CONF.format(tmp=tmp, url=url, gap=event_gap))
        motion = subprocess.Popen(
            ["motion", "-n", "-c", str(tmp / "motion.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        (tmp / "agent").mkdir()
        agent = Daemon(tmp / "agent", [("cam", url)])
        try:
            print(
                f"motion-daemon: Motion and the agent on {url}, {seconds:g} s ...", file=sys.stderr
            )
            agent.wait_streaming(1, 60)
            time.sleep(15)
            if motion.poll() is not None:
                raise SystemExit(f"motion exited {motion.returncode}: {tmp}/motion.log")
            w0, t0 = time.time(), time.monotonic()
            a0, m0 = tree_cpu_s(agent.proc.pid), tree_cpu_s(motion.pid)
            time.sleep(seconds)
            a1, m1 = tree_cpu_s(agent.proc.pid), tree_cpu_s(motion.pid)
            w1, wall = time.time(), time.monotonic() - t0
            st = agent.status()
            cam_pid = st["cameras"][0]["pid"]
            a_rss = peak_rss_of(cam_pid)
            a_tree_rss = sum(peak_rss_of(p) for p in proc_tree(agent.proc.pid))
            m_rss = peak_rss_of(motion.pid)
            time.sleep(event_gap + 2)  # let an event open at the end close in Motion too
        finally:
            agent.stop()
            if motion.poll() is None:
                motion.send_signal(signal.SIGTERM)
                try:
                    motion.wait(20)
                except subprocess.TimeoutExpired:
                    motion.kill()
                    motion.wait()
        # Ground truth on the wall clock: the relay loops the file from relay0 on.
        every = [
            (relay0 + k * scene.duration + s, relay0 + k * scene.duration + e)
            for k in range(int((w1 - relay0) // scene.duration) + 2)
            for s, e in scene.motion
        ]
        truth = [(s, e) for s, e in every if s >= w0 and e <= w1 - 6]
        ours = [(s, e) for s, e, _ in agent.events().get("cam", []) if w0 <= s <= w1 - 6]
        theirs, start = [], None
        ev_file = tmp / "motion-events.txt"
        for line in ev_file.read_text().splitlines() if ev_file.exists() else []:
            what, at = line.split()
            if what == "start":
                start = float(at)
            elif start is not None:
                theirs.append((start, float(at) - event_gap))  # the end hook fires a gap later
                start = None
        theirs = [ev for ev in theirs if w0 <= ev[0] <= w1 - 6]
        return [
            {
                "daemon": f"Motion 4.5 (defaults, event_gap {event_gap})",
                "cpu_cores": (m1 - m0) / wall,
                "rss_mb": m_rss,
                "seconds": wall,
                **match_events(truth, theirs, every),
            },
            {
                "daemon": "ipc-agent (defaults)",
                "cpu_cores": (a1 - a0) / wall,
                "rss_mb": a_rss,
                "tree_rss_mb": a_tree_rss,
                "seconds": wall,
                **match_events(truth, ours, every),
            },
        ]


def bench_substream(repeat: int, duration: float) -> dict:
    from tests.support.synth import make_scene

    CACHE.mkdir(exist_ok=True)
    print(f"generating inputs in {CACHE} (cached) ...", file=sys.stderr)
    common = dict(fps=15, duration=duration, motion_fraction=0.15)
    main = make_scene("busy", CACHE, width=1920, height=1080, bitrate=4_000_000, **common)
    sub = make_scene("busy", CACHE, width=640, height=360, bitrate=500_000, **common)
    ref, dual = [], []
    for i in range(repeat):
        print(f"  substream: run {i + 1}/{repeat}", file=sys.stderr)
        ref.append(child(CHILD_REFERENCE, main.path))
        dual.append(child(CHILD_SUBSTREAM, main.path, str(sub.path)))
    ratios = [b["cpu"] / a["cpu"] for a, b in zip(ref, dual, strict=True)]
    return {
        "video_s": duration,
        "repeat": repeat,
        "reference_cpu_per_s": statistics.median(r["cpu"] for r in ref) / duration,
        "substream_cpu_per_s": statistics.median(r["cpu"] for r in dual) / duration,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "clips": dual[0]["clips"],
        "scheduled_events": len(main.motion),
        "detect_on": dual[0]["detect_on"],
        "main_frames": ref[0]["frames"],
        "main_frames_decoded": dual[0]["main_frames_decoded"],
        "sub_frames_decoded": dual[0]["sub_frames_decoded"],
        "peak_rss_mb": max(r["rss_mb"] for r in dual),
    }


# The encoder matrix: (name, make_scene keyword arguments) of the encodings cameras ship.
ENCODINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("H.264 CBR 4M, GOP 2 s", dict(fps=15, bitrate=4_000_000, gop=30)),
    ("H.264 VBR, GOP 2 s", dict(fps=15, crf=26, maxrate=4_000_000, gop=30)),
    ("H.264 VBR, GOP 8 s", dict(fps=15, crf=26, maxrate=4_000_000, gop=120)),
    ("H.264 VBR, dynamic GOP 2-10 s", dict(fps=15, crf=26, maxrate=4_000_000, dynamic_gop=(2, 10))),
    ("HEVC VBR, GOP 2 s", dict(fps=15, codec="libx265", crf=26, maxrate=4_000_000, gop=30)),
    ("H.264 CBR 4M, 25 fps, GOP 2 s", dict(fps=25, bitrate=4_000_000, gop=50)),
    ("H.264 VBR, GOP 2 s, 2 B-frames", dict(fps=15, crf=26, maxrate=4_000_000, gop=30, bframes=2)),
    ("H.264 VBR, GOP 1 s", dict(fps=15, crf=26, maxrate=4_000_000, gop=15)),
)
# The matrix's scenes have a camera's low grain (3D noise reduction): a static scene then costs
# ~600 kbit/s in VBR, as on real cameras, not the ~3 Mbit/s of the default noisy scene.
CAMERA_NOISE = 0.3
# Scene types: name, motion_fraction of the "busy" scene.
MATRIX_SCENES = (("static", 0.0), ("motion", 0.15), ("continuous", 1.0))
# CameraStats fields the pipeline children report, and their values if a field is gone.
MATRIX_STATS = {
    "frames_decoded": 0,
    "frames_redecoded": 0,
    "frames_skipped": 0,
    "gate_wakes": 0,
    "gate": "?",
    "packets": 0,
}


def select_encodings(spec: str) -> list[int]:
    """Indices (from 0) into ENCODINGS: "all", "1,5" (numbered from 1), or a name substring."""
    if spec == "all":
        return list(range(len(ENCODINGS)))
    if all(part.strip().isdigit() for part in spec.split(",")):
        picked = [int(part) - 1 for part in spec.split(",")]
        if not all(0 <= i < len(ENCODINGS) for i in picked):
            raise SystemExit(f"--encodings: indices are 1..{len(ENCODINGS)}, got {spec}")
        return picked
    picked = [i for i, (name, _) in enumerate(ENCODINGS) if spec.lower() in name.lower()]
    if not picked:
        names = "; ".join(f"{i + 1}: {name}" for i, (name, _) in enumerate(ENCODINGS))
        raise SystemExit(f"--encodings: no encoding matches {spec!r} ({names})")
    return picked


def select_scenes(spec: str) -> list[tuple[str, float]]:
    known = dict(MATRIX_SCENES)
    names = [n for n, _ in MATRIX_SCENES] if spec == "all" else spec.split(",")
    if unknown := [n for n in names if n not in known]:
        raise SystemExit(f"--scenes: unknown {unknown}; expected some of {list(known)}")
    return [(n, known[n]) for n in names]


def same_events(
    on: list[list[float]], off: list[list[float]], start_s: float = 0.2, end_s: float = 0.4
) -> bool:
    """The gated run's events are the gate-off run's: same count, each start within start_s
    and each end within end_s of its twin."""
    return len(on) == len(off) and all(
        abs(a0 - b0) <= start_s and abs(a1 - b1) <= end_s
        for (a0, a1), (b0, b1) in zip(sorted(on), sorted(off), strict=True)
    )


def bench_matrix(
    encodings: list[int], scenes: list[tuple[str, float]], repeat: int, duration: float
) -> dict:
    from tests.support.synth import make_scene

    CACHE.mkdir(exist_ok=True)
    print(f"generating inputs in {CACHE} (cached) ...", file=sys.stderr)
    inputs = []
    for i in encodings:
        name, enc = ENCODINGS[i]
        for scene_name, mf in scenes:
            print(f"  {name} / {scene_name}", file=sys.stderr)
            scene = make_scene(
                "busy",
                CACHE,
                width=1920,
                height=1080,
                duration=duration,
                motion_fraction=mf,
                noise=CAMERA_NOISE,
                **enc,
            )
            inputs.append((i, scene_name, mf, scene))
    stats_arg = json.dumps(MATRIX_STATS)
    cells = []
    for n, (i, scene_name, mf, scene) in enumerate(inputs):
        name, enc = ENCODINGS[i]
        runs: dict[str, list[dict]] = {"reference": [], "floor": [], "gate_on": [], "gate_off": []}
        t0 = time.monotonic()
        for k in range(repeat):
            print(
                f"  [{n + 1}/{len(inputs)}] {name} / {scene_name}: run {k + 1}/{repeat}",
                file=sys.stderr,
            )
            runs["reference"].append(child(CHILD_REFERENCE, scene.path))
            runs["floor"].append(child(CHILD_REFERENCE, scene.path, "keyframes"))
            runs["gate_on"].append(child(CHILD_PIPELINE, scene.path, "auto", stats_arg))
            runs["gate_off"].append(child(CHILD_PIPELINE, scene.path, "off", stats_arg))
        ratios = {
            what: [b["cpu"] / a["cpu"] for a, b in zip(runs["reference"], runs[what], strict=True)]
            for what in ("floor", "gate_on", "gate_off")
        }
        on, off = runs["gate_on"][0], runs["gate_off"][0]
        video_s = scene.duration
        truth = [list(ev) for ev in scene.motion]
        cells.append(
            {
                "encoding": name,
                "encoding_index": i + 1,
                "make_scene": enc,
                "scene": scene_name,
                "motion_fraction": mf,
                "file": str(scene.path),
                "video_s": video_s,
                "kbit_s": scene.path.stat().st_size * 8 / video_s / 1000,
                "frames": runs["reference"][0]["frames"],
                "keyframes": runs["floor"][0]["frames"],
                "reference_cpu_per_s": statistics.median(r["cpu"] for r in runs["reference"])
                / video_s,
                **{f"{what}_ratio": statistics.median(r) for what, r in ratios.items()},
                **{f"{what}_ratio_min": min(r) for what, r in ratios.items()},
                **{f"{what}_ratio_max": max(r) for what, r in ratios.items()},
                "gate_on": {k: on[k] for k in ("events", *MATRIX_STATS, "rss_mb")},
                "gate_off": {k: off[k] for k in ("events", *MATRIX_STATS, "rss_mb")},
                "decoded_pct": 100 * on["frames_decoded"] / on["packets"]
                if on["packets"]
                else None,
                "wakes_per_min": on["gate_wakes"] / video_s * 60,
                "events": [len(on["events"]), len(off["events"]), len(truth)],
                "events_match": same_events(on["events"], off["events"]),
                "truth": truth,
                "seconds": time.monotonic() - t0,
                "runs": runs,
            }
        )
    worst = max(cells, key=lambda c: c["gate_on_ratio"])
    return {
        "video_s": duration,
        "repeat": repeat,
        "cells": cells,
        "worst": {k: worst[k] for k in ("encoding", "scene", "gate_on_ratio")},
        "median_gate_on_ratio": {
            s: statistics.median(c["gate_on_ratio"] for c in cells if c["scene"] == s)
            for s, _ in scenes
        },
    }


def show(results: Any, as_json: bool, table: Callable[[Any], None]) -> int:
    """A benchmark's results as JSON, or as its table for people."""
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        table(results)
    return 0


def print_capture(results: list[dict], duration: float, repeat: int) -> None:
    print(f"\n1080p15 H.264 ~4 Mbps, {duration:g} s per input, median of {repeat} runs")
    print(
        f"{'input':<14}{'decode':>8}{'replay':>8}{'ratio':>7}{'(min-max)':>12}"
        f"{'full':>7}{'ratio':>7}{'clips':>7}{'RSS MB':>8}{'(decode)':>9}"
    )
    for r in results:
        print(
            f"{r['input']:<14}{r['reference_cpu_per_s']:>8.3f}{r['replay_cpu_per_s']:>8.3f}"
            f"{r['ratio_median']:>6.2f}x{r['ratio_min']:>6.2f}-{r['ratio_max']:<5.2f}"
            f"{r['full_cpu_per_s']:>7.3f}{r['full_ratio_median']:>6.2f}x"
            f"{r['clips']:>4}/{r['full_clips']:<2}{r['replay_peak_rss_mb']:>8.0f}"
            f"{r['reference_peak_rss_mb']:>9.0f}"
        )
    print("decode/replay/full: CPU seconds per second of video; ratio: against plain decoding;")
    print("replay: gate on (default), full: gate off; clips: gate on/off;")
    print("RSS: peak resident memory of the replay process (and of the decode-only one)")


def print_matrix(r: dict) -> None:
    print(
        f"\nencoder matrix: busy scene 1080p, {r['video_s']:g} s per input, "
        f"median of {r['repeat']} runs; ratios: CPU against decoding every frame"
    )
    print(
        f"{'encoding':<31}{'scene':<11}{'kbit/s':>7}{'floor':>7}{'gate on':>8}{'off':>7}"
        f"{'dec %':>7}{'wakes/min':>10}{'events':>10}  match"
    )
    for c in r["cells"]:
        dec = "-" if c["decoded_pct"] is None else f"{c['decoded_pct']:.1f}"
        events = "/".join(str(n) for n in c["events"])
        print(
            f"{c['encoding']:<31}{c['scene']:<11}{c['kbit_s']:>7.0f}{c['floor_ratio']:>6.2f}x"
            f"{c['gate_on_ratio']:>7.2f}x{c['gate_off_ratio']:>6.2f}x{dec:>7}"
            f"{c['wakes_per_min']:>10.1f}{events:>10}  {'yes' if c['events_match'] else 'NO'}"
        )
    w = r["worst"]
    print(f"worst gate-on ratio: {w['gate_on_ratio']:.2f}x ({w['encoding']}, {w['scene']})")
    medians = ", ".join(f"{s} {v:.2f}x" for s, v in r["median_gate_on_ratio"].items())
    print(f"median gate-on ratio per scene: {medians}")
    print("floor: keyframes only decoded; gate on/off: the pipeline (demux, decode, detect, cut);")
    print("dec %: frames the gated run decoded, of packets; wakes/min: the gate's, gate on;")
    print("events: gate on/gate off/scheduled; match: gated events = gate-off ones (start")
    print("within 0.2 s, end within 0.4 s)")


def print_delivery(d: dict) -> None:
    print(
        f"\ndelivery: {d['clips']} clips (1 MB + 4 x 30 kB) to local OSS + ICE, "
        f"{d['concurrency']} workers"
    )
    print(
        f"  {d['clips_per_s']:.1f} clips/s ({d['mb_per_s']:.0f} MB/s), "
        f"{d['cpu_s_per_clip'] * 1000:.1f} ms CPU per clip (uploader process), "
        f"{d['seconds']:.1f} s in all"
    )
    print(f"  {d['cpu_ms_per_mb']:.1f} ms CPU per MB delivered (uploader process)")
    print("  checksums, CPU ms per MB:")
    for name, ms in d["checksum_cpu_ms_per_mb"].items():
        print(f"    {name:<28}{ms:10.3f}")


def print_substream(r: dict) -> None:
    print(
        f"\nsub-stream detection: 1080p15 ~4 Mbps main + 640x360 ~500 kbit/s sub, motion 15 %, "
        f"{r['video_s']:g} s, median of {r['repeat']} runs"
    )
    print(
        f"  decode main: {r['reference_cpu_per_s']:.3f}  pipeline: {r['substream_cpu_per_s']:.3f}"
        f" CPU s per s of video; ratio {r['ratio_median']:.3f}x "
        f"({r['ratio_min']:.3f}-{r['ratio_max']:.3f}; target <= 0.1x)"
    )
    print(
        f"  clips {r['clips']} (scheduled events {r['scheduled_events']}), detection on "
        f"{r['detect_on']}; main frames decoded {r['main_frames_decoded']}/{r['main_frames']} "
        f"(keyframe images), sub frames decoded {r['sub_frames_decoded']}; "
        f"peak RSS {r['peak_rss_mb']:.0f} MB"
    )


def print_scale(results: list[dict]) -> None:
    print(
        f"\nscale: 1080p15 H.264 VBR (crf 26, cap 4 Mbit/s, GOP 2 s, camera-like noise), "
        f"motion 15 %, a rotation per camera (events do not coincide), paced in real time, "
        f"{results[0]['seconds']:.0f} s each after start-up"
    )
    print(
        f"{'cameras':>7}{'CPU':>7}{'/cam':>7}{'sup.':>6}{'PSS MB':>8}{'/cam':>6}{'wrk':>4}"
        f"{'fps':>6}{'age s':>6}{'delay':>6}{'clips':>6}{'(exp.)':>8}  kept up  host"
    )
    for r in results:
        lo, hi = r["clips_expected"]
        print(
            f"{r['cameras']:>7}{r['cpu_cores']:>7.3f}{r['cpu_per_camera']:>7.3f}"
            f"{r['supervisor_cores']:>6.3f}{r['pss_peak_mb']:>8.0f}"
            f"{r['pss_per_camera_mb']:>6.1f}{r['workers']:>4}"
            f"{r['min_camera_fps']:>6.1f}{r['max_frame_age_s']:>6.1f}"
            f"{r['max_clip_delay_s'] or 0:>6.1f}"
            f"{r['clips']:>6}{f'{lo}-{hi}':>8}  {'yes' if r['kept_up'] else 'NO ':<7}"
            f"{r.get('host_busy_cores', float('nan')):>6.2f}"
        )
    for r in results:
        if r.get("uploader_pss_mb"):
            print(f"  ({r['cameras']} cameras: the uploader's PSS {r['uploader_pss_mb']:.0f} MB)")
    print("CPU: cores used by the supervisor and every child (sup.: the supervisor alone);")
    print("PSS: peak of the sum over every agent process (supervisor, forkserver, workers),")
    print("/cam: that over the cameras; wrk: camera workers; fps: the slowest camera's mean")
    print("frame rate; age: max last_frame_age_s; delay: the longest a clip's file came after")
    print("its last frame (its end is settled at the next keyframe: up to a GOP by design);")
    print("clips: cut / expected from the schedules; host: the machine's busy")
    print(f"cores meanwhile (of {os.cpu_count()}), other work included")


def print_motion(results: list[dict]) -> None:
    print(
        f"\nthe same 1080p15 ~4 Mbps RTSP stream (motion 15 %), both at once, "
        f"{results[0]['seconds']:.0f} s"
    )
    print(f"{'daemon':<36}{'CPU':>7}{'RSS MB':>8}{'events':>8}{'false':>7}{'onset s':>9}")
    for r in results:
        onset = "-" if r["onset_s"] is None else f"{r['onset_s']:+.1f}"
        print(
            f"{r['daemon']:<36}{r['cpu_cores']:>7.3f}{r['rss_mb']:>8.0f}"
            f"{r['found']:>5}/{r['truth']:<2}{r['false']:>7}{onset:>9}"
        )
    print("CPU: fraction of one core (process tree); RSS: peak of the Motion process, of the")
    print("agent's camera process; events: scheduled events found; onset: median start delay")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repeat", type=int, help="runs of each measurement (median; default 5, matrix 3)"
    )
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of video per input")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument(
        "--only",
        choices=["capture", "delivery", "scale", "motion-daemon", "substream", "matrix"],
        help="run one benchmark only (scale, motion-daemon and matrix run only when named)",
    )
    ap.add_argument(
        "--encodings",
        default="all",
        help="matrix: ENCODINGS to run, numbered from 1 (1,5) or a substring of the name (HEVC)",
    )
    ap.add_argument(
        "--scenes", default="all", help="matrix: scenes to run, of static,motion,continuous"
    )
    ap.add_argument("--cameras", default="1,8,16,32", help="scale: camera counts to run")
    ap.add_argument(
        "--seconds", type=float, default=300.0, help="scale, motion-daemon: measured seconds"
    )
    ap.add_argument(
        "--per-worker", type=int, help="scale: cameras_per_worker (default: the agent's)"
    )
    ap.add_argument(
        "--uploader",
        action="store_true",
        help="scale: with [cloud] (unreachable), so the uploader's process is counted",
    )
    ap.add_argument(
        "--event-gap", type=int, default=5, help="motion-daemon: Motion's event_gap (s)"
    )
    ap.add_argument("--clips", type=int, default=1000, help="delivery: clips in the backlog")
    ap.add_argument("--concurrency", type=int, default=4, help="delivery: upload workers")
    args = ap.parse_args()
    repeat = args.repeat if args.repeat is not None else 3 if args.only == "matrix" else 5

    if args.only == "scale":
        return show(
            bench_scale(
                [int(n) for n in args.cameras.split(",")],
                args.seconds,
                args.duration,
                args.per_worker,
                args.uploader,
            ),
            args.json,
            print_scale,
        )
    if args.only == "substream":
        return show(bench_substream(repeat, args.duration), args.json, print_substream)
    if args.only == "matrix":
        return show(
            bench_matrix(
                select_encodings(args.encodings),
                select_scenes(args.scenes),
                repeat,
                args.duration,
            ),
            args.json,
            print_matrix,
        )
    if args.only == "motion-daemon":
        return show(
            bench_motion_daemon(args.seconds, args.duration, args.event_gap),
            args.json,
            print_motion,
        )
    if args.only != "capture":
        show(bench_delivery(args.clips, args.concurrency), args.json, print_delivery)
        if args.only == "delivery":
            return 0

    CACHE.mkdir(exist_ok=True)
    print(f"generating inputs in {CACHE} (cached) ...", file=sys.stderr)
    results = []
    for name, video in inputs(args.duration):
        ref, rep, full = [], [], []
        for i in range(repeat):
            print(f"  {name}: run {i + 1}/{repeat}", file=sys.stderr)
            ref.append(child(CHILD_REFERENCE, video))
            rep.append(child(CHILD_REPLAY, video, "auto"))
            full.append(child(CHILD_REPLAY, video, "off"))
        ref_cpu = statistics.median(r["cpu"] for r in ref)
        rep_cpu = statistics.median(r["cpu"] for r in rep)
        ratios = [b["cpu"] / a["cpu"] for a, b in zip(ref, rep, strict=True)]
        full_ratios = [b["cpu"] / a["cpu"] for a, b in zip(ref, full, strict=True)]
        results.append(
            {
                "input": name,
                "video_s": args.duration,
                "reference_cpu_per_s": ref_cpu / args.duration,
                "replay_cpu_per_s": rep_cpu / args.duration,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "full_cpu_per_s": statistics.median(r["cpu"] for r in full) / args.duration,
                "full_ratio_median": statistics.median(full_ratios),
                "clips": rep[0]["clips"],
                "full_clips": full[0]["clips"],
                "replay_peak_rss_mb": max(r["rss_mb"] for r in rep),
                "reference_peak_rss_mb": max(r["rss_mb"] for r in ref),
            }
        )
    return show(results, args.json, lambda r: print_capture(r, args.duration, repeat))


if __name__ == "__main__":
    sys.exit(main())
