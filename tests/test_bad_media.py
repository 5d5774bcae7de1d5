"""The media corpus: what cameras and recordings throw at the agent, generated here with PyAV.

Inputs the agent cannot record (garbage, a truncated MP4, MJPEG, audio only, H.264 without its
parameter sets) must give a clear per-camera state and error — from the pipeline, from
`replay`, from the CLI and in `ipc-agent status` of a running daemon — and never a traceback.
Inputs it can record however odd (B-frames, 4K, audio beside the video, an elementary stream
without timestamps, frames emptied in the container, a transport stream cut mid-packet) must
give valid clips. A bad camera never disturbs a good one beside it in the daemon.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from agent.capture.pipeline import CameraPipeline, snapshot
from agent.capture.source import SourceError
from agent.config import CameraConfig
from agent.replay import DirectorySink, ReplayError, replay
from tests.support.agentproc import catalogue, start, terminate, wait_for
from tests.support.media import MOTION, assert_valid_clip, ffprobe, make_video, overlaps

SLACK = 1.5


# -- generating the corpus ---------------------------------------------------------------------


def make_audio(path: Path, codec: str) -> Path:
    """Three seconds of silence and no video at all."""
    with av.open(str(path), "w") as out:
        sound = out.add_stream(codec, rate=16000)
        sound.layout = "mono"
        for i in range(30):
            pcm = np.zeros((1, 1600), np.float32 if codec == "aac" else np.int16)
            chunk = av.AudioFrame.from_ndarray(
                pcm, format="fltp" if codec == "aac" else "s16", layout="mono"
            )
            chunk.sample_rate, chunk.pts = 16000, i * 1600
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())
    return path


def strip_parameter_sets(annexb: bytes) -> bytes:
    """An H.264 elementary stream without its SPS and PPS NAL units (types 7 and 8)."""
    parts = re.split(b"(\x00\x00\x00\x01|\x00\x00\x01)", annexb)
    kept = [parts[0]]
    for start_code, nal in zip(parts[1::2], parts[2::2]):
        if nal and nal[0] & 0x1F not in (7, 8):
            kept += [start_code, nal]
    return b"".join(kept)


def _vint(b: bytes, i: int) -> tuple[int, int]:
    """An EBML variable-length integer at `i`: (value without the marker bit, its length)."""
    n, mask = 1, 0x80
    while n <= 8 and not b[i] & mask:
        n, mask = n + 1, mask >> 1
    value = b[i] & (mask - 1)
    for k in range(1, n):
        value = (value << 8) | b[i + k]
    return value, n


def _children(b: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    i = start
    while i < end:
        _, id_len = _vint(b, i)
        element = int.from_bytes(b[i : i + id_len], "big")
        size, size_len = _vint(b, i + id_len)
        body = i + id_len + size_len
        yield element, i, body, body + size
        i = body + size


def empty_disposable_frames(mkv: bytes, every: int = 2) -> tuple[bytes, int]:
    """Matroska with every `every`-th non-reference frame's SimpleBlock emptied: the block keeps
    its header (track, time, flags) and carries zero bytes of frame data; an EBML Void element
    fills the rest, so no parent size or cue moves."""
    b = bytearray(mkv)
    seen = emptied = 0
    for segment, _, body, end in _children(b, 0, len(b)):
        if segment != 0x18538067:
            continue
        for cluster, _, cbody, cend in _children(b, body, end):
            if cluster != 0x1F43B675:
                continue
            for block, bstart, bbody, bend in list(_children(b, cbody, cend)):
                nal = b[bbody + 8] if block == 0xA3 else 0  # AVCC: 4-byte length, NAL header
                if nal & 0x1F != 1 or nal & 0x60:  # only slices no other frame refers to
                    continue
                seen += 1
                if seen % every:
                    continue
                header = bytes([0xA3, 0x84]) + bytes(b[bbody : bbody + 4])
                pad = (bend - bstart) - len(header)
                void = bytes([0xEC, 0x40 | ((pad - 3) >> 8), (pad - 3) & 0xFF])
                b[bstart:bend] = header + void + bytes(pad - len(void))
                emptied += 1
    return bytes(b), emptied


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    good = make_video(d / "good.mp4")
    files = {
        "garbage": d / "garbage.mp4",
        "truncated-mp4": d / "truncated.mp4",
        "mjpeg": make_video(d / "camera.avi", codec="mjpeg", pix_fmt="yuvj420p"),
        "audio-aac": make_audio(d / "audio.m4a", "aac"),
        "audio-pcm": make_audio(d / "audio.wav", "pcm_s16le"),
        "no-sps-pps": d / "no-sps-pps.h264",
        "b-frames": make_video(d / "bframes.mp4", bframes=3),
        "hevc-b-frames": make_video(d / "bframes.mkv", codec="libx265", bframes=2),
        "with-audio": make_video(d / "with-audio.mp4", audio="aac"),
        "4k": make_video(d / "4k.mp4", size=(3840, 2160), fps=5),
        "no-timestamps": make_video(d / "raw.h264", fmt="h264"),
        "empty-frames": d / "empty-frames.mkv",
        "truncated-ts": d / "truncated.ts",
        "good": good,
    }
    rng = np.random.default_rng(3)
    files["garbage"].write_bytes(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    data = good.read_bytes()
    files["truncated-mp4"].write_bytes(data[: len(data) // 2])  # the moov box is at the end
    raw = files["no-timestamps"].read_bytes()
    files["no-sps-pps"].write_bytes(strip_parameter_sets(raw))
    mkv, emptied = empty_disposable_frames(make_video(d / "b.mkv", bframes=2).read_bytes())
    assert emptied >= 5, f"only {emptied} frames emptied: the generator changed"
    files["empty-frames"].write_bytes(mkv)
    ts = make_video(d / "full.ts", fmt="mpegts").read_bytes()
    files["truncated-ts"].write_bytes(ts[: len(ts) * 4 // 5 + 99])  # mid transport packet
    return files


# name -> (state, what the message says), for inputs the agent cannot record
UNRECORDABLE = {
    "garbage": ("failed", r"garbage\.mp4: cannot open"),
    "truncated-mp4": ("failed", r"truncated\.mp4: cannot open"),
    "mjpeg": ("unsupported", r"camera\.avi: video codec 'mjpeg' is not supported"),
    "audio-aac": ("unsupported", r"audio\.m4a: no video stream"),
    "audio-pcm": ("unsupported", r"audio\.wav: no video stream"),
}
RECORDABLE = {  # name -> codec of the clips
    "b-frames": "h264",
    "hevc-b-frames": "hevc",
    "with-audio": "h264",
    "4k": "h264",
    "no-timestamps": "h264",
    "empty-frames": "h264",
    "truncated-ts": "h264",
}


def run_pipeline(path: Path, out: Path) -> tuple[CameraPipeline, Exception | None]:
    cam = CameraConfig(name="corpus", url=str(path), realtime=False)
    pipe = CameraPipeline(cam, DirectorySink(out))
    try:
        pipe.run()
    except SourceError as exc:
        return pipe, exc
    return pipe, None


@pytest.mark.parametrize("name", sorted(UNRECORDABLE))
def test_unrecordable_input_gives_a_clear_state_and_error(corpus, tmp_path, name):
    state, message = UNRECORDABLE[name]
    pipe, exc = run_pipeline(corpus[name], tmp_path / "pipe")
    snap = snapshot(pipe)
    assert exc is not None and re.search(message, str(exc)), exc
    assert snap["state"] == state, snap
    assert snap["last_error"] and re.search(message, snap["last_error"]), snap["last_error"]
    with pytest.raises(ReplayError, match=message):
        replay(corpus[name], tmp_path / "replay")
    assert not list((tmp_path / "replay").glob("*")), "files written for an unrecordable input"


def test_h264_without_parameter_sets_says_so(corpus, tmp_path):
    pipe, exc = run_pipeline(corpus["no-sps-pps"], tmp_path / "pipe")
    snap = snapshot(pipe)
    assert exc is None and snap["packets"] > 0 and snap["frames_decoded"] == 0, snap
    assert "no frame decoded" in snap["last_error"] and "SPS/PPS" in snap["last_error"], snap
    with pytest.raises(ReplayError, match=r"no-sps-pps\.h264: no frame could be decoded"):
        replay(corpus["no-sps-pps"], tmp_path / "replay")


@pytest.mark.parametrize("name", sorted(RECORDABLE))
def test_odd_but_recordable_input_gives_valid_clips_of_the_motion(corpus, tmp_path, name):
    clips = replay(corpus[name], tmp_path)
    assert clips, f"{name}: no clip, though a block moved at {MOTION} s"
    events = [(c["event_start"], c["event_end"]) for c in clips]
    assert any(overlaps(MOTION, e, SLACK) for e in events), (name, events)
    for c in clips:
        assert_valid_clip(Path(c["clip"]), c["start"], c["end"], codec=RECORDABLE[name])
        assert c["keyframes"], f"{name}: a clip of real motion without keyframe images"
    if name == "4k":
        stream = ffprobe(Path(clips[0]["clip"]))["streams"][0]
        assert (stream["width"], stream["height"]) == (3840, 2160)
        for jpg in clips[0]["keyframes"]:
            with av.open(jpg) as image:
                size = image.streams.video[0].codec_context
                assert max(size.width, size.height) == 1280, "keyframe not scaled down"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_replay_reports_each_bad_input_in_one_line_without_a_traceback(corpus, tmp_path):
    expected = {name: message for name, (_, message) in UNRECORDABLE.items()}
    expected["no-sps-pps"] = r"no frame could be decoded"
    for name, message in expected.items():
        proc = cli("replay", str(corpus[name]), "--out", str(tmp_path / name))
        assert proc.returncode == 1, (name, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and re.search(message, lines[0]), (name, proc.stderr)


# -- in the daemon, beside a good camera -------------------------------------------------------


def status_json(config: Path) -> dict:
    proc = cli("status", "--json", "--config", str(config))
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def test_bad_cameras_show_why_in_status_and_leave_the_good_one_alone(corpus, tmp_path):
    cams: dict[str, tuple[str, str]] = {
        "good": (str(corpus["good"]), "loop = true"),
        "mjpeg": (str(corpus["mjpeg"]), ""),
        "audio": (str(corpus["audio-aac"]), ""),
        "garbage": (str(corpus["garbage"]), ""),
        "no-sps": (str(corpus["no-sps-pps"]), "loop = true"),
    }
    data_dir = tmp_path / "data"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{data_dir}"\ndevice_id = "test-gw"\n'
        "[clip]\npost_roll = 1.0\npre_roll = 1.0\n"
        + "".join(
            f'[[cameras]]\nname = "{name}"\nurl = "{url}"\n{extra}\n'
            for name, (url, extra) in cams.items()
        )
    )
    log = tmp_path / "agent.log"
    proc = start(config, log=log)
    try:
        expected: dict[str, tuple[str, str]] = {
            "mjpeg": ("unsupported", "video codec 'mjpeg' is not supported"),
            "audio": ("unsupported", "no video stream"),
            "garbage": ("failed", "cannot open"),
            "no-sps": ("streaming", "no frame decoded"),
        }

        def settled() -> dict | None:
            model = status_json(config)
            cameras = {c["name"]: c for c in model.get("cameras", [])}
            ok = cameras.get("good", {}).get("state") == "streaming" and all(
                cameras.get(n, {}).get("state") == state
                and want in (cameras.get(n, {}).get("last_error") or "")
                for n, (state, want) in expected.items()
            )
            return cameras if ok else None

        cameras = wait_for(settled, 60, "every camera to show its state and error in status")
        good_pid = cameras["good"]["pid"]
        rows = wait_for(
            lambda: (
                [r for r in catalogue(data_dir) if r.camera == "good"]
                if (data_dir / "spool.db").exists()
                else []
            ),
            60,
            "the good camera to catalogue a clip of its motion",
        )
        assert all(r.camera == "good" for r in catalogue(data_dir)), "a bad camera cut a clip"
        assert cameras["good"]["last_error"] is None, cameras["good"]
        final = {c["name"]: c for c in status_json(config)["cameras"]}
        assert final["good"]["pid"] == good_pid and final["good"]["restarts"] == 0, final["good"]
        for name in ("audio", "garbage", "mjpeg", "no-sps"):
            assert final[name]["restarts"] == 0, f"{name} crashed: {final[name]}"
        assert rows[0].codec == "h264"
        text = cli("status", "--config", str(config)).stdout
        assert "unsupported" in text and "no video stream" in text, text
    finally:
        code = terminate(proc)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output
