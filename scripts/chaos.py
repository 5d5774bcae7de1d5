#!/usr/bin/env python3
"""Fault-injection soak: the real agent, real servers on loopback, faults at random, invariants.

    .venv/bin/python scripts/chaos.py --minutes 30 --seed 1      # the soak (>= 100 kills)
    .venv/bin/python scripts/chaos.py --minutes 2.5 --seed 7     # what tests/test_chaos.py runs

The environment, all on 127.0.0.1:
- one GStreamer RTSP server per camera (`tests/support/rtsp_server.py`), each looping a
  synthetic recording (`tests/support/synth.py`) whose motion schedule is known; one camera
  streams ~6 Mbit/s so its clips go up as multipart uploads;
- the local OSS (moto behind `tests/support/fake_oss.py`) and ICE (`tests/support/fake_ice.py`)
  servers, each behind a `FaultProxy` of ours (asyncio TCP: refuse, reset mid-transfer, stall,
  latency, throttle), plus the fakes' own faults (5xx, throttling, slow answers, expired
  credentials);
- the agent's data_dir on a size-limited tmpfs (falls back to the agent's own
  `max_spool_bytes` when mounting is not permitted), so the disk really fills;
- `ipc-agent run` (the supervisor and its children) under libfaketime, whose offset file we
  rewrite to jump the wall clock (monotonic time stays real), when the library is installed.

Faults come from a seeded RNG (the sequence is reproducible; what they hit depends on timing)
and are logged with their time: SIGKILL of the whole agent (restarted), of a camera, of the
uploader — at random moments and at chosen ones (mid-clip-write, mid-multipart, between the
ICE insert and the local commit); camera server kill/restart/stall, a camera reboot (its
timestamps start over), a resolution change; OSS/ICE outages, resets, stalls, latency,
throttling, 5xx, expired credentials; a full disk; wall-clock jumps, and a boot at 1970
corrected by "NTP" later.

Invariants are checked while it runs and at the end (after the faults stop, the backlog must
drain within `--drain` s), then printed as a table; the exit status is 1 if any was violated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the scenes, the local cloud and camera servers

from agent.config import CloudSettings  # noqa: E402
from agent.deliver.acs import Credentials  # noqa: E402
from agent.deliver.ice import IceClient  # noqa: E402
from agent.deliver.library import init_library  # noqa: E402
from agent.deliver.oss import file_digests, object_key  # noqa: E402
from agent.deliver.registrar import media_id as derive_media_id  # noqa: E402
from agent.service.status import fetch  # noqa: E402
from tests.support.fake_ice import FakeIce  # noqa: E402
from tests.support.fake_oss import FakeOss  # noqa: E402
from tests.support.rtsp import RtspServer, rtsp_available  # noqa: E402
from tests.support.synth import make_scene  # noqa: E402

AK, SK = "LTAI5tChaosSoakKey0001", "chaos-soak-secret-0123456789"
REGION, BUCKET, LIB, DEVICE = "cn-hangzhou", "ipc-chaos", "IPCamera_chaos", "chaos-gw"
FAKETIME_LIBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
)
CLOCK_FLOOR = 1_577_836_800  # 2020-01-01: a clip time before this is a clock that was never set
MiB = 1024 * 1024
BACKLOG = ("pending", "uploading", "uploaded")
STAMP = re.compile(r"_(\d{8}T\d{6}Z)_[0-9a-f]{6}$")


def now_s(t0: float) -> str:
    return f"{time.monotonic() - t0:7.1f}s"


# -- the fault proxy --------------------------------------------------------------------------


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), like a middlebox or a dying uplink does."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """An asyncio TCP proxy between the agent and one test server, with switchable faults.

    Modes: `pass`; `refuse` (nothing listens: connection refused, open connections reset);
    `reset` (connections reset once `reset_after` bytes went through); `stall` (data is held
    until the mode changes); `latency` (each chunk waits `latency` s); `throttle` (`rate`
    bytes/s per direction and connection).
    """

    def __init__(self, name: str, upstream_port: int) -> None:
        self.name = name
        self.upstream = upstream_port
        self.mode = "pass"
        self.latency = 0.0
        self.rate = 1e9
        self.reset_after = 0
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[asyncio.StreamWriter] = set()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        self._call(self._listen())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._unlisten())
        self.loop.call_soon_threadsafe(self.loop.stop)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def set(self, mode: str, *, latency: float = 0.0, rate: float = 1e9, reset_after: int = 0):
        self.latency, self.rate, self.reset_after = latency, rate, reset_after
        self.mode = mode
        self._call(self._unlisten() if mode == "refuse" else self._listen())

    async def _listen(self) -> None:
        deadline = time.monotonic() + 5
        while self.server is None:
            try:
                self.server = await asyncio.start_server(
                    self._handle, "127.0.0.1", self.port, reuse_address=True
                )
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def _unlisten(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.conns):
            _rst(w)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter):
        if self.mode == "refuse":
            _rst(cwriter)
            return
        try:
            ureader, uwriter = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream), 5
            )
        except (OSError, asyncio.TimeoutError):
            _rst(cwriter)
            return
        pair = (cwriter, uwriter)
        self.conns.update(pair)
        moved = [0]
        try:
            await asyncio.gather(
                self._pump(creader, uwriter, pair, moved),
                self._pump(ureader, cwriter, pair, moved),
                return_exceptions=True,
            )
        finally:
            for w in pair:
                self.conns.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(self, reader, writer, pair, moved) -> None:
        try:
            while data := await reader.read(65536):
                while self.mode == "stall":
                    await asyncio.sleep(0.1)
                if self.mode == "latency":
                    await asyncio.sleep(self.latency)
                elif self.mode == "throttle":
                    await asyncio.sleep(len(data) / self.rate)
                moved[0] += len(data)
                if self.mode in ("reset", "refuse") and moved[0] >= self.reset_after:
                    for w in pair:
                        _rst(w)
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in pair:  # one side is done: so is the exchange (HTTP, no half-close use)
                with contextlib.suppress(Exception):
                    w.close()


# -- the agent under test -----------------------------------------------------------------------


class AgentProcess:
    """`ipc-agent run` in its own session, under libfaketime when available."""

    def __init__(self, config: Path, logs: Path, clock_file: Path | None) -> None:
        self.config = config
        self.logs = logs
        self.clock_file = clock_file
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0  # monotonic
        self.runs = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
        env.update(ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK)
        lib = next((p for p in FAKETIME_LIBS if os.path.exists(p)), None)
        if self.clock_file is not None and lib:
            env.update(
                LD_PRELOAD=lib,
                FAKETIME_TIMESTAMP_FILE=str(self.clock_file),
                FAKETIME_CACHE_DURATION="1",
                FAKETIME_DONT_FAKE_MONOTONIC="1",
            )
        return env

    def start(self) -> None:
        self.runs += 1
        log = open(self.logs / f"agent-{self.runs:03d}.log", "w")  # noqa: SIM115 - child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env(),
            cwd=ROOT,
        )
        log.close()
        self.started_at = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def up_for(self) -> float:
        return time.monotonic() - self.started_at if self.alive else 0.0

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reap_group()

    def _reap_group(self) -> None:
        """Children of a SIGKILLed supervisor are in its session: gone once killpg returns."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            time.sleep(0.05)

    def stop(self, timeout: float = 90) -> int | None:
        """SIGTERM and wait; the exit code (None: had to be killed)."""
        if not self.alive:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def pids(self) -> list[int]:
        """Every living process in the agent's session (supervisor + children)."""
        if not self.alive:
            return []
        out = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if int(fields[3]) == self.proc.pid and fields[0] not in (b"Z", b"X"):
                out.append(int(entry.name))
        return out


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return total * os.sysconf("SC_PAGE_SIZE") / 1e6


def rss_growth(samples: list[tuple[float, float]]) -> float | None:
    """Median RSS of the last third of the run minus that of the first third, MB.

    Kills restart processes all the time, so a least-squares slope over a few minutes is
    mostly noise; medians of thirds say whether a settled agent needs more memory as the
    run goes on (a spool, a cache or a leak growing with the data).
    """
    if len(samples) < 9:
        return None
    third = len(samples) // 3
    first = sorted(v for _, v in samples[:third])
    last = sorted(v for _, v in samples[-third:])
    return last[len(last) // 2] - first[len(first) // 2]


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) in MB/h, over the last 80 % (after warm-up)."""
    pts = samples[len(samples) // 5 :]
    if len(pts) < 5:
        return None
    n = len(pts)
    mx = sum(t for t, _ in pts) / n
    my = sum(v for _, v in pts) / n
    var = sum((t - mx) ** 2 for t, _ in pts)
    if var == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in pts) / var * 3600


# -- the harness ----------------------------------------------------------------------------


@dataclass
class Violation:
    invariant: str
    at: str
    detail: str


@dataclass
class Findings:
    violations: list[Violation] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)
    status_max: float = 0.0
    status_checks: int = 0
    status_misses: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)
    rss_supervisor: list[tuple[float, float]] = field(default_factory=list)
    drain_s: float | None = None
    verified_objects: set[str] = field(default_factory=set)
    checks: Counter = field(default_factory=Counter)


INVARIANTS = (
    ("once", "every clip registered at most once; no media without a catalog row"),
    ("accounted", "every clip registered, or pending/failed/dropped with a reason"),
    ("lost", "no catalogued clip lost (files gone without a policy drop)"),
    ("objects", "registered Input/ImagesInput objects exist and match the local CRC-64"),
    ("disk", "catalog and disk agree (no orphans, no rows pointing at missing files)"),
    ("times", "clip names, object keys and MsgBody times sane and consistent"),
    ("tracebacks", "no unhandled traceback in the logs"),
    ("status", "status answers within 1 s while the agent is up"),
    ("rss", "agent RSS does not grow"),
    ("drain", "the backlog drains to zero once the faults stop"),
    ("stop", "SIGTERM stops the agent with exit code 0"),
)


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.t0 = time.monotonic()
        self.work = Path(args.workdir).resolve()
        self.data = self.work / "data"
        self.logs = self.work / "logs"
        self.f = Findings()
        self.stopping = threading.Event()  # the fault phase is over
        self.lock = threading.Lock()  # one agent-level action at a time (kill/restart/check)
        self.offset = 0  # wall-clock offset given to the agent, s
        self.hashes: dict[str, tuple[int, int]] = {}  # relative path -> (size, crc64)
        self.cameras: dict[str, dict[str, Any]] = {}
        self.rtsp: dict[str, RtspServer] = {}
        self.tmpfs = False
        self.events: Any = None

    # -- logging ----------------------------------------------------------------------------

    def log(self, text: str) -> None:
        line = f"[{now_s(self.t0)}] {text}"
        print(line, flush=True)
        if self.events:
            self.events.write(line + "\n")
            self.events.flush()

    def fault(self, kind: str, detail: str = "") -> None:
        self.f.faults[kind] += 1
        self.log(f"FAULT {kind}{': ' + detail if detail else ''}")

    def violate(self, invariant: str, detail: str) -> None:
        self.f.violations.append(Violation(invariant, now_s(self.t0).strip(), detail))
        self.log(f"VIOLATION [{invariant}] {detail}")

    # -- set-up -----------------------------------------------------------------------------

    def setup(self) -> None:
        reason = rtsp_available()
        if reason:
            raise SystemExit(f"chaos: the RTSP test server cannot run here: {reason}")
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.events = open(self.work / "faults.log", "w")  # noqa: SIM115
        self.data.mkdir(exist_ok=True)
        size = self.args.disk_mb
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}m,mode=0750", "tmpfs", str(self.data)],
            capture_output=True,
            text=True,
        )
        self.tmpfs = res.returncode == 0
        self.log(
            f"data_dir {self.data}: "
            + (f"tmpfs of {size} MiB" if self.tmpfs else f"no tmpfs ({res.stderr.strip()})")
        )
        scenes = self.work / "scenes"
        specs = {
            "cam1": dict(kind="walk", width=320, height=180, fps=10, duration=30, seed=1),
            "cam2": dict(kind="walk", width=320, height=180, fps=10, duration=30, seed=2),
            "cam3": dict(
                kind="busy",
                width=640,
                height=360,
                fps=15,
                duration=30,
                seed=3,
                bitrate=6_000_000,
                motion_fraction=0.6,
            ),
        }
        for name, spec in list(specs.items())[: self.args.cameras]:
            scene = make_scene(out_dir=scenes, **spec)
            # The same scene at another resolution (multiples of 16 keep the encoder happy).
            other = {"width": spec["width"] * 3 // 64 * 16, "height": spec["height"] * 3 // 64 * 16}
            alt = make_scene(out_dir=scenes, **{**spec, **other})
            self.cameras[name] = {"scene": scene, "alt": alt, "file": scene.path}
            server = RtspServer({f"/{name}": scene.path})
            server.start()
            self.rtsp[name] = server
            self.log(
                f"{name}: rtsp://127.0.0.1:{server.port}/{name} looping {scene.path.name} "
                f"(motion {list(scene.motion)} every {scene.duration:g} s)"
            )
        self.oss = FakeOss(access_key_id=AK, access_key_secret=SK, region=REGION)
        self.oss.start()
        self.oss.create_bucket(BUCKET)
        self.ice = FakeIce(access_key_id=AK, access_key_secret=SK)
        self.ice.start()
        self.oss_proxy = FaultProxy("oss-proxy", self.oss.port)
        self.ice_proxy = FaultProxy("ice-proxy", self.ice.port)
        self.oss_proxy.start()
        self.ice_proxy.start()
        cloud = CloudSettings(
            region=REGION,
            bucket=BUCKET,
            prefix="ipc/",
            oss_endpoint=self.oss_proxy.url,
            ice_endpoint=self.ice.url,
            search_lib=LIB,
            namespace=DEVICE,
        )
        with IceClient(self.ice.url, lambda: Credentials(AK, SK)) as client:
            for _ in init_library(client, cloud, "Shared"):
                pass
        self.clock_file = self.work / "clock"
        self.clock_file.write_text("+0\n")
        self.faketime = any(os.path.exists(p) for p in FAKETIME_LIBS)
        self.log(
            "wall-clock jumps: " + ("libfaketime" if self.faketime else "OFF (no libfaketime)")
        )
        self.config = self.work / "agent.toml"
        self.config.write_text(self.config_text())
        self.config.chmod(0o640)
        self.agent = AgentProcess(self.config, self.logs, self.clock_file)

    def config_text(self) -> str:
        cams = "".join(
            f'[[cameras]]\nname = "{name}"\nurl = "rtsp://127.0.0.1:{srv.port}/{name}"\n'
            f"timeout = 3\n[cameras.clip]\npost_roll = 3.0\nmax_clip = 30\n"
            for name, srv in self.rtsp.items()
        )
        return (
            f'[agent]\ndata_dir = "{self.data}"\ndevice_id = "{DEVICE}"\n'
            + cams
            + f'[cloud]\nregion = "{REGION}"\nbucket = "{BUCKET}"\nprefix = "ipc/"\n'
            f'oss_endpoint = "{self.oss_proxy.url}"\nice_endpoint = "{self.ice_proxy.url}"\n'
            f'search_lib = "{LIB}"\nnamespace = "{DEVICE}"\n'
            f"[upload]\nconcurrency = 2\n"
            f'max_spool_bytes = "{self.args.disk_mb * 5 // 8}MiB"\n'
            f'min_free_bytes = "{max(4, self.args.disk_mb // 8)}MiB"\n'
            f'on_full = "drop_oldest"\nkeep_local_hours = 0.02\nmax_backoff = 8\n'
        )

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self.agent.kill()
        for proxy in (getattr(self, "oss_proxy", None), getattr(self, "ice_proxy", None)):
            if proxy:
                proxy.close()
        for server in self.rtsp.values():
            with contextlib.suppress(Exception):
                os.killpg(server.pid, signal.SIGCONT) if server.pid else None
            server.close()
        for fake in (getattr(self, "oss", None), getattr(self, "ice", None)):
            if fake:
                with contextlib.suppress(Exception):
                    fake.stop() if isinstance(fake, FakeOss) else fake.close()
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.data)], check=False)

    # -- looking from outside -----------------------------------------------------------------

    def queue(self) -> list[dict[str, Any]]:
        res = subprocess.run(
            [sys.executable, "-m", "agent", "queue", "--json", "--config", str(self.config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        if res.returncode != 0:
            if "no spool" in res.stderr:
                return []
            raise RuntimeError(f"ipc-agent queue --json failed: {res.stderr[-500:]}")
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]

    def status(self) -> dict[str, Any] | None:
        return fetch(self.data, timeout=1.0)

    def status_loop(self) -> None:
        """Once a second: the status socket must answer within 1 s while the agent is up."""
        while not self.done.is_set():
            with self.lock:
                up = self.agent.up_for()
                started = time.monotonic()
                model = self.status() if up > 10 else None
                took = time.monotonic() - started
            if up > 10:
                self.f.status_checks += 1
                self.f.status_max = max(self.f.status_max, took)
                if model is None or took > 1.0:
                    self.f.status_misses += 1
                    # Fresh after a restart the socket may not be there for a moment; two
                    # misses in a row while up is a wedged daemon.
                    if self.f.status_misses >= 2 and self.agent.up_for() > 10:
                        self.violate("status", f"no answer within 1 s (took {took:.2f} s)")
                else:
                    self.f.status_misses = 0
            pids = self.agent.pids()
            # Kills restart processes (and reset their memory): only samples from an agent
            # that has run undisturbed for a while say whether memory grows.
            if pids and self.agent.up_for() > 30:
                t = time.monotonic() - self.t0
                self.f.rss.append((t, rss_mb(pids)))
                self.f.rss_supervisor.append((t, rss_mb([self.agent.proc.pid])))
            self.done.wait(1.0)

    # -- faults -------------------------------------------------------------------------------

    def restart_agent(self, delay: float = 0.0) -> None:
        self.agent.kill()
        if delay:
            self.stopping.wait(delay)
        self.agent.start()

    def child_pid(self, which: str) -> tuple[str, int] | None:
        model = self.status()
        if not model:
            return None
        if which == "uploader":
            u = model.get("uploader") or {}
            return ("uploader", u["pid"]) if u.get("pid") else None
        cams = [c for c in model["cameras"] if c.get("pid")]
        if which != "camera":
            cams = [c for c in cams if c["name"] == which]
        if not cams:
            return None
        c = self.rng.choice(cams)
        # Cameras run in workers: killing this one's takes its worker's other cameras too.
        return f"camera {c['name']} ({c.get('worker') or 'its worker'})", c["pid"]

    def sigkill(self, kind: str, which: str, detail: str = "") -> bool:
        with self.lock:
            if which == "agent":
                self.fault(kind, detail or f"whole agent (pid {self.agent.proc.pid})")
                self.restart_agent(self.rng.uniform(0, 2))
                return True
            target = self.child_pid(which)
            if target is None:
                return False
            self.fault(kind, detail or f"{target[0]} (pid {target[1]})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(target[1], signal.SIGKILL)
            return True

    def wait_for(self, condition, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            value = condition()
            if value:
                return value
            self.stopping.wait(0.1)
        return None

    def open_clip_file(self) -> Path | None:
        """An MP4 being written right now (a `.mp4.tmp` no row knows yet)."""
        clips = self.data / "clips"
        if not clips.exists():
            return None
        # Written to within the last second: not one a killed camera left behind.
        now = time.time()
        for tmp in clips.rglob("*.mp4.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime < 1.0:
                    return tmp
        return None

    def kill_loop(self) -> None:
        """SIGKILLs, one every `kill_every` s on average, at random and at chosen moments."""
        lo, hi = self.args.kill_every * 0.5, self.args.kill_every * 1.5
        kinds = [
            ("kill_agent", 3),
            ("kill_camera", 3),
            ("kill_uploader", 3),
            ("kill_mid_clip_write", 2),
            ("kill_mid_multipart", 1),
            ("kill_between_insert_and_commit", 1),
        ]
        while not self.stopping.wait(self.rng.uniform(lo, hi)):
            if self.agent.up_for() < 3:
                continue
            kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
            try:
                getattr(self, kind)()
            except Exception as exc:  # noqa: BLE001 - a harness hiccup must not end the soak
                self.log(f"harness: {kind} failed: {exc!r}")

    def kill_agent(self) -> None:
        self.sigkill("kill_agent", "agent")

    def kill_camera(self) -> None:
        self.sigkill("kill_camera", "camera")

    def kill_uploader(self) -> None:
        self.sigkill("kill_uploader", "uploader")

    def kill_mid_clip_write(self) -> None:
        tmp = self.wait_for(self.open_clip_file, 20)
        if tmp is None:
            self.sigkill("kill_camera", "camera", "no clip open within 20 s: a random camera")
            return
        camera = tmp.relative_to(self.data / "clips").parts[0]
        if self.rng.random() < 0.3:
            self.sigkill("kill_mid_clip_write", "agent", f"whole agent while {tmp.name} is open")
        else:
            self.sigkill("kill_mid_clip_write", camera, f"camera {camera} while {tmp.name} open")

    def kill_mid_multipart(self) -> None:
        part = str(self.rng.randint(2, 6))
        self.oss.clear_requests()
        self.oss.fault("delay", count=1, op="UploadPart", params={"partNumber": part}, seconds=4)
        seen = self.wait_for(
            lambda: any(
                r["op"] == "UploadPart" and r["params"].get("partNumber") == part
                for r in self.oss.requests()
            ),
            25,
        )
        if not seen:
            self.oss.clear_faults()
            self.sigkill("kill_uploader", "uploader", "no multipart upload within 25 s")
            return
        which = "agent" if self.rng.random() < 0.3 else "uploader"
        self.sigkill("kill_mid_multipart", which, f"{which} while part {part} is in flight")

    def kill_between_insert_and_commit(self) -> None:
        before = sum(self.ice.state()["insert_calls"].values())
        self.ice.control("fault", action="InsertMediaToSearchLib", kind="delay", delay=5, count=1)
        seen = self.wait_for(lambda: sum(self.ice.state()["insert_calls"].values()) > before, 25)
        if not seen:
            self.ice.control("clear_faults")
            self.sigkill("kill_uploader", "uploader", "no insert within 25 s")
            return
        which = "agent" if self.rng.random() < 0.3 else "uploader"
        self.sigkill(
            "kill_between_insert_and_commit", which, f"{which} after the insert took effect"
        )

    # environment faults: one at a time, each undone after its duration

    def env_loop(self) -> None:
        kinds = [
            ("oss_outage", 2),
            ("ice_outage", 2),
            ("oss_reset", 2),
            ("ice_reset", 1),
            ("net_stall", 1),
            ("net_latency", 1),
            ("oss_throttle", 1),
            ("ice_5xx", 1),
            ("ice_throttling", 1),
            ("ice_slow", 1),
            ("oss_5xx", 1),
            ("credentials_expired", 1),
            ("disk_full", 2),
            ("rtsp_kill", 2),
            ("camera_reboot", 2),
            ("rtsp_stall", 1),
            ("resolution_change", 1),
        ]
        if self.faketime:
            kinds += [("clock_jump", 2), ("clock_1970_boot", 1)]
        short = self.args.minutes < 10
        while not self.stopping.wait(self.rng.uniform(1, 6)):
            kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
            long_ = kind.endswith("_outage") and not short and self.rng.random() < 0.3
            duration = self.rng.uniform(60, 150) if long_ else self.rng.uniform(4, 25)
            try:
                undo = getattr(self, kind)(duration)
                self.stopping.wait(duration)
            except Exception as exc:  # noqa: BLE001
                self.log(f"harness: {kind} failed: {exc!r}")
                undo = None
            if undo:
                try:
                    undo()
                except Exception as exc:  # noqa: BLE001
                    self.log(f"harness: undoing {kind} failed: {exc!r}")

    def _proxy(self, kind: str, proxy: FaultProxy, mode: str, duration: float, **kw):
        self.fault(kind, f"{proxy.name} {mode} {kw or ''} for {duration:.0f} s")
        proxy.set(mode, **kw)
        return lambda: proxy.set("pass")

    def oss_outage(self, d):
        return self._proxy("oss_outage", self.oss_proxy, "refuse", d)

    def ice_outage(self, d):
        return self._proxy("ice_outage", self.ice_proxy, "refuse", d)

    def oss_reset(self, d):
        n = self.rng.randint(2_000, 3 * MiB)
        return self._proxy("oss_reset", self.oss_proxy, "reset", d, reset_after=n)

    def ice_reset(self, d):
        return self._proxy("ice_reset", self.ice_proxy, "reset", d, reset_after=200)

    def net_stall(self, d):
        proxy = self.rng.choice([self.oss_proxy, self.ice_proxy])
        return self._proxy("net_stall", proxy, "stall", d)

    def net_latency(self, d):
        proxy = self.rng.choice([self.oss_proxy, self.ice_proxy])
        return self._proxy("net_latency", proxy, "latency", d, latency=self.rng.uniform(0.2, 2))

    def oss_throttle(self, d):
        rate = self.rng.choice([20_000, 100_000, 500_000])
        return self._proxy("oss_throttle", self.oss_proxy, "throttle", d, rate=rate)

    def _ice_fault(self, name: str, d: float, **fault):
        self.fault(name, f"ICE {fault} for {d:.0f} s")
        self.ice.control("fault", action="*", count=None, **fault)
        return lambda: self.ice.control("clear_faults")

    def ice_5xx(self, d):
        return self._ice_fault("ice_5xx", d, kind=self.rng.choice(["error", "unavailable"]))

    def ice_throttling(self, d):
        return self._ice_fault("ice_throttling", d, kind="throttle")

    def ice_slow(self, d):
        return self._ice_fault("ice_slow", d, kind="delay", delay=self.rng.uniform(1, 12))

    def oss_5xx(self, d):
        self.fault("oss_5xx", f"OSS 503 for {d:.0f} s")
        self.oss.fault("status", count=None)
        return self.oss.clear_faults

    def credentials_expired(self, d):
        self.fault("credentials_expired", f"OSS and ICE reject the token for {d:.0f} s")
        self.oss.fault("status", count=None, status=403, code="SecurityTokenExpired")
        self.ice.control(
            "fault",
            action="*",
            kind="error",
            count=None,
            status=403,
            code="InvalidSecurityToken.Expired",
            message="Specified SecurityToken is expired.",
        )

        def undo() -> None:
            self.oss.clear_faults()
            self.ice.control("clear_faults")

        return undo

    def disk_full(self, d):
        ballast = self.data / "ballast"
        free = shutil.disk_usage(self.data).free
        size = max(0, free - self.rng.randint(0, 2 * MiB))
        self.fault("disk_full", f"{size / MiB:.0f} MiB ballast, {d:.0f} s")
        with contextlib.suppress(OSError), open(ballast, "wb") as f:
            chunk = b"\0" * MiB
            while size > 0:
                f.write(chunk[: min(size, MiB)])
                size -= MiB
        return lambda: ballast.unlink(missing_ok=True)

    def _camera(self) -> str:
        return self.rng.choice(sorted(self.rtsp))

    def _replace_server(self, name: str, file: Path) -> None:
        old = self.rtsp[name]
        port = old.port
        old.close()
        server = RtspServer({f"/{name}": file}, port=port)
        server.start()
        self.rtsp[name] = server

    def rtsp_kill(self, d):
        name = self._camera()
        self.fault("rtsp_kill", f"{name}'s server down for {d:.0f} s")
        self.rtsp[name].kill()
        return lambda: self._replace_server(name, self.cameras[name]["file"])

    def camera_reboot(self, d):
        name = self._camera()
        self.fault("camera_reboot", f"{name} restarts; its timestamps start over")
        self.rtsp[name].kill()
        self._replace_server(name, self.cameras[name]["file"])
        return None

    def rtsp_stall(self, d):
        name = self._camera()
        server = self.rtsp[name]
        d = min(d, 12)
        self.fault("rtsp_stall", f"{name}'s server frozen (SIGSTOP) for {d:.0f} s")
        os.killpg(server.pid, signal.SIGSTOP)
        self.stopping.wait(d)
        os.killpg(server.pid, signal.SIGCONT)
        return None

    def resolution_change(self, d):
        name = self._camera()
        cam = self.cameras[name]
        cam["file"] = cam["alt"].path if cam["file"] == cam["scene"].path else cam["scene"].path
        self.fault("resolution_change", f"{name} now streams {cam['file'].name}")
        self._replace_server(name, cam["file"])
        return None

    def set_clock(self, offset: int) -> None:
        self.offset = offset
        self.clock_file.write_text(f"{offset:+d}\n")

    def clock_jump(self, d):
        offset = self.rng.choice([-1, 1]) * self.rng.choice([90, 600, 3600, 6 * 3600])
        self.fault("clock_jump", f"agent's wall clock {offset:+d} s for {d:.0f} s")
        self.set_clock(offset)
        return lambda: self.set_clock(0)

    def clock_1970_boot(self, d):
        """A box without an RTC boots at the epoch; NTP corrects it `d` s later."""
        with self.lock:
            self.fault("clock_1970_boot", f"agent restarted at 1970-01-01, NTP after {d:.0f} s")
            self.agent.kill()
            self.set_clock(-int(time.time()) + 3600)
            self.agent.start()
        return lambda: self.set_clock(0)

    # -- invariants ---------------------------------------------------------------------------

    def remember_hashes(self, rows: list[dict[str, Any]]) -> None:
        """Checksums of local files while they exist: registered objects are checked later."""
        for row in rows:
            for rel in [row["clip_path"], *[k["path"] for k in row["keyframes"]]]:
                if rel in self.hashes:
                    continue
                with contextlib.suppress(OSError):
                    size, crc, _ = file_digests(self.data / rel)
                    self.hashes[rel] = (size, crc)

    def check_cloud(self, rows: list[dict[str, Any]], final: bool) -> None:
        """Exactly once, objects present and equal, names and times sane."""
        by_clip = {r["clip_id"]: r for r in rows}
        state = self.ice.state()
        seen: Counter = Counter()
        for media in state["media"]:
            body = media.get("msg_body") or {}
            fields = body.get("customFields", {})
            clip = str(fields.get("strField2", "")).split("/", 1)[-1]
            seen[clip] += 1
            row = by_clip.get(clip)
            key = f"media:{media['media_id']}"
            if row is None:
                # Registered clips are catalogued before they go up: a media the catalog does
                # not know is a registration without a row (or a row that vanished).
                self.violate("once", f"media {media['media_id']} ({clip}) has no catalog row")
                continue
            if media["media_id"] != derive_media_id(DEVICE, row["camera"], clip):
                self.violate("once", f"{clip}: media id {media['media_id']} is not derived")
            if key in self.f.verified_objects:
                continue
            expect_key = object_key("ipc/", DEVICE, row["camera"], row["start_wall"], clip, ".mp4")
            if media["input"] != f"oss://{BUCKET}/{expect_key}":
                self.violate("times", f"{clip}: Input {media['input']} != {expect_key}")
            if (
                fields.get("intField1") != int(row["start_wall"])
                or fields.get("strField1") != row["camera"]
            ):
                self.violate("times", f"{clip}: MsgBody {fields} does not match the row")
            images = media.get("images") or []
            keys = [expect_key] + [u.split("/", 3)[3] for u in images]
            paths = [row["clip_path"]] + [k["path"] for k in row["keyframes"]]
            if len(images) != len(row["keyframes"]):
                self.violate("objects", f"{clip}: {len(images)} ImagesInput, row has keyframes")
            # The rows were read before the ICE state: a clip may have gone up in between, so
            # only a row that says it is registered must show the keys it was registered with.
            if row["state"] in ("registered", "indexed") and (
                row["clip_key"] != expect_key or row["keyframe_keys"] != keys[1:]
            ):
                self.violate(
                    "objects",
                    f"{clip}: catalog keys {row['clip_key']} {row['keyframe_keys']} are not the "
                    f"registered {keys}",
                )
            ok = True
            for okey, rel in zip(keys, paths):
                data = self.oss.object_bytes(BUCKET, okey)
                if data is None:
                    self.violate("objects", f"{clip}: registered object {okey} missing in OSS")
                    ok = False
                    continue
                want = self.hashes.get(rel)
                if want is None:
                    with contextlib.suppress(OSError):
                        size, crc, _ = file_digests(self.data / rel)
                        want = self.hashes[rel] = (size, crc)
                if want is None:
                    continue  # never saw the file locally (deleted by policy before a look)
                got = (len(data), _crc64(data))
                if got != want:
                    self.violate("objects", f"{clip}: {okey} differs from the local file")
                    ok = False
            if ok:
                self.f.verified_objects.add(key)
        for clip, n in seen.items():
            if n > 1:
                self.violate("once", f"{clip} is {n} media in the library")
        for clip, n in state["registered"].items():
            if n > 1:
                self.violate("once", f"media {clip} registered {n} times")
        for row in rows:
            # A clip cut while the clock was unset is renamed before it goes up: names must
            # be sane once a clip has left the box, and for every clip at the end.
            if final or row["clip_key"]:
                self.check_names(row)
            if row["state"] in ("registered", "indexed") and seen[row["clip_id"]] != 1:
                self.violate("once", f"{row['clip_id']} is {row['state']} but not in the library")

    def check_names(self, row: dict[str, Any]) -> None:
        key = f"name:{row['clip_id']}"
        if key in self.f.verified_objects:
            return
        self.f.verified_objects.add(key)
        m = STAMP.search(row["clip_id"])
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(row["start_wall"]))
        if not m or m.group(1) != stamp:
            self.violate("times", f"{row['clip_id']}: name disagrees with start {stamp}")
        if row["start_wall"] < CLOCK_FLOOR:
            self.violate("times", f"{row['clip_id']}: starts {row['started_at']} (clock unset)")
        day = time.strftime("%Y-%m-%d", time.gmtime(row["start_wall"]))
        if f"/{day}/" not in row["clip_path"]:
            self.violate("times", f"{row['clip_id']}: stored under {row['clip_path']}, not {day}")

    def check_rows(self, rows: list[dict[str, Any]], final: bool) -> None:
        for row in rows:
            if row["state"] in ("failed", "dropped") and not row.get("reason"):
                self.violate("accounted", f"{row['clip_id']} {row['state']} without a reason")
            if row["state"] == "failed" and "missing" in (row.get("reason") or ""):
                key = f"lost:{row['clip_id']}"
                if key not in self.f.verified_objects:
                    self.f.verified_objects.add(key)
                    self.violate("lost", f"{row['clip_id']}: {row['reason']}")
            if final and row["state"] in BACKLOG:
                self.violate("accounted", f"{row['clip_id']} still {row['state']} at the end")

    def check_disk(self, rows: list[dict[str, Any]], strict: bool) -> list[str]:
        """Problems between catalog and disk; `strict` once the agent has stopped cleanly."""
        problems = []
        expected: set[Path] = set()
        for row in rows:
            clip = self.data / row["clip_path"]
            kfs = [self.data / k["path"] for k in row["keyframes"]]
            if row["local_deleted"]:
                if clip.exists() and strict:
                    problems.append(f"{row['clip_id']}: deleted by policy but {clip.name} is there")
                if row["state"] == "dropped":
                    expected.update(kfs)
                else:
                    expected.update(k for k in kfs if k.exists() and not strict)
                continue
            paths = [clip, *kfs]
            expected.update(paths)
            if row["state"] == "failed":
                continue
            for p in paths:
                tmp = p.with_name(p.name + ".tmp")
                if not p.exists() and not (tmp.exists() and not strict):
                    problems.append(f"{row['clip_id']} ({row['state']}): {p.name} missing")
        clips = self.data / "clips"
        if clips.exists():
            for p in clips.rglob("*"):
                if not p.is_file():
                    continue
                if p.name.endswith(".tmp"):
                    if strict:
                        problems.append(f"partial file {p.relative_to(self.data)} left")
                elif p not in expected:
                    problems.append(f"orphan file {p.relative_to(self.data)}")
        return problems

    def check_logs(self) -> None:
        for log in sorted(self.logs.glob("agent-*.log")):
            text = log.read_text(errors="replace")
            n = text.count("Traceback (most recent call last)")
            key = f"tb:{log.name}:{n}"
            if n and key not in self.f.verified_objects:
                self.f.verified_objects.add(key)
                i = text.index("Traceback (most recent call last)")
                self.violate("tracebacks", f"{log.name}: {text[max(0, i - 200) : i + 1500]}")

    def check(self, final: bool = False, strict_disk: bool = False) -> list[dict[str, Any]]:
        self.f.checks["rounds"] += 1
        rows = self.queue()
        self.remember_hashes(rows)
        self.check_rows(rows, final)
        self.check_cloud(rows, final)
        self.check_logs()
        problems = self.check_disk(rows, strict_disk)
        if problems:
            # A look from outside races the agent (a row committed, its files renamed a moment
            # later; a kill between "row" and "file" is repaired at the next start): what
            # persists over two looks 15 s apart, or shows after a clean stop, is real.
            if strict_disk:
                for p in problems:
                    self.violate("disk", p)
            else:
                persistent = set(problems) & self.last_problems.get("set", set())
                if persistent and time.monotonic() - self.last_problems["at"] >= 15:
                    for p in sorted(persistent):
                        if p.startswith("orphan") or "missing" in p:
                            key = f"disk:{p}"
                            if key not in self.f.verified_objects and self.agent.up_for() > 20:
                                self.f.verified_objects.add(key)
                                self.violate("disk", p + " (for 15 s or more)")
                if not self.last_problems.get("set") or not persistent:
                    self.last_problems = {"set": set(problems), "at": time.monotonic()}
        else:
            self.last_problems = {}
        return rows

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> int:
        self.done = threading.Event()
        self.last_problems: dict[str, Any] = {}
        self.setup()
        try:
            self.agent.start()
            threads = [
                threading.Thread(target=self.status_loop, name="status", daemon=True),
                threading.Thread(target=self.kill_loop, name="kills", daemon=True),
                threading.Thread(target=self.env_loop, name="faults", daemon=True),
            ]
            for t in threads:
                t.start()
            end = time.monotonic() + self.args.minutes * 60
            while time.monotonic() < end:
                time.sleep(min(10, max(0, end - time.monotonic())))
                try:
                    rows = self.check()
                except Exception as exc:  # noqa: BLE001 - keep soaking; report it
                    self.log(f"harness: check failed: {exc!r}")
                    continue
                counts = Counter(r["state"] for r in rows)
                self.log(f"check: {len(rows)} clips {dict(counts)}; kills {self.kills()}")
            self.stopping.set()
            for t in threads[1:]:
                t.join(120)
            return self.finish()
        finally:
            self.done.set()
            self.teardown()

    def kills(self) -> int:
        return sum(n for k, n in self.f.faults.items() if k.startswith("kill"))

    def finish(self) -> int:
        """Faults off, everything healthy again: the backlog must drain, then a clean stop."""
        self.log("faults stop; waiting for the backlog to drain")
        self.set_clock(0)
        self.oss_proxy.set("pass")
        self.ice_proxy.set("pass")
        self.oss.clear_faults()
        self.ice.control("clear_faults")
        (self.data / "ballast").unlink(missing_ok=True)
        for name, server in self.rtsp.items():
            if not server.running:
                self._replace_server(name, self.cameras[name]["file"])
        if not self.agent.alive:
            self.agent.start()
        # New clips keep coming while cameras stream: stop the streams, so the cameras close
        # their last clips, then everything catalogued must reach the library.
        for server in self.rtsp.values():
            server.close()
        started = time.monotonic()
        deadline = started + self.args.drain
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.queue()
            backlog = [r for r in rows if r["state"] in BACKLOG]
            if not backlog and time.monotonic() - started > 10:
                self.f.drain_s = time.monotonic() - started
                break
            time.sleep(2)
        if self.f.drain_s is None:
            left = Counter(r["state"] for r in rows if r["state"] in BACKLOG)
            self.violate("drain", f"backlog {dict(left)} left after {self.args.drain:.0f} s")
        else:
            self.log(f"backlog drained in {self.f.drain_s:.0f} s")
        code = self.agent.stop()
        if code != 0:
            self.violate("stop", f"SIGTERM: exit code {code}")
        self.done.set()
        rows = self.check(final=True, strict_disk=True)
        growth = rss_growth(self.f.rss)
        if growth is not None and self.args.minutes >= 10 and growth > self.args.rss_growth:
            self.violate(
                "rss",
                f"agent RSS grew {growth:.0f} MB from the first to the last third of the run "
                f"(limit {self.args.rss_growth:g} MB)",
            )
        self.report(rows)
        return 1 if self.f.violations else 0

    def report(self, rows: list[dict[str, Any]]) -> None:
        counts = Counter(r["state"] for r in rows)
        per_cam = Counter(r["camera"] for r in rows)
        media = self.ice.state()["media"]
        dup = sum(n - 1 for n in Counter(m["media_id"] for m in media).values() if n > 1)
        lost = sum(1 for v in self.f.violations if v.invariant == "lost")
        by = Counter(v.invariant for v in self.f.violations)
        slope = slope_per_hour(self.f.rss)
        sup = slope_per_hour(self.f.rss_supervisor)
        rss_last = self.f.rss[-1][1] if self.f.rss else 0.0
        growth = rss_growth(self.f.rss)
        lines = [
            "",
            f"chaos: seed {self.args.seed}, {self.args.minutes:g} min of faults, "
            f"{len(self.rtsp)} cameras, data_dir "
            + (f"tmpfs {self.args.disk_mb} MiB" if self.tmpfs else "NOT on tmpfs"),
            "",
            f"{'invariant':<78} {'result':>8}",
        ]
        for name, text in INVARIANTS:
            n = by.get(name, 0)
            lines.append(f"{text:<78} {'OK' if not n else f'{n} FAIL':>8}")
        lines += [
            "",
            f"faults injected: {sum(self.f.faults.values())} ({self.kills()} SIGKILLs)",
        ]
        for kind, n in sorted(self.f.faults.items()):
            lines.append(f"  {kind:<34}{n:>5}")
        registered = counts["registered"] + counts["indexed"]
        lines += [
            "",
            f"clips catalogued {len(rows)} ("
            + ", ".join(f"{c} {n}" for c, n in sorted(per_cam.items()))
            + ")",
            f"  registered {registered} (indexed {counts['indexed']}), pending "
            f"{sum(counts[s] for s in BACKLOG)}, failed {counts['failed']}, dropped "
            f"{counts['dropped']}",
            f"  media in the library {len(media)}, duplicates {dup}, lost {lost}",
            f"  objects verified against local CRC-64: "
            f"{sum(1 for k in self.f.verified_objects if k.startswith('media:'))} clips",
            f"status: {self.f.status_checks} looks, slowest {self.f.status_max * 1000:.0f} ms",
            f"RSS (all agent processes): last {rss_last:.0f} MB, slope "
            + (f"{slope:+.1f} MB/h" if slope is not None else "-")
            + "; supervisor "
            + (f"{sup:+.1f} MB/h" if sup is not None else "-")
            + "; first to last third "
            + (f"{growth:+.0f} MB" if growth is not None else "-"),
            "drain after the faults: "
            + (f"{self.f.drain_s:.0f} s" if self.f.drain_s is not None else "NOT DRAINED"),
            f"violations: {len(self.f.violations)}",
        ]
        for v in self.f.violations[:30]:
            lines.append(f"  [{v.invariant}] at {v.at}: {v.detail[:600]}")
        text = "\n".join(lines)
        print(text, flush=True)
        (self.work / "report.txt").write_text(text + "\n")
        summary = {
            "seed": self.args.seed,
            "minutes": self.args.minutes,
            "faults": dict(self.f.faults),
            "kills": self.kills(),
            "clips": len(rows),
            "states": dict(counts),
            "media": len(media),
            "duplicates": dup,
            "lost": lost,
            "violations": [v.__dict__ for v in self.f.violations],
            "rss_slope_mb_per_h": slope,
            "rss_growth_mb": growth,
            "rss_last_mb": rss_last,
            "drain_s": self.f.drain_s,
            "status_max_s": self.f.status_max,
            "tmpfs": self.tmpfs,
        }
        (self.work / "report.json").write_text(json.dumps(summary, indent=2))


def _crc64(data: bytes) -> int:
    import oss2.utils

    crc = oss2.utils.Crc64(0)
    crc.update(data)
    return crc.crc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="how long faults are injected")
    p.add_argument("--seed", type=int, default=1, help="the fault sequence's seed")
    p.add_argument("--kill-every", type=float, default=None, help="mean s between SIGKILLs")
    p.add_argument("--cameras", type=int, default=3, choices=(1, 2, 3))
    p.add_argument("--disk-mb", type=int, default=96, help="size of the data_dir tmpfs, MiB")
    p.add_argument("--drain", type=float, default=240.0, help="s the backlog gets to drain")
    p.add_argument("--rss-growth", type=float, default=40.0, help="MB of RSS growth allowed")
    p.add_argument("--workdir", default=None, help="where logs and data go (default: a new dir)")
    args = p.parse_args(argv)
    if args.kill_every is None:  # >= 100 kills in a 30 min soak, >= 10 in a 2-3 min one
        args.kill_every = 8.0 if args.minutes >= 10 else 6.0
    if args.workdir is None:
        args.workdir = f"/tmp/chaos-{time.strftime('%Y%m%d-%H%M%S')}-s{args.seed}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chaos = Chaos(args)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    return chaos.run()


if __name__ == "__main__":
    sys.exit(main())
