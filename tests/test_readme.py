"""The README's walkthroughs, run as written: their shell blocks are read from README.md and
executed in a scratch folder where `ipc-agent` and `.venv/bin/ipc-agent` are this checkout's
CLI. Only what cannot exist here is swapped, each swap checked to apply: the camera's address
(a real RTSP server on loopback), the cloud's endpoints and keys (the local OSS and ICE test
servers). `ipc-agent run`, which the README stops with Ctrl-C, runs in the background until
what the README promises is there, then gets SIGINT.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.spool import Spool
from tests.support.agentproc import wait_for
from tests.support.fake_ice import FakeIce
from tests.support.fake_oss import FakeOss
from tests.support.synth import make_scene

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
AK, SK = "LTAI5tReadmeTestKey01", "readme-test-secret-0123456789"


def section(heading: str) -> str:
    """The README's section whose heading starts with `heading`, up to the next of its level."""
    text = README.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}")
    end = text.find(f"\n{level} ", start + 1)
    return text[start : end if end > 0 else None]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def commands(block: str) -> list[str]:
    """A block's commands: a heredoc with its body is one; comments and blank lines go."""
    lines, out, i = block.splitlines(), [], 0
    while i < len(lines):
        heredoc = re.search(r"<<'?(\w+)'?", lines[i])
        if heredoc:
            end = lines.index(heredoc[1], i + 1)
            out.append("\n".join(lines[i : end + 1]))
            i = end + 1
            continue
        command = re.sub(r"(^|\s+)#.*$", "", lines[i]).strip()
        if command:
            out.append(command)
        i += 1
    return out


def swap(text: str, old: str, new: str) -> str:
    assert old in text, f"the README no longer says {old!r}: update this test with it"
    return text.replace(old, new)


class Shell:
    """Runs a walkthrough's commands in `cwd`, keeping what `export` sets."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        bin_dir = cwd / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        wrapper = bin_dir / "ipc-agent"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m agent "$@"\n')
        wrapper.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
        self.env.update(
            HOME=str(cwd),
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        self.background: list[subprocess.Popen] = []

    def __call__(self, command: str) -> subprocess.CompletedProcess:
        if command.startswith("export "):
            for item in shlex.split(command[len("export ") :]):
                key, _, value = item.partition("=")
                self.env[key] = value
            return subprocess.CompletedProcess(command, 0, "", "")
        out = subprocess.run(
            ["bash", "-ec", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
        assert "Traceback" not in out.stdout + out.stderr
        return out

    def start(self, command: str) -> subprocess.Popen:
        """`command` (an `ipc-agent run`) in the background, as if in its own terminal."""
        log = open(self.cwd / f"run{len(self.background)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.background.append(proc)
        return proc

    def ctrl_c(self, proc: subprocess.Popen) -> int:
        proc.send_signal(signal.SIGINT)
        return proc.wait(60)

    def close(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    sh = Shell(tmp_path / "work")
    try:
        yield sh
    finally:
        sh.close()


def is_run(command: str) -> bool:
    return re.search(r"\bipc-agent run\b", command) is not None


# -- the five-minute path: a camera URL, a clip on disk, the clip found by search -------------


@pytest.mark.rtsp
def test_the_five_minute_path_runs_as_written(shell, tmp_path, rtsp_server):
    text = section("## Five minutes")
    blocks = [commands(b) for b in sh_blocks(text)]
    assert len(blocks) == 5, blocks  # config; run; status and queue; cloud and run; search
    video = make_scene("walk", tmp_path, width=640, height=360, duration=14).path
    camera = rtsp_server({"/stream1": video}, user="admin", password="password")
    data = shell.cwd / "ipc-data"

    # 1. the config, checked
    config, *rest = blocks[0]
    shell(swap(config, "192.168.1.64:554", f"127.0.0.1:{camera.port}"))
    said = [shell(c) for c in rest]
    assert "OK, 1 camera(s), no [cloud]: clips stay local" in said[-1].stdout
    assert (shell.cwd / "agent.toml").stat().st_mode & 0o777 == 0o640

    # 2. run, and a clip is cut; 3. status and queue show it
    (run,) = blocks[1]
    assert is_run(run)
    agent = shell.start(run)
    wait_for(lambda: clips(data), 120, "a clip of the walk to be catalogued")
    status, queue = (shell(c).stdout for c in blocks[2])
    assert re.search(r"(?m)^door\s+streaming", status), status
    assert "door" in queue and "clips/door/" in queue, queue
    files = list((data / "clips" / "door").rglob("*"))
    assert any(p.suffix == ".mp4" for p in files) and any(p.suffix == ".jpg" for p in files)
    assert shell.ctrl_c(agent) == 0

    # 4. the cloud: bucket and library on the local test servers, the README's placeholders
    # for keys replaced by theirs
    with (
        FakeOss(access_key_id=AK, access_key_secret=SK, region="cn-shanghai") as oss,
        FakeIce(access_key_id=AK, access_key_secret=SK, index_job_polls=0) as ice,
    ):
        oss.create_bucket("my-ipc-bucket")
        append, export, init, run = blocks[3]
        endpoints = f'oss_endpoint = "{oss.endpoint}"\nice_endpoint = "{ice.url}"\n'
        shell(swap(append, 'region = "cn-shanghai"\n', f'region = "cn-shanghai"\n{endpoints}'))
        export = swap(export, "=LTAI5t...", f"={AK}")
        shell(swap(export, "=...", f"={SK}"))
        assert "search library IPCamera_door" in shell(init).stdout
        assert is_run(run)
        agent = shell.start(run)
        wait_for(lambda: clips(data, "registered", "indexed"), 120, "a clip to be registered")

        # 5. search finds it, and maps it back to the clip on the gateway
        (search,) = blocks[4]
        found = shell(search).stdout
        # a hit: its score, the camera, and the clip's file on this gateway
        assert re.search(r"(?m)^\s*[\d.]+\s+door\s.*\bipc-data/clips/door/\S+\.mp4$", found), found
        assert shell.ctrl_c(agent) == 0


def clips(data: Path, *states: str) -> list[dict]:
    if not (data / "spool.db").exists():
        return []
    spool = Spool(data)
    try:
        return [r for r in spool.rows() if not states or r.state in states]
    finally:
        spool.close()


# -- the fleet walkthrough ---------------------------------------------------------------------


def test_the_fleet_walkthrough_runs_as_written(shell):
    (block,) = [b for b in sh_blocks(section("### Fleet config push")) if "fleet keygen" in b]
    steps = commands(block)
    assert [s.split()[:3] for s in steps if s.startswith("ipc-agent")] == [
        ["ipc-agent", "fleet", "keygen"],
        ["ipc-agent", "config", "check"],
        ["ipc-agent", "fleet", "publish"],
        ["ipc-agent", "fleet", "status"],
    ]
    with FakeOss(access_key_id=AK, access_key_secret=SK, region="cn-shanghai") as oss:
        oss.create_bucket("ops-bucket")
        (shell.cwd / "ops.toml").write_text(  # the operator's config: [cloud], the bucket
            '[agent]\ndevice_id = "ops"\n'
            f'[cloud]\nregion = "cn-shanghai"\nbucket = "ops-bucket"\noss_endpoint = '
            f'"{oss.endpoint}"\nsearch_lib = "IPCamera_ops"\n'
        )
        shell.env.update(ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK)
        said = [shell(step) for step in steps]
    out = "".join(s.stdout for s in said)
    assert "fleet.key" in out and "public_keys = [" in out
    assert "east.toml: OK, fleet document version 7" in out
    assert (
        "published group:stores-east@7 to oss://ops-bucket/ipc/fleet/groups/stores-east.toml" in out
    )
    assert "group stores-east: published version 7" in out
    assert (shell.cwd / "fleet-keys" / "fleet.key").stat().st_mode & 0o777 == 0o600


def test_the_readme_links_to_docs_that_exist():
    text = README.read_text()
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    for name in ("docs/performance.md", "docs/reliability.md", "docs/design.md"):
        assert name in links
    for link in links:
        assert (REPO / link).is_file(), link
