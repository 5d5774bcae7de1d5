"""Repairs of the spool's catalog and files: after an unclean stop, after a camera was cut off
mid-clip, and for clips cut while the wall clock was unset (a box without an RTC boots at 1970:
`repair_clock` renames and dates them from the boot clock once the wall clock is set).

Each repair keeps the spool's rule that a final file name appears only after its row is
committed, so a crash during a repair leaves nothing that the next `recover` cannot settle.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from agent import layout
from agent.durable import fsync_dir
from agent.spool import CLOCK_FLOOR, LOCAL_STATES, ClipRow, Recovery, Spool, State, boot_clock

log = logging.getLogger(__name__)


def recover(spool: Spool, clips_dir: Path) -> Recovery:
    """Make catalog and disk agree after an unclean stop. Run before capture starts."""
    report = Recovery()
    referenced: set[Path] = set()
    for row in spool.rows():
        paths = spool.files(row)
        referenced.update(paths)
        referenced.update(layout.tmp_path(p) for p in paths)
        if row.local_deleted:
            # A policy delete cut short: the row already says they are gone (a dropped
            # clip keeps its keyframes).
            gone = paths if row.state != State.DROPPED else paths[:1]
            for p in gone:
                if p.exists():
                    p.unlink()
                    report.removed.append(spool.relative(p))
        if row.state not in LOCAL_STATES or row.local_deleted:
            continue
        lost = []
        for p in paths:
            tmp = layout.tmp_path(p)
            if not p.exists() and tmp.exists():
                os.replace(tmp, p)
                report.renamed.append(spool.relative(p))
            elif not p.exists():
                lost.append(spool.relative(p))
        if lost:
            report.missing.append(row.clip_id)
            spool.set_state(
                row.id, State.FAILED, reason="files missing at start-up: " + ", ".join(lost)
            )
    if clips_dir.exists():
        # Final names appear only after their row is committed, so a file no row names is
        # partial work (.tmp) or the old or new name of a retime cut short.
        for path in clips_dir.rglob("*"):
            if path.is_file() and path not in referenced:
                path.unlink()
                report.removed.append(spool.relative(path))
    for name in report.renamed:
        log.warning("recovered %s (catalogued before an unclean stop)", name)
    for name in report.removed:
        log.warning("removed partial file %s (left by an unclean stop)", name)
    for clip_id in report.missing:
        log.error("clip %s: its files are gone; marked failed", clip_id)
    return report


def publish_partial(spool: Spool, camera: str) -> Recovery:
    """Finish what a camera killed mid-clip (its worker) left; run at its start (it writes
    nothing yet). Rows committed before their files were renamed get them renamed; other
    `.tmp` files of the camera are partial clips and are removed, so a camera that keeps
    crashing does not fill the disk before the agent restarts."""
    report = Recovery()
    referenced: set[Path] = set()
    for row in spool.rows(camera=camera):
        for p in spool.files(row):
            tmp = layout.tmp_path(p)
            referenced.add(tmp)
            if row.state in LOCAL_STATES and not p.exists() and tmp.exists():
                os.replace(tmp, p)
                report.renamed.append(spool.relative(p))
    camera_dir = layout.camera_dir(spool.data_dir, camera)
    if camera_dir.exists():
        for tmp in camera_dir.rglob("*" + layout.TMP_SUFFIX):
            if tmp not in referenced:
                tmp.unlink(missing_ok=True)
                report.removed.append(spool.relative(tmp))
    for name in report.renamed:
        log.warning("%s: recovered %s (catalogued before the camera was cut off)", camera, name)
    if report.removed:
        log.warning("%s: removed %d partial file(s)", camera, len(report.removed))
    return report


def retime(spool: Spool, row: ClipRow, start_wall: float) -> str | None:
    """Name and date a clip cut while the wall clock was unset; the new clip_id.

    None (nothing changed) while its files are still being published. Files are linked
    under their new names first, then the row changes, then the old names go: a crash in
    between leaves only names no row knows, which `recover` removes.
    """
    old_id = row.clip_id
    new_id = layout.retimed_id(old_id, start_wall)
    if new_id == old_id:
        return None  # the same second: nothing to rename (and linking onto itself loses it)
    olds = spool.files(row)
    if any(layout.tmp_path(p).exists() for p in olds):
        return None  # catalogued a moment ago, renames still to come
    news = [layout.retimed_path(p, old_id, new_id, start_wall) for p in olds]
    for old, new in zip(olds, news):
        if old.exists():
            new.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.link(old, new)
    for d in {p.parent for p in news if p.parent.exists()}:
        fsync_dir(d)
    if not spool.rename(row, new_id, news[0], news[1:], start_wall):
        return None
    for old in olds:
        old.unlink(missing_ok=True)
    for d in {p.parent for p in olds if p.parent.exists()}:
        fsync_dir(d)
    return new_id


def repair_clock(spool: Spool, row: ClipRow, now: float) -> ClipRow | None:
    """A clip cut while the wall clock was unset (a box without RTC boots at 1970), named
    and dated again from the boot clock once the wall clock (`now`) is set. The row as it is
    now, or None while it must wait (clock still unset, files being published)."""
    boot, boot_id = boot_clock()
    if row.start_boot is None or row.boot_id != boot_id:
        return row  # cut before a reboot: its real time is lost, it goes as it is
    if now < CLOCK_FLOOR:
        return None
    start = now - (boot - row.start_boot)
    if start < CLOCK_FLOOR:
        return row  # no better time to give it
    try:
        new_id = retime(spool, row, start)
    except OSError as exc:  # a full disk, say: try again later
        log.warning("clip %s: cannot rename it yet: %s", row.clip_id, exc)
        return None
    if new_id is None:
        return None
    log.warning(
        "clip %s was cut while the wall clock was unset; renamed %s (from the boot clock)",
        row.clip_id,
        new_id,
    )
    return spool.row(row.id)
