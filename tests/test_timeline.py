"""What real cameras do to timestamps, glued onto one continuous timeline."""

from __future__ import annotations

import random

import pytest

from agent.capture.source import WALL_WINDOW, Timeline, WallClock

TB = 1 / 90000  # RTSP's 90 kHz clock
STEP = 6000  # 15 fps


def feed(tl: Timeline, stamps):
    return [tl.place(pts, dts, 0) for pts, dts in stamps]


def test_first_packet_without_timestamps_starts_the_timeline_at_zero():
    tl = Timeline()
    tl.begin(TB)
    out = feed(tl, [(None, None), (123456, 123456), (123456 + STEP, 123456 + STEP)])
    dts = [o[1] for o in out]
    assert dts[0] == 0 and dts[1] > dts[0] and dts[2] - dts[1] == STEP
    assert not any(o[3] for o in out)


def test_camera_reboot_resets_timestamps_glued_and_flagged():
    tl = Timeline()
    tl.begin(TB)
    before = feed(tl, [(10**9 + i * STEP, 10**9 + i * STEP) for i in range(30)])
    after = feed(tl, [(i * STEP, i * STEP) for i in range(5)])  # back to zero
    assert after[0][3], "the reset is not flagged as a discontinuity"
    assert after[0][1] == before[-1][1] + STEP, "the timeline does not continue"
    assert [a[1] for a in after] == sorted({a[1] for a in after})
    assert not any(a[3] for a in after[1:])


def test_long_forward_gap_is_a_discontinuity_but_jitter_is_not():
    tl = Timeline()
    tl.begin(TB)
    feed(tl, [(i * STEP, i * STEP) for i in range(30)])
    jitter = feed(tl, [(30 * STEP + 900, 30 * STEP + 900)])
    assert not jitter[0][3]
    gap = feed(tl, [(30 * STEP + 10 * 90000, 30 * STEP + 10 * 90000)])  # 10 s lost
    assert gap[0][3]


def test_repeated_timestamps_keep_dts_increasing():
    tl = Timeline()
    tl.begin(TB)
    out = feed(tl, [(0, 0), (STEP, STEP), (STEP, STEP), (2 * STEP, 2 * STEP)])
    dts = [o[1] for o in out]
    assert dts == sorted(dts) and len(set(dts)) == 4
    assert not any(o[3] for o in out)


def test_b_frame_pts_keep_their_offset_from_dts():
    tl = Timeline()
    tl.begin(TB)
    out = feed(tl, [(2 * STEP, 0), (5 * STEP, STEP), (3 * STEP, 2 * STEP)])
    assert [o[0] - o[1] for o in out] == [2 * STEP, 4 * STEP, STEP]


def test_a_new_connection_continues_the_timeline_in_its_own_time_base():
    tl = Timeline()
    tl.begin(TB)
    first = feed(tl, [(i * STEP, i * STEP) for i in range(10)])
    tl.begin(1 / 1000)  # the camera came back with a millisecond clock
    second = feed(tl, [(5_000_000 + i * 67, 5_000_000 + i * 67) for i in range(3)])
    end_first = first[-1][1] * TB
    assert 0 < second[0][1] / 1000 - end_first < 0.1
    assert not any(o[3] for o in second)


# -- wall clock of a live stream -------------------------------------------------------------

T0 = 1_790_000_000.0  # host clock when the camera captured media time 0


def test_the_probe_burst_does_not_make_wall_times_late():
    """FFmpeg's probing holds the first 1.8 s back and hands them over at once; once packets
    arrive in real time the wall times are the capture times (within the network delay)."""
    clock = WallClock()
    frames = [i / 15 for i in range(150)]
    arrival = [max(T0 + 1.8, T0 + t) + 0.005 for t in frames]  # burst, then real time + 5 ms
    walls = [clock.place(t, a) for t, a in zip(frames, arrival, strict=True)]
    assert walls == sorted(walls), "wall times went backwards"
    assert all(w <= a for w, a in zip(walls, arrival, strict=True)), "a frame before it arrived"
    late = [w - (T0 + t) for t, w in zip(frames, walls, strict=True)]
    assert max(late[30:]) == pytest.approx(0.005, abs=1e-6)  # after the burst
    assert late[0] == pytest.approx(1.805)  # the first packet can know no better


def test_jitter_and_a_short_stall_leave_the_estimate_alone():
    clock = WallClock()
    rng = random.Random(7)
    for i in range(3000):  # 200 s at 15 fps, delays 5-80 ms, a 1.5 s stall at 100 s
        t = i / 15
        delay = 0.005 + rng.random() * 0.075 + (1.5 if 100 <= t < 101.5 else 0.0)
        wall = clock.place(t, T0 + t + delay)
        assert T0 + t <= wall <= T0 + t + 0.08, (t, wall - T0 - t)


def test_a_camera_clock_running_slow_is_followed_without_a_jump():
    """The camera's 1 s lasts 1.0005 host seconds (+1.8 s an hour): the minimum over the last
    minute follows, so wall times stay within the drift of one window and never jump."""
    clock = WallClock()
    last = None
    for i in range(0, 15 * 3600, 5):  # an hour, every third of a second
        t = i / 15
        wall = clock.place(t, T0 + t * 1.0005 + 0.01)
        assert abs(wall - (T0 + t * 1.0005)) < 0.01 + 0.0005 * WALL_WINDOW + 1e-6
        if last is not None:
            assert 0 < wall - last < 1 / 3 + 0.001
        last = wall


def test_the_host_clock_jumping_is_followed_at_once():
    clock = WallClock()
    for i in range(300):
        clock.place(i / 15, T0 + i / 15)
    assert clock.place(20.0, T0 + 3600 + 20.0) == T0 + 3600 + 20.0  # NTP corrected forward
    assert clock.place(20.1, T0 - 3600 + 20.1) == T0 - 3600 + 20.1  # and backward


def test_a_timestamp_discontinuity_starts_the_estimate_over():
    clock = WallClock()
    clock.place(500.0, T0 + 500.0)
    clock.reset()  # what Source does on a jump: the session timeline was glued
    assert clock.place(501.0, T0 + 400.0) == T0 + 400.0
