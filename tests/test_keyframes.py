"""Keyframe choice: spread over the event, strong, mutually different, never blank."""

from __future__ import annotations

import numpy as np

from agent.capture.keyframes import (
    Candidate,
    Candidates,
    KeyframePicker,
    at_edge,
    is_blank,
    quality,
    sharpness,
)

RNG = np.random.default_rng(0)
BASE = RNG.uniform(40, 200, (90, 160)).astype(np.float32)


def thumb(x: int) -> np.ndarray:
    """The scene with a bright object at column x: different x, different picture."""
    img = BASE.copy()
    img[30:60, x : x + 10] = 250
    return img


def cand(t: float, score: float, x: int | None = None) -> Candidate:
    return Candidate(t, score, thumb(int(t * 7) % 150 if x is None else x), image=f"frame@{t}")


def test_picks_are_spread_over_the_event_and_prefer_strong_frames():
    picker = KeyframePicker(4, capacity=40)
    for i in range(40):
        picker.add(cand(i * 0.5, score=1.0 + (i % 5 == 2)))
    chosen = picker.pick(0, 20)
    assert len(chosen) == 4
    times = [c.t for c in chosen]
    assert times == sorted(times)
    assert times[0] < 5 and times[-1] >= 15, times
    assert all(c.score == 2.0 for c in chosen), "a weaker frame beat a stronger one in its bin"


def test_pool_stays_bounded_and_keeps_the_spread():
    picker = KeyframePicker(4)
    for i in range(1000):
        picker.add(cand(i * 0.1, score=float(RNG.uniform(1, 2))))
    assert len(picker.pool) == 8
    times = [c.t for c in picker.pool]
    assert times[0] < 20 and times[-1] > 80, times


def test_would_keep_predicts_eviction():
    picker = KeyframePicker(1, capacity=2)
    picker.add(cand(0, 5.0))
    picker.add(cand(10, 5.0))
    assert not picker.would_keep(9.9, 1.0)  # weaker and crowding its neighbour: evicted at once
    assert picker.would_keep(5.0, 9.0)


def test_identical_frames_are_not_picked_twice():
    picker = KeyframePicker(3, capacity=10)
    for t in (1.0, 2.0, 3.0):
        picker.add(cand(t, 1.0, x=50))  # an object that stands still: the same picture
    assert len(picker.pick(0, 10)) == 1


def test_blank_and_flash_frames_are_never_candidates():
    picker = KeyframePicker(2)
    picker.add(Candidate(1.0, 9.0, np.full((90, 160), 2.0, np.float32)))  # black
    picker.add(Candidate(2.0, 9.0, np.full((90, 160), 252.0, np.float32)))  # flash
    assert picker.pool == [] and is_blank(np.full((9, 9), 128.0))


def test_pick_only_returns_candidates_inside_the_clip():
    picker = KeyframePicker(4)
    for t in (1, 2, 12, 13):
        picker.add(cand(t, 1.0))
    assert {c.t for c in picker.pick(10, 20)} == {12, 13}


def test_sharpness_prefers_a_sharp_object_to_a_blurred_one():
    sharp = np.zeros((100, 100), np.uint8)
    sharp[::2, :] = 255
    blurred = np.full((100, 100), 128, np.uint8)
    box = (0.2, 0.2, 0.8, 0.8)
    assert sharpness(sharp, box) > 100 * max(sharpness(blurred, box), 1.0)


def test_motion_at_the_picture_edge_is_cut_off_but_at_the_top_is_not():
    assert at_edge((0.0, 0.3, 0.1, 0.8)) and at_edge((0.9, 0.3, 1.0, 0.8))
    assert at_edge((0.4, 0.5, 0.5, 1.0))  # its feet (or a car's wheels) below the picture
    assert not at_edge((0.4, 0.0, 0.5, 0.6)) and not at_edge((0.1, 0.2, 0.9, 0.9))
    assert not at_edge(None)
    assert quality(0.01, 100.0, good=False) < quality(0.01, 100.0)


def test_fallbacks_fill_in_only_when_the_good_frames_run_out():
    picker = KeyframePicker(4, capacity=40)
    for i in range(20):  # fallbacks (entering, leaving, light changing) show more here
        good = 4 <= i < 16
        picker.add(Candidate(i, 1.0 if good else 0.5, thumb(i * 7), good=good))
    chosen = picker.pick(0, 20)
    assert len(chosen) == 4 and all(c.good for c in chosen), [(c.t, c.good) for c in chosen]
    assert chosen[0].t < 7 and chosen[-1].t >= 13  # still spread over the good stretch
    few = KeyframePicker(4, capacity=40)
    for i in range(6):
        good = i in (2, 3)
        few.add(Candidate(i, 1.0 if good else 0.25, thumb(i * 20), good=good))
    chosen = few.pick(0, 6)
    assert len(chosen) == 4 and sum(c.good for c in chosen) == 2


def test_a_trace_of_motion_beside_the_event_s_strong_frames_is_never_picked():
    picker = KeyframePicker(4, capacity=40)
    for i, score in enumerate([3.0, 2.5, 0.5, 0.4, 0.3]):  # the object left; a flicker stays
        picker.add(Candidate(i, score, thumb(i * 20)))
    assert [c.t for c in picker.pick(0, 5)] == [0, 1]  # fewer images rather than empty ones


def test_the_pool_lets_flickers_go_before_the_object_s_frames_however_close():
    picker = KeyframePicker(4)  # a pool of 8
    for t in (2.0, 5.0, 8.0, 22.0, 25.0, 28.0):  # flickers, far apart
        picker.add(Candidate(t, 0.1, thumb(int(t * 5))))
    for i in range(6):  # the person, a frame a second
        picker.add(Candidate(15.0 + i, 1.0, thumb(60 + 10 * i)))
    assert len(picker.pool) == 8
    chosen = picker.pick(0, 30)
    assert len(chosen) == 4 and all(15.0 <= c.t <= 20.0 for c in chosen), [c.t for c in chosen]


def test_cut_off_frames_fill_in_before_frames_in_changing_light():
    picker = KeyframePicker(3, capacity=40)
    picker.add(Candidate(0.0, 1.0, thumb(0)))
    picker.add(Candidate(1.0, 0.25, thumb(30), good=False))  # at the edge
    picker.add(Candidate(2.0, 0.25, thumb(60), good=False, steady=False))  # the light changing
    picker.add(Candidate(3.0, 0.25, thumb(90), good=False))  # at the edge
    assert [c.t for c in picker.pick(0, 4)] == [0.0, 1.0, 3.0]


class CountingImages:
    """Candidate images as the pipeline keeps them, counting the JPEGs it would encode."""

    def __init__(self) -> None:
        self.prepared = 0

    def prepare(self, image):
        self.prepared += 1
        return f"jpeg of {image}"

    def image(self, kept):
        return kept


def test_a_long_event_prepares_few_candidate_images_spread_over_it():
    images = CountingImages()
    cands = Candidates(KeyframePicker(4), images)
    for i in range(300):  # 60 s of motion analysed 5 times a second
        t = i / 5
        cands.offer(t, 1.0 + (i % 7) / 10, lambda t=t: thumb(int(t * 7) % 150), f"frame@{t}")
    chosen = cands.chosen(0, 60)
    assert images.prepared <= 30, images.prepared  # one a second would be 60
    times = [t for t, _ in chosen]
    assert len(times) == 4 and times[0] < 12 and times[-1] > 45, times
    assert all(image.startswith("jpeg of frame@") for _, image in chosen)


def test_a_short_event_keeps_a_candidate_a_second():
    images = CountingImages()
    cands = Candidates(KeyframePicker(4), images)
    for i in range(40):  # 8 s
        t = i / 5
        cands.offer(t, 1.0, lambda t=t: thumb(int(t * 7) % 150), f"frame@{t}")
    cands.flush()
    assert images.prepared == 8
