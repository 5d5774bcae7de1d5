"""`ipc-agent`: thin commands over library functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from agent import __version__, logs
from agent.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load

log = logging.getLogger("agent")


def _config(path: str | None, required: bool) -> Config:
    if path is None and not required and not DEFAULT_CONFIG_PATH.exists():
        return Config()
    return load(path or DEFAULT_CONFIG_PATH)


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.replay import ReplayError, replay

    config = _config(args.config, required=False)
    out = Path(args.out) if args.out else Path.cwd() / time.strftime("replay-%Y%m%d-%H%M%S")

    def show(clip: dict) -> None:
        if args.json:
            print(json.dumps(clip), flush=True)
        else:
            print(
                f"{clip['start']:8.2f}-{clip['end']:8.2f} s  motion {clip['event_start']:.2f}-"
                f"{clip['event_end']:.2f} s  {len(clip['keyframes'])} keyframes  {clip['clip']}",
                flush=True,
            )

    try:
        clips = replay(Path(args.video), out, config, args.camera, on_clip=show)
    except ReplayError as exc:
        print(f"ipc-agent replay: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"{len(clips)} clip(s) in {out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.service.supervisor import run

    config = _config(args.config, required=True)
    logs.setup(config.agent.log_level)
    return run(config, once=args.once, config_path=Path(args.config or DEFAULT_CONFIG_PATH))


def cmd_queue(args: argparse.Namespace) -> int:
    from agent.spool import Spool

    config = _config(args.config, required=True)
    data_dir = config.agent.data_dir
    if not (data_dir / "spool.db").exists():
        print(f"ipc-agent queue: no spool at {data_dir / 'spool.db'} yet", file=sys.stderr)
        return 1
    spool = Spool(data_dir)
    if args.action == "retry":
        if not args.ids and not args.failed:
            print("ipc-agent queue retry: name clip ids, or --failed for all", file=sys.stderr)
            return 2
        count = spool.requeue(None if args.failed else args.ids)
        print(f"{count} failed clip(s) queued again")
        return 0
    rows = list(spool.rows(state=args.state, camera=args.camera))
    if args.json:
        for row in rows:
            row["keyframes"] = json.loads(row["keyframes"])
            print(json.dumps(row))
        return 0
    print(
        f"{'id':>5}  {'camera':<14}{'started (UTC)':<22}{'dur s':>6}  {'state':<10}keyframes  clip"
    )
    for r in rows:
        print(
            f"{r['id']:>5}  {r['camera']:<14}{r['started_at'][:19]:<22}{r['duration']:>6.1f}  "
            f"{r['state']:<10}{len(json.loads(r['keyframes'])):>9}  {data_dir / r['clip_path']}"
        )
    counts = ", ".join(f"{n} {state}" for state, n in spool.counts().items() if n)
    print(f"{len(rows)} clip(s) listed; spool {data_dir / 'spool.db'}: {counts or 'empty'}")
    return 0


SEARCH_HELP = """Search the configured library in natural language.

Describe the scene as a whole sentence with one or two key elements, the way you would tell
a colleague what to look for: "a person carrying a box at the back door", "a white van
parked in front of the gate at night". A pile of keywords ("person box door") matches worse.
"""


def _cloud_clients(config: Config):
    from agent.deliver.credentials import CredentialSource
    from agent.deliver.ice import IceClient

    if config.cloud is None:
        raise ConfigError(f"{config.source}: no [cloud] section (region, bucket, search_lib)")
    return IceClient(config.cloud.ice_endpoint, CredentialSource().get)


def _cloud_errors(func):
    """Cloud commands: a service or credentials error is one clear line and exit code 1."""

    def wrapper(args: argparse.Namespace) -> int:
        from agent.deliver.credentials import CredentialsError
        from agent.deliver.ice import IceError

        try:
            return func(args)
        except (IceError, CredentialsError) as exc:
            print(f"ipc-agent {args.command}: {exc}", file=sys.stderr)
            return 1

    return wrapper


@_cloud_errors
def cmd_cloud_init(args: argparse.Namespace) -> int:
    from agent.deliver.library import init_library

    config = _config(args.config, required=True)
    with _cloud_clients(config) as ice:
        for line in init_library(ice, config.cloud, args.level):
            print(line)
    return 0


@_cloud_errors
def cmd_search(args: argparse.Namespace) -> int:
    from agent.deliver.library import parse_since, search
    from agent.spool import Spool

    config = _config(args.config, required=True)
    if not 1 <= args.limit <= 50:
        print("ipc-agent search: --limit must be 1..50", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"ipc-agent search: {exc}", file=sys.stderr)
        return 2
    spool_path = config.agent.data_dir / "spool.db"
    spool = Spool(config.agent.data_dir) if spool_path.exists() else None
    with _cloud_clients(config) as ice:
        total, matches = search(
            ice,
            config.cloud,
            spool,
            args.text,
            camera=args.camera,
            since=since,
            page=args.page,
            limit=args.limit,
        )
    if args.json:
        for m in matches:
            print(json.dumps(m.as_dict()))
        return 0
    print(f"{'score':>6}  {'camera':<14}{'from (local time)':<21}{'to':<10}clip")
    for m in matches:
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.start)) if m.start else "?"
        end = time.strftime("%H:%M:%S", time.localtime(m.end)) if m.end else "?"
        score = f"{m.score:.3f}" if m.score is not None else "-"
        where = m.clip_path or m.clip_id or f"media {m.media_id} (not in the local catalog)"
        print(f"{score:>6}  {m.camera or '?':<14}{start:<21}{end:<10}{where}")
    print(
        f"{len(matches)} match(es) on page {args.page}; {total} media match in "
        f"{config.cloud.search_lib}"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.service.status import fetch, offline_model, render

    config = _config(args.config, required=True)
    model = fetch(config.agent.data_dir)
    running = model is not None
    if model is None:
        model = offline_model(config)
    print(json.dumps(model, indent=2) if args.json else render(model))
    return 0 if running else 3  # 3: the daemon is not running (for scripts and monitoring)


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(getattr(args, "file", None) or args.config, required=True)
    cloud = "cloud delivery on" if config.cloud else "no [cloud]: clips stay local"
    print(f"{config.source}: OK, {len(config.cameras)} camera(s), {cloud}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from agent.config import dump

    print(dump(_config(args.config, required=True)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ipc-agent", description="IP camera edge agent")
    p.add_argument("--version", action="version", version=f"ipc-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("replay", help="cut a recording into clips, as fast as possible")
    r.add_argument("video", help="a video file (MP4, MKV, TS, ...)")
    r.add_argument("--config", help="TOML config for [motion], [clip] and cameras")
    r.add_argument("--camera", help="use this configured camera's overrides and mask")
    r.add_argument("--out", help="folder for clips and keyframes (default: ./replay-<time>)")
    r.add_argument("--json", action="store_true", help="one JSON object per clip on stdout")
    r.set_defaults(func=cmd_replay)

    run = sub.add_parser("run", help="run every configured camera until SIGTERM")
    run.add_argument("--config", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    run.add_argument(
        "--once", action="store_true", help="exit when every file source has ended (demo, batch)"
    )
    run.set_defaults(func=cmd_run)

    st = sub.add_parser(
        "status", help="the agent at a glance (exit 3 when the daemon is not running)"
    )
    st.add_argument("--config", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    st.add_argument("--json", action="store_true", help="the status model as JSON")
    st.set_defaults(func=cmd_status)

    q = sub.add_parser("queue", help="list the clips catalogued in the spool")
    q.add_argument("--config", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    q.add_argument("--state", help="only clips in this state (pending, registered, ...)")
    q.add_argument("--camera", help="only this camera's clips")
    q.add_argument("--json", action="store_true", help="one JSON object per clip")
    q.add_argument("action", nargs="?", choices=["retry"], help="retry: re-queue failed clips")
    q.add_argument("ids", nargs="*", type=int, help="clip ids (the id column) to retry")
    q.add_argument("--failed", action="store_true", help="with retry: every failed clip")
    q.set_defaults(func=cmd_queue)

    cloud = sub.add_parser("cloud", help="set up the cloud side")
    cloud_sub = cloud.add_subparsers(dest="cloud_command", required=True)
    init = cloud_sub.add_parser("init", help="create the search library and its index (idempotent)")
    init.add_argument("--config", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    init.add_argument(
        "--level",
        default="Shared",
        help="index capacity level passed to CreateSearchIndex (Shared, S.large, ...)",
    )
    init.set_defaults(func=cmd_cloud_init)

    srch = sub.add_parser(
        "search",
        help="find clips by describing what happened",
        description=SEARCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    srch.add_argument("text", help='e.g. "a person carrying a box at the back door"')
    srch.add_argument("--config", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    srch.add_argument("--camera", help="only this camera's clips")
    srch.add_argument("--since", help="only clips since: 30m, 2h, 1d ago, or an ISO time")
    srch.add_argument("--page", type=int, default=1, help="result page (from 1)")
    srch.add_argument("--limit", type=int, default=10, help="hits per page (1-50)")
    srch.add_argument("--json", action="store_true", help="one JSON object per match")
    srch.set_defaults(func=cmd_search)

    c = sub.add_parser("check-config", help="validate a config file and exit (= config check)")
    c.add_argument("--config", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    c.set_defaults(func=cmd_check)

    cfg = sub.add_parser("config", help="show or check configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="the effective config, every value, secrets redacted")
    show.add_argument("--config", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    show.set_defaults(func=cmd_config_show)
    chk = cfg_sub.add_parser("check", help="validate a file and list every problem in it")
    chk.add_argument("file", nargs="?", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    chk.set_defaults(func=cmd_check, config=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup("warning" if args.command == "replay" and args.json else "info")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"ipc-agent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
