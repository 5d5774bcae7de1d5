"""What real cameras do to timestamps, glued onto one continuous timeline."""

from __future__ import annotations

from agent.capture.source import Timeline

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
