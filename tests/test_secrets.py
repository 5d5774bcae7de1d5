"""The security pass: test secrets never appear in anything the agent prints, logs, serves or
raises; and the files that guard them have the modes the README promises.

One run of the real daemon (a recording camera, a camera whose RTSP URL carries a password and
refuses connections, the uploader against local OSS and ICE servers where ICE rejects the STS
token) plus every read-only command beside it; then the cloud clients' own errors, chained
exceptions and DEBUG logs. Everything captured is scanned for the password, the AccessKey
secret and the STS token.
"""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from agent.deliver.acs import Credentials
from agent.deliver.credentials import StaticCredentialSource
from agent.deliver.ice import IceClient, IceError
from agent.deliver.oss import OssError, OssUploader
from tests.support.agentproc import catalogue, start, terminate, wait_for
from tests.support.fake_ice import FakeIce
from tests.support.fake_oss import FakeOss
from tests.support.media import make_video

PASSWORD = "Rtsp-Pw-7Qx9"
AK = "LTAI5tSecretsTestKey01"
SECRET = "Sk-Secret-Test-9f8e7d6c"
TOKEN = "CAIS-Sts-Token-Secret-55aa"
SECRETS = (PASSWORD, SECRET, TOKEN)
REGION, BUCKET, LIB = "cn-hangzhou", "ipc-secrets", "IPCamera_secrets"


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN)
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")


def test_no_secret_in_logs_status_commands_or_spool_and_files_are_guarded(tmp_path):
    video = make_video(tmp_path / "walk.mp4")
    data_dir = tmp_path / "data"
    oss = FakeOss(access_key_id=AK, access_key_secret=SECRET, region=REGION, security_token=TOKEN)
    ice = FakeIce(access_key_id=AK, access_key_secret=SECRET, security_token="CAIS-another")
    with oss:
        oss.create_bucket(BUCKET)
        ice.start()
        try:
            config = tmp_path / "agent.toml"
            config.write_text(
                f'[agent]\ndata_dir = "{data_dir}"\ndevice_id = "gw-secrets"\n'
                "[clip]\npre_roll = 1.0\npost_roll = 1.0\n"
                f'[cloud]\nregion = "{REGION}"\nbucket = "{BUCKET}"\nsearch_lib = "{LIB}"\n'
                f'oss_endpoint = "{oss.endpoint}"\nice_endpoint = "{ice.url}"\n'
                "[upload]\nmax_backoff = 2\n"
                f'[[cameras]]\nname = "yard"\nurl = "{video}"\nloop = true\n'
                f'[[cameras]]\nname = "door"\nurl = "rtsp://admin:{PASSWORD}@127.0.0.1:9/s"\n'
                "timeout = 2\n"
            )
            config.chmod(0o644)  # world-readable: the agent must say so, loudly
            captured = run_daemon_and_commands(config, data_dir, video, tmp_path)
        finally:
            ice.close()
    for name, text in captured.items():
        assert not leaks(text), f"{name} shows {leaks(text)}:\n{text[-2000:]}"


def run_daemon_and_commands(config: Path, data_dir: Path, video: Path, tmp: Path) -> dict:
    log = tmp / "agent.log"
    proc = start(config, log=log)
    captured: dict[str, str] = {}
    try:

        def model() -> dict:
            out = cli("status", "--json", "--config", str(config))
            return json.loads(out.stdout) if out.returncode == 0 else {}

        def failing_everywhere() -> dict | None:
            m = model()
            cams = {c["name"]: c for c in m.get("cameras", [])}
            door = (cams.get("door") or {}).get("last_error") or ""
            uploader = m.get("uploader") or {}
            return m if "cannot open" in door and uploader.get("last_error") else None

        m = wait_for(failing_everywhere, 90, "the RTSP camera and the uploader to report errors")
        assert "admin:***@" in json.dumps(m), "the redacted URL is not shown at all"
        assert "InvalidSecurityToken" in m["uploader"]["last_error"], m["uploader"]
        wait_for(lambda: catalogue(data_dir), 30, "a clip in the catalog")
        sock = data_dir / "status.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660, oct(sock.stat().st_mode)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o750, oct(data_dir.stat().st_mode)
        captured["status --json"] = json.dumps(m)
        for name, args in {
            "status": ("status", "--config", str(config)),
            "config show": ("config", "show", "--config", str(config)),
            "config check": ("config", "check", str(config)),
            "queue": ("queue", "--config", str(config)),
            "queue --json": ("queue", "--json", "--config", str(config)),
            "replay": ("replay", str(video), "--config", str(config), "--camera", "door",
                       "--out", str(tmp / "replay"), "--json"),
        }.items():  # fmt: skip
            out = cli(*args)
            assert out.returncode == 0, (name, out.stderr)
            assert "Traceback" not in out.stderr, out.stderr
            captured[name] = out.stdout + out.stderr
        assert "admin:***@" in captured["config show"]
        rows = [json.loads(line) for line in captured["queue --json"].splitlines()]
        assert any(r["last_error"] and "InvalidSecurityToken" in r["last_error"] for r in rows)
    finally:
        terminate(proc)
    captured["agent log"] = log.read_text()
    assert "readable by every user" in captured["agent log"], "no warning on a 0644 config"
    assert "Traceback" not in captured["agent log"], captured["agent log"][-3000:]
    return captured


def test_cloud_client_errors_chains_and_debug_logs_carry_no_secret(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with FakeOss(access_key_id=AK, access_key_secret="the-right-one", region=REGION) as oss:
        oss.create_bucket(BUCKET)
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(b"\x00" * 5000)
        uploader = OssUploader(
            endpoint=oss.endpoint,
            region=REGION,
            bucket=BUCKET,
            credentials=StaticCredentialSource(Credentials(AK, SECRET, TOKEN)),
            checkpoint_dir=tmp_path / "ckpt",
        )
        with pytest.raises(OssError) as err:
            uploader.upload_file("k/clip.mp4", clip)
        texts += [str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))]
    with FakeIce(access_key_id=AK, access_key_secret="the-right-one") as ice:
        for creds in (Credentials(AK, SECRET, TOKEN), Credentials(AK, SECRET)):
            with IceClient(ice.url, lambda c=creds: c) as client, pytest.raises(IceError) as e:
                client.query_search_lib(LIB)
            texts += [str(e.value), repr(e.value), "".join(traceback.format_exception(e.value))]
    with IceClient("http://127.0.0.1:9", lambda: Credentials(AK, SECRET, TOKEN)) as client:
        with pytest.raises(IceError) as e:  # connection refused: a chained httpx error
            client.query_search_lib(LIB)
        texts.append("".join(traceback.format_exception(e.value)))
    texts.append(caplog.text)
    texts.append(repr(StaticCredentialSource(Credentials(AK, SECRET, TOKEN))))
    for text in texts:
        assert not leaks(text), f"{leaks(text)} in:\n{text[-2000:]}"
