#!/usr/bin/env python3
"""Event-level detection quality of `replay` on generated scenes with known motion.

For each scene kind and each seed (different layout, people, paths, lighting and noise) it
generates a recording, replays it with default settings and scores the clips' events against
the truth: an interval counts as caught when some clip's event overlaps it (within SLACK s);
a clip whose event overlaps no motion is a false clip. Prints recall and false clips per kind.

Usage: .venv/bin/python scripts/quality.py [--seeds 5] [--kinds walk,dusk,...] [VIDEO.mp4 ...]
A VIDEO argument is scored too when VIDEO.json beside it holds its motion intervals
([[start, end], ...]). Stdlib and the agent package only.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--kinds", default=",".join(k for k in KINDS if k != "busy"))
    ap.add_argument("videos", nargs="*", type=Path)
    args = ap.parse_args()
    CACHE.mkdir(exist_ok=True)
    rows = []
    for kind in args.kinds.split(","):
        caught = total = false = still_clips = 0
        for seed in range(args.seeds):
            scene = make_scene(kind, CACHE, seed=seed)
            config = None
            camera = None
            if scene.mask:
                mask = [[list(p) for p in poly] for poly in scene.mask]
                config = parse({"cameras": [{"name": "cam", "url": str(scene.path), "mask": mask}]})
                camera = "cam"
            with tempfile.TemporaryDirectory() as out:
                clips = replay(scene.path, Path(out), config, camera)
            c, f = score(list(scene.motion), clips)
            caught, total, false = caught + c, total + len(scene.motion), false + f
            if not scene.motion:
                still_clips += len(clips)
            if c < len(scene.motion) or f:
                print(
                    f"  {kind} seed {seed}: caught {c}/{len(scene.motion)}, false {f}; "
                    f"truth {scene.motion}; events "
                    f"{[(c['event_start'], c['event_end']) for c in clips]}",
                    file=sys.stderr,
                )
        rows.append((kind, caught, total, false, still_clips))
    for video in args.videos:
        truth = [
            tuple(x) for x in json.loads(video.with_suffix(video.suffix + ".json").read_text())
        ]
        with tempfile.TemporaryDirectory() as out:
            c, f = score(truth, replay(video, Path(out)))
        rows.append((video.name, c, len(truth), f, 0))
    print(f"{'scene':<22}{'caught':>10}{'recall':>9}{'false clips':>13}")
    for kind, c, t, f, _ in rows:
        recall = f"{100 * c / t:.0f} %" if t else "-"
        print(f"{kind:<22}{f'{c}/{t}':>10}{recall:>9}{f:>13}")
    c_all, t_all, f_all = (sum(r[i] for r in rows) for i in (1, 2, 3))
    print(f"{'all':<22}{f'{c_all}/{t_all}':>10}{100 * c_all / max(t_all, 1):>7.1f} %{f_all:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
