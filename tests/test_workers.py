"""Camera workers as real processes: a worker's crash, and the supervisor's death."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.agentproc import (
    assert_catalog_matches_disk,
    catalogue,
    start,
    terminate,
    wait_for,
)
from tests.support.synth import make_scene


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    # Something moves in 40 % of it: clips are cut within seconds of a start.
    out = tmp_path_factory.mktemp("workers")
    return make_scene("busy", out, duration=10, motion_fraction=0.4).path


def write_config(tmp_path: Path, video: Path, per_worker: int) -> Path:
    config = tmp_path / "agent.toml"
    cams = "".join(
        f'[[cameras]]\nname = "{name}"\nurl = "{video}"\nloop = true\ntimeout = 2\n'
        for name in ("cam1", "cam2")
    )
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\ncameras_per_worker = {per_worker}\n'
        "[clip]\npre_roll = 1.0\npost_roll = 1.0\n" + cams
    )
    return config


def status(config: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return json.loads(out.stdout) if out.stdout.startswith("{") else {}


def cameras(config: Path) -> dict[str, dict]:
    return {c["name"]: c for c in status(config).get("cameras", [])}


def clips_of_each(data_dir: Path) -> list[dict] | None:
    if not (data_dir / "spool.db").exists():
        return None
    rows = catalogue(data_dir)
    return rows if {r.camera for r in rows} == {"cam1", "cam2"} else None


def test_a_worker_crash_brings_its_cameras_back_within_5_s_and_loses_no_clip(tmp_path, video):
    config = write_config(tmp_path, video, per_worker=2)
    data_dir = tmp_path / "data"
    log = tmp_path / "agent.log"
    proc = start(config, log=log)
    try:
        before = wait_for(lambda: clips_of_each(data_dir), 60, "a clip of each camera")
        cams = cameras(config)
        worker = cams["cam1"]["pid"]
        assert worker and cams["cam2"]["pid"] == worker, cams  # both in one worker
        assert cams["cam1"]["worker"] == cams["cam2"]["worker"]
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()

        def back() -> dict | None:
            now = cameras(config)
            ok = all(
                c["state"] == "streaming" and c["pid"] not in (None, worker) and c["restarts"] == 1
                for c in now.values()
            )
            return now if ok and len(now) == 2 else None

        after = wait_for(back, 30, "both cameras streaming again")
        took = time.monotonic() - killed
        assert took <= 5.0, f"cameras back after {took:.1f} s"
        assert after["cam1"]["last_restart_reason"] == "its worker died (killed by SIGKILL)"
        text = log.read_text()
        assert "died (killed by SIGKILL): cam1, cam2 down with it" in text, text
        # More clips after the crash, from the new worker.
        wait_for(lambda: len(catalogue(data_dir)) > len(before), 60, "a clip after the crash")
    finally:
        assert terminate(proc) == 0, log.read_text()[-3000:]
    rows = assert_catalog_matches_disk(data_dir)
    ids = {r.clip_id for r in rows}
    assert {r.clip_id for r in before} <= ids, "a catalogued clip was lost"
    assert "Traceback" not in log.read_text()


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_children_end_when_the_supervisor_is_killed_and_the_next_start_recovers(tmp_path, video):
    config = write_config(tmp_path, video, per_worker=1)
    data_dir = tmp_path / "data"
    log = tmp_path / "agent.log"
    proc = start(config, log=log)
    try:
        wait_for(lambda: clips_of_each(data_dir), 60, "a clip of each camera")
        workers = {c["pid"] for c in cameras(config).values()}
        family = descendants(proc.pid)
        assert workers <= family and len(workers) == 2, (workers, family)
        os.kill(proc.pid, signal.SIGKILL)  # no systemd to kill the rest of the cgroup
        proc.wait(10)
        wait_for(lambda: not any(alive(p) for p in family), 30, "every child to end")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # What they left (a clip finished on the way out, or a partial one) the next start takes.
    proc = start(config, log=tmp_path / "again.log")
    try:
        wait_for(lambda: cameras(config).get("cam1", {}).get("state") == "streaming", 60, "restart")
    finally:
        assert terminate(proc) == 0
    assert_catalog_matches_disk(data_dir)


def cameras_text(tmp_path: Path, video: Path, cams: dict[str, int]) -> str:
    """A config of cameras by name: timeout (s), two per worker."""
    return f'[agent]\ndata_dir = "{tmp_path / "data"}"\ncameras_per_worker = 2\n' + "".join(
        f'[[cameras]]\nname = "{n}"\nurl = "{video}"\nloop = true\ntimeout = {t}\n'
        for n, t in cams.items()
    )


def test_reloads_restart_only_the_changed_camera_inside_its_worker(tmp_path, video):
    config = tmp_path / "agent.toml"
    config.write_text(cameras_text(tmp_path, video, {"cam1": 2, "cam2": 2}))
    log = tmp_path / "agent.log"
    proc = start(config, log=log)

    def streaming(names: set[str]) -> dict | None:
        now = cameras(config)
        ok = set(now) == names and all(c["state"] == "streaming" for c in now.values())
        return now if ok else None

    def started(name: str) -> int:
        return log.read_text().count(f"camera {name} started")

    try:
        first = wait_for(lambda: streaming({"cam1", "cam2"}), 60, "both cameras streaming")
        worker = first["cam1"]["pid"]
        assert first["cam2"]["pid"] == worker
        # cam2's settings change and cam3 is added: cam2 restarts alone, in its worker; cam3
        # goes to a second worker (the first is full); cam1 is left alone.
        config.write_text(cameras_text(tmp_path, video, {"cam1": 2, "cam2": 3, "cam3": 2}))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: started("cam2") == 2, 30, "cam2 to restart")
        after = wait_for(lambda: streaming({"cam1", "cam2", "cam3"}), 60, "three cameras")
        assert after["cam1"]["pid"] == worker and after["cam2"]["pid"] == worker
        assert after["cam3"]["pid"] not in (None, worker)
        assert all(c["restarts"] == 0 for c in after.values()), after
        assert started("cam1") == 1
        # cam1 is removed: it stops; its worker runs on with cam2.
        config.write_text(cameras_text(tmp_path, video, {"cam2": 3, "cam3": 2}))
        proc.send_signal(signal.SIGHUP)
        last = wait_for(lambda: streaming({"cam2", "cam3"}), 60, "cam1 gone")
        assert last["cam2"]["pid"] == worker and started("cam2") == 2
    finally:
        assert terminate(proc) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
