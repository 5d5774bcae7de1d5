"""Detection scheduling (agent/capture/detection.py) driven by a fake codec: which packets get
decoded, which frames analysed, and when the gate wakes, without PyAV decoding anything.

The fake codec returns, for each packet, a frame whose luma the test scene draws: a noisy
static background, and a bright square moving during the scene's motion. The packets' sizes
follow the picture as an encoder's would: small and jittery while nothing moves, several
times larger while something does. The real Decoder (agent/capture/decoder.py) sits between,
so what is counted is what the agent would decode.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from agent.capture.decoder import Decoder
from agent.capture.detection import Analysis, Detection
from agent.capture.recorder import PacketBuffer
from agent.capture.source import MediaPacket
from agent.capture.stats import CameraStats
from agent.config import CameraConfig, MotionSettings

W, H = 320, 240
FPS = 15
TB = 1 / 90000


@dataclass
class Packet:
    size: int
    pts: int


@dataclass
class Frame:
    pts: int
    luma: np.ndarray


@dataclass
class FakeCodec:
    """A codec context: one frame out per packet in, at once (no B-frames)."""

    draw: object
    fed: list[int] = field(default_factory=list)  # pts of every packet decoded, in order

    def decode(self, packet):
        if packet is None:
            return []
        self.fed.append(packet.pts)
        return [Frame(packet.pts, self.draw(packet.pts * TB))]

    def flush_buffers(self):
        pass


class Scene:
    def __init__(self, moving: list[tuple[float, float]], seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.background = rng.integers(60, 190, (H, W), dtype=np.uint8)
        self.noise = np.random.default_rng(seed + 1)
        self.moving = moving

    def moves(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.moving)

    def draw(self, t: float) -> np.ndarray:
        img = self.background.copy()
        if self.moves(t):
            x = int(20 + 40 * t) % (W - 60)
            img[90:150, x : x + 60] = 250
        return img

    def packets(self, seconds: float, gop: float = 2.0):
        """Packets as an encoder would send them (sizes vary with the picture)."""
        for i in range(int(seconds * FPS)):
            t = i / FPS
            key = i % int(gop * FPS) == 0
            size = 40000 if key else 2000
            if not key and self.moves(t):
                size *= 6
            size = int(size * math.exp(self.noise.normal(0, 0.15)))
            pts = round(t / TB)
            yield MediaPacket(
                Packet(size, pts), t, TB, pts, pts, round(1 / FPS / TB), key, t, seq=i
            )


def run(scene: Scene, seconds: float, gate: str = "auto", gop: float = 2.0, log=None, event=False):
    cam = CameraConfig(name="cam", url="fake", motion=MotionSettings(gate=gate))
    stats = CameraStats()
    codec = FakeCodec(scene.draw)
    buffer = PacketBuffer()
    analyses: list[Analysis] = []
    det = Detection(cam, Decoder(codec, "cam", stats), buffer, stats, analyses.append, _luma)
    with log.at_level(logging.DEBUG, "agent.capture.detection") if log else nullcontext():
        for mp in scene.packets(seconds, gop):
            buffer.push(mp)
            det.packet(mp, event=event)
            buffer.trim(10.0, det.keep_from())
    return analyses, stats, codec


def _luma(frame: Frame) -> np.ndarray:
    return frame.luma


def test_gate_off_decodes_every_packet_and_analyses_at_detect_fps():
    analyses, stats, codec = run(Scene([]), 20, gate="off")
    assert len(codec.fed) == 20 * FPS
    times = [a.packet.t for a in analyses if a.packet.t >= 1.0]  # the schedule settles first
    gaps = np.diff(times)
    assert abs(len(times) - 19 * 5) <= 1, len(times)
    assert gaps.min() >= 0.2 - 1 / FPS - 1e-9 and gaps.max() <= 0.2 + 1 / FPS + 1e-9
    assert not any(a.result.motion for a in analyses)


def test_static_scene_decodes_a_keyframe_every_2_s_after_the_first_gops():
    analyses, stats, codec = run(Scene([]), 60, gop=1.0)
    assert stats.gate == "asleep" and stats.gate_wakes == 0
    late = [pts * TB for pts in codec.fed if pts * TB >= 10]
    assert late == [t for t in np.arange(10, 60, 2.0)], late  # every other keyframe (GOP 1 s)
    assert stats.frames_skipped >= 50 * FPS - 25 - 1
    analysed = [a.packet.t for a in analyses if a.packet.t >= 10]
    assert analysed == late


def test_long_gops_have_every_keyframe_analysed():
    analyses, stats, codec = run(Scene([]), 80, gop=5.0)
    late = [pts * TB for pts in codec.fed if pts * TB >= 20]
    assert late == [t for t in np.arange(20, 80, 5.0)], late


def test_an_open_clip_has_every_keyframe_analysed():
    analyses, stats, codec = run(Scene([]), 40, gop=1.0, event=True)
    late = [pts * TB for pts in codec.fed if pts * TB >= 10]
    assert late == [t for t in np.arange(10, 40, 1.0)], late
    assert not any(a.result.motion for a in analyses)


def test_motion_wakes_the_gate_and_no_packet_is_decoded_twice(caplog):
    scene = Scene([(31.0, 35.0)])
    analyses, stats, codec = run(scene, 60, log=caplog)
    wakes = [r.getMessage() for r in caplog.records if "gate woke" in r.getMessage()]
    assert "frame sizes" in wakes[0] and not wakes[0].endswith("again"), wakes
    # That wake carried on from the keyframe the decoder had: nothing decoded twice. Only a
    # later wake by a keyframe's analysis (the place the square left) decodes again, from the
    # keyframe analysed before.
    twice = [pts * TB for pts in set(codec.fed) if codec.fed.count(pts) > 1]
    assert all(t >= 35 for t in twice), twice
    assert stats.frames_redecoded == len(codec.fed) - len(set(codec.fed))
    moving = [a.packet.t for a in analyses if a.result.motion]
    assert moving and 31.0 <= moving[0] <= 31.5, moving[:3]
    assert max(moving) >= 34.5
    # Analysed every 1/detect_fps s through the motion, caught up from the keyframe before it.
    during = [a.packet.t for a in analyses if 30.0 <= a.packet.t < 35.0]
    assert len(during) >= 5 * 5 - 1, during
    # Asleep again after the hold: the last GOPs are keyframes only.
    assert [pts * TB for pts in codec.fed if pts * TB >= 50] == [50.0, 52.0, 54.0, 56.0, 58.0]


def test_long_gop_is_gated_too():
    analyses, stats, codec = run(Scene([(41.0, 44.0)]), 80, gop=8.0)
    assert stats.gate == "asleep", stats.gate
    assert len(codec.fed) < 0.5 * 80 * FPS, len(codec.fed)
    moving = [a.packet.t for a in analyses if a.result.motion]
    assert moving and 41.0 <= moving[0] <= 41.5, moving[:3]


def test_a_verdict_carries_its_packet_frame_and_detector():
    analyses, _, _ = run(Scene([(5.0, 8.0)]), 10, gate="off")
    a = next(a for a in analyses if a.result.motion)
    assert a.frame.pts == a.packet.pts
    assert a.luma.shape == (H, W)
    assert a.detector.last_t == max(x.packet.t for x in analyses)
