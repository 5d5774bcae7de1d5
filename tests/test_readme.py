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
from fake_oss import FakeOss

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
