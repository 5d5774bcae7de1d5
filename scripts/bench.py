#!/usr/bin/env python3
"""CPU cost of the capture pipeline against plain decoding, measured in the same run.

For each input (1080p 15 fps ~4 Mbps H.264: a static scene, 15 % motion, continuous motion) it
runs, alternately and `--repeat` times each, in fresh child processes:
  - reference: PyAV decoding every frame single-threaded, nothing else;
  - replay:    `agent.replay.replay` on the same file (demux, decode, detect, cut, keyframes).
Each child reports the CPU seconds of its work (process time, all threads) and its peak RSS.
The script prints medians, CPU seconds per second of video, and the ratio replay/reference.
This machine is shared and noisy: compare ratios, not absolute seconds.

Usage: .venv/bin/python scripts/bench.py [--repeat 5] [--duration 60] [--json]
Stdlib and the agent package only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "ipc-agent-bench"

# Peak RSS from VmHWM: getrusage's ru_maxrss survives fork+exec on Linux, so a child would
# report the parent's high-water mark (the parent just generated 1080p video).
PEAK_RSS = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

CHILD_REFERENCE = (
    PEAK_RSS
    + """
import json, sys, time, av
t0 = time.process_time()
with av.open(sys.argv[1]) as c:
    s = c.streams.video[0]
    s.codec_context.thread_count = 1
    n = sum(1 for _ in c.decode(s))
cpu = time.process_time() - t0
print(json.dumps({"cpu": cpu, "frames": n, "rss_mb": peak_rss_mb()}))
"""
)

CHILD_REPLAY = (
    PEAK_RSS
    + """
import json, sys, tempfile, time
from pathlib import Path
from agent.replay import replay
with tempfile.TemporaryDirectory() as out:
    t0 = time.process_time()
    clips = replay(Path(sys.argv[1]), Path(out))
    cpu = time.process_time() - t0
print(json.dumps({"cpu": cpu, "clips": len(clips), "rss_mb": peak_rss_mb()}))
"""
)


def child(code: str, video: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, str(video)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def inputs(duration: float) -> list[tuple[str, Path]]:
    from agent.synth import make_scene

    common = dict(width=1920, height=1080, fps=15, bitrate=4_000_000, duration=duration)
    return [
        ("static", make_scene("busy", CACHE, motion_fraction=0.0, **common).path),
        ("motion 15 %", make_scene("busy", CACHE, motion_fraction=0.15, **common).path),
        ("motion 100 %", make_scene("busy", CACHE, motion_fraction=1.0, **common).path),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each measurement (median)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of video per input")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    CACHE.mkdir(exist_ok=True)
    print(f"generating inputs in {CACHE} (cached) ...", file=sys.stderr)
    results = []
    for name, video in inputs(args.duration):
        ref, rep = [], []
        for i in range(args.repeat):
            print(f"  {name}: run {i + 1}/{args.repeat}", file=sys.stderr)
            ref.append(child(CHILD_REFERENCE, video))
            rep.append(child(CHILD_REPLAY, video))
        ref_cpu = statistics.median(r["cpu"] for r in ref)
        rep_cpu = statistics.median(r["cpu"] for r in rep)
        ratios = [b["cpu"] / a["cpu"] for a, b in zip(ref, rep, strict=True)]
        results.append(
            {
                "input": name,
                "video_s": args.duration,
                "reference_cpu_per_s": ref_cpu / args.duration,
                "replay_cpu_per_s": rep_cpu / args.duration,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "clips": rep[0]["clips"],
                "replay_peak_rss_mb": max(r["rss_mb"] for r in rep),
                "reference_peak_rss_mb": max(r["rss_mb"] for r in ref),
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\n1080p15 H.264 ~4 Mbps, {args.duration:g} s per input, median of {args.repeat} runs")
    print(
        f"{'input':<14}{'decode':>10}{'replay':>10}{'ratio':>8}{'(min-max)':>14}"
        f"{'clips':>7}{'RSS MB':>9}"
    )
    for r in results:
        print(
            f"{r['input']:<14}{r['reference_cpu_per_s']:>10.3f}{r['replay_cpu_per_s']:>10.3f}"
            f"{r['ratio_median']:>7.2f}x{r['ratio_min']:>7.2f}-{r['ratio_max']:<5.2f}"
            f"{r['clips']:>7}{r['replay_peak_rss_mb']:>9.0f}{r['reference_peak_rss_mb']:>10.0f}"
        )
    print("decode/replay: CPU seconds per second of video; ratio: replay / plain decoding;")
    print("RSS: peak resident memory of the replay process (and of the decode-only one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
