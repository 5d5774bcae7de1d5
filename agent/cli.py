"""`ipc-agent`: thin commands over library functions."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from agent import __version__, layout, logs
from agent.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load, read_toml, redact
from agent.service.lock import DataDirBusy

log = logging.getLogger("agent")


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.config_source import load_effective
    from agent.replay import ReplayError, replay

    config = load_effective(args.config, required=False)
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

    if out.exists() and not out.is_dir():
        print(f"ipc-agent replay: --out {out} exists and is not a folder", file=sys.stderr)
        return 2
    created = next((p for p in (out, *out.parents) if p.parent.exists()), out)
    created = None if created.exists() else created  # the folder we make, if any
    try:
        clips = replay(Path(args.video), out, config, args.camera, on_clip=show)
    except BaseException as exc:
        # Leave nothing behind for a failed replay: no empty --out (or parent) folder.
        for folder in (out, *out.parents) if created is not None else ():
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            if folder == created:
                break
        if isinstance(exc, ReplayError):
            print(f"ipc-agent replay: {exc}", file=sys.stderr)
            return 1
        raise
    if getattr(args, "debug", False):
        from agent.pictures import debug_video
        from agent.replay import replay_camera

        cam = replay_camera(Path(args.video), config, args.camera)
        path = debug_video(Path(args.video), out, cam, clips)
        if not args.json:
            print(f"annotated video: {path}")
    if not args.json:
        print(f"{len(clips)} clip(s) in {out}")
    return 0


def _nothing_to_do(config: Config) -> str | None:
    """Why `run` would have nothing to do with this config (config check says the same)."""
    if config.cameras or config.cloud is not None:
        return None
    return (
        f"{config.source}: no [[cameras]] and no [cloud] configured; nothing to do: add a "
        "[[cameras]] table with name and url (see systemd/agent.example.toml)"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from agent.config_source import ConfigSource
    from agent.service.supervisor import run

    path = Path(args.config or DEFAULT_CONFIG_PATH)
    if args.log_format:  # the environment carries it to the camera and uploader processes
        os.environ[logs.LOG_FORMAT_ENV] = args.log_format
    source = ConfigSource(path)
    logs.setup(source.config.agent.log_level)
    mode = path.stat().st_mode & 0o777
    if mode & 0o004:  # camera URLs carry passwords: root:ipc-agent 0640, as install.sh sets
        log.warning(
            "%s is readable by every user (mode %03o) and may hold camera passwords; "
            "chmod 640 it (owner root, group ipc-agent)",
            path,
            mode,
        )
    from agent.service.lock import hold

    if (why := _nothing_to_do(source.config)) is not None:
        log.error("%s", why)
        return 2
    with hold(source.config.agent.data_dir):  # one agent per data dir; else DataDirBusy
        return run(source, once=args.once)


def _retry(args: argparse.Namespace, spool) -> int:
    """`queue retry`: failed clips back to the step they failed at; per id, why not."""
    from agent.spool import State

    if bool(args.ids) == bool(args.failed):
        print(
            "ipc-agent queue retry: name clip ids, or --failed for all (not both)", file=sys.stderr
        )
        return 2
    if args.failed:
        count = spool.requeue(None)
        print(f"{count} failed clip(s) queued again" if count else "no failed clips to retry")
        return 0
    refused = 0
    for clip_id in dict.fromkeys(args.ids):
        row = spool.row(clip_id)
        if row is None:
            why = f"no such clip in {spool.path} (see: ipc-agent queue)"
        elif row.state != State.FAILED:
            why = f"it is {row.state}, not failed; only failed clips are queued again"
        elif spool.requeue([clip_id]) == 1:
            print(f"clip {clip_id}: queued again (it had failed: {row.reason or 'no reason'})")
            continue
        else:  # its state changed under us (the uploader)
            why = "it is no longer failed"
        print(f"ipc-agent queue retry: clip {clip_id}: {why}", file=sys.stderr)
        refused += 1
    return 1 if refused else 0


def cmd_queue(args: argparse.Namespace) -> int:
    from agent.config_source import load_effective
    from agent.spool import STATES, Spool

    if args.action != "retry" and (args.ids or args.failed):
        print(
            "ipc-agent queue: clip ids and --failed go with retry: queue retry ID ...",
            file=sys.stderr,
        )
        return 2
    if args.state is not None and args.state not in STATES:
        print(
            f"ipc-agent queue: --state {args.state!r}: expected one of {', '.join(STATES)}",
            file=sys.stderr,
        )
        return 2
    config = load_effective(args.config)
    data_dir = config.agent.data_dir
    db = layout.spool_db(data_dir)
    if not db.exists():
        print(
            f"ipc-agent queue: no spool at {db} yet (nothing recorded there)",
            file=sys.stderr,
        )
        return 1
    if args.action == "retry":
        return _retry(args, Spool(data_dir))
    spool = Spool(data_dir)
    rows = list(spool.rows(state=args.state, camera=args.camera))
    if args.json:
        for row in rows:  # the spool's JSON columns as JSON, not as strings of it
            print(json.dumps(row.as_json()))
        return 0
    print(
        f"{'id':>5}  {'camera':<14}{'started (UTC)':<22}{'dur s':>6}  {'state':<10}keyframes  clip"
    )
    for r in rows:
        print(
            f"{r.id:>5}  {r.camera:<14}{r.started_at[:19]:<22}{r.duration:>6.1f}  "
            f"{r.state:<10}{len(r.keyframes):>9}  {data_dir / r.clip_path}"
        )
    counts = ", ".join(f"{n} {state}" for state, n in spool.counts().items() if n)
    print(f"{len(rows)} clip(s) listed; spool {spool.path}: {counts or 'empty'}")
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
    credentials = CredentialSource()
    credentials.get()  # no credentials: CredentialsError says where it looked, before a request
    return IceClient(config.cloud.ice_endpoint, credentials.get)


def _cloud_errors(func):
    """Cloud commands: a service or credentials error is one clear line and exit code 1."""

    def wrapper(args: argparse.Namespace) -> int:
        from agent.deliver.credentials import CredentialsError
        from agent.deliver.ice import IceError

        try:
            return func(args)
        except (IceError, CredentialsError) as exc:
            print(f"ipc-agent {_command(args)}: {exc}", file=sys.stderr)
            return 1

    return wrapper


@_cloud_errors
def cmd_cloud_init(args: argparse.Namespace) -> int:
    from agent.config_source import load_effective
    from agent.deliver.library import init_library

    config = load_effective(args.config)
    with _cloud_clients(config) as ice:
        for line in init_library(ice, config.cloud, args.level):
            print(line)
    return 0


@_cloud_errors
def cmd_search(args: argparse.Namespace) -> int:
    from agent.config_source import load_effective
    from agent.deliver.library import parse_since, search
    from agent.spool import Spool

    config = load_effective(args.config)
    if not 1 <= args.limit <= 50:
        print(f"ipc-agent search: --limit {args.limit}: expected 1 to 50", file=sys.stderr)
        return 2
    if args.page < 1:
        print(f"ipc-agent search: --page {args.page}: expected 1 or more", file=sys.stderr)
        return 2
    if not args.text.strip():
        print(
            'ipc-agent search: describe what to find, e.g. "a person at the door"', file=sys.stderr
        )
        return 2
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"ipc-agent search: {exc}", file=sys.stderr)
        return 2
    spool_path = layout.spool_db(config.agent.data_dir)
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
        if m.start is not None:  # a clip this gateway catalogued: its wall-clock times
            start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.start))
            end = time.strftime("%H:%M:%S", time.localtime(m.end)) if m.end else "?"
        else:  # not in the local catalog: the span's offsets in the clip, as the hit gives them
            start = f"+{m.offset_start:g} s" if m.offset_start is not None else "?"
            end = f"+{m.offset_end:g} s" if m.offset_end is not None else "?"
        score = f"{m.score:.3f}" if m.score is not None else "-"
        where = m.clip_path or m.clip_id or f"media {m.media_id} (not in the local catalog)"
        print(f"{score:>6}  {m.camera or '?':<14}{start:<21}{end:<10}{where}")
    media = len({m.media_id for m in matches})
    first = (args.page - 1) * args.limit + 1
    lib = config.cloud.search_lib
    if media:
        print(
            f"media {first}-{first + media - 1} of {total} matching in {lib} "
            f"(page {args.page}; {len(matches)} span(s))"
        )
    else:
        print(f"no media on page {args.page}; {total} matching in {lib}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.config_source import load_effective
    from agent.service.lock import holder
    from agent.service.model import offline_model
    from agent.service.status import fetch, prometheus, render

    config = load_effective(args.config)
    model = fetch(config.agent.data_dir)
    running = model is not None
    if model is None:
        model = offline_model(config).as_dict()
        pid = holder(config.agent.data_dir)
        if pid is not None:  # alive and holding the data dir, but not answering
            print(
                f"ipc-agent status: an agent (pid {pid}) holds {config.agent.data_dir} but did "
                "not answer on its status.sock: it is starting, stopping or stuck; if it stays "
                "so, see journalctl -u ipc-agent, then systemctl restart ipc-agent",
                file=sys.stderr,
            )
    if args.prometheus:
        print(prometheus(model), end="")
    else:
        print(json.dumps(model, indent=2) if args.json else render(model))
    return 0 if running else 3  # 3: the daemon is not running (for scripts and monitoring)


def cmd_check(args: argparse.Namespace) -> int:
    from agent import fleetdoc

    file, config_opt = getattr(args, "file", None), args.config
    if file and config_opt and Path(file) != Path(config_opt):
        print(
            f"ipc-agent config check: two files given ({file}, --config {config_opt}); "
            "check one at a time",
            file=sys.stderr,
        )
        return 2
    path = Path(file or config_opt or DEFAULT_CONFIG_PATH)
    raw = read_toml(path)
    if "version" in raw or "target" in raw:  # a fleet document, not a config file
        local = read_toml(args.local) if getattr(args, "local", None) else None
        data = path.read_bytes()
        if "target" not in raw:  # `fleet publish` adds it, as here, for the check
            data = b'target = "group:unpublished"\n' + data
        try:
            doc = fleetdoc.check(data, str(path), local)
        except fleetdoc.FleetDocError as exc:
            print(f"ipc-agent: {path}: fleet document refused: {exc}", file=sys.stderr)
            return 2
        sections = ", ".join(doc.body) or "nothing"
        label = (
            doc.label
            if "target" in raw
            else f"version {doc.version} (fleet publish adds the target)"
        )
        print(f"{path}: OK, fleet document {label} carrying {sections}")
        return 0
    config = load(path)
    if (why := _nothing_to_do(config)) is not None:
        print(f"ipc-agent: {why}", file=sys.stderr)
        return 2
    cloud = "cloud delivery on" if config.cloud else "no [cloud]: clips stay local"
    print(f"{config.source}: OK, {len(config.cameras)} camera(s), {cloud}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from agent.config import dump
    from agent.config_source import load_effective

    print(dump(load_effective(args.config)), end="")
    return 0


def cmd_fleet_keygen(args: argparse.Namespace) -> int:
    from agent.fleet_operator import FleetKeyError, keygen

    try:
        private, public, line = keygen(Path(args.out))
    except (FleetKeyError, OSError) as exc:
        print(f"ipc-agent fleet keygen: {exc}", file=sys.stderr)
        return 1
    print(f"private key: {private} (mode 0600; keep it off the gateways)")
    print(f"public key:  {public}; put it in every gateway's [fleet] public_keys:")
    print(f'  public_keys = ["{line}"]')
    return 0


def _fleet_errors(func):
    """Fleet commands: a key, document, bucket or credentials problem is one line, exit 1."""

    def wrapper(args: argparse.Namespace) -> int:
        from agent.deliver.credentials import CredentialsError
        from agent.deliver.oss import OssError
        from agent.fleet_operator import FleetKeyError
        from agent.fleetdoc import FleetDocError

        try:
            return func(args)
        except (FleetKeyError, FleetDocError, OssError, CredentialsError, OSError) as exc:
            print(f"ipc-agent fleet {args.fleet_command}: {exc}", file=sys.stderr)
            return 1

    return wrapper


@_fleet_errors
def cmd_fleet_publish(args: argparse.Namespace) -> int:
    from agent import fleetdoc
    from agent.config_source import load_effective
    from agent.fleet_operator import load_private_key, publish

    config = load_effective(args.config)
    key = load_private_key(Path(args.key))
    target = fleetdoc.target("group", args.group) if args.group else None
    target = target or fleetdoc.target("device", args.device)
    doc, object_key = publish(config, Path(args.file).read_bytes(), target, key, args.file)
    print(f"published {doc.label} to oss://{config.cloud.bucket}/{object_key} (+ .sig)")
    return 0


@_fleet_errors
def cmd_fleet_status(args: argparse.Namespace) -> int:
    from agent import fleetdoc
    from agent.config_source import load_effective
    from agent.fleet_operator import fleet_reports, published_version

    config = load_effective(args.config)
    reports = fleet_reports(config, args.group)
    if args.json:
        for r in reports:
            print(json.dumps(r))
        return 0
    if args.group:
        v = published_version(config, fleetdoc.target("group", args.group))
        print(f"group {args.group}: published version {v if v is not None else 'none'}")
    print(f"{'gateway':<20}{'group':<14}{'config':<26}{'reported (UTC)':<21}refused")
    for r in reports:
        rej = r.get("last_rejection") or {}
        refused = f"@{rej.get('version')}: {rej.get('reason')}" if rej else "-"
        print(
            f"{str(r.get('device_id'))[:19]:<20}{str(r.get('group') or '-')[:13]:<14}"
            f"{str(r.get('config_version'))[:25]:<26}{str(r.get('reported_at'))[:19]:<21}"
            f"{refused[:60]}"
        )
    print(f"{len(reports)} gateway(s) reporting")
    return 0


def _config_option(parser: argparse.ArgumentParser, text: str | None = None) -> None:
    """`--config`, the local file each command reads (agent/config_source.py composes it)."""
    parser.add_argument("--config", help=text or f"TOML config (default {DEFAULT_CONFIG_PATH})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ipc-agent", description="IP camera edge agent")
    p.add_argument("--version", action="version", version=f"ipc-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("replay", help="cut a recording into clips, as fast as possible")
    r.add_argument("video", help="a video file (MP4, MKV, TS, ...)")
    _config_option(r, "TOML config for [motion], [clip] and cameras")
    r.add_argument("--camera", help="use this configured camera's overrides and mask")
    r.add_argument("--out", help="folder for clips and keyframes (default: ./replay-<time>)")
    r.add_argument("--json", action="store_true", help="one JSON object per clip on stdout")
    r.add_argument("--debug", action="store_true", help="also write an annotated debug.mp4")
    r.set_defaults(func=cmd_replay)

    from agent.tune import cmd_tune

    t = sub.add_parser("tune", help="pictures of a scene to write masks by, and a motion heat-map")
    t.add_argument("source", help="a configured camera's name, or a video file")
    t.add_argument("--out", required=True, help="folder for frame.png and heatmap.png")
    _config_option(t, "TOML config (cameras, [motion])")
    t.add_argument("--camera", help="for a video file: use this camera's settings and mask")
    t.add_argument(
        "--seconds", type=float, help="how long to watch (default: 60 s live, a whole file)"
    )
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.set_defaults(func=cmd_tune)

    run = sub.add_parser("run", help="run every configured camera until SIGTERM")
    _config_option(run)
    run.add_argument(
        "--once", action="store_true", help="exit when every file source has ended (demo, batch)"
    )
    run.add_argument(
        "--log-format",
        choices=logs.LOG_FORMATS,
        help="text (default: journald's timestamps, or ISO-8601 UTC ones elsewhere) or json",
    )
    run.set_defaults(func=cmd_run)

    st = sub.add_parser(
        "status", help="the agent at a glance (exit 3 when the daemon is not running)"
    )
    _config_option(st)
    fmt = st.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the status model as JSON")
    fmt.add_argument("--prometheus", action="store_true", help="the numbers, Prometheus text")
    st.set_defaults(func=cmd_status)

    q = sub.add_parser("queue", help="list the clips catalogued in the spool")
    _config_option(q)
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
    _config_option(init)
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
    _config_option(srch)
    srch.add_argument("--camera", help="only this camera's clips")
    srch.add_argument("--since", help="only clips since: 30m, 2h, 1d ago, or an ISO time")
    srch.add_argument("--page", type=int, default=1, help="result page (from 1)")
    srch.add_argument("--limit", type=int, default=10, help="hits per page (1-50)")
    srch.add_argument("--json", action="store_true", help="one JSON object per match")
    srch.set_defaults(func=cmd_search)

    c = sub.add_parser("check-config", help="validate a config file and exit (= config check)")
    _config_option(c)
    c.set_defaults(func=cmd_check)

    cfg = sub.add_parser("config", help="show or check configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="the effective config, every value, secrets redacted")
    _config_option(show)
    show.set_defaults(func=cmd_config_show)
    chk = cfg_sub.add_parser("check", help="validate a file and list every problem in it")
    chk.add_argument("file", nargs="?", help=f"TOML config (default {DEFAULT_CONFIG_PATH})")
    _config_option(chk, "the same as FILE, as every other command takes it")
    chk.add_argument(
        "--local", help="with a fleet document: the gateway's config file to merge it onto"
    )
    chk.set_defaults(func=cmd_check)

    fl = sub.add_parser("fleet", help="signed configuration pushed through the bucket")
    fl_sub = fl.add_subparsers(dest="fleet_command", required=True)
    kg = fl_sub.add_parser("keygen", help="make a signing key pair: fleet.key and fleet.pub")
    kg.add_argument("--out", required=True, help="folder for the key files (keep it private)")
    kg.set_defaults(func=cmd_fleet_keygen)
    pub = fl_sub.add_parser("publish", help="sign a fleet document and upload it to the bucket")
    pub.add_argument("file", help="the document: TOML with version and pushable sections")
    who = pub.add_mutually_exclusive_group(required=True)
    who.add_argument("--group", help="for every gateway of this [fleet] group")
    who.add_argument("--device", help="for one gateway (its [agent] device_id)")
    pub.add_argument("--key", required=True, help="the private key file (fleet.key, mode 0600)")
    _config_option(pub, f"TOML config with [cloud] (default {DEFAULT_CONFIG_PATH})")
    pub.set_defaults(func=cmd_fleet_publish)
    fs = fl_sub.add_parser("status", help="which gateways run which version, and refusals")
    fs.add_argument("--group", help="only gateways of this group")
    _config_option(fs, f"TOML config with [cloud] (default {DEFAULT_CONFIG_PATH})")
    fs.add_argument("--json", action="store_true", help="the report objects, one per line")
    fs.set_defaults(func=cmd_fleet_status)
    return p


def _command(args: argparse.Namespace) -> str:
    """The command as typed: "queue retry", "fleet publish", "config check", ..."""
    words = [args.command]
    for attr in ("cloud_command", "config_command", "fleet_command"):
        if getattr(args, attr, None):
            words.append(getattr(args, attr))
    if getattr(args, "action", None):
        words.append(args.action)
    return " ".join(words)


def _last_resort(args: argparse.Namespace, exc: BaseException) -> int:
    """Anything a command did not handle: one line (what failed, what to do), never a traceback."""
    command = f"ipc-agent {_command(args)}"
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc) or type(exc).__name__
        where = f" {exc.filename}" if exc.filename else ""
        hint = {
            "EACCES": "run it as a user that may (e.g. sudo -u ipc-agent), or fix the permissions",
            "EPERM": "run it as a user that may (e.g. sudo -u ipc-agent), or fix the permissions",
            "ENOSPC": "free some space",
            "EROFS": "point [agent] data_dir at a writable place",
        }.get(errno.errorcode.get(exc.errno or 0, ""), "check the path and try again")
        line = f"{command}: cannot use{where}: {what}; {hint}"
    elif isinstance(exc, sqlite3.Error):
        line = (
            f"{command}: the spool database failed: {exc}; check [agent] data_dir's spool.db "
            "(a copy from another version, a full disk, or a damaged file)"
        )
    else:
        line = (
            f"{command}: unexpected error: {type(exc).__name__}: {exc}; this is a bug: please "
            "report this line (IPC_AGENT_DEBUG=1 shows the traceback)"
        )
    print(redact(line, anywhere=True)[:2000], file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup("warning" if args.command == "replay" and args.json else "info")
    if args.command != "run":  # one-shot commands explain a credentials failure themselves
        logging.getLogger("credentials").addFilter(_drop)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is handled, not at exit
        return code
    except ConfigError as exc:
        print(f"ipc-agent: {exc}", file=sys.stderr)
        return 2
    except DataDirBusy as exc:
        print(f"ipc-agent run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ipc-agent queue | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if os.environ.get("IPC_AGENT_DEBUG"):
            raise
        return _last_resort(args, exc)


def _drop(record: logging.LogRecord) -> bool:
    return False


if __name__ == "__main__":
    sys.exit(main())
