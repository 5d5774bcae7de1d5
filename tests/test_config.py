"""Config loading: the TOML contract, and errors that name the file, the key and the rule."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from agent.config import (
    AgentSettings,
    CameraConfig,
    ClipSettings,
    CloudSettings,
    ConfigError,
    FleetSettings,
    MotionSettings,
    UploadSettings,
    dump,
    load,
    parse,
    redact,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "systemd" / "agent.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load(path)
    message = str(exc.value)
    assert str(path) in message, f"error does not name the file: {message}"
    return message


def test_example_config_loads_and_documents_every_key():
    config = load(EXAMPLE)
    cam = config.camera("front-door")
    assert cam.clip.post_roll == 8.0 and cam.motion.min_area == 0.05
    assert cam.clip.pre_roll == config.clip.pre_roll  # not overridden: inherits [clip]
    text = EXAMPLE.read_text()
    for cls in (
        AgentSettings,
        MotionSettings,
        ClipSettings,
        CameraConfig,
        CloudSettings,
        UploadSettings,
        FleetSettings,
    ):
        for f in dataclasses.fields(cls):
            if f.name in ("motion", "clip"):
                continue
            assert re.search(rf"^#? ?{f.name} =", text, re.M), f"{f.name} not in the example"


def test_an_empty_file_means_all_defaults(tmp_path):
    config = load(write(tmp_path, ""))
    assert config.motion == MotionSettings() and config.clip == ClipSettings()
    assert config.cameras == () and config.agent.device_id


def test_camera_overrides_start_from_the_global_defaults(tmp_path):
    path = write(
        tmp_path,
        """
[clip]
pre_roll = 1.5
[[cameras]]
name = "a"
url = "/tmp/a.mp4"
[cameras.clip]
max_clip = 30
""",
    )
    cam = load(path).camera("a")
    assert (cam.clip.pre_roll, cam.clip.max_clip) == (1.5, 30.0)
    assert cam.is_file


def test_unknown_key_is_named_with_the_allowed_ones(tmp_path):
    msg = error(tmp_path, "[clip]\npreroll = 3\n")
    assert "'preroll'" in msg and "pre_roll" in msg


def test_unknown_section_is_rejected(tmp_path):
    assert "'cloudz'" in error(tmp_path, "[cloudz]\nx = 1\n")


def test_wrong_type_says_what_is_allowed(tmp_path):
    msg = error(tmp_path, '[clip]\npost_roll = "five"\n')
    assert "post_roll" in msg and "a number from 0.0 to 300.0" in msg


def test_bool_is_not_a_number(tmp_path):
    assert "keyframes" in error(tmp_path, "[clip]\nkeyframes = true\n")


def test_out_of_range_is_rejected(tmp_path):
    msg = error(tmp_path, "[motion]\ndetect_fps = 0\n")
    assert "detect_fps" in msg and "0.5" in msg


def test_integer_setting_rejects_fractions(tmp_path):
    assert "an integer" in error(tmp_path, "[clip]\nkeyframes = 2.5\n")


def test_duplicate_camera_names_are_rejected(tmp_path):
    text = '[[cameras]]\nname = "a"\nurl = "x.mp4"\n' * 2
    assert "duplicate camera name" in error(tmp_path, text)


@pytest.mark.parametrize("name", ["Front", "a b", "", "x" * 65, 7])
def test_bad_camera_names_are_rejected(tmp_path, name):
    value = f'"{name}"' if isinstance(name, str) else name
    assert "name" in error(tmp_path, f'[[cameras]]\nname = {value}\nurl = "x.mp4"\n')


def test_missing_url_is_named(tmp_path):
    assert "'url'" in error(tmp_path, '[[cameras]]\nname = "a"\n')


def test_transport_choices(tmp_path):
    msg = error(tmp_path, '[[cameras]]\nname = "a"\nurl = "x.mp4"\ntransport = "http"\n')
    assert "'tcp', 'udp'" in msg


@pytest.mark.parametrize(
    "mask", ["[[0,0],[1,0],[1,1]]", "[[[0,0],[1,0]]]", "[[[0,0],[1.5,0],[1,1]]]", '"top"']
)
def test_bad_masks_are_rejected(tmp_path, mask):
    msg = error(tmp_path, f'[[cameras]]\nname = "a"\nurl = "x.mp4"\nmask = {mask}\n')
    assert "mask" in msg


def test_invalid_toml_is_reported_with_position(tmp_path):
    assert "not valid TOML" in error(tmp_path, "[clip\n")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml")


def test_password_never_appears_in_errors(tmp_path):
    text = '[[cameras]]\nname = "a"\nurl = "rtsp://admin:s3cret@10.0.0.2/x"\ntimeout = -1\n'
    assert "s3cret" not in error(tmp_path, text)


def test_redact_hides_passwords_in_urls():
    assert redact("open rtsp://admin:pa:ss@10.0.0.2:554/s1 failed") == (
        "open rtsp://admin:***@10.0.0.2:554/s1 failed"
    )
    assert redact("rtsp://10.0.0.2/s1") == "rtsp://10.0.0.2/s1"
    assert redact("rtsp://admin:p@ss@10.0.0.2/s1") == "rtsp://admin:***@10.0.0.2/s1"
    # what a typo leaves of a URL is still redacted (found by the config fuzzer)
    assert redact("['rtsp¡://admin:pw9@10.0.0.9/s', 1]") == "['rtsp¡://admin:***@10.0.0.9/s', 1]"
    assert redact("rtsp:/admin:pw9@h/s") == "rtsp:/admin:***@h/s"
    assert redact("rtsp://ad min:pw9@10.0.0.9/s") == "rtsp://ad min:***@10.0.0.9/s"
    assert redact("rtsp://10.0.0.2:554/s1?t=a@b") == "rtsp://10.0.0.2:554/s1?t=a@b"
    assert redact("fleet: applied group:east@7") == "fleet: applied group:east@7"
    # a value echoed from a config file: no URL left around it
    assert redact("url 'admin:pw9@10.0.0.9/s'", anywhere=True) == "url 'admin:***@10.0.0.9/s'"
    assert redact("['ad min:pw9@h/s']", anywhere=True) == "['ad min:***@h/s']"
    assert (
        redact("a rtsp://u:p@h/x and rtsp://v:q@i/y") == "a rtsp://u:***@h/x and rtsp://v:***@i/y"
    )


CLOUD = (
    '[cloud]\nregion = "cn-shanghai"\nbucket = "my-ipc-bucket"\nsearch_lib = "IPCamera_store1"\n'
)


def test_cloud_defaults_derive_from_region_and_device():
    config = parse(
        {
            "agent": {"device_id": "gw-7"},
            "cloud": {"region": "cn-beijing", "bucket": "b-1", "search_lib": "IPCamera_x"},
        }
    )
    assert config.cloud.oss_endpoint == "https://oss-cn-beijing.aliyuncs.com"
    assert config.cloud.ice_endpoint == "https://ice.cn-beijing.aliyuncs.com"
    assert config.cloud.namespace == "gw-7" and config.cloud.prefix == "ipc/"


def test_no_cloud_section_means_clips_stay_local(tmp_path):
    assert load(write(tmp_path, "")).cloud is None


@pytest.mark.parametrize("key", ["region", "bucket", "search_lib"])
def test_cloud_requires_region_bucket_and_library(tmp_path, key):
    text = "\n".join(line for line in CLOUD.splitlines() if not line.startswith(key))
    assert f"'{key}'" in error(tmp_path, text)


def test_search_library_must_start_with_ipcamera(tmp_path):
    msg = error(tmp_path, CLOUD.replace("IPCamera_store1", "store1"))
    assert "search_lib" in msg and "IPCamera_" in msg


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("20GiB", 20 * 2**30), ("500MB", 500 * 10**6), ("1.5 GiB", int(1.5 * 2**30)), (1024, 1024)],
)
def test_sizes(tmp_path, raw, expected):
    value = f'"{raw}"' if isinstance(raw, str) else raw
    assert (
        load(write(tmp_path, f"[upload]\nmax_spool_bytes = {value}\n")).upload.max_spool_bytes
        == expected
    )


def test_bad_size_names_the_key_and_the_format(tmp_path):
    msg = error(tmp_path, '[upload]\nmin_free_bytes = "lots"\n')
    assert "min_free_bytes" in msg and "GiB" in msg


@pytest.mark.parametrize(
    ("raw", "bps"),
    [("0", 0), ("4Mbit", 4_000_000), ("800kbit", None), ("1Gbit", None), ("2Mbit", 2_000_000)],
)
def test_bandwidth_limit_within_what_oss_accepts(tmp_path, raw, bps):
    text = f'[upload]\nbandwidth_limit = "{raw}"\n'
    if bps is None:
        assert "838.8608Mbit" in error(tmp_path, text)
    else:
        assert load(write(tmp_path, text)).upload.bandwidth_limit == bps


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    msg = error(
        tmp_path,
        """
[clip]
pre_roll = -1
postroll = 3
[motion]
detect_fps = "fast"
[[cameras]]
name = "Bad Name"
url = "x.mp4"
[[cameras]]
name = "ok"
url = "y.mp4"
timeout = 0
""",
    )
    assert "5 problems" in msg
    for needle in ("pre_roll", "'postroll'", "detect_fps", "Bad Name", "timeout"):
        assert needle in msg, needle


def test_dump_shows_every_value_redacted_and_loads_back(tmp_path):
    config = load(EXAMPLE)
    text = dump(config)
    assert "password@" not in text and "user:***@" in text
    assert "keyframe_size = 1280" in text and "[cameras.motion]" in text
    again = load(write(tmp_path, text.replace("user:***@", "user:password@")))
    assert again.cameras == config.cameras and again.clip == config.clip
    assert again.upload == config.upload and again.agent == config.agent


def test_config_check_and_show_commands(tmp_path):
    import subprocess
    import sys

    bad = write(tmp_path, "[clip]\npre_roll = -1\n[motion]\nthreshold = 0\n")
    out = subprocess.run(
        [sys.executable, "-m", "agent", "config", "check", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "2 problems" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "agent", "config", "show", "--config", str(EXAMPLE)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "password" not in out.stdout.replace("user:***", "")


def test_cameras_per_worker_by_default_is_a_quarter_of_the_cameras_from_1_to_8():
    auto = AgentSettings()
    assert [auto.per_worker(n) for n in (1, 4, 5, 8, 16, 17, 32, 64)] == [1, 1, 2, 2, 4, 5, 8, 8]
    assert AgentSettings(cameras_per_worker=3).per_worker(32) == 3
