"""Detection on a camera's sub-stream (`detect_url`): clips and keyframe images still come from
the main stream. Real components: one synthetic scene encoded twice with libx264 (1280x720
main, 640x360 sub), read as two file sources sharing a wall clock, or served by two real RTSP
servers."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading

import av
import pytest

from agent.capture.pipeline import CameraPipeline, FinishedClip, snapshot
from agent.capture.substream import Verdicts
from agent.config import CameraConfig, ClipSettings, ConfigError, dump, parse
from agent.replay import DirectorySink
from tests.support.agentproc import start, terminate, wait_for, write_config
from tests.support.media import assert_valid_clip, ffprobe, overlaps
from tests.support.synth import make_scene

MAIN, SUB = (1280, 720), (640, 360)


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """The 'walk' scene (two people, at 2.4-8.9 s and 21.0-28.5 s) as main and sub-stream."""
    folder = tmp_path_factory.mktemp("substream-scenes")
    main = make_scene("walk", folder, width=MAIN[0], height=MAIN[1], gop=30)
    sub = make_scene("walk", folder, width=SUB[0], height=SUB[1], gop=30)
    short_sub = make_scene("walk", folder, width=SUB[0], height=SUB[1], gop=30, duration=14)
    assert main.motion == sub.motion and len(main.motion) == 2, (main.motion, sub.motion)
    return main, sub, short_sub


def run(tmp_path, url, detect_url, **kw) -> tuple[CameraPipeline, list[FinishedClip]]:
    cam = CameraConfig(
        name="cam",
        url=str(url),
        detect_url=str(detect_url),
        realtime=False,
        clip=ClipSettings(keyframe_size=1920),
        **kw,
    )
    clips: list[FinishedClip] = []
    pipe = CameraPipeline(cam, DirectorySink(tmp_path), threading.Event(), on_clip=clips.append)
    pipe.run()
    return pipe, clips


def assert_events_match(clips: list[FinishedClip], truth) -> None:
    events = [(c.event_start, c.event_end) for c in clips]
    assert len(events) == len(truth), f"events {events}, ground truth {truth}"
    for ev, gt in zip(events, truth, strict=True):
        assert abs(ev[0] - gt[0]) < 0.6 and overlaps(ev, gt), f"event {ev} vs ground truth {gt}"


def packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def test_clips_are_copied_from_the_main_stream_and_motion_found_on_the_sub_stream(walk, tmp_path):
    main, sub, _ = walk
    pipe, clips = run(tmp_path, main.path, sub.path)
    status = snapshot(pipe)
    assert status["detect_on"] == "sub", status
    assert status["substream"]["width"] == SUB[0] and status["substream"]["frames_analysed"] > 0
    assert status["frames_decoded"] == 0, "the main stream was decoded beyond keyframe images"
    assert_events_match(clips, main.motion)
    source = packets(main.path)
    for clip in clips:
        f = clip.file
        assert_valid_clip(f.path, f.start, f.end)
        [video] = [s for s in ffprobe(f.path)["streams"] if s["codec_type"] == "video"]
        assert (video["width"], video["height"]) == MAIN, video
        assert (clip.width, clip.height) == MAIN
        # Stream copy: the clip's packets are the main file's, byte for byte, from its start.
        copied = packets(f.path)
        first = round(f.start * main.fps)
        assert copied == source[first : first + len(copied)], "clip packets are not the main's"
        assert len(clip.keyframes) >= 2, clip
        for k in clip.keyframes:
            assert f.start <= k.t < f.end
            with av.open(str(k.path)) as img:
                frame = next(img.decode(video=0))
                assert (frame.width, frame.height) == MAIN, f"{k.path.name}: not full resolution"
    # Only the GOPs of the chosen images were decoded, each up to its instant.
    kept = sum(len(c.keyframes) for c in clips)
    assert 0 < status["keyframe_frames_decoded"] <= kept * 30


def test_the_same_events_as_detecting_on_the_main_stream(walk, tmp_path):
    main, sub, _ = walk
    _, with_sub = run(tmp_path / "sub", main.path, sub.path)
    _, alone = run(tmp_path / "main", main.path, "")
    assert len(with_sub) == len(alone) == 2, (with_sub, alone)
    for a, b in zip(with_sub, alone, strict=True):
        # The same keyframe starts the clip; the end may move by an analysis or two (the
        # sub-stream's pixels are not the main's).
        assert a.file.start == b.file.start, (a.file.start, b.file.start)
        assert abs(a.file.end - b.file.end) <= 0.4 + 1e-6, (a.file.end, b.file.end)
        assert abs(a.event_start - b.event_start) <= 0.2 + 1e-6, (a.event_start, b.event_start)
        assert abs(a.event_end - b.event_end) <= 0.4 + 1e-6, (a.event_end, b.event_end)


def test_an_unreachable_sub_stream_means_detection_on_the_main_stream(walk, tmp_path, caplog):
    main, _, _ = walk
    url = "rtsp://admin:sub-secret@127.0.0.1:9/sub"  # nothing listens on port 9
    with caplog.at_level(logging.INFO):
        pipe, clips = run(tmp_path, main.path, url)
    status = snapshot(pipe)
    assert status["detect_on"] == "main", status
    assert status["substream"]["state"] in ("reconnecting", "stopped"), status["substream"]
    assert status["frames_decoded"] > 0
    assert_events_match(clips, main.motion)
    assert all((c.width, c.height) == MAIN and c.keyframes for c in clips)
    assert "sub-secret" not in caplog.text + repr(status), "the sub-stream password leaked"
    assert "admin:***@" in caplog.text


def test_a_sub_stream_that_ends_midway_hands_detection_to_the_main_stream(walk, tmp_path):
    main, _, short_sub = walk  # the sub-stream ends at 14 s, between the two events
    pipe, clips = run(tmp_path, main.path, short_sub.path)
    status = snapshot(pipe)
    assert status["detect_on"] == "main" and status["substream"]["state"] == "finished", status
    assert_events_match(clips, main.motion)
    assert all(c.keyframes for c in clips)


def test_detect_url_is_optional_checked_and_its_password_never_shown():
    doc = {
        "cameras": [
            {"name": "a", "url": "rtsp://u:main-pw@h/1", "detect_url": "rtsp://u:sub-pw@h/2"},
            {"name": "b", "url": "rtsp://u:main-pw@h/1"},
        ]
    }
    config = parse(doc)
    assert config.camera("a").detect_url == "rtsp://u:sub-pw@h/2"
    assert config.camera("b").detect_url == ""
    text = dump(config)
    assert "sub-pw" not in text and 'detect_url = "rtsp://u:***@h/2"' in text
    bad = {"cameras": [{"name": "a", "url": "x.mp4", "detect_url": "rtsp://u:pw@h/\n"}]}
    with pytest.raises(ConfigError, match="detect_url") as exc:
        parse(bad)
    assert "pw@" not in str(exc.value)
    with pytest.raises(ConfigError, match="detect_url"):
        parse({"cameras": [{"name": "a", "url": "x.mp4", "detect_url": 5}]})


def test_verdicts_wait_for_the_sub_stream_and_give_up_at_once_when_it_is_down():
    state = ["streaming"]
    v = Verdicts(lambda: state[0], paced=False)
    stop = threading.Event()
    v.note_main(9.0, False)  # unpaced: the sub-stream may only run AHEAD s in front
    v.advance(10.0, stop)
    assert v.wait(10.0, stop) and v.ready(10.0, since=9.0)
    assert not v.ready(10.0, since=10.0), "back before the sub-stream moved on"
    state[0] = "reconnecting"
    assert not v.wait(11.0, stop) and not v.ready(10.0, since=9.0)
    state[0] = "streaming"
    v.end()
    assert not v.wait(11.0, stop), "waited for a sub-stream that has ended"
    assert math.isinf(Verdicts(lambda: "connecting").reached)


@pytest.mark.rtsp
def test_live_sub_stream_lost_and_back_with_clips_from_the_main_stream(rtsp_server, walk, tmp_path):
    main, sub, _ = walk
    main_server = rtsp_server({"/main": main.path})
    sub_server = rtsp_server({"/sub": sub.path})
    cam = CameraConfig(
        name="cam", url=main_server.url("/main"), detect_url=sub_server.url("/sub"), timeout=3.0
    )
    clips: list[FinishedClip] = []
    stop = threading.Event()
    pipe = CameraPipeline(cam, DirectorySink(tmp_path), stop, on_clip=clips.append)
    runner = threading.Thread(target=pipe.run)
    runner.start()
    try:
        wait_for(lambda: clips and pipe.stats.detect_on == "sub", 90, "a clip, sub-stream on")
        sub_server.kill()
        wait_for(lambda: pipe.stats.detect_on == "main", 30, "the fallback to the main stream")
        before = len(clips)
        wait_for(lambda: len(clips) > before, 90, "a clip while the sub-stream is down")
        sub_server.restart()
        wait_for(lambda: pipe.stats.detect_on == "sub", 90, "detection back on the sub-stream")
    finally:
        stop.set()
        runner.join(60)
    assert not runner.is_alive(), "the camera did not stop"
    for clip in clips:
        f = clip.file
        assert_valid_clip(f.path, f.start, f.end)
        [video] = [s for s in ffprobe(f.path)["streams"] if s["codec_type"] == "video"]
        assert (video["width"], video["height"]) == MAIN
    assert pipe.substream is not None and pipe.substream.stats.connections >= 2


def test_status_shows_the_sub_stream_and_which_stream_detection_runs_on(walk, tmp_path):
    """The daemon's status (JSON and table) says the sub-stream is down, why, and that
    detection fell back to the main stream; the sub-stream's password is never shown."""
    main, _, _ = walk
    sub_url = "rtsp://admin:sub-secret@127.0.0.1:9/sub"  # nothing listens on port 9
    config = write_config(tmp_path, main.path, extra=f'detect_url = "{sub_url}"\nloop = true\n')
    proc = start(config)
    try:

        def fallen_back():
            out = cli("status", "--json", "--config", str(config))
            cams = json.loads(out.stdout).get("cameras", []) if out.returncode == 0 else []
            sub = cams[0].get("substream") if cams else None
            ok = sub and sub["state"] == "reconnecting" and cams[0]["detect_on"] == "main"
            return cams[0] if ok and sub["last_error"] else None

        cam = wait_for(fallen_back, 60, "status to show the sub-stream down")
        table = cli("status", "--config", str(config)).stdout
    finally:
        terminate(proc)
    assert "admin:***@" in cam["substream"]["last_error"], cam["substream"]
    assert "sub-stream: reconnecting; detection on the main stream" in table, table
    assert "sub-stream error: rtsp://admin:***@127.0.0.1:9/sub" in table, table
    assert "sub-secret" not in table + json.dumps(cam)
    assert max(len(line) for line in table.splitlines()) <= 80, table


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60
    )
