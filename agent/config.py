"""Load and validate the agent's TOML configuration into frozen dataclasses.

Every setting is declared once, as a dataclass field whose metadata says what is allowed; the
validator, the error messages and the sample config's documentation all follow from that, so
they cannot drift apart. Nothing here does I/O beyond reading the file.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 gateways
    import tomli as tomllib

DEFAULT_CONFIG_PATH = Path("/etc/ipc-agent/agent.toml")
CAMERA_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never in a URL or a path we accept


class ConfigError(ValueError):
    """Configuration problems, phrased for the operator: file, key, what is allowed.

    `problems` lists every problem found (validation goes on after the first one), so one
    run of `ipc-agent config check` shows all that needs fixing.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def _num(default: float, lo: float, hi: float, doc: str) -> Any:
    return field(default=default, metadata={"range": (lo, hi), "doc": doc})


def _text(pattern: str, expect: str, default: str = "", *, optional: bool = False) -> Any:
    """A string setting that must match `pattern`; `expect` says what is allowed."""
    return field(
        default=default, metadata={"pattern": pattern, "expect": expect, "optional": optional}
    )


def _choice(default: str, choices: tuple[str, ...], doc: str) -> Any:
    return field(default=default, metadata={"choices": choices, "doc": doc})


@dataclass(frozen=True)
class MotionSettings:
    """How motion is found in the decoded luma plane (see agent/capture/motion.py)."""

    detect_fps: float = _num(5.0, 0.5, 60.0, "frames analysed per second")
    analysis_width: int = _num(320, 64, 1920, "width in px the frame is reduced to for analysis")
    threshold: float = _num(10.0, 2.0, 128.0, "least luma change (0-255) a pixel must show")
    min_area: float = _num(0.02, 0.0, 50.0, "least changed area, % of the unmasked frame")
    background_time: float = _num(4.0, 0.2, 600.0, "s the background takes to follow slow light")
    absorb_time: float = _num(20.0, 1.0, 3600.0, "s until a stopped object becomes background")
    gate: str = _choice("auto", ("auto", "off"), "decode keyframes only while the scene is static")
    gate_threshold: float = _num(
        10.0, 1.0, 100.0, "robust sigmas of frame-size growth, summed over frames, that wake it"
    )
    gate_probe: float = _num(0.0, 0.0, 3600.0, "s between full-decode spot checks; 0: none")


@dataclass(frozen=True)
class ClipSettings:
    """How motion events become clips (see agent/capture/segmenter.py)."""

    pre_roll: float = _num(3.0, 0.0, 60.0, "s of video kept before motion starts")
    post_roll: float = _num(5.0, 0.0, 300.0, "s kept after motion stops; also merges bursts")
    min_event: float = _num(1.0, 0.0, 60.0, "bursts of motion shorter than this are no event")
    max_clip: float = _num(60.0, 2.0, 3600.0, "a longer event is split into back-to-back clips")
    keyframes: int = _num(4, 0, 32, "images picked per clip")
    keyframe_size: int = _num(1280, 160, 4096, "longest side of a keyframe image, px")


@dataclass(frozen=True)
class CameraConfig:
    name: str
    url: str
    # The camera's low-resolution sub-stream, motion is detected on (agent/capture/substream.py);
    # "": on the main stream `url`. Same rules as `url`, checked in _camera.
    detect_url: str = field(default="", metadata={"optional": True})
    transport: str = _choice("tcp", ("tcp", "udp"), "RTSP transport")
    realtime: bool = field(default=True, metadata={"doc": "file sources: pace at native rate"})
    loop: bool = field(default=False, metadata={"doc": "file sources: start over at the end"})
    timeout: float = _num(10.0, 1.0, 300.0, "s without a packet before the stream is lost")
    reconnect_max: float = _num(5.0, 1.0, 300.0, "s: the longest wait between reconnect tries")
    mask: tuple[tuple[tuple[float, float], ...], ...] = ()
    motion: MotionSettings = field(default_factory=MotionSettings)
    clip: ClipSettings = field(default_factory=ClipSettings)

    @property
    def is_file(self) -> bool:
        return not re.match(r"^[a-z][a-z0-9+.-]*://", self.url) or self.url.startswith("file://")


@dataclass(frozen=True)
class AgentSettings:
    device_id: str = field(
        default_factory=socket.gethostname,
        metadata={
            # A segment of every object key and the default search-library namespace.
            "pattern": r"(?!\.\.?$)[A-Za-z0-9_.-]{1,64}",
            "expect": "1-64 of A-Z a-z 0-9 _ . - (not '.' or '..')",
        },
    )
    data_dir: Path = Path("/var/lib/ipc-agent")
    log_level: str = _choice("info", ("debug", "info", "warning", "error"), "log verbosity")
    # Cameras run as threads of a few worker processes (agent/service/supervisor.py): more per
    # worker saves memory (~20 MB a worker); a crash inside libav takes its worker's cameras down.
    cameras_per_worker: int = _num(
        0, 0, 32, "cameras sharing one worker process; 0: a quarter of the cameras, 1 to 8"
    )

    def per_worker(self, cameras: int) -> int:
        """Cameras per worker process for `cameras` cameras (`cameras_per_worker`, or auto:
        4 workers at most until there are 32 cameras, so one crash takes a quarter down)."""
        if self.cameras_per_worker:
            return self.cameras_per_worker
        return min(8, max(1, -(-cameras // 4)))


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.I)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kMG]?bit)?\s*$")
_RATE_UNITS = {None: 1, "bit": 1, "kbit": 10**3, "Mbit": 10**6, "Gbit": 10**9}
OSS_TRAFFIC_LIMIT = (819_200, 838_860_800)  # bit/s: what OSS's x-oss-traffic-limit accepts


def parse_size(raw: Any) -> int:
    """Bytes from 1073741824, "20GiB", "500 MB" (KiB/MiB/GiB/TiB binary, KB/MB/GB/TB decimal)."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    m = _SIZE.match(raw) if isinstance(raw, str) else None
    if not m:
        raise ValueError(raw)
    return int(float(m[1]) * _SIZE_UNITS[(m[2] or "B").lower()])


def parse_bandwidth(raw: Any) -> int:
    """bit/s from "4Mbit", "800kbit" or "0" (unlimited); OSS throttles 819200..838860800 bit/s."""
    m = _RATE.match(raw) if isinstance(raw, str) else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif m:
        value = int(float(m[1]) * _RATE_UNITS[m[2]])
    else:
        raise ValueError(raw)
    if value and not OSS_TRAFFIC_LIMIT[0] <= value <= OSS_TRAFFIC_LIMIT[1]:
        raise ValueError(raw)
    return value


@dataclass(frozen=True)
class CloudSettings:
    """Where clips go: an OSS bucket, and an ICE search library that indexes them."""

    region: str = _text(r"[a-z]{2}-[a-z0-9-]+", 'a region id like "cn-shanghai"')
    bucket: str = _text(
        r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]",
        "an OSS bucket name: 3-63 of a-z, 0-9 and '-', not starting or ending in '-'",
    )
    prefix: str = _text(
        r"(?:[A-Za-z0-9._-]+/)*",
        'an object key prefix ending in "/" (or ""), e.g. "ipc/"',
        "ipc/",
        optional=True,
    )
    oss_endpoint: str = _text(r"https?://\S+", "an http(s):// URL (default from region)")
    ice_endpoint: str = _text(r"https?://\S+", "an http(s):// URL (default from region)")
    search_lib: str = _text(
        # What ICE accepts for an IPC library: the prefix, then letters and digits only.
        r"IPCamera_[A-Za-z0-9]{1,56}",
        '"IPCamera_" followed by 1-56 letters and digits (no "-" or "_"), e.g. "IPCamera_store1"',
    )
    namespace: str = _text(r"[A-Za-z0-9_.-]{1,64}", "1-64 of A-Z a-z 0-9 _ . -")


@dataclass(frozen=True)
class UploadSettings:
    """How the spool drains to the cloud, and what happens when the disk fills."""

    concurrency: int = _num(2, 1, 16, "clips uploaded at once")
    max_spool_bytes: int = field(
        default=20 * 2**30,
        metadata={"parse": parse_size, "expect": 'a size like "20GiB", "500MB" or bytes'},
    )
    min_free_bytes: int = field(
        default=2**30,
        metadata={"parse": parse_size, "expect": 'a size like "1GiB", "500MB" or bytes'},
    )
    on_full: str = _choice("drop_oldest", ("drop_oldest", "stop_recording"), "full-disk policy")
    keep_local_hours: float = _num(0.0, 0.0, 8760.0, "h uploaded files stay on the gateway")
    bandwidth_limit: int = field(
        default=0,
        metadata={
            "parse": parse_bandwidth,
            "expect": '"0" (unlimited) or a rate like "4Mbit" between 819.2kbit and 838.8608Mbit',
        },
    )
    max_backoff: float = _num(60.0, 1.0, 3600.0, "s, cap of the retry backoff while offline")


def parse_public_keys(raw: Any) -> tuple[str, ...]:
    """Ed25519 public keys as base64 strings (32 bytes each), as `ipc-agent fleet keygen` prints."""
    if not isinstance(raw, list):
        raise ValueError(raw)
    keys = []
    for item in raw:
        try:
            ok = isinstance(item, str) and len(base64.b64decode(item, validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise ValueError(item)
        keys.append(item)
    return tuple(keys)


@dataclass(frozen=True)
class FleetSettings:
    """Signed configuration pushed through the bucket (see agent/service/fleet.py)."""

    enabled: bool = field(default=False, metadata={"doc": "poll the bucket for fleet documents"})
    group: str = _text(
        r"(?:[A-Za-z0-9_.-]{1,64})?", "a group name: 1-64 of A-Z a-z 0-9 _ . -", optional=True
    )
    poll_interval: float = _num(60.0, 1.0, 86400.0, "s between checks for new documents")
    public_keys: tuple[str, ...] = field(
        default=(),
        metadata={
            "parse": parse_public_keys,
            "expect": "a list of base64 Ed25519 public keys (the line of fleet.pub)",
        },
    )


# The sections a fleet document may carry; everything else is local to the gateway.
PUSHABLE = ("cameras", "motion", "clip", "upload")


@dataclass(frozen=True)
class Config:
    agent: AgentSettings = field(default_factory=AgentSettings)
    motion: MotionSettings = field(default_factory=MotionSettings)
    clip: ClipSettings = field(default_factory=ClipSettings)
    cameras: tuple[CameraConfig, ...] = ()
    cloud: CloudSettings | None = None  # None: no [cloud] section, clips stay local
    upload: UploadSettings = field(default_factory=UploadSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    source: str = "<defaults>"
    version: str = "local"  # "local", or the fleet documents applied: "group:east@7 device@3"

    def camera(self, name: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        known = ", ".join(c.name for c in self.cameras) or "none configured"
        raise ConfigError(f"{self.source}: no camera named {name!r} (cameras: {known})")


# -- redaction -------------------------------------------------------------------------------

# A URL's password: "/user:password@" after any scheme, even a mistyped one ("rtsp¡://",
# "rtsp:/"). It runs to the last "@" before a "/" or a space: an unescaped "@" in it must not
# leak a tail. Text without the "/" is left alone ("group:east@7" is a fleet document version).
_URL_USERINFO = re.compile(r"(?<=/)(?P<user>[^:/@]*):[^/\s]*@")
# In a value echoed back from a config file, any "user:password@": the URL may be mangled
# beyond recognition ("admin:pw@10.0.0.9/s", "ad min:pw@...").
_ANY_USERINFO = re.compile(r"(?P<user>[^:/@\s'\"]*):[^/\s]*@")


def redact(text: str, *, anywhere: bool = False) -> str:
    """Hide the password of every URL in `text`: rtsp://user:pass@host → rtsp://user:***@host.
    `anywhere`: also a "user:pass@" with no URL around it (values from a config file)."""
    pattern = _ANY_USERINFO if anywhere else _URL_USERINFO
    return pattern.sub(lambda m: f"{m['user']}:***@", text)


def shown(raw: Any, limit: int = 60) -> str:
    """A value as an error message shows it: redacted first, then cut short (a megabyte of
    junk in a message helps no one; cutting first could leave a password without its "@")."""
    try:
        text = repr(raw)
    except (ValueError, RecursionError):  # an int past str()'s digit limit, absurd nesting
        text = f"<{type(raw).__name__}>"
    text = redact(text, anywhere=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- validation ------------------------------------------------------------------------------


def _describe(f: dataclasses.Field) -> str:
    meta = f.metadata
    if "expect" in meta:
        return meta["expect"]
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if "range" in meta:
        lo, hi = meta["range"]
        kind = "an integer" if f.type in (int, "int") else "a number"
        return f"{kind} from {lo} to {hi}"
    if f.type in (bool, "bool"):
        return "true or false"
    return "a string"


def _value(f: dataclasses.Field, raw: Any, where: str) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"{where} = {shown(raw)}: expected {_describe(f)}")

    typ = f.type
    if "parse" in f.metadata:
        try:
            return f.metadata["parse"](raw)
        except (TypeError, ValueError, OverflowError):
            raise bad() from None
    if typ in (bool, "bool"):
        if not isinstance(raw, bool):
            raise bad()
        return raw
    if "range" in f.metadata:
        want_int = typ in (int, "int")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise bad()
        if want_int and not (isinstance(raw, int) or raw.is_integer()):
            raise bad()
        lo, hi = f.metadata["range"]
        if not lo <= raw <= hi:
            raise bad()
        return int(raw) if want_int else float(raw)
    if not isinstance(raw, str) or (not raw and not f.metadata.get("optional")):
        raise bad()
    if "choices" in f.metadata and raw not in f.metadata["choices"]:
        raise bad()
    if "pattern" in f.metadata and not re.fullmatch(f.metadata["pattern"], raw):
        raise bad()
    return raw


def _build(cls: type, table: Any, where: str, *, base: Any = None, skip: tuple[str, ...] = ()):
    """Build dataclass `cls` from a TOML table, starting from `base` (defaults if None)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{where}]: expected a table, got {shown(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    allowed = ", ".join(fields)
    problems = [
        f"[{where}]: unknown key {shown(key)} (allowed: {allowed})"
        for key in sorted(set(table) - set(fields) - set(skip))
    ]
    values = {}
    for key, raw in table.items():
        if key in fields:
            try:
                values[key] = _value(fields[key], raw, f"[{where}] {key}")
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError("\n".join(problems), problems)
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def _polygons(raw: Any, where: str) -> tuple[tuple[tuple[float, float], ...], ...]:
    msg = f"{where}: expected a list of polygons, each a list of ≥3 [x, y] points with 0 ≤ x, y ≤ 1"
    if not isinstance(raw, list):
        raise ConfigError(msg)
    polys = []
    for poly in raw:
        if not isinstance(poly, list) or len(poly) < 3:
            raise ConfigError(msg)
        points = []
        for pt in poly:
            ok = isinstance(pt, list) and len(pt) == 2
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pt)
            if not ok or not all(0.0 <= v <= 1.0 for v in pt):
                raise ConfigError(f"{msg}; got {shown(pt)}")
            points.append((float(pt[0]), float(pt[1])))
        polys.append(tuple(points))
    return tuple(polys)


URL_SCHEMES = ("rtsp", "rtsps", "file")  # and a plain path; what the source can open


def _url_problem(raw: Any, where: str, alt: str, *, empty_ok: bool = False) -> str | None:
    """What is wrong with a camera URL setting, or None: rtsp(s)://, file:// or a path."""
    expect = f"expected an rtsp:// or rtsps:// URL, a file path or a file:// URL{alt}"
    if not isinstance(raw, str) or (not raw.strip() and not (empty_ok and raw == "")):
        return f"{where} = {shown(raw)}: {expect}"
    if _CONTROL.search(raw):
        return f"{where}: a control character in it; {expect}"
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", raw)
    if scheme and scheme[1] not in URL_SCHEMES:
        return f"{where} = {shown(raw)}: scheme {scheme[1]!r} is not supported; {expect}"
    return None


def _camera(raw: Any, index: int, motion: MotionSettings, clip: ClipSettings) -> CameraConfig:
    where = f"cameras[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[[cameras]] #{index + 1}: expected a table")
    # Every problem with the identity at once: a bad name is reported even without a url.
    problems = [f"[{where}]: missing required key {k!r}" for k in ("name", "url") if k not in raw]
    name = raw.get("name")
    if "name" in raw and (not isinstance(name, str) or not CAMERA_NAME.match(name)):
        problems.append(
            f"[{where}] name = {shown(name)}: expected 1-64 characters of a-z, 0-9, '_' or '-'"
        )
    if problems:
        raise ConfigError("\n".join(problems), problems)
    where = f"cameras.{name}"
    problems = [
        p
        for p in (
            _url_problem(raw["url"], f"[{where}] url", ""),
            _url_problem(
                raw.get("detect_url", ""),
                f"[{where}] detect_url",
                ' (the sub-stream), or "" to detect on url',
                empty_ok=True,
            ),
        )
        if p
    ]
    if problems:
        raise ConfigError("\n".join(problems), problems)
    problems: list[str] = []
    parts = (
        lambda: _build(
            CameraConfig,
            raw,
            where,
            base=CameraConfig(name=name, url=raw["url"]),
            skip=("name", "url", "mask", "motion", "clip"),
        ),
        lambda: _polygons(raw.get("mask", []), f"[{where}] mask"),
        lambda: _build(MotionSettings, raw.get("motion", {}), f"{where}.motion", base=motion),
        lambda: _build(ClipSettings, raw.get("clip", {}), f"{where}.clip", base=clip),
    )
    built = []
    for part in parts:
        try:
            built.append(part())
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError("\n".join(problems), problems)
    cam, mask, cam_motion, cam_clip = built
    return dataclasses.replace(cam, mask=mask, motion=cam_motion, clip=cam_clip)


def parse(doc: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML document. Raises ConfigError naming `source`, the keys and rules.

    Every section is checked even after a problem, so the error lists all of them.
    """
    problems: list[str] = []

    def checked(build, fallback):
        try:
            return build()
        except ConfigError as exc:
            problems.extend(exc.problems)
            return fallback

    allowed = ("agent", "motion", "clip", "cameras", "cloud", "upload", "fleet")
    for name in sorted(set(doc) - set(allowed)):
        problems.append(f"unknown section {shown(name)} (allowed: {', '.join(allowed)})")
    agent = checked(lambda: _agent(doc.get("agent", {})), AgentSettings())
    motion = checked(
        lambda: _build(MotionSettings, doc.get("motion", {}), "motion", base=MotionSettings()),
        MotionSettings(),
    )
    clip = checked(
        lambda: _build(ClipSettings, doc.get("clip", {}), "clip", base=ClipSettings()),
        ClipSettings(),
    )
    cams_raw = doc.get("cameras", [])
    if not isinstance(cams_raw, list):
        problems.append("cameras: expected [[cameras]] tables")
        cams_raw = []
    cameras = []
    for i, raw in enumerate(cams_raw):
        cam = checked(lambda raw=raw, i=i: _camera(raw, i, motion, clip), None)
        if cam is not None:
            cameras.append(cam)
    seen: set[str] = set()
    for cam in cameras:
        if cam.name in seen:
            problems.append(f"[[cameras]] name = {cam.name!r}: duplicate camera name")
        seen.add(cam.name)
    cloud = checked(lambda: _cloud(doc["cloud"], agent), None) if "cloud" in doc else None
    upload = checked(
        lambda: _build(UploadSettings, doc.get("upload", {}), "upload", base=UploadSettings()),
        UploadSettings(),
    )
    fleet = checked(
        lambda: _fleet(doc.get("fleet", {}), cloud is not None or "cloud" in doc), FleetSettings()
    )
    if problems:
        problems = [redact(p, anywhere=True) for p in problems]
        if len(problems) == 1:
            raise ConfigError(f"{source}: {problems[0]}", problems)
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"{source}: {len(problems)} problems:\n{listing}", problems)
    return Config(
        agent=agent,
        motion=motion,
        clip=clip,
        cameras=tuple(cameras),
        cloud=cloud,
        upload=upload,
        fleet=fleet,
        source=source,
    )


def _agent(raw: Any) -> AgentSettings:
    if not isinstance(raw, Mapping):
        raise ConfigError("[agent]: expected a table")
    raw = dict(raw)
    data_dir = raw.pop("data_dir", None)
    agent = _build(AgentSettings, raw, "agent", base=AgentSettings())
    if data_dir is not None:
        if not isinstance(data_dir, str) or not data_dir or _CONTROL.search(data_dir):
            raise ConfigError(f"[agent] data_dir = {shown(data_dir)}: expected a directory path")
        agent = dataclasses.replace(agent, data_dir=Path(data_dir))
    return agent


def _cloud(raw: Any, agent: AgentSettings) -> CloudSettings:
    cloud = _build(CloudSettings, raw, "cloud", base=CloudSettings())
    for key in ("region", "bucket", "search_lib"):
        if not getattr(cloud, key):
            raise ConfigError(f"[cloud]: missing required key {key!r}")
    return dataclasses.replace(
        cloud,
        oss_endpoint=cloud.oss_endpoint or f"https://oss-{cloud.region}.aliyuncs.com",
        ice_endpoint=cloud.ice_endpoint or f"https://ice.{cloud.region}.aliyuncs.com",
        namespace=cloud.namespace or agent.device_id,
    )


def _fleet(raw: Any, has_cloud: bool) -> FleetSettings:
    fleet = _build(FleetSettings, raw, "fleet", base=FleetSettings())
    if fleet.enabled and not fleet.public_keys:
        raise ConfigError("[fleet] enabled = true needs public_keys (the line of fleet.pub)")
    if fleet.enabled and not has_cloud:
        raise ConfigError("[fleet] enabled = true needs a [cloud] section (its bucket)")
    return fleet


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text to a plain dict; a syntax error becomes a ConfigError naming `source`."""
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, a 5000-digit int, [[[[...
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ConfigError(redact(f"{source}: not valid TOML: {why}", anywhere=True)) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a plain dict (not validated)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse_toml(text, str(path))


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file: the local file alone (the running config adds
    the fleet documents to it: agent/config_source.py)."""
    return parse(read_toml(path), str(Path(path)))


# -- showing ---------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(redact(str(value)), ensure_ascii=False)  # a TOML basic string


def _toml_table(obj: Any, skip: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{f.name} = {_toml_value(getattr(obj, f.name))}"
        for f in dataclasses.fields(obj)
        if f.name not in skip
    ]


def dump(config: Config) -> str:
    """The effective configuration as TOML, every value explicit, passwords redacted.

    Loading the output again gives the same configuration (URLs with a password aside).
    """
    out = [f"# effective configuration, from {config.source} (version: {config.version})"]
    for name in ("agent", "motion", "clip"):
        out += ["", f"[{name}]", *_toml_table(getattr(config, name))]
    if config.cloud is not None:
        out += ["", "[cloud]", *_toml_table(config.cloud)]
    out += ["", "[upload]", *_toml_table(config.upload)]
    out += ["", "[fleet]", *_toml_table(config.fleet)]
    for cam in config.cameras:
        out += ["", "[[cameras]]", *_toml_table(cam, skip=("motion", "clip"))]
        out += ["[cameras.motion]", *_toml_table(cam.motion)]
        out += ["[cameras.clip]", *_toml_table(cam.clip)]
    return "\n".join(out) + "\n"
