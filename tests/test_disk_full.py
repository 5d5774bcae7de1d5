"""A full disk while a camera writes or catalogues a clip: that clip is lost, not the camera."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.capture.pipeline import CameraPipeline, FinishedClip
from agent.config import CameraConfig
from agent.replay import DirectorySink
from tests.support.synth import make_scene


class FullOnceSink(DirectorySink):
    """Refuses the first clip as a full disk would (ENOSPC), takes the others."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__(out_dir)
        self.refused = 0
        self.delivered: list[FinishedClip] = []

    def deliver(self, clip: FinishedClip) -> None:
        if not self.refused:
            self.refused += 1
            raise OSError(28, "No space left on device")
        super().deliver(clip)
        self.delivered.append(clip)


def test_a_clip_that_cannot_be_stored_is_dropped_and_the_camera_carries_on(tmp_path):
    scene = make_scene("walk", tmp_path / "scene", width=320, height=180, fps=10, seed=4)
    assert len(scene.motion) >= 2, "the scene needs two events"
    out = tmp_path / "out"
    out.mkdir()
    sink = FullOnceSink(out)
    cam = CameraConfig(name="cam", url=str(scene.path), realtime=False, loop=False)
    pipe = CameraPipeline(cam, sink, threading.Event())
    pipe.run()  # must not raise
    assert sink.refused == 1 and len(sink.delivered) >= 1, "the camera stopped after the error"
    assert pipe.stats.clips_refused == 1
    assert "No space left on device" in (pipe.stats.last_error or "")
    left = sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))
    assert not left, f"partial files of the lost clip left behind: {left}"
