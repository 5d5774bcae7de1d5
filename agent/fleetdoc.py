"""Fleet documents: signed TOML fragments that carry configuration to a group of gateways.

Pure: bytes and dicts in, verdicts out; the fleet thread (agent/service/fleet.py) fetches and
applies them, agent/config_source.py stores and composes them. A document looks like

    version = 7                      # must grow with every publication
    target  = "group:stores-east"    # or "device:<device_id>"; `fleet publish` adds it
    [motion]
    threshold = 12
    [[cameras]]
    name = "door"                    # tunes the local camera "door", or adds one (with url)
    clip.post_roll = 8

and comes with a detached Ed25519 signature of its exact bytes (`.sig`: one base64 line).
Order of checks, cheapest and safest first: size cap, signature over the raw bytes (nothing
unsigned is ever parsed), TOML, shape (version, target, only pushable sections), then the
merged result is validated by the same rules as the local file (`effective`).

Merging: local file < group document < device document, key by key. `[[cameras]]` entries
are matched by `name`: a known camera has the given keys replaced (its `motion`/`clip` tables
key by key), an unknown name adds a camera. Cameras are never removed by a document.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.config import PUSHABLE, Config, ConfigError, parse, parse_toml, shown

MAX_DOC_BYTES = 256 * 1024  # a fleet document is a config fragment: kilobytes, not megabytes
MAX_SIG_BYTES = 1024
KINDS = ("group", "device")  # device overrides group


class FleetDocError(ValueError):
    """Why a document was refused, phrased for the operator (never contains a secret)."""


@dataclass(frozen=True)
class FleetDoc:
    target: str  # "group:NAME" or "device:ID"
    version: int
    body: Mapping[str, Any]  # the pushable sections it carries
    sha256: str  # of the signed bytes

    @property
    def kind(self) -> str:
        return self.target.split(":", 1)[0]

    @property
    def label(self) -> str:
        return f"{self.target}@{self.version}"


def target(kind: str, name: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"fleet target kind {kind!r}: expected one of {', '.join(KINDS)}")
    return f"{kind}:{name}"


def targets(group: str, device_id: str) -> list[str]:
    """The documents a gateway follows, weakest first."""
    return ([target("group", group)] if group else []) + [target("device", device_id)]


# -- signatures ------------------------------------------------------------------------------


def public_key_line(key: Ed25519PrivateKey) -> str:
    """The base64 public key, as it goes into `[fleet] public_keys`."""
    raw = key.public_key().public_bytes_raw()
    return base64.b64encode(raw).decode()


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The detached signature of `data`: one base64 line."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(data: bytes, sig: bytes, public_keys: Sequence[str]) -> int:
    """Check `sig` over the exact bytes `data`; the index of the key that made it.

    Size caps come first: a huge object is refused before any work is done on it.
    """
    if len(data) > MAX_DOC_BYTES:
        raise FleetDocError(f"document is {len(data)} bytes; the limit is {MAX_DOC_BYTES}")
    if len(sig) > MAX_SIG_BYTES:
        raise FleetDocError(f"signature file is {len(sig)} bytes; expected one base64 line")
    try:
        raw = base64.b64decode(sig.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise FleetDocError("signature file is not one base64 Ed25519 signature (64 bytes)")
    for i, line in enumerate(public_keys):
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(line))
        try:
            key.verify(raw, data)
            return i
        except InvalidSignature:
            continue
    raise FleetDocError(f"bad signature: made by none of the {len(public_keys)} public key(s)")


# -- shape -----------------------------------------------------------------------------------


def parse_doc(data: bytes, expect_target: str | None = None) -> FleetDoc:
    """The document's shape (after `verify`): version, target, only pushable sections."""
    if len(data) > MAX_DOC_BYTES:
        raise FleetDocError(f"document is {len(data)} bytes; the limit is {MAX_DOC_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FleetDocError("document is not UTF-8 text") from None
    try:
        doc = parse_toml(text, "document")
    except ConfigError as exc:
        raise FleetDocError(str(exc)) from None
    problems = []
    version = doc.pop("version", None)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append(f"version = {shown(version)}: expected an integer ≥ 1, raised every time")
    where = doc.pop("target", None)
    if not isinstance(where, str) or where.split(":", 1)[0] not in KINDS or ":" not in where:
        problems.append(f'target = {shown(where)}: expected "group:NAME" or "device:ID"')
    elif expect_target is not None and where != expect_target:
        problems.append(f"target = {shown(where)}: this document is for {expect_target!r}")
    for key in sorted(set(doc) - set(PUSHABLE)):
        problems.append(
            f"{shown(key)} is local to each gateway and cannot be pushed "
            f"(a document may carry version, target, {', '.join(PUSHABLE)})"
        )
    for section in ("motion", "clip", "upload"):
        if section in doc and not isinstance(doc[section], Mapping):
            problems.append(f"{section} = {shown(doc[section])}: expected a [{section}] table")
    cameras = doc.get("cameras", [])
    if not isinstance(cameras, list) or not all(
        isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in cameras
    ):
        problems.append("cameras: expected [[cameras]] tables, each with a name")
    if problems:
        raise FleetDocError("; ".join(problems))
    return FleetDoc(where, version, doc, hashlib.sha256(data).hexdigest())


def read(data: bytes, sig: bytes, public_keys: Sequence[str], expect_target: str) -> FleetDoc:
    """Verify, then parse: the only way from downloaded bytes to a FleetDoc."""
    verify(data, sig, public_keys)
    return parse_doc(data, expect_target)


# -- merging ---------------------------------------------------------------------------------


def _merge_tables(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_tables(out[key], value)
        else:
            out[key] = value
    return out


def merge(local: Mapping[str, Any], docs: Iterable[FleetDoc]) -> dict[str, Any]:
    """The local file's dict with each document's sections laid over it, in order."""
    out = dict(local)
    for doc in docs:
        for section, value in doc.body.items():
            if section == "cameras":
                cams = [dict(c) if isinstance(c, Mapping) else c for c in out.get("cameras", [])]
                index = {c.get("name"): i for i, c in enumerate(cams) if isinstance(c, Mapping)}
                for entry in value:
                    if entry["name"] in index:
                        i = index[entry["name"]]
                        cams[i] = _merge_tables(cams[i], entry)
                    else:
                        index[entry["name"]] = len(cams)
                        cams.append(dict(entry))
                out["cameras"] = cams
            else:
                out[section] = _merge_tables(out.get(section, {}), value)
    return out


def describe(docs: Sequence[FleetDoc]) -> str:
    return " ".join(d.label for d in docs) or "local"


def effective(local: Mapping[str, Any], docs: Sequence[FleetDoc], source: str) -> Config:
    """Validate the merged configuration by the local file's rules; ConfigError if it fails."""
    label = describe(docs)
    config = parse(merge(local, docs), f"{source} + {label}" if docs else source)
    return dataclasses.replace(config, version=label)


def check(data: bytes, source: str, local: Mapping[str, Any] | None = None) -> FleetDoc:
    """`config check` of a document without its signature: shape and values.

    Without the gateway's local file, cameras the document only tunes get a stand-in URL so
    their values can be checked.
    """
    doc = parse_doc(data)
    if local is None:
        cams = [{"url": "rtsp://camera.invalid/stream", **c} for c in doc.body.get("cameras", [])]
        local = {"cameras": [{"name": c["name"], "url": c["url"]} for c in cams]}
    try:
        effective(local, [doc], source)
    except ConfigError as exc:
        raise FleetDocError(str(exc)) from None
    return doc
