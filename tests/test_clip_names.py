"""A clip's names, made in agent/layout.py: ids, files, `.tmp` names and object keys agree."""

from __future__ import annotations

import re
from pathlib import Path

from agent import layout


def test_a_clip_id_carries_its_camera_and_utc_start_and_a_random_tail():
    cid = layout.clip_id("front-door", 1_795_000_000.25)
    assert re.fullmatch(r"front-door_20261118T110640Z_[0-9a-f]{6}", cid), cid
    assert layout.clip_id("front-door", 1_795_000_000.25) != cid, "not unique across restarts"


def test_files_are_filed_by_camera_and_utc_day_with_keyframes_beside_the_video():
    video = layout.clip_path(Path("/data"), "cam", "cam_20261118T110640Z_a1b2c3", 1_795_000_000)
    assert video == Path("/data/clips/cam/2026-11-18/cam_20261118T110640Z_a1b2c3.mp4")
    assert layout.keyframe_path(video, 2).name == "cam_20261118T110640Z_a1b2c3_2.jpg"
    assert layout.tmp_path(video).name == video.name + ".tmp"
    kf_tmp = layout.tmp_path(layout.keyframe_path(video, 0))
    assert kf_tmp.match(layout.keyframe_tmp_glob(video))
    assert not layout.tmp_path(video).match(layout.keyframe_tmp_glob(video))


def test_a_retimed_clip_keeps_its_tail_and_moves_to_its_new_day():
    old = "cam_19700101T010005Z_c0ffee"
    new = layout.retimed_id(old, 1_795_000_000.25)
    assert new == "cam_20261118T110640Z_c0ffee"
    kf = Path("/data/clips/cam/1970-01-01") / f"{old}_1.jpg"
    assert layout.retimed_path(kf, old, new, 1_795_000_000.25) == Path(
        f"/data/clips/cam/2026-11-18/{new}_1.jpg"
    )


def test_object_keys_use_the_same_names_as_the_files():
    class Row:
        camera, start_wall, clip_id, keyframes = "cam", 1_795_000_000.0, "cam_1", ((), ())

    video, keyframes = layout.keys_for(Row(), "ipc", "gw")
    assert video == "ipc/gw/cam/2026/11/18/cam_1.mp4"
    assert keyframes == ["ipc/gw/cam/2026/11/18/cam_1_0.jpg", "ipc/gw/cam/2026/11/18/cam_1_1.jpg"]
