#!/usr/bin/env python3
"""Event-level detection quality of `replay` on generated scenes with known motion.

For each scene kind and each seed (different layout, people, paths, lighting and noise) it
generates a recording, replays it with default settings and scores the clips' events against
the truth: an interval counts as caught when some clip's event overlaps it (within SLACK s);
a clip whose event overlaps no motion is a false clip. Prints recall and false clips per kind,
with the compressed-domain gate off (every frame decoded) and on (`--gate both`, the default),
and how much later (or earlier) the gate's events start than the same events decoded in full.

Usage: .venv/bin/python scripts/quality.py [--seeds 5] [--kinds walk,dusk,...]
       [--gate on|off|both] [--gop FRAMES] [VIDEO.mp4 ...]
A VIDEO argument is scored too when VIDEO.json beside it holds its motion intervals
([[start, end], ...]). Stdlib and the agent package only.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
from pathlib import Path

from agent.config import parse
from agent.replay import replay
from agent.synth import KINDS, make_scene

SLACK = 1.5
CACHE = Path(tempfile.gettempdir()) / "ipc-agent-quality"


def score(truth: list[tuple[float, float]], clips: list[dict]) -> tuple[int, int]:
    """(intervals caught, false clips)."""
    events = [(c["event_start"], c["event_end"]) for c in clips]

    def near(a, b):
        return a[0] < b[1] + SLACK and b[0] < a[1] + SLACK

    caught = sum(any(near(t, e) for e in events) for t in truth)
    false = sum(not any(near(t, e) for t in truth) for e in events)
    return caught, false


@functools.cache
def run(video: Path, gate: str, mask=()) -> list[dict]:
    """Replay with default settings but the gate; a masked scene as a camera with its mask."""
    cam = {"name": "cam", "url": str(video)}
    if mask:
        cam["mask"] = [[list(p) for p in poly] for poly in mask]
    config = parse({"motion": {"gate": gate}, "cameras": [cam]})
    with tempfile.TemporaryDirectory() as out:
        return replay(video, Path(out), config, "cam")


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
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--kinds", default=",".join(k for k in KINDS if k != "busy"))
    ap.add_argument("--gate", choices=["on", "off", "both"], default="both")
    ap.add_argument("--gop", type=int, help="keyframe interval in frames (default: 2 s)")
    ap.add_argument("videos", nargs="*", type=Path)
    args = ap.parse_args()
    CACHE.mkdir(exist_ok=True)
    gates = {"on": ["auto"], "off": ["off"], "both": ["off", "auto"]}[args.gate]
    shifts: list[float] = []
    rows = []
    for gate in gates:
        rows += kinds(args, gate, shifts)
        for video in args.videos:
            truth = [
                tuple(x) for x in json.loads(video.with_suffix(video.suffix + ".json").read_text())
            ]
            full = run(video, "off") if gate == "auto" else []
            clips = run(video, gate)
            shifts += onset_shift(full, clips)
            c, f = score(truth, clips)
            rows.append((gate, video.name, c, len(truth), f, 0))
    print(f"{'gate':<6}{'scene':<22}{'caught':>10}{'recall':>9}{'false clips':>13}")
    for gate in gates:
        mine = [r for r in rows if r[0] == gate]
        for _, kind, c, t, f, _ in mine:
            recall = f"{100 * c / t:.0f} %" if t else "-"
            print(f"{gate:<6}{kind:<22}{f'{c}/{t}':>10}{recall:>9}{f:>13}")
        c_all, t_all, f_all = (sum(r[i] for r in mine) for i in (2, 3, 4))
        print(
            f"{gate:<6}{'all':<22}{f'{c_all}/{t_all}':>10}"
            f"{100 * c_all / max(t_all, 1):>7.1f} %{f_all:>13}"
        )
    if shifts:
        print(
            f"gate on vs off: {len(shifts)} events, onset shift (s, + = later) "
            f"median {statistics.median(shifts):+.3f}, min {min(shifts):+.3f}, "
            f"max {max(shifts):+.3f}"
        )
    return 0


def kinds(args, gate: str, shifts: list[float]) -> list[tuple]:
    rows = []
    for kind in args.kinds.split(","):
        caught = total = false = still_clips = 0
        for seed in range(args.seeds):
            scene = make_scene(kind, CACHE, seed=seed, gop=args.gop)
            clips = run(scene.path, gate, scene.mask)
            if gate == "auto":
                shifts += onset_shift(run(scene.path, "off", scene.mask), clips)
            c, f = score(list(scene.motion), clips)
            caught, total, false = caught + c, total + len(scene.motion), false + f
            if not scene.motion:
                still_clips += len(clips)
            if c < len(scene.motion) or f:
                print(
                    f"  gate {gate}: {kind} seed {seed}: caught {c}/{len(scene.motion)}, "
                    f"false {f}; "
                    f"truth {scene.motion}; events "
                    f"{[(c['event_start'], c['event_end']) for c in clips]}",
                    file=sys.stderr,
                )
        rows.append((gate, kind, caught, total, false, still_clips))
    return rows


if __name__ == "__main__":
    sys.exit(main())
