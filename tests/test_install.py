"""The systemd unit and the installer, with the real tools.

- `systemd/ipc-agent.service` passes `systemd-analyze verify` without a word about it, says
  what the agent relies on, and agrees with the code's defaults (config path, data_dir, the
  supervisor's stop timeout).
- `scripts/install.sh --root DIR` builds a real venv with the agent from this checkout and
  all its dependencies (from the package index pip is configured for: ~20 s, once per module),
  installs the config without ever overwriting it, and re-runs as an upgrade;
  `scripts/uninstall.sh --root DIR` keeps config and data unless `--purge`.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import agent
from agent.config import DEFAULT_CONFIG_PATH, Config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "ipc-agent.service"
EXAMPLE = REPO / "systemd" / "agent.example.toml"
INSTALL = REPO / "scripts" / "install.sh"
UNINSTALL = REPO / "scripts" / "uninstall.sh"
AGENT_BIN = "/opt/ipc-agent/venv/bin/ipc-agent"
SCRIPT_TIMEOUT = 600  # s; a first install downloads the dependencies

# -- the unit --------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """`{section: {key: [value, ...]}}`; systemd allows a key more than once (After=, ...)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"directive outside a section: {raw!r}"
        assert not line.endswith("\\"), f"continuation lines are not expected: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(timespan: str) -> float:
    """A systemd time span such as "45s", "1min 30s" or "90" (seconds) in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", timespan)
    assert parts and "".join(a + b for a, b in parts) == timespan.replace(" ", ""), timespan
    return sum(float(number) * units[unit] for number, unit in parts)


def test_unit_says_what_the_agent_relies_on():
    unit = parse_unit(UNIT.read_text())
    service = unit["Service"]

    def one(key: str) -> str:
        values = service.get(key)
        assert values is not None and len(values) == 1, f"{key}= should be set once: {values}"
        return values[0]

    assert one("Type") == "notify"  # the supervisor sends READY=1
    assert one("NotifyAccess") == "main"
    assert seconds(one("WatchdogSec")) >= 10  # the supervisor pings every WatchdogSec/2
    assert one("Restart") == "always"
    assert 1 <= seconds(one("RestartSec")) <= 60
    assert one("User") == one("Group") == "ipc-agent"
    assert one("ExecStart") == f"{AGENT_BIN} run --config {DEFAULT_CONFIG_PATH}"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"  # the supervisor reloads on SIGHUP
    assert one("KillSignal") == "SIGTERM"
    # The directories systemd makes are the ones the code uses by default.
    assert Path("/var/lib", one("StateDirectory")) == Config().agent.data_dir
    assert Path("/etc", one("ConfigurationDirectory")) == DEFAULT_CONFIG_PATH.parent
    assert re.fullmatch(r"\d+(\.\d+)?[KMGT]", one("MemoryMax"))
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0027",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
    }.items():
        assert one(key) == value, f"{key}={one(key)}, expected {key}={value}"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_stop_timeout_leaves_the_supervisor_time_to_finish_clips():
    from agent.service.supervised import STOP_TIMEOUT

    (timeout,) = parse_unit(UNIT.read_text())["Service"]["TimeoutStopSec"]
    # systemd SIGKILLs at TimeoutStopSec; the supervisor gives its children STOP_TIMEOUT to
    # finish their clips, then kills them and exits itself.
    assert seconds(timeout) >= max(40.0, STOP_TIMEOUT + 10), (timeout, STOP_TIMEOUT)


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not found (Debian package: systemd; scripts/test.sh installs it)",
)


def verify(text: str, tmp_path: Path) -> tuple[list[str], subprocess.CompletedProcess]:
    """`systemd-analyze verify` on a unit text; returns (findings about it, the process).

    verify insists that ExecStart= is an executable file, so the unit is checked with its
    ExecStart= binary moved under `tmp_path` (same arguments, a stub script there). A finding is
    any output line that mentions the unit, or that is not clearly about some other unit of
    this host (those are the host's business and only shown).
    """
    stub = tmp_path / AGENT_BIN.lstrip("/")
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text, n = re.subn(
        rf"^ExecStart={re.escape(AGENT_BIN)}(?= )", f"ExecStart={stub}", text, flags=re.M
    )
    assert n == 1, f"ExecStart={AGENT_BIN} ... not found in the unit"
    path = tmp_path / "ipc-agent.service"
    path.write_text(text)
    env = {
        **os.environ,
        "SYSTEMD_LOG_LEVEL": "info",  # notices and warnings about the unit are findings too
        "SYSTEMD_LOG_TARGET": "console",
        "SYSTEMD_LOG_COLOR": "0",
        "SYSTEMD_LOG_LOCATION": "0",
        "SYSTEMD_PAGER": "",
    }
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    findings = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if not line.strip():
            continue
        who = line.split(":", 1)[0]
        other_unit = (
            ":" in line
            and " " not in who
            and re.search(r"\.(service|socket|target|mount|timer|path|slice|device|swap)$", who)
            and Path(who).name != "ipc-agent.service"
        )
        if "ipc-agent" in line or not other_unit:
            findings.append(line)
    return findings, proc


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify_without_a_word(tmp_path):
    findings, proc = verify(UNIT.read_text(), tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert findings == [], output


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("pattern", "replacement", "expect"),
    [
        (r"^NoNewPrivileges=yes$", "NoNewPrivilege=yes", "Unknown key"),  # a typo
        (r"^Restart=always$", "Restart=sometimes", "restart specifier"),  # a bad value
        (r"^MemoryMax=.*$", "MemoryMax=2Q", "memory limit"),
        (r"^ExecReload=/bin/kill", "ExecReload=/bin/no-such-kill", "not executable"),
    ],
)
def test_verify_check_catches_a_broken_unit(tmp_path, pattern, replacement, expect):
    """The check above would notice: systemd-analyze only warns (exit 0) for most of these."""
    text, n = re.subn(pattern, replacement, UNIT.read_text(), count=1, flags=re.M)
    assert n == 1, pattern
    findings, proc = verify(text, tmp_path)
    assert any(expect in line for line in findings), (findings, proc.stdout + proc.stderr)


# -- install.sh / uninstall.sh into a temporary root ------------------------------------------


def run(script: Path, *args: object, user: str | None = None) -> subprocess.CompletedProcess:
    """Run a script as it is run by hand (its shebang), in a clean environment for Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    cmd = [str(script), *map(str, args)]
    if user is not None:  # from root: drop to `user` (and its group), no supplementary groups
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd="/", timeout=SCRIPT_TIMEOUT
    )


def output(proc: subprocess.CompletedProcess) -> str:
    return f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


@dataclass
class Layout:
    """Where install.sh puts things under a root."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "opt/ipc-agent/venv"

    @property
    def agent_bin(self) -> Path:
        return self.root / AGENT_BIN.lstrip("/")

    @property
    def etc(self) -> Path:
        return self.root / "etc/ipc-agent"

    @property
    def config(self) -> Path:
        return self.etc / "agent.toml"

    @property
    def state(self) -> Path:
        return self.root / "var/lib/ipc-agent"

    @property
    def unit(self) -> Path:
        return self.root / "etc/systemd/system/ipc-agent.service"

    def site_packages(self) -> Path:
        (path,) = self.venv.glob("lib/python3*/site-packages")
        return path

    def copy(self, dest: Path) -> Layout:
        """An independent copy of this install (the venv is ~300 MB: about a second)."""
        shutil.copytree(self.root, dest, symlinks=True)
        return Layout(dest)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Layout, str]:
    """One real install into a temporary root for the module's tests: (layout, its output)."""
    build_dir_before = (REPO / "build").exists()
    layout = Layout(tmp_path_factory.mktemp("root"))
    proc = run(INSTALL, "--root", layout.root, "--python", sys.executable)
    assert proc.returncode == 0, output(proc)
    # Built from a copy of the checkout: pip's in-tree build would leave build/ behind.
    assert (REPO / "build").exists() == build_dir_before
    return layout, output(proc)


def test_install_makes_a_working_venv_with_the_agent_and_its_dependencies(installed):
    layout, out = installed
    version = subprocess.run(
        [layout.agent_bin, "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"ipc-agent {agent.__version__}"
    subprocess.run(
        [layout.venv / "bin/python", "-c", "import av, numpy, oss2, httpx, sqlite_utils"],
        check=True,
    )
    # Every module of the checkout made it into the wheel.
    installed_modules = {
        p.relative_to(layout.site_packages()) for p in layout.site_packages().glob("agent/**/*.py")
    }
    checkout_modules = {p.relative_to(REPO) for p in (REPO / "agent").glob("**/*.py")}
    assert installed_modules == checkout_modules
    assert "-- skipped (--root): system user and group ipc-agent" in out
    assert "-- skipped (--root): chown root:ipc-agent" in out
    assert "-- skipped (--root): systemctl daemon-reload; systemctl enable ipc-agent" in out


def test_install_puts_the_example_config_and_the_unit_in_place(installed):
    layout, _ = installed
    assert layout.config.read_bytes() == EXAMPLE.read_bytes()
    assert mode(layout.config) == 0o640  # camera URLs carry passwords
    assert mode(layout.etc) == 0o750
    assert (layout.etc / "agent.example.toml").read_bytes() == EXAMPLE.read_bytes()
    assert layout.state.is_dir() and mode(layout.state) == 0o750
    assert layout.unit.read_bytes() == UNIT.read_bytes()
    assert mode(layout.unit) == 0o644
    check = subprocess.run(
        [layout.agent_bin, "check-config", "--config", layout.config],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "OK" in check.stdout


def test_running_install_again_keeps_the_config_and_reinstalls_the_code(installed, tmp_path):
    layout = installed[0].copy(tmp_path / "root")
    mine = layout.config.read_text().replace('log_level = "info"', 'log_level = "debug"')
    mine += "\n# edited by the admin\n"
    layout.config.write_text(mine)
    layout.unit.write_text("[Unit]\n# damaged\n")
    init = layout.site_packages() / "agent/__init__.py"
    init.write_text(init.read_text() + "\nTAMPERED = True\n")
    (layout.venv / "sentinel").touch()

    proc = run(INSTALL, "--root", layout.root, "--python", sys.executable)
    assert proc.returncode == 0, output(proc)
    assert layout.config.read_text() == mine
    assert mode(layout.config) == 0o640
    assert "keeping the existing" in proc.stdout
    assert layout.unit.read_bytes() == UNIT.read_bytes()
    assert "TAMPERED" not in init.read_text()  # same version: the code is replaced anyway
    assert (layout.venv / "sentinel").exists(), "the venv was rebuilt instead of reused"
    assert "reusing the venv" in proc.stdout


def test_install_from_a_wheel_upgrades_the_agent(installed, tmp_path):
    layout = installed[0].copy(tmp_path / "root")
    # A wheel of a newer version, built from a copy of the checkout.
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "demo-out"
        ),
    )
    new = f"{agent.__version__}.post999"
    pyproject = src / "pyproject.toml"
    pyproject.write_text(
        re.sub(r'(?m)^version = ".*"$', f'version = "{new}"', pyproject.read_text(), count=1)
    )
    init = src / "agent/__init__.py"
    init.write_text(re.sub(r'(?m)^__version__ = ".*"$', f'__version__ = "{new}"', init.read_text()))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", src],
        check=True,
        timeout=SCRIPT_TIMEOUT,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")

    proc = run(INSTALL, "--root", layout.root, "--python", sys.executable, "--wheel", wheel)
    assert proc.returncode == 0, output(proc)
    version = subprocess.run(
        [layout.agent_bin, "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"ipc-agent {new}"
    assert layout.config.read_bytes() == EXAMPLE.read_bytes()


def test_uninstall_keeps_config_and_data_and_purge_removes_them(installed, tmp_path):
    layout = installed[0].copy(tmp_path / "root")
    spool = layout.state / "spool.db"
    spool.write_bytes(b"clips not uploaded yet")
    dropin = layout.unit.with_name("ipc-agent.service.d") / "override.conf"
    dropin.parent.mkdir()
    dropin.write_text("[Service]\nMemoryMax=4G\n")
    config = layout.config.read_bytes()

    for _ in range(2):  # a second run finds nothing left to do, and says so calmly
        proc = run(UNINSTALL, "--root", layout.root)
        assert proc.returncode == 0, output(proc)
        assert not layout.venv.parent.exists()
        assert not layout.unit.exists()
        assert layout.config.read_bytes() == config
        assert spool.read_bytes() == b"clips not uploaded yet"
        assert dropin.exists()
        assert f"kept {layout.state}" in proc.stdout

    proc = run(UNINSTALL, "--root", layout.root, "--purge")
    assert proc.returncode == 0, output(proc)
    assert not layout.etc.exists()
    assert not layout.state.exists()
    assert not dropin.parent.exists()
    assert "-- skipped (--root): userdel ipc-agent" in proc.stdout


def test_install_checks_the_python_before_touching_anything(tmp_path):
    root = tmp_path / "root"
    proc = run(INSTALL, "--root", root, "--python", tmp_path / "no-such-python3")
    assert proc.returncode != 0
    assert "not found" in proc.stderr and "python3-venv" in proc.stderr, output(proc)
    assert not (root / "opt").exists() and not (root / "etc").exists()


def _readable_by_others(path: Path) -> bool:
    """Whether an unprivileged user can read `path` (o+r) through its parents (o+x)."""
    if not mode(path) & stat.S_IROTH:
        return False
    return all(mode(parent) & stat.S_IXOTH for parent in path.parents)


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=["install", "uninstall"])
def test_scripts_refuse_to_run_unprivileged_without_root(script):
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) not found: cannot drop root")
        if not _readable_by_others(script):
            pytest.skip(f"{script} is not readable by an unprivileged user")
        proc = run(script, user="65534")  # nobody
    else:
        proc = run(script)
    assert proc.returncode != 0
    assert "must run as root" in proc.stderr, output(proc)
