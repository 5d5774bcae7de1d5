"""`ipc-agent tune` and `replay --debug`: the pictures exist, decode, and show what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support.scenes import object_boxes
from tests.support.synth import make_scene


@pytest.fixture(scope="module")
def yard(tmp_path_factory):
    """A street with a masked tree swaying and people walking, and a config masking the tree."""
    folder = tmp_path_factory.mktemp("tune")
    scene = make_scene("masked_foliage", folder, duration=16)
    mask = json.dumps([[list(p) for p in poly] for poly in scene.mask])
    config = folder / "agent.toml"
    config.write_text(f'[[cameras]]\nname = "yard"\nurl = "{scene.path}"\nmask = {mask}\n')
    return scene, config


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=300
    )


def picture(path: Path) -> np.ndarray:
    with av.open(str(path)) as f:
        return next(f.decode(video=0)).to_ndarray(format="rgb24")


def test_tune_draws_the_mask_and_a_heat_map_where_people_walked(yard, tmp_path):
    scene, config = yard
    proc = cli("tune", "yard", "--config", str(config), "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["analysed"] >= 70 and result["with_motion"] > 0
    frame, heat = picture(tmp_path / "frame.png"), picture(tmp_path / "heatmap.png")
    assert frame.shape == heat.shape == (scene.height, scene.width, 3)
    h, w = frame.shape[:2]
    from agent.capture.motion import rasterize

    masked = rasterize(scene.mask, w, h)
    blue = frame[..., 2].astype(int) - frame[..., 0]
    assert blue[masked].mean() > blue[~masked].mean() + 30  # the mask is shaded blue
    # Hot (red) where the people walked, dim where nothing moved.
    walked = np.zeros((h, w), bool)
    for boxes in object_boxes("masked_foliage", w, h, duration=16):
        for b in boxes:
            if b.moving:
                walked[int(b.y0 * h) : int(b.y1 * h), int(b.x0 * w) : int(b.x1 * w)] = True
    red = heat[..., 0].astype(int) - heat[..., 2]
    still = ~walked & ~masked
    still[: h // 10] = still[:, : w // 20] = False  # the grid's labels
    assert red[walked & ~masked].mean() > red[still].mean() + 40
    assert (red[masked] > 100).mean() < 0.01  # the swaying tree is masked: no heat there


def test_tune_refuses_what_it_cannot_read(tmp_path):
    proc = cli("tune", str(tmp_path / "nothing.mp4"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 1 and "neither a video file nor a configured camera" in proc.stderr
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\0" * 4096)
    proc = cli("tune", str(garbage), "--out", str(tmp_path / "o"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_replay_debug_writes_an_annotated_video_with_the_event_marked(yard, tmp_path):
    scene, config = yard
    out = tmp_path / "out"
    proc = cli(
        "replay", str(scene.path), "--config", str(config), "--camera", "yard", "--out",
        str(out), "--debug", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    clips = [json.loads(x) for x in proc.stdout.splitlines()]
    assert clips
    with av.open(str(out / "debug.mp4")) as f:
        frames = [
            (float(fr.pts * fr.time_base), fr.to_ndarray(format="rgb24"))
            for fr in f.decode(video=0)
        ]
    assert abs(len(frames) - scene.duration * 5) <= 2  # the analysis rate
    bar = [(t, fr[2, fr.shape[1] // 2].astype(int)) for t, fr in frames]
    e = clips[0]
    during = [rgb for t, rgb in bar if e["event_start"] + 0.3 < t < e["event_end"] - 0.3]
    pre = [rgb for t, rgb in bar if e["start"] + 0.3 < t < e["event_start"] - 0.3]
    idle = [rgb for t, rgb in bar if not any(c["start"] - 0.3 <= t < c["end"] + 0.3 for c in clips)]
    assert during and all(c[0] > 150 and c[2] < 100 for c in during)  # red while the event lasts
    assert pre and all(c[2] > 150 and c[0] < 100 for c in pre)  # blue: in the clip, before it
    assert all(abs(c[0] - c[2]) < 40 for c in idle)  # grey outside clips
