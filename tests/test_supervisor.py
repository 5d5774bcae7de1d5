"""The supervisor with real processes and real signals: restarts, hangs, reloads, sd_notify."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.agentproc import start, terminate, wait_for
from tests.support.synth import make_scene

STARTED = re.compile(r"camera (\S+) started in worker \d+ \(pid (\d+)\)")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_scene("static_noise", tmp_path_factory.mktemp("sup"), duration=6).path


def config_text(tmp_path: Path, video: Path, post_roll: float = 5.0, per_worker: int = 1) -> str:
    cams = "".join(
        f'[[cameras]]\nname = "{name}"\nurl = "{video}"\nloop = true\ntimeout = 1\n'
        for name in ("cam1", "cam2")
    )
    return (
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\ncameras_per_worker = {per_worker}\n'
        + cams
        + f"[cameras.clip]\npost_roll = {post_roll}\n"
    )  # applies to cam2, the last camera


def pids(log: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, pid in STARTED.findall(log.read_text()):
        out.setdefault(name, []).append(int(pid))
    return out


@pytest.fixture
def agent(tmp_path, video):
    config = tmp_path / "agent.toml"
    config.write_text(config_text(tmp_path, video))
    log = tmp_path / "agent.log"
    proc = start(config, log=log)
    wait_for(lambda: len(pids(log)) == 2, 30, "both cameras to start")
    yield proc, config, log
    if proc.poll() is None:
        assert terminate(proc) == 0, log.read_text()


def test_a_camera_killed_with_sigkill_is_restarted_alone(agent):
    proc, _, log = agent
    before = pids(log)
    os.kill(before["cam1"][0], signal.SIGKILL)
    wait_for(lambda: len(pids(log).get("cam1", [])) == 2, 30, "cam1 to be restarted")
    text = log.read_text()
    assert re.search(r"worker \d+ \(pid \d+\) died \(killed by SIGKILL\): cam1 down with it", text)
    assert "camera cam1 died (its worker died (killed by SIGKILL)); restart #1" in text
    assert pids(log)["cam2"] == before["cam2"], "another camera was restarted"
    assert proc.poll() is None


def test_a_hung_camera_is_killed_and_restarted(agent):
    _, _, log = agent
    first = pids(log)["cam1"][0]
    os.kill(first, signal.SIGSTOP)  # frozen: no crash, no exit, just no progress
    wait_for(lambda: len(pids(log).get("cam1", [])) == 2, 60, "the hung camera to be replaced")
    text = log.read_text()
    assert re.search(r"camera cam1 hung \(no heartbeat for \d+ s\); killing worker \d+", text)
    assert len(pids(log)["cam2"]) == 1


def test_sighup_restarts_only_the_camera_whose_settings_changed(agent, tmp_path, video):
    proc, config, log = agent
    before = pids(log)
    config.write_text("[clip]\npost_roll = -3\n")  # invalid: must be refused, nothing changes
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running config" in log.read_text(), 30, "the bad reload")
    config.write_text(config_text(tmp_path, video, post_roll=9.0))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(pids(log).get("cam2", [])) == 2, 60, "cam2 to restart")
    assert "camera cam2: settings changed; restarting it" in log.read_text()
    assert pids(log)["cam1"] == before["cam1"], "an unchanged camera was restarted"


def test_systemd_notify_ready_and_watchdog(tmp_path, video, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)  # recv blocks until a datagram arrives, failing after 30 s
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    config = tmp_path / "agent.toml"
    config.write_text(config_text(tmp_path, video))
    proc = start(config, log=tmp_path / "agent.log")
    try:
        messages = [sock.recv(4096).decode() for _ in range(3)]
        assert messages[0].startswith("READY=1")
        assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        tail = []
        sock.settimeout(5)
        while not tail or tail[-1] == "WATCHDOG=1":
            tail.append(sock.recv(4096).decode())
        assert tail[-1] == "STOPPING=1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        sock.close()


def status(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", "status", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_status_shows_live_cameras_as_json_and_in_80_columns(agent):
    proc, config, log = agent

    def streaming():
        out = status(config, "--json")
        model = json.loads(out.stdout)
        cams = {c["name"]: c for c in model["cameras"]}
        ok = all(c["state"] == "streaming" and c["fps"] for c in cams.values())
        return model if out.returncode == 0 and ok else None

    model = wait_for(streaming, 30, "both cameras streaming in status")
    assert model["daemon"]["running"] and model["daemon"]["pid"] == proc.pid
    started = pids(log)
    for cam in model["cameras"]:
        assert cam["pid"] == started[cam["name"]][-1] and cam["restarts"] == 0
        assert cam["codec"] == "h264" and (cam["width"], cam["height"]) == (640, 360)
        assert 10 < cam["fps"] < 20 and cam["last_frame_age_s"] < 5  # a 15 fps file, paced
    assert model["queue"]["counts"]["pending"] >= 0 and "oldest_pending_age_s" in model["queue"]
    assert model["config"]["source"] == str(config) and "version" in model["config"]
    table = status(config)
    assert table.returncode == 0
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    assert "cam1" in table.stdout and "streaming" in table.stdout
    assert "config version local, from" in table.stdout
    metrics = status(config, "--prometheus")
    assert metrics.returncode == 0
    assert_prometheus_text(metrics.stdout)
    assert "ipc_agent_up 1\n" in metrics.stdout
    assert 'ipc_agent_camera_state{camera="cam1",state="streaming"} 1\n' in metrics.stdout
    assert 'ipc_agent_camera_state{camera="cam1",state="stopped"} 0\n' in metrics.stdout
    assert 'ipc_agent_camera_restarts_total{camera="cam2"} 0\n' in metrics.stdout


SAMPLE = re.compile(
    r'^(ipc_agent_[a-z_]+)(\{[a-z_]+="(?:[^"\\]|\\.)*"(?:,[a-z_]+="(?:[^"\\]|\\.)*")*\})? '
    r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?$"
)


def assert_prometheus_text(text: str) -> None:
    """The text exposition format: HELP and TYPE once per metric, before its samples."""
    declared: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            kind, name, rest = line[2:].split(" ", 2)
            assert kind in ("HELP", "TYPE") and kind not in declared.setdefault(name, set()), line
            declared[name].add(kind)
            assert kind == "HELP" or rest in ("gauge", "counter"), line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert declared.get(m[1]) == {"HELP", "TYPE"}, f"{m[1]} sampled before HELP and TYPE"


def test_status_with_the_daemon_down_reads_the_spool_and_exits_3(tmp_path, video):
    config = tmp_path / "agent.toml"
    config.write_text(config_text(tmp_path, video))
    out = status(config, "--json")
    assert out.returncode == 3
    model = json.loads(out.stdout)
    assert model["daemon"]["running"] is False
    assert {c["state"] for c in model["cameras"]} == {"stopped"}
    table = status(config)
    assert table.returncode == 3 and "DAEMON NOT RUNNING" in table.stdout
