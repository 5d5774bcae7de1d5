"""What an operator reads: the search library's name checked at load, status that never cuts an
error and has one shape whether the daemon runs or not, one time format, log lines with a
timestamp outside journald."""

from __future__ import annotations

import calendar
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.config import ConfigError, load
from agent.deliver.library import Match
from agent.service.model import Run, assemble, fleet_status, offline_model
from agent.service.status import render, wrap
from agent.timestamps import utc_iso

ROOT = Path(__file__).resolve().parent.parent


# -- the search library's name -----------------------------------------------------------------


def _cloud_config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\ndata_dir = "{tmp_path}"\n'
        f'[cloud]\nregion = "cn-shanghai"\nbucket = "my-bucket"\nsearch_lib = "{name}"\n'
    )
    return path


@pytest.mark.parametrize(
    "name", ["IPCamera_store-1", "IPCamera_store_1", "IPCamera_", "ipcamera_store1", "store1"]
)
def test_a_search_library_name_the_service_refuses_is_refused_at_load(tmp_path, name):
    with pytest.raises(ConfigError) as err:
        load(_cloud_config(tmp_path, name))
    message = str(err.value)
    assert "[cloud] search_lib" in message and repr(name) in message, message
    assert '"IPCamera_" followed by 1-56 letters and digits' in message


@pytest.mark.parametrize("name", ["IPCamera_store1", "IPCamera_Shop42East", "IPCamera_" + "a" * 56])
def test_letters_and_digits_after_the_prefix_load(tmp_path, name):
    assert load(_cloud_config(tmp_path, name)).cloud.search_lib == name


def test_config_check_names_the_key_without_a_traceback(tmp_path):
    path = _cloud_config(tmp_path, "IPCamera_front-door")
    out = subprocess.run(
        [sys.executable, "-m", "agent", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out
    text = out.stdout + out.stderr
    assert "search_lib = 'IPCamera_front-door'" in text and "Traceback" not in text


# -- status: the whole error, wrapped --------------------------------------------------------


def _model(camera_error: str, uploader_error: str | None = None) -> dict:
    return {
        "daemon": {"running": True, "pid": 7, "uptime_s": 8, "version": "0.1.0"},
        "config": {"source": "/etc/ipc-agent/agent.toml", "version": "local"},
        "cameras": [
            {
                "name": "front-door",
                "state": "auth-failed",
                "restarts": 0,
                "clips_today": 0,
                "last_error": camera_error,
            }
        ],
        "uploader": {
            "pid": 9,
            "restarts": 0,
            "cloud_reachable": False,
            "offline_reason": "credentials rejected",
            "last_error": uploader_error,
        },
        "queue": None,
        "disk": {"data_dir": "/var/lib/ipc-agent", "used_bytes": 0, "free_bytes": 10**9},
        "fleet": {},
    }


def _joined(table: str) -> str:
    """The table with wrapped lines joined again (continuations are indented)."""
    return re.sub(r"\n +", " ", table)


def test_status_shows_the_whole_last_error_wrapped_never_cut():
    error = (
        "rtsp://admin:***@192.168.100.200:554/cam/realmonitor?channel=1&subtype=0: "
        "the camera rejected the credentials (401)"
    )
    uploader = (
        "InsertMediaToSearchLib: InvalidAccessKeyId.NotFound: Specified access key is not "
        "found. [RequestId 5B7E4E1C-0A8D-4C52-9D1A-2F5C8E0B7A31] (HTTP 404)"
    )
    table = render(_model(error, uploader))
    assert all(len(line) <= 80 for line in table.splitlines()), table
    joined = _joined(table)
    assert f"last error: {error}" in joined and f"last error: {uploader}" in joined
    assert "(401)" in table and "(HTTP 404)" in table
    assert "cloud: DELIVERY PAUSED (credentials rejected)" in table
    # Every character is there: nothing was cut.
    assert sum(len(line.strip()) for line in table.splitlines()) >= len(error) + len(uploader)


def test_wrap_breaks_inside_a_word_only_when_it_must_and_keeps_every_character():
    url = "rtsp://cam/" + "a" * 150
    line = f"  last error: {url} (401)"
    lines = wrap(line)
    assert len(lines) == 3 and all(len(part) <= 80 for part in lines), lines
    assert "".join(lines).replace(" ", "") == line.replace(" ", "")
    assert lines[0].startswith("  last error: rtsp://cam/aaa") and lines[-1].endswith("(401)")
    short = "  last error: refused"
    assert wrap(short) == [short]


# -- status: one shape, one time format ------------------------------------------------------

ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_the_stopped_daemons_status_has_every_key_the_running_ones_has(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[[cameras]]\nname = "yard"\nurl = "{tmp_path / "yard.mp4"}"\n'
    )
    config = load(path)
    motion = calendar.timegm((2026, 12, 7, 1, 2, 3)) + 0.25
    snapshot = {
        "state": "streaming",
        "codec": "h264",
        "width": 640,
        "height": 360,
        "fps": 15.0,
        "last_packet_wall": time.time(),
        "last_motion_wall": motion,
        "substream": {"state": "streaming", "codec": "h264", "width": 320, "height": 180},
    }
    yard = Run("yard", "streaming", pid=7, worker="worker 1", snapshot=snapshot)
    uploader = Run("uploader", pid=9, snapshot={"last_error_at": motion})
    fleet = fleet_status(config, {}, motion, None)
    running = assemble(config, fleet, started=time.monotonic(), cameras=[yard], uploader=uploader)
    live = running.as_dict()
    down = offline_model(config).as_dict()
    assert set(down) == set(live)
    for part in ("daemon", "config", "disk", "fleet"):
        assert set(down[part]) == set(live[part]), part
    assert set(down["cameras"][0]) == set(live["cameras"][0])
    assert down["cameras"][0]["state"] == "stopped" and down["cameras"][0]["codec"] is None
    # One time format everywhere: ISO-8601 UTC to the millisecond.
    assert live["cameras"][0]["last_motion"] == "2026-12-07T01:02:03.250Z"
    assert live["uploader"]["last_error_at"] == "2026-12-07T01:02:03.250Z"
    assert live["fleet"]["last_check"] == "2026-12-07T01:02:03.250Z"
    assert json.loads(json.dumps(live)) == live  # plain JSON, nothing left to convert
    hit = Match("m1", 0.5, "yard", "c1", motion, motion + 5, None).as_dict()
    assert re.fullmatch(ISO_MS, hit["start"]) and re.fullmatch(ISO_MS, hit["end"]), hit
    assert utc_iso(None) is None and re.fullmatch(ISO_MS, utc_iso(time.time()))


# -- log lines: timestamps outside journald ---------------------------------------------------

LOG_ONE_LINE = (
    "import logging; from agent import logs; logs.setup('info'); "
    "logging.getLogger('agent.test').warning('camera %s lost', 'yard')"
)


def _log_line(tmp_path: Path, journal: bool) -> str:
    out = tmp_path / "stderr.log"
    with open(out, "wb") as f:
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        if journal:  # what systemd sets: the device and inode of the stream it connected
            st = os.fstat(f.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run(
            [sys.executable, "-c", LOG_ONE_LINE], stderr=f, env=env, cwd=ROOT, check=True
        )
    return out.read_text().strip()


def test_log_lines_carry_an_iso_utc_timestamp_outside_journald(tmp_path):
    line = _log_line(tmp_path, journal=False)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING agent\.test: camera yard lost", line
    ), line


def test_under_journald_the_journal_keeps_its_own_timestamp(tmp_path):
    assert _log_line(tmp_path, journal=True) == "WARNING agent.test: camera yard lost"


def test_an_inherited_journal_stream_for_another_file_still_gets_timestamps(tmp_path):
    other = tmp_path / "other"
    other.write_text("")
    st = os.stat(other)
    out = tmp_path / "stderr.log"
    with open(out, "wb") as f:
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run(
            [sys.executable, "-c", LOG_ONE_LINE], stderr=f, env=env, cwd=ROOT, check=True
        )
    assert re.match(r"\d{4}-\d\d-\d\dT", out.read_text()), out.read_text()


def test_run_log_format_json_reaches_every_process_and_each_line_parses(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[[cameras]]\nname = "cam1"\nurl = "{tmp_path / "missing.mp4"}"\n'
    )
    config.chmod(0o640)
    out = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--once", "--log-format", "json"]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stderr.splitlines()]
    assert records and all(set(r) == {"time", "level", "logger", "message"} for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)
    # The camera's own process logged this one: the format reached it.
    assert any("missing.mp4: cannot open" in r["message"] for r in records), records
