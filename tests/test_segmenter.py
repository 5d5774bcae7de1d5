"""The event state machine, fed plain numbers: packet times, keyframes, motion verdicts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.capture.segmenter import EndClip, Segmenter, SplitClip, StartClip
from agent.config import ClipSettings

FPS = 10
GOP = 1.0  # s between keyframes


def simulate(
    moving: Callable[[float], bool], duration: float, gop: float = GOP, **clip
) -> list[tuple[float, float, float]]:
    """Run a stream through the segmenter; returns clips as (start, end, event_start)."""
    seg = Segmenter(ClipSettings(**clip))
    clips: list[tuple[float, float, float]] = []
    open_at: tuple[float, float] | None = None

    def apply(decisions):
        nonlocal open_at
        for d in decisions:
            if isinstance(d, StartClip):
                assert open_at is None, "a clip opened while one was open"
                open_at = (d.at, d.event_start)
            elif isinstance(d, SplitClip):
                assert open_at is not None
                clips.append((open_at[0], d.at, open_at[1]))
                open_at = (d.at, d.at)
            elif isinstance(d, EndClip):
                assert open_at is not None
                clips.append((open_at[0], d.at, open_at[1]))
                open_at = None

    per_gop = round(gop * FPS)
    for i in range(int(duration * FPS)):
        t = i / FPS
        apply(seg.packet(t, i % per_gop == 0))
        apply(seg.motion(t, moving(t)))
    apply(seg.finish())
    return clips


def between(*spans: tuple[float, float]) -> Callable[[float], bool]:
    return lambda t: any(a <= t < b for a, b in spans)


def test_short_burst_is_not_an_event():
    assert simulate(between((10, 10.5)), 30) == []


def test_flickering_motion_still_makes_one_burst():
    flicker = lambda t: 10 <= t < 14 and round(t * 10) % 3 != 0  # noqa: E731 - a 2-in-3 flicker
    assert len(simulate(flicker, 30)) == 1


def test_event_clip_starts_on_keyframe_before_pre_roll_and_ends_after_post_roll():
    [(start, end, event_start)] = simulate(between((10.25, 14.25)), 40, pre_roll=3, post_roll=5)
    assert event_start == pytest.approx(10.3)
    assert start == 7.0  # last keyframe at or before 10.3 - 3
    assert end == pytest.approx(14.2 + 5, abs=0.11)


def test_bursts_closer_than_post_roll_merge():
    clips = simulate(between((10, 13), (16, 19)), 40, post_roll=5)
    assert len(clips) == 1


def test_bursts_further_apart_make_two_clips_that_do_not_overlap():
    clips = simulate(between((10, 13), (20, 23)), 40, pre_roll=3, post_roll=5)
    assert len(clips) == 2
    (s1, e1, _), (s2, e2, ev2) = clips
    assert e1 <= s2 <= ev2, clips  # pre-roll shortened to avoid repeating video


def test_long_event_becomes_back_to_back_clips_within_max_clip():
    clips = simulate(between((5, 65)), 90, max_clip=20, pre_roll=2, post_roll=3)
    assert len(clips) >= 3
    for (_, end, _), (start, _, _) in zip(clips, clips[1:]):
        assert start == end, "a gap or overlap between split clips"
    for start, end, _ in clips[:-1]:
        assert end - start <= 20 + 1e-6
    assert clips[0][0] == 3.0 and clips[-1][1] == pytest.approx(64.9 + 3, abs=0.11)


def test_split_waits_for_a_keyframe_when_the_gop_is_longer_than_max_clip():
    clips = simulate(between((5, 40)), 60, gop=4.0, max_clip=3, pre_roll=0)
    for start, end, _ in clips[:-1]:
        assert start % 4 == 0 and end % 4 == 0, clips
        assert end - start == 4.0


def test_finish_closes_an_open_event_at_the_last_packet():
    [(start, end, _)] = simulate(between((5, 100)), 20)
    assert end == pytest.approx(19.9, abs=1e-3)


def test_min_event_zero_takes_a_single_verdict():
    assert len(simulate(between((10, 10.1)), 30, min_event=0)) == 1


def test_horizon_covers_pre_roll_min_event_and_two_gops():
    seg = Segmenter(ClipSettings(pre_roll=3, min_event=1))
    for i in range(50):
        seg.packet(i / FPS, i % FPS == 0)
    assert seg.horizon() >= 3 + 1 + 2 * GOP


# -- an end held while the gate sleeps in the post-roll -------------------------------------------


def open_event(seg: Segmenter, until: float) -> None:
    """Keyframes every GOP, motion from 1 s to `until`: an event is open."""
    t = 0.0
    while t <= until + 1e-9:
        seg.packet(t, keyframe=abs(t - round(t)) < 1e-9)
        if t >= 1.0:
            seg.motion(t, True)
        t = round(t + 1 / FPS, 6)


def test_the_end_waits_until_detection_has_looked_past_it():
    seg = Segmenter(ClipSettings(post_roll=2.0, min_event=0.5, pre_roll=0.0))
    open_event(seg, 3.0)
    assert seg.recording and seg.end == pytest.approx(5.0)
    # The gate fell asleep at 3.5 s: nothing looked at after it.
    assert seg.packet(5.0, keyframe=False, settled=3.5) == []
    assert seg.packet(5.9, keyframe=False, settled=3.5) == []
    assert seg.recording
    # The keyframe at 6 s was analysed quiet: the end is settled where it always was.
    assert seg.packet(6.1, keyframe=False, settled=6.0) == [EndClip(5.0, 3.0)]
    assert not seg.recording and seg.end == float("inf")


def test_motion_found_before_the_held_end_carries_the_event_on():
    seg = Segmenter(ClipSettings(post_roll=2.0, min_event=0.5, pre_roll=0.0))
    open_event(seg, 3.0)
    seg.packet(5.5, keyframe=False, settled=3.5)
    # A wake's catch-up finds motion at 4.5 s, before the held end: the same event, longer.
    assert seg.motion(4.5, True) == []
    assert seg.recording and seg.end == pytest.approx(6.5)
    assert seg.packet(6.0, keyframe=True, settled=None) == []


def test_a_frame_past_the_held_end_settles_it_and_later_motion_is_a_new_event():
    seg = Segmenter(ClipSettings(post_roll=2.0, min_event=0.5, pre_roll=0.0))
    open_event(seg, 3.0)
    for t in (4.0, 5.0, 6.0, 7.0):
        seg.packet(t, keyframe=True, settled=3.5)  # asleep: every end held
    assert seg.recording
    # The catch-up from 6 s (a wake at 7 s) analyses 6.0 quiet: past the end of 5 s.
    assert seg.motion(6.0, False) == [EndClip(5.0, 3.0)]
    for t in (6.6, 6.8, 7.0):
        assert seg.motion(t, True) == []
    decisions = seg.motion(7.2, True)
    assert [type(d) for d in decisions] == [StartClip] and decisions[0].event_start == 6.6
