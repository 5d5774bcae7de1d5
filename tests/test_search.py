"""search against the fake ICE: hits without a local catalog row are shown, not dropped, and the
totals and pages agree with what is printed."""

from __future__ import annotations

import os
import subprocess
import sys

from agent.deliver.acs import Credentials
from agent.deliver.ice import IceClient
from agent.deliver.library import search
from tests.support.delivery import (
    AK,
    DEVICE,
    LIB,
    SK,
    Clock,
    agent_config,
    cloud_settings,
    drain,
    make_clips,
    make_uploader,
)


def _foreign_media(ice, n: int) -> list[str]:  # noqa: F811
    """Media another gateway registered for a camera of the same name: no local row."""
    ids = []
    with IceClient(ice.url, lambda: Credentials(AK, SK)) as c:
        for i in range(n):
            mid = f"othergateway{i:020d}"
            body = {
                "title": "cam1 2026-11-24 10:00:00",
                "customFields": {
                    "strField1": "cam1",
                    "strField2": f"gw-other/cam1_{i}",
                    "intField1": 1_795_000_000 + i,
                },
            }
            c.insert_media(LIB, DEVICE, mid, f"oss://other/{mid}.mp4", [], body)
            ice.control("job_status", media_id=mid, status="Success")
            ids.append(mid)
    return ids


def test_hits_without_a_local_row_are_shown_and_pages_add_up(tmp_path, oss, ice):  # noqa: F811
    spool = make_clips(tmp_path, 3)
    clock = Clock()
    drain(make_uploader(tmp_path, oss, ice, clock=clock), spool, clock)
    foreign = _foreign_media(ice, 2)
    cloud = cloud_settings(oss, ice)
    with IceClient(ice.url, lambda: Credentials(AK, SK)) as c:
        total, matches = search(c, cloud, spool, "cam1", camera="cam1", since=1_700_000_000)
        assert total == 5 and len({m.media_id for m in matches}) == 5, matches
        outside = [m for m in matches if m.media_id in foreign]
        assert len(outside) == 2
        for m in outside:
            assert m.camera is None and m.clip_id is None and m.start is None
            assert (m.offset_start, m.offset_end) == (0.0, 5.0) and m.score is not None
            assert m.as_dict()["in_catalog"] is False
        local = [m for m in matches if m.media_id not in foreign]
        assert all(m.camera == "cam1" and m.start is not None for m in local)
        seen: list[str] = []
        for page in (1, 2, 3):
            t, page_matches = search(c, cloud, spool, "cam1", camera="cam1", page=page, limit=2)
            assert t == 5
            seen += sorted({m.media_id for m in page_matches})
        assert len(seen) == 5 and len(set(seen)) == 5, seen
        # The filter is the service's: another camera's name finds nothing.
        assert search(c, cloud, spool, "cam1", camera="cam2") == (0, [])


def test_the_search_command_prints_foreign_hits_and_a_footer_that_adds_up(
    tmp_path,
    oss,  # noqa: F811
    ice,  # noqa: F811
):
    spool = make_clips(tmp_path, 1)
    clock = Clock()
    drain(make_uploader(tmp_path, oss, ice, clock=clock), spool, clock)
    spool.close()
    _foreign_media(ice, 2)
    config = agent_config(tmp_path, oss, ice)
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SK,
        "NO_PROXY": "127.0.0.1",
    }
    out = subprocess.run(
        [sys.executable, "-m", "agent", "search", "cam1", "--camera", "cam1", "--limit", "2"]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == f"media 1-2 of 3 matching in {LIB} (page 1; 2 span(s))", out.stdout
    assert len(lines) == 1 + 2 + 1, out.stdout  # header, one line per span, footer
    page2 = subprocess.run(
        [sys.executable, "-m", "agent", "search", "cam1", "--camera", "cam1", "--limit", "2"]
        + ["--page", "2", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    last = page2.stdout.splitlines()[-1]
    assert last == f"media 3-3 of 3 matching in {LIB} (page 2; 1 span(s))", page2.stdout
    printed = out.stdout.splitlines() + page2.stdout.splitlines()
    foreign_lines = [line for line in printed if "not in the local catalog" in line]
    assert len(foreign_lines) == 2, printed
    assert all("+0 s" in line and "+5 s" in line for line in foreign_lines), foreign_lines
