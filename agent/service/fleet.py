"""Fleet config push, the gateway's side and the operator's: fetch, verify, store, apply, report.

Documents live in the bucket the fleet already uploads to (see agent/fleetdoc.py for their
form and checks):

    {prefix}fleet/groups/{group}.toml      + .sig    what every gateway of the group runs
    {prefix}fleet/devices/{device_id}.toml + .sig    one gateway's overrides (win over group)
    {prefix}fleet/status/{device_id}.json            each gateway's report

A gateway (`FleetAgent`, a thread of the supervisor) polls every `poll_interval` seconds and
on SIGHUP, with a conditional GET (If-None-Match), so an unchanged document costs one small
request. A changed one is verified on its exact bytes, must carry a version above the highest
this gateway ever accepted for that target (replay and rollback protection), and the merged
configuration must pass the same validation as the local file. Only then is it stored under
`data_dir/fleet/` (so it is re-applied at boot when the cloud is unreachable) and applied; the
supervisor restarts only the cameras whose settings changed. A refused document changes
nothing: the refusal is logged, shown in `status` and written to the report object.

`ConfigSource` is the one place that composes the running configuration: the local file
plus the stored documents. The supervisor asks it at boot and on SIGHUP; the fleet thread
updates it when a document is accepted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import __version__, fleetdoc
from agent.config import CloudSettings, Config, ConfigError, parse, parse_toml, read_toml
from agent.durable import fsync_dir
from agent.fleetdoc import FleetDoc, FleetDocError

log = logging.getLogger(__name__)

REPORT_EVERY = 900.0  # s: the report object is rewritten at least this often
MAX_REPORT_BYTES = 64 * 1024
STATE_FILE = "state.json"


def doc_key(cloud: CloudSettings, target: str) -> str:
    kind, name = target.split(":", 1)
    return f"{cloud.prefix}fleet/{kind}s/{name}.toml"


def report_key(cloud: CloudSettings, device_id: str) -> str:
    return f"{cloud.prefix}fleet/status/{device_id}.json"


def _write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class FleetStore:
    """What survives a restart, under `data_dir/fleet/`: each applied document's exact signed
    bytes and signature, and `state.json` (highest version accepted per target, ETags, the
    last rejection). Versions only ever go up, even if a stored document is later dropped."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "fleet"

    def _files(self, target: str) -> tuple[Path, Path]:
        stem = target.replace(":", "-")
        return self.dir / f"{stem}.toml", self.dir / f"{stem}.toml.sig"

    def state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.dir / STATE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            state = {}
        state.setdefault("versions", {})
        state.setdefault("etags", {})
        state.setdefault("applied_at", {})
        state.setdefault("last_rejection", None)
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        _write_atomic(self.dir / STATE_FILE, json.dumps(state, indent=1).encode())

    def stored(self, target: str) -> tuple[bytes, bytes] | None:
        doc, sig = self._files(target)
        try:
            return doc.read_bytes(), sig.read_bytes()
        except FileNotFoundError:
            return None

    def keep(self, target: str, data: bytes, sig: bytes) -> None:
        self.dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        doc_path, sig_path = self._files(target)
        _write_atomic(sig_path, sig)
        _write_atomic(doc_path, data)


class ConfigSource:
    """The running configuration: the local file, plus the fleet documents applied over it.

    `generation` grows with every change, so the supervisor can tell when to apply `config`.
    Thread-safe: the supervisor reloads on SIGHUP while the fleet thread accepts documents.
    """

    def __init__(self, path: Path | None, config: Config | None = None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.generation = 0
        self.local_raw: dict[str, Any] = {}
        self.docs: dict[str, FleetDoc] = {}  # by target, applied
        self.config = config if config is not None else Config()
        if config is None:
            self.reload()

    def reload(self) -> Config:
        """Read the local file and the stored documents again (boot, SIGHUP).

        Raises ConfigError when the local file is invalid; the running config is then kept.
        A stored document that no longer fits (a key was removed, the merge now fails) is left
        out with an error in the log, so a valid local file always brings the agent up.
        """
        if self.path is None:
            raise ConfigError("no config file to reload")
        raw = read_toml(self.path)
        local = parse(raw, str(self.path))
        with self.lock:
            if self.generation and local.agent.data_dir != self.config.agent.data_dir:
                raise ConfigError(
                    f"{self.path}: data_dir changed; moving it takes a restart of the agent"
                )
            docs = self._stored_docs(local) if local.fleet.enabled else {}
            config = self._compose(raw, docs)
            self.local_raw, self.docs, self.config = raw, docs, config
            self.generation += 1
            return config

    def _stored_docs(self, local: Config) -> dict[str, FleetDoc]:
        store = FleetStore(local.agent.data_dir)
        docs = {}
        for target in fleetdoc.targets(local.fleet.group, local.agent.device_id):
            kept = store.stored(target)
            if kept is None:
                continue
            try:
                docs[target] = fleetdoc.read(*kept, local.fleet.public_keys, target)
            except FleetDocError as exc:
                log.error("fleet: stored document %s no longer applies: %s", target, exc)
        return docs

    def _compose(self, raw: dict[str, Any], docs: dict[str, FleetDoc]) -> Config:
        """The merged config; stored documents that make it invalid are dropped, device first."""
        ordered = list(docs.values())
        source = str(self.path)
        while True:
            try:
                return fleetdoc.effective(raw, ordered, source)
            except ConfigError as exc:
                if not ordered:
                    raise
                dropped = ordered.pop()
                log.error("fleet: document %s left out: %s", dropped.label, exc)
                docs.pop(dropped.target, None)

    def propose(self, doc: FleetDoc) -> Config:
        """The config `doc` would give (ConfigError if invalid); changes nothing."""
        with self.lock:
            docs = {**self.docs, doc.target: doc}
            ordered = [docs[t] for t in self._order(docs)]
            return fleetdoc.effective(self.local_raw, ordered, str(self.path))

    def accept(self, doc: FleetDoc, config: Config) -> None:
        with self.lock:
            self.docs[doc.target] = doc
            self.config = config
            self.generation += 1

    @staticmethod
    def _order(docs: dict[str, FleetDoc]) -> list[str]:
        return sorted(docs, key=lambda t: fleetdoc.KINDS.index(t.split(":", 1)[0]))


def load_effective(path: str | Path) -> Config:
    """The configuration the agent runs: the local file plus its stored fleet documents."""
    return ConfigSource(Path(path)).config


class FleetAgent:
    """The gateway's side: a thread in the supervisor that polls, verifies, applies, reports."""

    def __init__(
        self,
        source: ConfigSource,
        health: Callable[[], dict[str, Any]],
        make_oss: Callable[[], Any] | None = None,
    ) -> None:
        self.source = source
        self.health = health
        self._make_oss = make_oss
        self._oss = None
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.last_check: float | None = None
        self.last_error: str | None = None
        self.force = False  # next check: GET unconditionally (keys or group may have changed)
        self._last_report = 0.0
        self._report_due = True
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> Config:
        return self.source.config

    def store(self) -> FleetStore:
        return FleetStore(self.config.agent.data_dir)

    def oss(self) -> Any:
        if self._oss is None:
            if self._make_oss is not None:
                self._oss = self._make_oss()
            else:
                self._oss = oss_client(self.config)
        return self._oss

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.check()
            except Exception:  # never let one bad check end the polling
                log.exception("fleet: check failed")
            self.wake.wait(self.config.fleet.poll_interval)
            self.wake.clear()

    # -- one check -----------------------------------------------------------------------------

    def check(self) -> None:
        """Fetch each followed document once; accept or refuse what changed; report."""
        from agent.deliver.credentials import CredentialsError
        from agent.deliver.oss import OssError

        config = self.config
        fleet = config.fleet
        targets = fleetdoc.targets(fleet.group, config.agent.device_id)
        errors = []
        force, self.force = self.force, False
        for target in targets:
            try:
                self._check_target(target, force)
            except (OssError, CredentialsError, OSError) as exc:
                errors.append(f"{target}: {exc}")
        error = "; ".join(errors) or None
        if error != self.last_error:
            if error:
                log.warning("fleet: cannot fetch documents (%s); keeping %s", error, config.version)
            elif self.last_error:
                log.info("fleet: bucket reachable again")
            self._report_due = True
        self.last_error = error
        self.last_check = time.time()
        if self._report_due or time.monotonic() - self._last_report >= REPORT_EVERY:
            with contextlib.suppress(OssError, CredentialsError, OSError):
                self.report()
                self._report_due = False
                self._last_report = time.monotonic()

    def _check_target(self, target: str, force: bool = False) -> None:
        config = self.config
        store = self.store()
        state = store.state()
        key = doc_key(config.cloud, target)
        etag = None if force else state["etags"].get(target)
        got = self.oss().fetch(key, etag=etag, limit=fleetdoc.MAX_DOC_BYTES)
        if got is None or got.data is None:  # not published, or unchanged
            return
        current = self.source.docs.get(target)
        if current is not None and hashlib.sha256(got.data).hexdigest() == current.sha256:
            state["etags"][target] = got.etag  # the same document (e.g. re-read after restart)
            store.save_state(state)
            return
        sig = self.oss().fetch(key + ".sig", limit=fleetdoc.MAX_SIG_BYTES)
        version = None
        try:
            if sig is None or sig.data is None:
                raise FleetDocError("no signature (.sig) beside the document")
            try:
                doc = fleetdoc.read(got.data, sig.data, config.fleet.public_keys, target)
            except FleetDocError:
                # Published between our two GETs? Read both once more before refusing.
                again = self.oss().fetch(key, limit=fleetdoc.MAX_DOC_BYTES)
                sig = self.oss().fetch(key + ".sig", limit=fleetdoc.MAX_SIG_BYTES)
                if again is None or sig is None or again.data is None or sig.data is None:
                    raise
                got = again
                doc = fleetdoc.read(got.data, sig.data, config.fleet.public_keys, target)
            version = doc.version
            applied = state["versions"].get(target, 0)
            if doc.version <= applied:
                raise FleetDocError(
                    f"version {doc.version} is not above the applied version {applied} "
                    "(replayed or rolled back)"
                )
            try:
                new = self.source.propose(doc)
            except ConfigError as exc:
                raise FleetDocError(f"invalid configuration: {exc}") from None
        except FleetDocError as exc:
            self._reject(store, state, target, version, str(exc), got.etag)
            return
        store.keep(target, got.data, sig.data)
        state["versions"][target] = doc.version
        state["etags"][target] = got.etag
        state["applied_at"][target] = time.time()
        store.save_state(state)
        self.source.accept(doc, new)
        self._report_due = True
        log.info("fleet: applied %s (running %s)", doc.label, new.version)

    def _reject(
        self,
        store: FleetStore,
        state: dict[str, Any],
        target: str,
        version: int | None,
        reason: str,
        etag: str,
    ) -> None:
        rejection = {"target": target, "version": version, "reason": reason, "at": time.time()}
        state["last_rejection"] = rejection
        state["etags"][target] = etag  # refuse it once, not at every poll
        store.save_state(state)
        self._report_due = True
        log.error(
            "fleet: refused %s%s: %s; keeping %s",
            target,
            f"@{version}" if version is not None else "",
            reason,
            self.config.version,
        )

    # -- status and report ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return status_model(self.config, self.store().state(), self.last_check, self.last_error)

    def report(self) -> None:
        config = self.config
        body = {
            "device_id": config.agent.device_id,
            "group": config.fleet.group or None,
            "agent_version": __version__,
            "reported_at": _iso(time.time()),
            "config_version": config.version,
            **self.status(),
            "health": self.health(),
        }
        data = json.dumps(body, indent=1).encode()
        self.oss().put_bytes(
            report_key(config.cloud, config.agent.device_id), data, "application/json"
        )


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def status_model(
    config: Config, state: dict[str, Any], last_check: float | None, last_error: str | None
) -> dict[str, Any]:
    """The `fleet` part of the status model (and of the report object)."""
    rejection = state.get("last_rejection")
    if rejection:
        rejection = {**rejection, "at": _iso(rejection.get("at"))}
    docs = {
        t: {"version": v, "applied_at": _iso(state["applied_at"].get(t))}
        for t, v in state.get("versions", {}).items()
    }
    return {
        "enabled": config.fleet.enabled,
        "group": config.fleet.group or None,
        "documents": docs,
        "last_check": _iso(last_check),
        "last_error": last_error,
        "last_rejection": rejection,
    }


def health_summary(model: dict[str, Any]) -> dict[str, Any]:
    """The report's health: what an operator scanning a fleet needs, from the status model."""
    cams = model.get("cameras", [])
    uploader = model.get("uploader") or {}
    queue = model.get("queue") or {}
    return {
        "cameras": len(cams),
        "cameras_streaming": sum(c.get("state") == "streaming" for c in cams),
        "camera_problems": {
            c["name"]: c.get("state") for c in cams if c.get("state") != "streaming"
        },
        "cloud_reachable": uploader.get("cloud_reachable"),
        "queue": queue.get("counts"),
        "oldest_pending_age_s": queue.get("oldest_pending_age_s"),
        "disk_free_bytes": (model.get("disk") or {}).get("free_bytes"),
    }


# -- the operator's side -----------------------------------------------------------------------


def oss_client(config: Config) -> Any:
    from agent.deliver.credentials import CredentialSource
    from agent.deliver.oss import OssUploader

    cloud = config.cloud
    if cloud is None:
        raise ConfigError(
            f"{config.source}: no [cloud] section (fleet documents live in its bucket)"
        )
    return OssUploader(
        endpoint=cloud.oss_endpoint,
        region=cloud.region,
        bucket=cloud.bucket,
        credentials=CredentialSource(),
        checkpoint_dir=config.agent.data_dir / "oss-checkpoints",
        read_timeout=30.0,
    )


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
    prefix = f"{config.cloud.prefix}fleet/status/"
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
