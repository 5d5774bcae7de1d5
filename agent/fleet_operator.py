"""Fleet config push, the operator's side: `ipc-agent fleet keygen`, `publish` and `status`.

The operator makes a signing key pair once, signs documents with the private key and uploads
them to the bucket (agent/fleet_bucket.py says where); the gateways, holding the public key,
fetch and apply them (agent/service/fleet.py) and write a report object each, which
`fleet_reports` reads back. Documents are checked here as the gateways will check them, so a
document they would refuse is refused before it is published.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import fleetdoc
from agent.config import Config, ConfigError, parse_toml
from agent.fleet_bucket import MAX_REPORT_BYTES, doc_key, oss_client, reports_prefix
from agent.fleetdoc import FleetDoc, FleetDocError

log = logging.getLogger("agent.service.fleet")  # the name these warnings have always had


class FleetKeyError(ValueError):
    """A problem with a fleet key file, phrased for the operator."""


def keygen(out: Path) -> tuple[Path, Path, str]:
    """Write `fleet.key` (private, 0600) and `fleet.pub` (the base64 line) into `out`."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    private, public = out / "fleet.key", out / "fleet.pub"
    for path in (private, public):
        if path.exists():
            raise FleetKeyError(f"{path} exists; refusing to overwrite a key (move it away first)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    line = fleetdoc.public_key_line(key)
    public.write_text(line + "\n")
    return private, public, line


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read `fleet.key`; refused when others may read it (it signs every gateway's config)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise FleetKeyError(f"{path}: cannot read the private key: {exc.strerror}") from None
    if mode & 0o077:
        raise FleetKeyError(
            f"{path}: mode {mode:04o} lets others read the fleet private key; run: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise FleetKeyError(f"{path}: not an Ed25519 private key in PEM (make one: fleet keygen)")
    return key


def publish(
    config: Config, data: bytes, target: str, key: Ed25519PrivateKey, source: str, oss: Any = None
) -> tuple[FleetDoc, str]:
    """Check, sign and upload a document for `target`; the document and its object key.

    Adds `target = ...` when the file has none. Refuses a version not above the one in the
    bucket, and content the gateways would refuse.
    """
    try:
        has_target = "target" in parse_toml(data.decode("utf-8"), source)
    except (ConfigError, UnicodeDecodeError) as exc:
        raise FleetDocError(f"{source}: {exc}") from None
    if not has_target:
        data = f'target = "{target}"\n'.encode() + data
    doc = fleetdoc.check(data, source)
    if doc.target != target:
        raise FleetDocError(f"{source}: target = {doc.target!r}, but publishing to {target!r}")
    keys = config.fleet.public_keys
    if keys and fleetdoc.public_key_line(key) not in keys:
        log.warning(
            "this key is not among %s's [fleet] public_keys; gateways with that config will "
            "refuse the document",
            config.source,
        )
    oss = oss or oss_client(config)
    object_key = doc_key(config.cloud, target)
    current = oss.fetch(object_key, limit=fleetdoc.MAX_DOC_BYTES)
    published = None
    if current is not None and current.data is not None:
        # Only a genuine document's version counts: a tampered or broken one is replaced.
        sig = oss.fetch(object_key + ".sig", limit=fleetdoc.MAX_SIG_BYTES)
        try:
            published = fleetdoc.read(
                current.data,
                sig.data if sig else b"",
                keys or [fleetdoc.public_key_line(key)],
                target,
            )
        except FleetDocError as exc:
            log.warning("replacing the document in the bucket, which gateways refuse: %s", exc)
    if published is not None and doc.version <= published.version:
        raise FleetDocError(
            f"{source}: version {doc.version} is not above the published version "
            f"{published.version} of {target}; gateways would refuse it as a replay. "
            f"Raise `version` to {published.version + 1} or more."
        )
    # Signature first: a gateway that sees the new document finds its signature already there.
    oss.put_bytes(object_key + ".sig", fleetdoc.sign(data, key), "text/plain")
    oss.put_bytes(object_key, data, "application/toml")
    return doc, object_key


def fleet_reports(config: Config, group: str | None = None, oss: Any = None) -> list[dict]:
    """Every gateway's report object (optionally one group's), sorted by device id."""
    oss = oss or oss_client(config)
    prefix = reports_prefix(config.cloud)
    reports = []
    for key in oss.list_keys(prefix):
        if not key.endswith(".json"):
            continue
        got = oss.fetch(key, limit=MAX_REPORT_BYTES)
        if got is None or got.data is None:
            continue
        try:
            report = json.loads(got.data)
        except ValueError:
            report = {"device_id": key[len(prefix) : -5], "error": "unreadable report"}
        if not isinstance(report, dict):
            continue
        if group is None or report.get("group") == group:
            reports.append(report)
    return sorted(reports, key=lambda r: str(r.get("device_id")))


def published_version(config: Config, target: str, oss: Any = None) -> int | None:
    oss = oss or oss_client(config)
    got = oss.fetch(doc_key(config.cloud, target), limit=fleetdoc.MAX_DOC_BYTES)
    if got is None or got.data is None:
        return None
    try:
        return fleetdoc.parse_doc(got.data).version
    except FleetDocError:
        return None
