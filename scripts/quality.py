#!/usr/bin/env python3
"""Event-level detection quality of `replay` on generated scenes with known motion.

Three matrices, each replayed with default settings, the compressed-domain gate off (every
frame decoded) and on (`auto`, the default):

- kinds: each scene kind of tests/support/synth.py at two resolutions, several seeds (different
  layout, people, paths, lighting and noise);
- light: a whole-picture change of brightness (gain) or contrast, -60 % to +60 %, from one frame
  to the next or ramped over 1 s, landing on a keyframe or mid-GOP, and back again 7 s later, at
  320x240 and 720p (48 cells each) and 1080p (24: instant on a keyframe, ramped from mid-GOP);
  half the cells with a person crossing during or right after it (tests/support/scenes.py);
- cold: a person already crossing when the recording starts, at two resolutions: is it caught,
  and how soon after the start does its event begin.

An interval counts as caught when some clip's event overlaps it (within SLACK s); a clip whose
event overlaps no motion is a false clip. Keyframe visibility: of all keyframes of all clips,
the fraction that show an object of the scene mostly (INSIDE) within the picture, not blank,
and not taken in the middle of a light change (from its start to 0.5 s after it ends; for the
synth kinds' lamp and IR switches, 1.8 s after it: the exposure settling). Object positions
are known (tests/support/scenes.py).

Usage: .venv/bin/python scripts/quality.py [--seeds 6] [--kinds walk,dusk,...]
       [--matrix kinds,light,cold] [--gate on|off|both] [--quick] [VIDEO.mp4 ...]
A VIDEO argument is scored too when VIDEO.json beside it holds its motion intervals
([[start, end], ...]). Stdlib, PyAV and the agent package only.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import av

from agent.capture.keyframes import is_blank
from agent.config import parse
from agent.replay import replay

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the generated scenes

from tests.support.scenes import make_light_scene, object_boxes, shows_object  # noqa: E402
from tests.support.synth import KINDS, make_scene  # noqa: E402

SLACK = 1.5
INSIDE = 0.6  # a keyframe shows an object when this much of it is inside the picture
CACHE = Path(tempfile.gettempdir()) / "ipc-agent-quality"
# Two resolutions per kind: the kind's own and one more (a distant person needs 720p or more).
SIZES = {"small_object": ((1280, 720), (1920, 1080))}
DEFAULT_SIZES = ((640, 360), (320, 240))
# How long the synth kinds' light takes to settle after a change (lamp warm-up, exposure).
SETTLE = {"light_switch": 1.8, "light_switch_motion": 1.8, "ir_switch": 1.6}


def score(truth, clips: list[dict]) -> tuple[int, int]:
    """(intervals caught, false clips)."""
    events = [(c["event_start"], c["event_end"]) for c in clips]

    def near(a, b):
        return a[0] < b[1] + SLACK and b[0] < a[1] + SLACK

    caught = sum(any(near(t, e) for e in events) for t in truth)
    false = sum(not any(near(t, e) for t in truth) for e in events)
    return caught, false


@functools.cache
def run(video: Path, gate: str, mask=()) -> list[dict]:
    """Replay with default settings but the gate; a masked scene as a camera with its mask.
    Each keyframe's blankness is judged on the written JPEG before the folder goes."""
    cam = {"name": "cam", "url": str(video)}
    if mask:
        cam["mask"] = [[list(p) for p in poly] for poly in mask]
    config = parse({"motion": {"gate": gate}, "cameras": [cam]})
    with tempfile.TemporaryDirectory() as out:
        clips = replay(video, Path(out), config, "cam")
        for c in clips:
            c["keyframe_blank"] = [_blank(Path(k)) for k in c["keyframes"]]
    return clips


def _blank(jpg: Path) -> bool:
    with av.open(str(jpg)) as f:
        frame = next(f.decode(video=0))
    return is_blank(frame.to_ndarray(format="gray").astype("float32"))


def visibility(clips: list[dict], boxes, fps: float, mid_change) -> tuple[int, int]:
    """(keyframes showing an object, keyframes)."""
    good = total = 0
    for c in clips:
        for t, blank in zip(c["keyframe_times"], c["keyframe_blank"], strict=True):
            total += 1
            i = min(max(round(t * fps), 0), len(boxes) - 1)
            good += (not blank) and not mid_change(t) and shows_object(boxes[i], INSIDE)
    return good, total


class Table:
    """Rows of (gate, group, caught, total, false, shown, keyframes) with a summary."""

    def __init__(self, title: str) -> None:
        self.title, self.rows = title, []

    def add(self, gate, group, caught, total, false, shown=0, keys=0) -> None:
        self.rows.append([gate, group, caught, total, false, shown, keys])

    def merged(self) -> list[list]:
        acc: dict[tuple, list] = {}
        for r in self.rows:
            a = acc.setdefault((r[0], r[1]), [r[0], r[1], 0, 0, 0, 0, 0])
            for i in range(2, 7):
                a[i] += r[i]
        return list(acc.values())

    def show(self) -> None:
        print(f"\n{self.title}")
        print(
            f"{'gate':<6}{'scene':<34}{'caught':>9}{'recall':>8}{'false':>7}{'keyframes shown':>18}"
        )
        rows = self.merged()
        for gate in dict.fromkeys(r[0] for r in rows):
            mine = [r for r in rows if r[0] == gate]
            for _, group, c, t, f, s, k in mine + [
                [gate, "all", *(sum(r[i] for r in mine) for i in range(2, 7))]
            ]:
                recall = f"{100 * c / t:.0f} %" if t else "-"
                shown = f"{s}/{k} {100 * s / k:.0f} %" if k else "-"
                print(f"{gate:<6}{group:<34}{f'{c}/{t}':>9}{recall:>8}{f:>7}{shown:>18}")


def kinds(args, gate: str, table: Table, shifts: list[float]) -> None:
    for kind in args.kinds.split(","):
        for w, h in SIZES.get(kind, DEFAULT_SIZES):
            for seed in range(args.seeds):
                scene = make_scene(kind, CACHE, width=w, height=h, seed=seed)
                clips = run(scene.path, gate, scene.mask)
                if gate == "auto":
                    shifts += onset_shift(run(scene.path, "off", scene.mask), clips)
                c, f = score(scene.motion, clips)
                boxes = object_boxes(kind, w, h, fps=scene.fps, seed=seed)
                settle = SETTLE.get(kind, 0.0)

                def mid(t: float, changes=scene.global_changes, settle=settle) -> bool:
                    return any(g <= t <= g + settle for g in changes)

                s, k = visibility(clips, boxes, scene.fps, mid)
                table.add(gate, f"{kind} {w}x{h}", c, len(scene.motion), f, s, k)
                report(gate, f"{kind} {w}x{h} seed {seed}", scene.motion, clips, c, f, s, k)


def light(args, gate: str, table: Table, cells: dict) -> None:
    sizes = ((320, 240), (1280, 720)) if args.quick else ((320, 240), (1280, 720), (1920, 1080))
    changes = (-0.6, -0.35, -0.15, 0.15, 0.35, 0.6)
    for (w, h), mode, change, ramp, at in itertools.product(
        sizes, ("gain", "contrast"), changes, (0.0, 1.0), (8.0, 8.6)
    ):
        if w == 1920 and (ramp == 1.0) == (at == 8.0):
            continue  # 1080p (slow to make): instant on a keyframe, ramped from mid-GOP
        # Half the cells have someone crossing: while the light changes, or right after.
        k = changes.index(change) + int(ramp) + int(at != 8.0)
        walk = (None, -0.5, None, 1.0)[k % 4]
        seed = k % 3
        scene = make_light_scene(
            CACHE, change=change, mode=mode, ramp=ramp, at=at, walk=walk, width=w, height=h,
            seed=seed,
        )  # fmt: skip
        clips = run(scene.path, gate)
        c, f = score(scene.motion, clips)
        s, n = visibility(clips, scene.boxes, scene.fps, scene.mid_change)
        group = f"{mode} {'walk' if walk is not None else 'empty'} {w}x{h}"
        table.add(gate, group, c, len(scene.motion), f, s, n)
        cells[(gate, w, mode, change, ramp, at, walk)] = (c, len(scene.motion), f)
        name = f"light {mode} {change:+.0%} ramp {ramp:g} s at {at:g} s walk {walk} {w}x{h}"
        report(gate, name, scene.motion, clips, c, f, s, n)


def cold(args, gate: str, table: Table, onsets: list[float]) -> None:
    """Someone is crossing when the recording starts (the first frames hold them too)."""
    for (w, h), seed in itertools.product(((320, 240), (1280, 720)), range(args.seeds)):
        scene = make_light_scene(
            CACHE, change=0.0, at=0.0, back=None, walk=-2.0 - 0.3 * seed, width=w, height=h,
            seed=seed, duration=14.0,
        )  # fmt: skip
        clips = run(scene.path, gate)
        c, f = score(scene.motion, clips)
        s, n = visibility(clips, scene.boxes, scene.fps, scene.mid_change)
        table.add(gate, f"moving at start {w}x{h}", c, len(scene.motion), f, s, n)
        if clips and scene.motion and scene.motion[0][0] == 0.0:
            onsets.append(clips[0]["event_start"])
        report(gate, f"cold {w}x{h} seed {seed}", scene.motion, clips, c, f, s, n)


def report(gate, name, truth, clips, c, f, s, n) -> None:
    if c < len(truth) or f or s < n:
        events = [(c["event_start"], c["event_end"]) for c in clips]
        print(
            f"  gate {gate}: {name}: caught {c}/{len(truth)}, false {f}, keyframes shown "
            f"{s}/{n}; truth {truth}; events {events}",
            file=sys.stderr,
        )


def onset_shift(full: list[dict], gated: list[dict]) -> list[float]:
    """Per event of the full decode: how much later the gated run's matching event starts."""
    out = []
    for a in full:
        match = [
            b
            for b in gated
            if b["event_start"] < a["event_end"] and a["event_start"] < b["event_end"]
        ]
        if match:
            out.append(min(b["event_start"] for b in match) - a["event_start"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--kinds", default=",".join(k for k in KINDS if k != "busy"))
    ap.add_argument("--matrix", default="kinds,light,cold")
    ap.add_argument("--gate", choices=["on", "off", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="light matrix without 1080p")
    ap.add_argument("videos", nargs="*", type=Path)
    args = ap.parse_args()
    CACHE.mkdir(exist_ok=True)
    gates = {"on": ["auto"], "off": ["off"], "both": ["off", "auto"]}[args.gate]
    matrices = args.matrix.split(",")
    shifts: list[float] = []
    onsets: list[float] = []
    cells: dict = {}
    tables = {m: Table(t) for m, t in (("kinds", "scene kinds"), ("light", "light changes"),
                                       ("cold", "cold start"), ("videos", "videos"))}  # fmt: skip
    for gate in gates:
        if "kinds" in matrices:
            kinds(args, gate, tables["kinds"], shifts)
        if "light" in matrices:
            light(args, gate, tables["light"], cells)
        if "cold" in matrices:
            cold(args, gate, tables["cold"], onsets)
        for video in args.videos:
            truth = [
                tuple(x) for x in json.loads(video.with_suffix(video.suffix + ".json").read_text())
            ]
            full = run(video, "off") if gate == "auto" else []
            clips = run(video, gate)
            shifts += onset_shift(full, clips)
            c, f = score(truth, clips)
            tables["videos"].add(gate, video.name, c, len(truth), f)
    for t in tables.values():
        if t.rows:
            t.show()
    summary(tables, cells, onsets, shifts)
    return 0


def summary(tables: dict, cells: dict, onsets: list[float], shifts: list[float]) -> None:
    print()
    rows = [r for t in tables.values() for r in t.rows]
    if rows:
        c, t, f, s, k = (sum(r[i] for r in rows) for i in range(2, 7))
        print(
            f"everything: caught {c}/{t}, false clips {f}, keyframes showing the object "
            f"{s}/{k} ({100 * s / max(k, 1):.1f} %)"
        )
        per_group = defaultdict(lambda: [0, 0])
        for r in rows:
            if r[6]:
                per_group[r[1]][0] += r[5]
                per_group[r[1]][1] += r[6]
        shares = sorted((a / b, g) for g, (a, b) in per_group.items())
        if shares:
            median = 100 * statistics.median(x for x, _ in shares)
            print(
                f"keyframes shown per scene group: median {median:.0f} %, "
                f"worst {100 * shares[0][0]:.0f} % ({shares[0][1]})"
            )
    if cells:
        false = [v[2] for v in cells.values()]
        recall = [v[0] / v[1] for v in cells.values() if v[1]]
        print(
            f"light cells: {len(cells)}, false clips per cell median {statistics.median(false)}, "
            f"worst {max(false)}; recall per cell with a person median "
            f"{100 * statistics.median(recall):.0f} %, worst {100 * min(recall):.0f} %"
        )
    if onsets:
        print(
            f"moving at start: events begin {statistics.median(onsets):.2f} s after the start "
            f"(median), {max(onsets):.2f} s (worst)"
        )
    if shifts:
        print(
            f"gate on vs off: {len(shifts)} events, onset shift (s, + = later) "
            f"median {statistics.median(shifts):+.3f}, min {min(shifts):+.3f}, "
            f"max {max(shifts):+.3f}"
        )


if __name__ == "__main__":
    sys.exit(main())
