"""`ipc-agent tune CAMERA|VIDEO --out DIR`: a picture of the scene with the mask and a labelled
grid, and a heat-map of where motion was seen (agent/pictures.py draws them). Kept light: the
CLI imports it to build its parser on every command; the pictures' imports load only to run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.config import CameraConfig, Config, ConfigError


def _camera(source: str, config: Config) -> tuple[str, CameraConfig]:
    """A configured camera's URL and settings, or a recording with the default settings."""
    names = {c.name for c in config.cameras}
    if source in names:
        cam = config.camera(source)
        return cam.url, cam
    if not Path(source).is_file():
        known = ", ".join(sorted(names)) or "none configured"
        raise ValueError(f"{source}: neither a video file nor a configured camera ({known})")
    cam = CameraConfig(name="tune", url=source, motion=config.motion, clip=config.clip)
    return source, cam


def cmd_tune(args: argparse.Namespace) -> int:
    import av

    from agent.config_source import load_effective
    from agent.pictures import tune

    config = load_effective(args.config, required=False)
    try:
        url, cam = _camera(args.source, config)
        if args.camera:  # a recording tuned with a configured camera's settings and mask
            cam = config.camera(args.camera)
        live = url.startswith(("rtsp://", "rtsps://"))
        seconds = args.seconds if args.seconds is not None else (60.0 if live else None)
        result = tune(url, Path(args.out), cam, seconds)
    except (ConfigError, ValueError, av.FFmpegError, OSError) as exc:
        print(f"ipc-agent tune: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['analysed']} frames analysed, motion in {result['with_motion']}; "
            f"{result['frame']} (mask and grid), {result['heatmap']} (where motion was seen)"
        )
    return 0
