"""Where the running configuration comes from: the one place that composes it.

The agent runs the local file (`--config`, default /etc/ipc-agent/agent.toml) with the fleet
documents it accepted laid over it, weakest first: local < group < device (agent/fleetdoc.py
says how two layers merge). Every command reads its configuration through here:
`load_effective` for the one-shot commands, `ConfigSource` for the daemon, which the
supervisor asks at boot and on SIGHUP and the fleet thread (agent/service/fleet.py) updates
when it accepts a document.

Accepted documents are kept under `data_dir/fleet/` (`FleetStore`), so they apply again at
boot when the cloud is unreachable; the fleet thread writes them, composing reads them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from agent import fleetdoc
from agent.config import DEFAULT_CONFIG_PATH, Config, ConfigError, parse, read_toml
from agent.durable import fsync_dir
from agent.fleetdoc import FleetDoc, FleetDocError

log = logging.getLogger("agent.service.fleet")  # its lines have always come from the fleet

STATE_FILE = "state.json"


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


def load_effective(path: str | Path | None = None, *, required: bool = True) -> Config:
    """The configuration the agent runs: the local file plus its stored fleet documents.

    `path` None means the default file. With `required` False (replay, tune) a missing
    default file gives the built-in defaults; a file named but missing is always an error.
    """
    if path is None and not required and not DEFAULT_CONFIG_PATH.exists():
        return Config()
    return ConfigSource(Path(path or DEFAULT_CONFIG_PATH)).config
