"""tests.support.synth: the synthetic recordings (and their ground truth) other tests rely on."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support import synth
from tests.support.synth import KINDS, make_scene

SMALL = {"width": 320, "height": 180}  # same scene geometry as 640x360, 4x fewer pixels


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


def truth(kind: str, w: int = 320, h: int = 180, **kw) -> tuple[synth.Plan, tuple]:
    """Ground truth without encoding (the same code path make_scene uses)."""
    plan = synth.plan_scene(
        kind, w, h, 15, float(kw.pop("duration", synth.DURATION[kind])), 0, kw.pop("mf", None)
    )
    polys = (plan.foliage.poly,) if plan.foliage else ()
    mask = synth.poly_raster(polys, w, h) if polys else None
    return plan, synth.motion_intervals([m for _, m in synth.render_frames(plan, False, mask)], 15)


def nal_slices(pkt: av.Packet, hevc: bool) -> int:
    """Number of coded slices in a length-prefixed (MP4) access unit."""
    b, i, n = bytes(pkt), 0, 0
    while i + 4 <= len(b):
        size = int.from_bytes(b[i : i + 4], "big")
        t = (b[i + 4] >> 1) & 0x3F if hevc else b[i + 4] & 0x1F
        n += (t <= 21) if hevc else (t in (1, 5))
        i += 4 + size
    return n


def picture(frame: av.VideoFrame) -> str:
    """'I'/'P'/'B': PyAV 18 reports an int, older releases an enum named after the type."""
    p = frame.pict_type
    return getattr(p, "name", None) or {1: "I", 2: "P", 3: "B"}.get(int(p), "?")


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_decodes_with_exact_timestamps_and_camera_like_gop(folder: Path, codec: str) -> None:
    s = make_scene("walk", folder, duration=8, codec=codec, **SMALL)
    assert (s.width, s.height, s.fps, s.duration) == (320, 180, 15, 8.0)
    assert s.path.exists() and s.path.suffix == ".mp4"
    with av.open(str(s.path)) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == ("h264" if codec == "libx264" else "hevc")
        packets = [p for p in c.demux(st) if p.size]
        assert {nal_slices(p, codec == "libx265") for p in packets} == {1}, "one slice per frame"
    with av.open(str(s.path)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 120
    assert [float(f.pts * f.time_base) for f in frames] == pytest.approx(
        [i / 15 for i in range(120)]
    )
    assert {f.format.name for f in frames} == {"yuv420p"}
    assert [i for i, f in enumerate(frames) if f.key_frame] == [0, 30, 60, 90]  # 2 s GOP
    assert {picture(f) for f in frames} == {"I", "P"}  # no B-frames


def test_bitrate_mode_and_b_frames(folder: Path) -> None:
    s = make_scene("walk", folder, duration=6, bitrate=300_000, **SMALL)
    kbps = s.path.stat().st_size * 8 / s.duration / 1000
    assert 150 < kbps < 450
    s = make_scene("walk", folder, duration=6, bframes=2, **SMALL)
    with av.open(str(s.path)) as c:
        assert "B" in {picture(f) for f in c.decode(video=0)}


def test_static_scene_looks_like_a_noisy_camera_image(folder: Path) -> None:
    s = make_scene("static_noise", folder, duration=2, **SMALL)
    assert s.motion == () and s.global_changes == ()
    with av.open(str(s.path)) as c:
        frames = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    y0, y1 = (frames[k][:180].astype(np.float32) for k in (10, 11))
    lo, hi = np.percentile(y0, [2, 98])
    assert lo >= 10 and hi <= 245 and hi - lo >= 80, "textured scene in a camera-like range"
    assert 1.0 < float(np.std(y1 - y0)) < 10.0, "fresh sensor noise on every frame"
    assert float(np.std(frames[10][180:])) > 1.0, "some colour in a day scene"


@pytest.mark.parametrize("kind", KINDS)
def test_ground_truth_is_sane(kind: str) -> None:
    plan, motion = truth(kind)
    dur = plan.n / plan.fps
    flat = [t for iv in motion for t in iv]
    assert flat == sorted(flat) and all(0 <= t <= dur for t in flat)
    assert all(b - a > 0.5 for a, b in motion)
    changes = plan.changes
    if kind in ("static_noise", "light_switch"):
        assert motion == ()
    elif kind == "walk":
        assert len(motion) >= 2
        assert all(b[0] - a[1] >= 12 for a, b in zip(motion, motion[1:]))
    elif kind == "light_switch_motion":
        assert len(motion) == 1 and 0.6 <= motion[0][0] - changes[0] <= 2.0
    elif kind == "ir_switch":
        assert len(motion) == 1 and motion[0][0] >= changes[0] + 4
    elif kind == "dusk":
        assert len(motion) == 1 and motion[0][0] > 0.5 * dur
    elif kind == "long_event":
        ((a, b),) = motion
        assert b - a >= 40 and a >= 3 and dur - b >= 3
    elif kind == "stop_and_go":
        assert len(motion) == 2 and motion[1][0] - motion[0][1] >= 13
    else:
        assert motion
    if kind.startswith("light_switch") or kind == "ir_switch":
        assert changes and all(0 < c < dur for c in changes)
    else:
        assert changes == ()
    if kind == "masked_foliage":
        poly = plan.foliage.poly
        assert all(0 <= x <= 1 and 0 <= y <= 1 for x, y in poly)
        area = synth.poly_raster((poly,), 320, 180).mean()
        assert 0.12 < area < 0.35


@pytest.mark.parametrize("kind", ["masked_foliage", "stop_and_go", "light_switch_motion", "busy"])
def test_ground_truth_matches_noise_free_pixels(kind: str) -> None:
    """Flagged frames change unmasked pixels; unflagged ones (foliage!) do not."""
    plan = synth.plan_scene(kind, 320, 180, 15, float(synth.DURATION[kind]), 0, None)
    polys = (plan.foliage.poly,) if plan.foliage else ()
    mask = synth.poly_raster(polys, 320, 180) if polys else np.zeros((180, 320), bool)
    prev, flags = None, []
    for i, (buf, moving) in enumerate(synth.render_frames(plan, True, mask, noise_on=False)):
        y = buf[:180].astype(np.int16)
        flags.append(moving)
        if prev is not None:
            t = i / plan.fps
            changed = (y != prev) & ~mask
            if moving:
                assert changed.any(), f"{kind}: motion at {t:.2f}s but nothing changed"
            elif not flags[-2] and not any(c <= t < c + 3 for c in plan.changes):
                big = int(np.count_nonzero(changed & (np.abs(y - prev) >= 4)))
                assert big < 6, f"{kind}: {big} px changed at {t:.2f}s with no motion"
        prev = y


@pytest.mark.parametrize("mf", [0.0, 0.15, 0.5, 1.0])
def test_busy_motion_fraction(mf: float) -> None:
    plan, motion = truth("busy", mf=mf)
    dur = plan.n / plan.fps
    assert sum(b - a for a, b in motion) / dur == pytest.approx(mf, abs=0.03)
    if mf == 1.0:
        assert motion == ((0.0, dur),)
    if mf == 0.15:
        assert len(motion) >= 2, "several bursts"


def test_deterministic_cached_and_resolution_independent(folder: Path, tmp_path: Path) -> None:
    a = make_scene("masked_foliage", folder, duration=5, **SMALL)
    mtime = a.path.stat().st_mtime_ns
    b = make_scene("masked_foliage", tmp_path, duration=5, **SMALL)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a == make_scene("masked_foliage", folder, duration=5, **SMALL)
    assert a.path.stat().st_mtime_ns == mtime, "cached file re-encoded"
    assert {k: v for k, v in vars(a).items() if k != "path"} == {
        k: v for k, v in vars(b).items() if k != "path"
    }
    b.path.with_suffix(".json").unlink()  # lost metadata is recomputed, not re-encoded
    assert make_scene("masked_foliage", tmp_path, duration=5, **SMALL) == b
    c = make_scene("masked_foliage", tmp_path, duration=5, seed=1, **SMALL)
    assert c.path != b.path and c.path.read_bytes() != b.path.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left"
    # the scene scales with the frame: same seed, same story at another resolution
    _, small = truth("walk")
    _, big = truth("walk", 640, 360)
    assert np.allclose(np.array(small), np.array(big), atol=0.2)


def test_small_object_defaults_to_720p(folder: Path) -> None:
    s = make_scene("small_object", folder, duration=2)
    assert (s.width, s.height) == (1280, 720)
    with av.open(str(s.path)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (1280, 720)


def test_cli_prints_the_scene_as_json(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth.main(
        ["light_switch", str(folder), "--width", "320", "--height", "180", "--duration", "12"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert Path(doc["path"]).exists() and doc["kind"] == "light_switch"
    assert doc["motion"] == [] and len(doc["global_changes"]) >= 1


def test_rejects_bad_arguments(folder: Path) -> None:
    with pytest.raises(ValueError):
        make_scene("parade", folder)
    with pytest.raises(ValueError):
        make_scene("walk", folder, width=321, height=180)
    with pytest.raises(ValueError):
        make_scene("busy", folder, motion_fraction=1.5)
    with pytest.raises(ValueError):
        make_scene("walk", folder, codec="libvpx")
