"""`replay` on generated recordings: clip intervals against known motion, files ffprobe-valid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ClipSettings, Config
from agent.replay import ReplayError, replay
from tests.support.media import assert_valid_clip, ffprobe, overlaps
from tests.support.synth import Scene, make_scene

SLACK = 1.5  # s an event may start late / end early versus the generated truth


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    cache: dict[tuple, Scene] = {}

    def get(kind: str, **kw) -> Scene:
        key = (kind, *sorted(kw.items()))
        if key not in cache:
            cache[key] = make_scene(kind, folder, **kw)
        return cache[key]

    return get


def check_events(scene: Scene, clips: list[dict]) -> None:
    """Every motion interval is in some clip's event; every clip's event is real motion."""
    events = [(c["event_start"], c["event_end"]) for c in clips]
    for truth in scene.motion:
        assert any(overlaps(truth, e, SLACK) for e in events), (
            f"{scene.kind}: motion {truth} missed; events {events}"
        )
    for e in events:
        assert any(overlaps(truth, e, SLACK) for truth in scene.motion), (
            f"{scene.kind}: clip event {e} where nothing moved; truth {scene.motion}"
        )


@pytest.mark.parametrize(
    "kind",
    [
        "static_noise",
        "walk",
        "light_switch",
        "light_switch_motion",
        "ir_switch",
        "dusk",
        "stop_and_go",
    ],
)
def test_clips_match_the_known_motion(scenes, tmp_path, kind):
    scene = scenes(kind)
    clips = replay(scene.path, tmp_path)
    check_events(scene, clips)
    if not scene.motion:
        assert clips == [], f"{kind}: clips on a scene where nothing moves: {clips}"


def test_masked_foliage_is_ignored_but_people_are_not(scenes, tmp_path):
    scene = scenes("masked_foliage")
    doc = {
        "cameras": [
            {
                "name": "yard",
                "url": str(scene.path),
                "mask": [[list(p) for p in poly] for poly in scene.mask],
            }
        ]
    }
    from agent.config import parse

    clips = replay(scene.path, tmp_path, parse(doc), camera="yard")
    check_events(scene, clips)


def test_small_distant_person_at_720p_is_caught(scenes, tmp_path):
    scene = scenes("small_object")
    assert (scene.width, scene.height) == (1280, 720)
    check_events(scene, replay(scene.path, tmp_path))


def test_long_event_is_split_into_back_to_back_clips(scenes, tmp_path):
    scene = scenes("long_event")
    config = Config(clip=ClipSettings(max_clip=10.0))
    clips = replay(scene.path, tmp_path, config)
    assert len(clips) >= 3
    for a, b in zip(clips, clips[1:]):
        assert b["start"] == pytest.approx(a["end"], abs=1e-3), "gap or overlap between clips"
    gop = 2.0  # the generator's default GOP is 2 s
    for c in clips[:-1]:
        assert c["end"] - c["start"] <= 10.0 + gop
    (m0, m1) = scene.motion[0]
    assert clips[0]["event_start"] <= m0 + SLACK and clips[-1]["event_end"] >= m1 - SLACK


def test_clips_are_valid_mp4_from_a_keyframe_with_pre_and_post_roll(scenes, tmp_path):
    scene = scenes("walk")
    clips = replay(scene.path, tmp_path)
    assert clips
    for c in clips:
        assert_valid_clip(Path(c["clip"]), c["start"], c["end"])
        assert c["start"] <= c["event_start"] - 3.0 + 1e-6 or c["start"] == 0.0
        assert c["end"] >= c["event_end"] + 5.0 - 0.1 or c["end"] >= scene.duration - 0.1
        assert 1 <= len(c["keyframes"]) <= 4
        for k, t in zip(c["keyframes"], c["keyframe_times"]):
            assert c["start"] <= t < c["end"]
            assert Path(k).read_bytes()[:3] == b"\xff\xd8\xff", "not a JPEG"


def test_h265_recordings_are_cut_by_stream_copy(scenes, tmp_path):
    scene = scenes("walk", codec="libx265")
    clips = replay(scene.path, tmp_path)
    check_events(scene, clips)
    for c in clips:
        assert_valid_clip(Path(c["clip"]), c["start"], c["end"], codec="hevc")


def test_b_frames_are_cut_cleanly(scenes, tmp_path):
    scene = scenes("walk", bframes=2)
    clips = replay(scene.path, tmp_path)
    check_events(scene, clips)
    for c in clips:
        assert_valid_clip(Path(c["clip"]), c["start"], c["end"])


def test_garbage_file_fails_with_a_clear_error(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"\x00\x01not a video" * 1000)
    with pytest.raises(ReplayError, match="garbage.mp4"):
        replay(bad, tmp_path / "out")


def test_truncated_file_fails_with_a_clear_error(scenes, tmp_path):
    data = scenes("walk").path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReplayError, match="cut.mp4"):
        replay(cut, tmp_path / "out")


def test_missing_file_fails_with_a_clear_error(tmp_path):
    with pytest.raises(ReplayError, match="no such file"):
        replay(tmp_path / "nope.mp4", tmp_path / "out")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_cli_json_lines_and_it_writes_only_under_out(scenes, tmp_path):
    scene = scenes("walk")
    data_dir = tmp_path / "data"
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{data_dir}"\n[clip]\npost_roll = 4.0\n')
    out = tmp_path / "out"
    proc = cli(
        "replay",
        str(scene.path),
        "--config",
        str(config),
        "--out",
        str(out),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    clips = [json.loads(line) for line in proc.stdout.splitlines()]
    assert clips
    for c in clips:
        for key in (
            "camera",
            "start",
            "end",
            "event_start",
            "event_end",
            "clip",
            "keyframes",
            "peak_score",
        ):
            assert key in c, key
        assert Path(c["clip"]).parent == out
    assert not data_dir.exists(), "replay touched the data directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.toml", "out"]


def test_cli_reports_a_corrupt_file_and_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 100)
    proc = cli("replay", str(bad), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 1 and "bad.mp4" in proc.stderr and "Traceback" not in proc.stderr


def test_resolution_change_mid_stream_restarts_the_pipeline_cleanly(scenes, tmp_path):
    big, small = scenes("walk", duration=20), scenes("walk", duration=20, width=320)
    listing = tmp_path / "list.txt"
    listing.write_text(f"file '{big.path}'\nfile '{small.path}'\n")
    joined = tmp_path / "joined.ts"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-c",
            "copy",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "mpegts",
            str(joined),
        ],
        check=True,
    )
    clips = replay(joined, tmp_path / "out")
    spans = [(c["event_start"], c["event_end"]) for c in clips]
    truth = list(big.motion) + [(a + big.duration, b + big.duration) for a, b in small.motion]
    for t in truth:
        assert any(overlaps(t, e, SLACK) for e in spans), (t, spans)
    sizes = set()
    for c in clips:
        info = ffprobe(Path(c["clip"]))
        sizes.add((info["streams"][0]["width"], info["streams"][0]["height"]))
        assert_valid_clip(Path(c["clip"]), c["start"], c["end"])
    assert sizes == {(640, 360), (320, 180)}
