"""scripts/demo.sh on its own, as a newcomer runs it first: it names (or, as root, installs)
what the system lacks, remakes a half-made .venv, and writes its config with the mode the
agent recommends. Run on a copy of the checkout, for real (pip install, the agent, its clips).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "scripts" / "demo.sh"


def copy_checkout(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "demo-out*"
    )
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def test_demo_remakes_a_half_made_venv_and_writes_a_private_config(tmp_path):
    """`python3 -m venv` that failed at ensurepip leaves a .venv without pip; rerun, demo.sh
    made it again and went on to cut clips. Its config is 0640: no warning about it."""
    repo = copy_checkout(tmp_path / "repo")
    subprocess.run(["python3", "-m", "venv", "--without-pip", repo / ".venv"], check=True)
    assert (repo / ".venv" / "bin" / "python").exists()
    out_dir = tmp_path / "out"
    proc = subprocess.run(
        ["bash", repo / "scripts" / "demo.sh"],
        capture_output=True,
        text=True,
        env=dict(os.environ, DEMO_OUT=str(out_dir)),
        timeout=600,
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said
    assert "== .venv is incomplete (no pip" in said
    subprocess.run([repo / ".venv/bin/python", "-m", "pip", "--version"], check=True)
    assert "Traceback" not in said
    assert "readable by every user" not in said
    assert (out_dir / "agent.toml").stat().st_mode & 0o777 == 0o640
    clips = sorted((out_dir / "data" / "clips" / "demo").rglob("*.mp4"))
    assert clips, said
    assert f"{len(clips)} clip(s) listed" in said


def test_demo_names_python3_venv_when_it_cannot_make_a_venv():
    """A Python without its venv module (Debian's python3 without python3-venv), run by a
    user who cannot install it: demo.sh says which package, before it changes anything."""
    # The system's python3 (nobody may run it, unlike a pyenv or venv one under /root).
    python = next((p for p in ("/usr/bin/python3", shutil.which("python3")) if p), None)
    if python is None or not os.path.exists(python):
        pytest.skip("no python3")
    as_user: list[str] = []
    if os.geteuid() == 0:  # as root it would install the package; run it as nobody instead
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is missing")
        as_user = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    root = Path(tempfile.mkdtemp(prefix="demo-novenv-"))  # readable by nobody, unlike tmp_path
    try:
        root.chmod(0o755)
        (root / "scripts").mkdir(mode=0o755)
        shutil.copy(DEMO, root / "scripts" / "demo.sh")
        fake = root / "python3"
        fake.write_text(
            "#!/bin/sh\n"
            'case "$*" in *ensurepip*) echo "No module named ensurepip" >&2; exit 1;; esac\n'
            f'exec {python} "$@"\n'
        )
        fake.chmod(0o755)
        proc = subprocess.run(
            [*as_user, "bash", root / "scripts" / "demo.sh"],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHON=str(fake), DEMO_OUT=str(root / "out")),
            timeout=120,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "install python3-venv (sudo apt-get install python3-venv)" in proc.stderr
        assert not (root / ".venv").exists()
        assert not (root / "out").exists()
    finally:
        shutil.rmtree(root)
