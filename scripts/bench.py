#!/usr/bin/env python3
"""CPU cost of the capture pipeline against plain decoding, measured in the same run.

For each input (1080p 15 fps ~4 Mbps H.264: a static scene, 15 % motion, continuous motion) it
runs, alternately and `--repeat` times each, in fresh child processes:
  - reference: PyAV decoding every frame single-threaded, nothing else;
  - replay:    `agent.replay.replay` on the same file (demux, decode, detect, cut, keyframes)
               with the default settings: the compressed-domain gate on;
  - full:      the same with `gate = "off"`: every frame decoded.
Each child reports the CPU seconds of its work (process time, all threads) and its peak RSS.
The script prints medians, CPU seconds per second of video, and the ratios replay/reference
and full/reference (each run's ratio against the reference run just before it).
This machine is shared and noisy: compare ratios, not absolute seconds.

Delivery (`--only delivery`): a backlog of `--clips` clips (1 MB video + 4 small JPEGs each)
drained by the uploader (`--concurrency` workers) to the local OSS and ICE test servers
(tests/fake_oss.py: moto behind an OSS adapter; tests/fake_ice.py), on loopback. Prints clips
per second until every clip is registered, and the uploader's CPU seconds per clip (this
process only; the servers run in their own processes). Needs the test extras (moto).

Usage: .venv/bin/python scripts/bench.py [--only capture|delivery] [--repeat 5] [--duration 60]
       [--clips 1000] [--concurrency 4] [--json]
Stdlib and the agent package only (plus the test servers for delivery).
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
from agent.config import Config, MotionSettings
from agent.replay import replay
config = Config(motion=MotionSettings(gate=sys.argv[2]))
with tempfile.TemporaryDirectory() as out:
    t0 = time.process_time()
    clips = replay(Path(sys.argv[1]), Path(out), config)
    cpu = time.process_time() - t0
print(json.dumps({"cpu": cpu, "clips": len(clips), "rss_mb": peak_rss_mb()}))
"""
)


def child(code: str, video: Path, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, str(video), *args], check=True, capture_output=True, text=True
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


def bench_delivery(clips: int, concurrency: int) -> dict:
    import random
    import threading
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fake_ice import FakeIce  # noqa: E402 - the test servers live in tests/
    from fake_oss import FakeOss

    from agent.config import CloudSettings, UploadSettings
    from agent.deliver.acs import Credentials
    from agent.deliver.credentials import StaticCredentialSource
    from agent.deliver.ice import IceClient
    from agent.deliver.library import init_library
    from agent.deliver.oss import OssUploader
    from agent.deliver.uploader import Uploader
    from agent.spool import ClipRecord, Spool

    ak, sk, region, bucket = "LTAI5tBenchKey", "bench-secret", "cn-hangzhou", "bench-bucket"
    source = StaticCredentialSource(Credentials(ak, sk))
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOss(access_key_id=ak, access_key_secret=sk, region=region) as oss,
    ):
        ice = FakeIce(access_key_id=ak, access_key_secret=sk)
        ice.start()
        try:
            data = Path(tmp)
            oss.create_bucket(bucket)
            cloud = CloudSettings(
                region=region,
                bucket=bucket,
                prefix="ipc/",
                oss_endpoint=oss.endpoint,
                ice_endpoint=ice.url,
                search_lib="IPCamera_bench",
                namespace="bench",
            )
            with IceClient(ice.url, source.get) as client:
                init_library(client, cloud, "Shared")
            spool = Spool(data)
            rng = random.Random(0)
            video, jpeg = rng.randbytes(2**20), rng.randbytes(30_000)
            day = data / "clips" / "cam" / "2026-11-24"
            day.mkdir(parents=True)
            print(f"writing {clips} clips ...", file=sys.stderr)
            for i in range(clips):
                cid = f"cam_{i:06d}"
                (day / f"{cid}.mp4").write_bytes(video)
                kfs = []
                for k in range(4):
                    (day / f"{cid}_{k}.jpg").write_bytes(jpeg)
                    kfs.append((day / f"{cid}_{k}.jpg", float(k)))
                spool.add(
                    ClipRecord(
                        clip_id=cid,
                        camera="cam",
                        start_wall=1_795_000_000.0 + i,
                        media_start=0.0,
                        media_end=10.0,
                        event_start=3.0,
                        event_end=5.0,
                        clip_path=day / f"{cid}.mp4",
                        clip_bytes=len(video),
                        keyframes=tuple(kfs),
                        keyframe_bytes=4 * len(jpeg),
                        codec="h264",
                        width=1920,
                        height=1080,
                        frames=150,
                        peak_score=0.1,
                        mean_score=0.05,
                    )
                )
            up = Uploader(
                data,
                "bench",
                cloud,
                UploadSettings(concurrency=concurrency, keep_local_hours=100),
                make_oss=lambda: OssUploader(
                    endpoint=oss.endpoint,
                    region=region,
                    bucket=bucket,
                    credentials=source,
                    checkpoint_dir=data / "oss-checkpoints",
                ),
                make_ice=lambda: IceClient(ice.url, source.get),
                index_checks=(3600.0,),  # index polls are not what is measured
            )
            stop = threading.Event()
            runner = threading.Thread(target=up.run, args=(stop,))
            print("draining ...", file=sys.stderr)
            wall0, cpu0 = time.monotonic(), time.process_time()
            runner.start()
            while spool.counts()["registered"] < clips:
                failed = spool.counts()["failed"]
                if failed:
                    raise SystemExit(f"{failed} clips failed: {next(spool.rows('failed'))}")
                time.sleep(0.1)  # polling the result; the work happens in the uploader threads
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
            stop.set()
            runner.join()
        finally:
            ice.close()
    return {
        "clips": clips,
        "concurrency": concurrency,
        "seconds": wall,
        "clips_per_s": clips / wall,
        "cpu_s_per_clip": cpu / clips,
        "mb_per_s": clips * (2**20 + 4 * 30_000) / wall / 1e6,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each measurement (median)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of video per input")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--only", choices=["capture", "delivery"], help="run one benchmark only")
    ap.add_argument("--clips", type=int, default=1000, help="delivery: clips in the backlog")
    ap.add_argument("--concurrency", type=int, default=4, help="delivery: upload workers")
    args = ap.parse_args()

    if args.only != "capture":
        d = bench_delivery(args.clips, args.concurrency)
        if args.json:
            print(json.dumps(d, indent=2))
        else:
            print(
                f"\ndelivery: {d['clips']} clips (1 MB + 4 x 30 kB) to local OSS + ICE, "
                f"{d['concurrency']} workers"
            )
            print(
                f"  {d['clips_per_s']:.1f} clips/s ({d['mb_per_s']:.0f} MB/s), "
                f"{d['cpu_s_per_clip'] * 1000:.1f} ms CPU per clip (uploader process), "
                f"{d['seconds']:.1f} s in all"
            )
        if args.only == "delivery":
            return 0

    CACHE.mkdir(exist_ok=True)
    print(f"generating inputs in {CACHE} (cached) ...", file=sys.stderr)
    results = []
    for name, video in inputs(args.duration):
        ref, rep, full = [], [], []
        for i in range(args.repeat):
            print(f"  {name}: run {i + 1}/{args.repeat}", file=sys.stderr)
            ref.append(child(CHILD_REFERENCE, video))
            rep.append(child(CHILD_REPLAY, video, "auto"))
            full.append(child(CHILD_REPLAY, video, "off"))
        ref_cpu = statistics.median(r["cpu"] for r in ref)
        rep_cpu = statistics.median(r["cpu"] for r in rep)
        ratios = [b["cpu"] / a["cpu"] for a, b in zip(ref, rep, strict=True)]
        full_ratios = [b["cpu"] / a["cpu"] for a, b in zip(ref, full, strict=True)]
        results.append(
            {
                "input": name,
                "video_s": args.duration,
                "reference_cpu_per_s": ref_cpu / args.duration,
                "replay_cpu_per_s": rep_cpu / args.duration,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "full_cpu_per_s": statistics.median(r["cpu"] for r in full) / args.duration,
                "full_ratio_median": statistics.median(full_ratios),
                "clips": rep[0]["clips"],
                "full_clips": full[0]["clips"],
                "replay_peak_rss_mb": max(r["rss_mb"] for r in rep),
                "reference_peak_rss_mb": max(r["rss_mb"] for r in ref),
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\n1080p15 H.264 ~4 Mbps, {args.duration:g} s per input, median of {args.repeat} runs")
    print(
        f"{'input':<14}{'decode':>8}{'replay':>8}{'ratio':>7}{'(min-max)':>12}"
        f"{'full':>7}{'ratio':>7}{'clips':>7}{'RSS MB':>8}{'(decode)':>9}"
    )
    for r in results:
        print(
            f"{r['input']:<14}{r['reference_cpu_per_s']:>8.3f}{r['replay_cpu_per_s']:>8.3f}"
            f"{r['ratio_median']:>6.2f}x{r['ratio_min']:>6.2f}-{r['ratio_max']:<5.2f}"
            f"{r['full_cpu_per_s']:>7.3f}{r['full_ratio_median']:>6.2f}x"
            f"{r['clips']:>4}/{r['full_clips']:<2}{r['replay_peak_rss_mb']:>8.0f}"
            f"{r['reference_peak_rss_mb']:>9.0f}"
        )
    print("decode/replay/full: CPU seconds per second of video; ratio: against plain decoding;")
    print("replay: gate on (default), full: gate off; clips: gate on/off;")
    print("RSS: peak resident memory of the replay process (and of the decode-only one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
