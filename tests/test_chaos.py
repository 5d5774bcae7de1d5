"""The fault-injection soak in short: `scripts/chaos.py` for 2.5 minutes, >= 10 SIGKILLs.

The real agent runs under its supervisor against real RTSP, OSS and ICE servers on loopback
while the harness kills its processes, breaks the network and the disk and jumps the clock;
every invariant (exactly once, nothing lost, catalog = disk, status answers, backlog drains)
must hold. The 30-minute soak is the same script with `--minutes 30`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.rtsp import rtsp_available

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "chaos.py"
SK = "chaos-soak-secret-0123456789"  # scripts/chaos.py's AccessKey secret


def test_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    reason = rtsp_available()
    if reason is not None:
        pytest.skip(reason)
    work = tmp_path / "chaos"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--minutes", "2.5", "--seed", "7", "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = res.stdout[-6000:] + res.stderr[-3000:]
    report = work / "report.json"
    assert report.exists(), f"chaos.py ended without a report (exit {res.returncode}):\n{tail}"
    summary = json.loads(report.read_text())
    assert summary["violations"] == [], f"invariants violated:\n{tail}"
    assert res.returncode == 0, f"chaos.py exit {res.returncode}:\n{tail}"
    assert summary["kills"] >= 10, f"only {summary['kills']} SIGKILLs injected:\n{tail}"
    assert summary["clips"] > 0, f"no clip was catalogued, nothing was tested:\n{tail}"
    registered = summary["states"].get("registered", 0) + summary["states"].get("indexed", 0)
    assert registered > 0 and summary["duplicates"] == 0 and summary["lost"] == 0, tail
    # No secret in anything the run printed or wrote down (agent logs, reports, configs).
    texts = {"stdout": res.stdout, "stderr": res.stderr}
    for path in work.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".txt", ".json", ".toml", ".jsonl"):
            texts[str(path)] = path.read_text(errors="replace")
    assert any(p.endswith(".log") for p in texts), "no agent log found to scan"
    leaks = [name for name, text in texts.items() if SK in text]
    assert not leaks, f"the AccessKey secret appears in {leaks}"
