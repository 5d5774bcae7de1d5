"""Fleet config push end to end: the real daemon, the real CLI, the local OSS test server.

Documents are published with `ipc-agent fleet publish` (or, to play an attacker or a broken
publisher, written straight into the bucket), and the daemon's status socket and its report
object tell what it made of them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import fleetdoc
from agent.deliver.acs import Credentials
from agent.deliver.credentials import StaticCredentialSource
from agent.deliver.oss import OssUploader
from agent.fleet_operator import load_private_key
from agent.service.status import fetch
from tests.support.agentproc import start, wait_for
from tests.support.fake_oss import FakeOss
from tests.support.synth import make_scene

AK, SK = "LTAI5tFleetTestKey01", "fleet-test-secret-0123456789"
REGION, BUCKET, DEVICE, GROUP = "cn-hangzhou", "fleet-test-bucket", "gw-fleet", "stores-east"
POLL = 2.0  # s, the test gateways' poll_interval
STARTED = re.compile(r"camera (\S+) started in worker \d+ \(pid (\d+)\)")
GROUP_KEY = f"ipc/fleet/groups/{GROUP}.toml"
REPORT_KEY = f"ipc/fleet/status/{DEVICE}.json"


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_scene("static_noise", tmp_path_factory.mktemp("fleet"), duration=6).path


@pytest.fixture
def oss() -> Iterator[FakeOss]:
    with FakeOss(access_key_id=AK, access_key_secret=SK, region=REGION) as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture
def env() -> dict[str, str]:
    return dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture
def keys(tmp_path, env) -> tuple[Path, str]:
    out = cli("fleet", "keygen", "--out", str(tmp_path / "keys"), env=env)
    assert out.returncode == 0, out.stderr
    private = tmp_path / "keys" / "fleet.key"
    assert private.stat().st_mode & 0o777 == 0o600
    public = (tmp_path / "keys" / "fleet.pub").read_text().strip()
    assert f'public_keys = ["{public}"]' in out.stdout
    return private, public


def write_config(tmp_path: Path, video: Path, oss: FakeOss, public: str, endpoint=None) -> Path:
    cams = "".join(
        f'[[cameras]]\nname = "{name}"\nurl = "{video}"\nloop = true\ntimeout = 1\n'
        for name in ("cam1", "cam2")
    )
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\ndevice_id = "{DEVICE}"\n'
        f'[cloud]\nregion = "{REGION}"\nbucket = "{BUCKET}"\n'
        f'oss_endpoint = "{endpoint or oss.endpoint}"\n'
        'ice_endpoint = "http://127.0.0.1:9"\nsearch_lib = "IPCamera_fleet"\n'
        f'[fleet]\nenabled = true\ngroup = "{GROUP}"\npoll_interval = {POLL}\n'
        f'public_keys = ["{public}"]\n' + cams
    )
    return config


def pids(log: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, pid in STARTED.findall(log.read_text()):
        out.setdefault(name, []).append(int(pid))
    return out


class Gateway:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.data_dir = config.parent / "data"
        self.proc = start(config, log=log)
        wait_for(lambda: len(pids(log)) == 2, 30, "both cameras to start")

    def status(self) -> dict:
        return fetch(self.data_dir) or {}

    def version(self) -> str | None:
        return self.status().get("config", {}).get("version")

    def rejection(self) -> dict | None:
        return self.status().get("fleet", {}).get("last_rejection")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(60) == 0, self.log.read_text()
            finally:
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def gateway(tmp_path, video, oss, keys, monkeypatch) -> Iterator[Gateway]:
    # The daemon (started by agentproc.start with this environment) reads its credentials here.
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
    gw = Gateway(write_config(tmp_path, video, oss, keys[1]), tmp_path / "agent.log")
    yield gw
    gw.stop()


def document(version: int, threshold: float = 14.0) -> str:
    return f'version = {version}\n[[cameras]]\nname = "cam2"\nmotion.threshold = {threshold}\n'


def publish(tmp_path: Path, gw: Gateway, keys, text: str, env) -> subprocess.CompletedProcess:
    doc = tmp_path / "east.toml"
    doc.write_text(text)
    args = ("fleet", "publish", str(doc), "--group", GROUP, "--key", str(keys[0]))
    return cli(*args, "--config", str(gw.config), env=env)


def bucket(oss: FakeOss, tmp_path: Path) -> OssUploader:
    """Direct access to the bucket, to play someone who can write to it but has no key."""
    return OssUploader(
        endpoint=oss.endpoint,
        region=REGION,
        bucket=BUCKET,
        credentials=StaticCredentialSource(Credentials(AK, SK)),
        checkpoint_dir=tmp_path / "checkpoints",
    )


def report(oss: FakeOss) -> dict:
    return json.loads(oss.object_bytes(BUCKET, REPORT_KEY))


def test_a_published_document_is_applied_within_one_poll_and_reported(
    tmp_path, gateway, oss, keys, env
):
    before = pids(gateway.log)
    assert gateway.version() == "local"
    wait_for(lambda: oss.object_bytes(BUCKET, REPORT_KEY), 30, "the first report")
    out = publish(tmp_path, gateway, keys, document(1), env)
    assert out.returncode == 0, out.stderr
    assert f"published group:{GROUP}@1 to oss://{BUCKET}/{GROUP_KEY}" in out.stdout
    wait_for(lambda: gateway.version() == f"group:{GROUP}@1", POLL + 10, "the document to apply")
    wait_for(lambda: len(pids(gateway.log)["cam2"]) == 2, 30, "cam2 to restart")
    assert pids(gateway.log)["cam1"] == before["cam1"], "a camera the document left alone restarted"
    assert "fleet: applied group:stores-east@1" in gateway.log.read_text()
    wait_for(lambda: report(oss)["config_version"] == f"group:{GROUP}@1", 30, "the report")
    rep = report(oss)
    assert rep["device_id"] == DEVICE and rep["group"] == GROUP and rep["last_rejection"] is None
    assert rep["documents"][f"group:{GROUP}"]["version"] == 1
    assert rep["health"]["cameras"] == 2
    # The operator's view of the fleet, through the same bucket.
    listing = cli("fleet", "status", "--group", GROUP, "--config", str(gateway.config), env=env)
    assert listing.returncode == 0, listing.stderr
    assert f"group {GROUP}: published version 1" in listing.stdout
    assert re.search(rf"{DEVICE}\s+{GROUP}\s+group:{GROUP}@1", listing.stdout), listing.stdout
    # The applied document is what `config show` now shows (the daemon's stored copy).
    shown = cli("config", "show", "--config", str(gateway.config), env=env)
    assert f"version: group:{GROUP}@1" in shown.stdout
    cam2 = shown.stdout.split('name = "cam2"')[1]
    assert "threshold = 14.0" in cam2.split("[cameras.clip]")[0]


def test_tampered_replayed_and_invalid_documents_change_nothing_and_are_reported(
    tmp_path, gateway, oss, keys, env
):
    assert publish(tmp_path, gateway, keys, document(1), env).returncode == 0
    wait_for(lambda: gateway.version() == f"group:{GROUP}@1", POLL + 10, "v1 to apply")
    wait_for(lambda: len(pids(gateway.log)["cam2"]) == 2, 30, "cam2 to restart")
    v1, v1_sig = oss.object_bytes(BUCKET, GROUP_KEY), oss.object_bytes(BUCKET, GROUP_KEY + ".sig")
    b = bucket(oss, tmp_path)
    settled = pids(gateway.log)

    # Tampered: someone with write access to the bucket, but not the key, edits the document.
    b.put_bytes(GROUP_KEY, v1.replace(b"version = 1", b"version = 9"), "application/toml")
    wait_for(gateway.rejection, POLL + 10, "the tampered document to be refused")
    assert "bad signature" in gateway.rejection()["reason"]
    assert gateway.version() == f"group:{GROUP}@1"
    wait_for(lambda: report(oss)["last_rejection"], 30, "the refusal to be reported")
    assert "bad signature" in report(oss)["last_rejection"]["reason"]

    # Replayed: an old, genuinely signed document put back after a newer one was applied.
    assert publish(tmp_path, gateway, keys, document(2, threshold=16), env).returncode == 0
    wait_for(lambda: gateway.version() == f"group:{GROUP}@2", POLL + 10, "v2 to apply")
    b.put_bytes(GROUP_KEY + ".sig", v1_sig, "text/plain")
    b.put_bytes(GROUP_KEY, v1, "application/toml")
    wait_for(
        lambda: "not above the applied version 2" in (gateway.rejection() or {}).get("reason", ""),
        POLL + 10,
        "the replayed document to be refused",
    )
    assert gateway.rejection()["version"] == 1
    assert gateway.version() == f"group:{GROUP}@2"

    # Invalid: properly signed and newer, but a value the agent does not allow.
    bad = f'target = "group:{GROUP}"\n{document(3, threshold=999)}'.encode()
    b.put_bytes(GROUP_KEY + ".sig", fleetdoc.sign(bad, load_private_key(keys[0])), "text/plain")
    b.put_bytes(GROUP_KEY, bad, "application/toml")
    wait_for(
        lambda: (gateway.rejection() or {}).get("version") == 3,
        POLL + 10,
        "the invalid document to be refused",
    )
    assert "threshold = 999" in gateway.rejection()["reason"]
    assert gateway.version() == f"group:{GROUP}@2"
    status = gateway.status()
    assert [c["restarts"] for c in status["cameras"]] == [0, 0]
    assert len(pids(gateway.log)["cam2"]) == len(settled["cam2"]) + 1  # v2 only
    assert pids(gateway.log)["cam1"] == settled["cam1"]
    text = cli("status", "--config", str(gateway.config), env=env).stdout
    assert f"REFUSED group:{GROUP}@3" in text and all(len(line) <= 80 for line in text.splitlines())


def test_publish_refuses_a_version_that_gateways_would_refuse(tmp_path, gateway, oss, keys, env):
    assert publish(tmp_path, gateway, keys, document(5), env).returncode == 0
    out = publish(tmp_path, gateway, keys, document(5, threshold=20), env)
    assert out.returncode == 1
    assert "version 5 is not above the published version 5" in out.stderr
    assert "Raise `version` to 6" in out.stderr
    out = publish(tmp_path, gateway, keys, "version = 6\n[agent]\ndata_dir = '/'\n", env)
    assert out.returncode == 1 and "'agent' is local to each gateway" in out.stderr


def test_a_loose_private_key_is_refused(tmp_path, gateway, keys, env):
    keys[0].chmod(0o644)
    out = publish(tmp_path, gateway, keys, document(1), env)
    assert out.returncode == 1
    assert "mode 0644 lets others read the fleet private key" in out.stderr


def test_boot_with_the_cloud_down_uses_the_last_applied_document(tmp_path, gateway, oss, keys, env):
    assert publish(tmp_path, gateway, keys, document(1), env).returncode == 0
    wait_for(lambda: gateway.version() == f"group:{GROUP}@1", POLL + 10, "v1 to apply")
    gateway.stop()
    # The bucket becomes unreachable: nothing listens on the endpoint any more.
    video = Path(re.search(r'url = "([^"]+)"', gateway.config.read_text())[1])
    config = write_config(tmp_path, video, oss, keys[1], "http://127.0.0.1:9")
    again = Gateway(config, tmp_path / "agent2.log")
    try:
        assert again.version() == f"group:{GROUP}@1"
        wait_for(lambda: again.status()["fleet"]["last_error"], POLL + 10, "the fetch to fail")
        assert "RequestError" in again.status()["fleet"]["last_error"]
    finally:
        again.stop()
