"""Fleet config push, the gateway's side: fetch, verify, store, apply, report.

Documents live in the bucket the fleet already uploads to (agent/fleet_bucket.py says where;
agent/fleetdoc.py gives their form and checks; agent/fleet_operator.py publishes them).

A gateway (`FleetAgent`, a thread of the supervisor) polls every `poll_interval` seconds and
on SIGHUP, with a conditional GET (If-None-Match), so an unchanged document costs one small
request. A changed one is verified on its exact bytes, must carry a version above the highest
this gateway ever accepted for that target (replay and rollback protection), and the merged
configuration must pass the same validation as the local file. Only then is it stored under
`data_dir/fleet/` (so it is re-applied at boot when the cloud is unreachable) and applied; the
supervisor restarts only the cameras whose settings changed. A refused document changes
nothing: the refusal is logged, shown in `status` and written to the report object.

The running configuration is composed in agent/config_source.py (`ConfigSource`): the
supervisor asks it at boot and on SIGHUP; this thread hands it each accepted document.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent import __version__, fleetdoc
from agent.config import Config, ConfigError
from agent.config_source import ConfigSource, FleetStore
from agent.fleet_bucket import doc_key, oss_client, report_key
from agent.fleetdoc import FleetDocError
from agent.service.model import fleet_status
from agent.timestamps import utc_iso

log = logging.getLogger(__name__)

REPORT_EVERY = 900.0  # s: the report object is rewritten at least this often


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
        return fleet_status(self.config, self.store().state(), self.last_check, self.last_error)

    def report(self) -> None:
        config = self.config
        body = {
            "device_id": config.agent.device_id,
            "group": config.fleet.group or None,
            "agent_version": __version__,
            "reported_at": utc_iso(time.time()),
            "config_version": config.version,
            **self.status(),
            "health": self.health(),
        }
        data = json.dumps(body, indent=1).encode()
        self.oss().put_bytes(
            report_key(config.cloud, config.agent.device_id), data, "application/json"
        )


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
