"""A newcomer's mistakes: every command, given bad arguments or a broken environment, answers
with a sentence (what failed, what to do) and a non-zero exit, never a Python traceback.

Every case runs the real CLI (`python -m agent`) as its own process against real files and a
real SQLite spool; the environment holds no cloud credentials (and no ECS metadata lookups)
unless a case sets them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.spool import Spool
from tests.support.clip_records import record
from tests.support.ready_process import free_tcp_port

CREDENTIAL_VARS = [k for k in os.environ if k.startswith("ALIBABA_CLOUD_")]


def agent(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """Config files good and bad, a spool with a failed and a pending clip, a damaged spool."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "notvideo.mp4").write_text("hello, not a video\n")
    port = free_tcp_port()  # nothing listens: no request can reach a real cloud
    files = {
        "good.toml": f'[agent]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[[cameras]]\nname = "cam"\nurl = "{tmp_path / "notvideo.mp4"}"\n',
        "cloud.toml": f'[agent]\ndata_dir = "{tmp_path / "data"}"\ndevice_id = "gw-1"\n'
        '[cloud]\nregion = "cn-shanghai"\nbucket = "my-bucket"\nsearch_lib = "IPCamera_x"\n'
        f'oss_endpoint = "http://127.0.0.1:{port}"\nice_endpoint = "http://127.0.0.1:{port}"\n',
        "empty.toml": "",
        "http.toml": '[[cameras]]\nname = "door"\nurl = "http://10.0.0.2/video.cgi"\n'
        '[[cameras]]\nname = "yard"\nurl = "ftp://10.0.0.3/x.mp4"\n',
        "nourl.toml": '[[cameras]]\nname = "Front Door"\n',
        "badspool.toml": f'[agent]\ndata_dir = "{tmp_path / "bad"}"\n'
        '[[cameras]]\nname = "cam"\nurl = "rtsp://127.0.0.1:9/x"\n',
        "underfile.toml": f'[agent]\ndata_dir = "{tmp_path / "afile" / "data"}"\n'
        '[[cameras]]\nname = "cam"\nurl = "rtsp://127.0.0.1:9/x"\n',
        "east.toml": "version = 3\n[motion]\nthreshold = 12\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    (tmp_path / "notutf8.toml").write_bytes(b"[agent]\ndevice_id = '\xff\xfe'\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "spool.db").write_bytes(b"this is not a SQLite database" * 10)
    spool = Spool(tmp_path / "data")
    failed = spool.add(record(tmp_path / "data", "cam_1"))
    spool.set_state(failed, "failed", reason="ICE said: Forbidden (RequestId X)")
    spool.add(record(tmp_path / "data", "cam_2"))  # id 2, pending
    spool.close()
    return tmp_path


def environment(world: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(
        HOME=str(world / "home"),
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


NO_CREDENTIALS = "no Alibaba Cloud credentials found. Tried, in order: (1) environment variables"

# (args, exit code, what stderr says); {w} is the test's folder.
CASES = [
    ((), 2, "the following arguments are required: command"),
    (("frobnicate",), 2, "invalid choice: 'frobnicate'"),
    (("replay",), 2, "the following arguments are required: video"),
    (("replay", "{w}/missing.mp4"), 1, "missing.mp4: no such file"),
    (("replay", "{w}/notvideo.mp4", "--out", "{w}/afile"), 2, "exists and is not a folder"),
    (("replay", "{w}/notvideo.mp4", "--out", "{w}/new/out"), 1, "notvideo.mp4: cannot open"),
    (
        ("replay", "{w}/notvideo.mp4", "--camera", "nope", "--config", "{w}/good.toml"),
        2,
        "no camera named 'nope' (cameras: cam)",
    ),
    (("run", "--config", "{w}/missing.toml"), 2, "missing.toml: config file not found"),
    (("run", "--config", "{w}/empty.toml"), 2, "no [[cameras]] and no [cloud] configured"),
    (("run", "--config", "{w}/underfile.toml"), 1, "Not a directory"),
    (("run", "--config", "{w}/badspool.toml"), 1, "the spool database failed"),
    (("run", "--once", "extra"), 2, "unrecognized arguments: extra"),
    (("status", "--config", "{w}/badspool.toml"), 1, "the spool database failed"),
    (("status", "--config", "{w}/underfile.toml"), 1, "Not a directory"),
    (("status", "--json", "--prometheus"), 2, "not allowed with argument"),
    (
        ("queue", "--config", "{w}/good.toml", "--state", "bogus"),
        2,
        "--state 'bogus': expected one of pending, uploading, uploaded, registered, indexed",
    ),
    (("queue", "--config", "{w}/badspool.toml"), 1, "the spool database failed"),
    (("queue", "--config", "{w}/underfile.toml"), 1, "no spool at"),
    (("queue", "--config", "{w}/good.toml", "--failed"), 2, "go with retry"),
    (("queue", "retry", "--config", "{w}/good.toml"), 2, "name clip ids, or --failed"),
    (("queue", "retry", "1", "--failed", "--config", "{w}/good.toml"), 2, "(not both)"),
    (("queue", "retry", "x", "--config", "{w}/good.toml"), 2, "invalid int value: 'x'"),
    (("queue", "retry", "999", "--config", "{w}/good.toml"), 1, "clip 999: no such clip"),
    (
        ("queue", "retry", "2", "--config", "{w}/good.toml"),
        1,
        "clip 2: it is pending, not failed; only failed clips are queued again",
    ),
    (("cloud", "init", "--config", "{w}/good.toml"), 2, "no [cloud] section"),
    (("cloud", "init", "--config", "{w}/cloud.toml"), 1, NO_CREDENTIALS),
    (("cloud", "init", "--config", "{w}/cloud.toml", "--level"), 2, "expected one argument"),
    (
        ("search", "a person", "--config", "{w}/cloud.toml", "--page", "0"),
        2,
        "--page 0: expected 1 or more",
    ),
    (
        ("search", "a person", "--config", "{w}/cloud.toml", "--page", "-1"),
        2,
        "--page -1: expected 1 or more",
    ),
    (
        ("search", "a person", "--config", "{w}/cloud.toml", "--limit", "100"),
        2,
        "--limit 100: expected 1 to 50",
    ),
    (("search", "a person", "--config", "{w}/cloud.toml", "--since", "last tuesday"), 2, ""),
    (("search", "  ", "--config", "{w}/cloud.toml"), 2, "describe what to find"),
    (("search", "a person", "--config", "{w}/cloud.toml"), 1, NO_CREDENTIALS),
    (("search", "a person", "--config", "{w}/good.toml"), 2, "no [cloud] section"),
    (("config", "check", "{w}/empty.toml"), 2, "no [[cameras]] and no [cloud] configured"),
    (("config", "check", "--config", "{w}/empty.toml"), 2, "no [[cameras]] and no [cloud]"),
    (("config", "check", "{w}/good.toml", "--config", "{w}/empty.toml"), 2, "two files given"),
    (("config", "check", "{w}/http.toml"), 2, "scheme 'http' is not supported"),
    (("config", "check", "{w}/notutf8.toml"), 2, "cannot read config file"),
    (("config", "check", "{w}"), 2, "cannot read config file"),
    (("config", "show", "--config", "{w}/missing.toml"), 2, "config file not found"),
    (("check-config", "--config", "{w}/empty.toml"), 2, "no [[cameras]] and no [cloud]"),
    (("fleet", "keygen"), 2, "the following arguments are required: --out"),
    (("fleet", "keygen", "--out", "{w}/afile/keys"), 1, "Not a directory"),
    (
        (
            "fleet",
            "publish",
            "{w}/east.toml",
            "--group",
            "g",
            "--key",
            "{w}/missing.key",
            "--config",
            "{w}/cloud.toml",
        ),
        1,
        "missing.key: cannot read the private key",
    ),
    (("fleet", "publish", "{w}/east.toml", "--key", "k"), 2, "one of the arguments --group"),
    (("fleet", "status", "--config", "{w}/good.toml"), 2, "no [cloud] section"),
    (("fleet", "status", "--config", "{w}/cloud.toml"), 1, NO_CREDENTIALS),
]


@pytest.mark.parametrize(
    ("args", "code", "says"), CASES, ids=[" ".join(c[0]).replace("{w}/", "") or "-" for c in CASES]
)
def test_every_command_answers_a_mistake_with_a_sentence(world, args, code, says):
    args = tuple(a.format(w=world) for a in args)
    out = agent(*args, env=environment(world), cwd=world)
    both = out.stdout + out.stderr
    assert "Traceback" not in both, both
    assert out.returncode == code, both
    assert says in out.stderr, out.stderr
    if code != 2 or says.startswith("no [[cameras]]"):  # not argparse's usage + line
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "\0") not in both


def test_config_check_lists_every_camera_problem_at_once(world):
    out = agent("config", "check", str(world / "http.toml"), env=environment(world), cwd=world)
    assert out.returncode == 2
    assert "[cameras.door] url = 'http://10.0.0.2/video.cgi': scheme 'http'" in out.stderr
    assert "[cameras.yard] url = 'ftp://10.0.0.3/x.mp4': scheme 'ftp'" in out.stderr
    assert "expected an rtsp:// or rtsps:// URL, a file path or a file:// URL" in out.stderr
    out = agent("config", "check", str(world / "nourl.toml"), env=environment(world), cwd=world)
    assert out.returncode == 2
    assert "[cameras[0]]: missing required key 'url'" in out.stderr
    assert "[cameras[0]] name = 'Front Door': expected 1-64 characters" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_check_accepts_what_run_accepts(world):
    for args in (
        ("config", "check"),
        ("config", "check", "--config"),
        ("check-config", "--config"),
    ):
        out = agent(*args, str(world / "good.toml"), env=environment(world), cwd=world)
        assert out.returncode == 0, out.stderr
        assert "OK, 1 camera(s), no [cloud]: clips stay local" in out.stdout


def test_a_failed_replay_leaves_no_empty_folder_behind(world):
    out = agent(
        "replay",
        str(world / "notvideo.mp4"),
        "--out",
        str(world / "new" / "out"),
        env=environment(world),
        cwd=world,
    )
    assert out.returncode == 1
    assert not (world / "new").exists()
    kept = world / "kept"
    kept.mkdir()
    out = agent(
        "replay", str(world / "notvideo.mp4"), "--out", str(kept), env=environment(world), cwd=world
    )
    assert out.returncode == 1
    assert kept.is_dir()  # a folder the user made stays
    assert (world / "afile").read_text() == "not a folder\n"


def test_queue_retry_says_per_clip_what_happened(world):
    config = str(world / "good.toml")
    out = agent(
        "queue", "retry", "1", "2", "999", "--config", config, env=environment(world), cwd=world
    )
    assert out.returncode == 1
    assert "clip 1: queued again (it had failed: ICE said: Forbidden (RequestId X))" in out.stdout
    assert "clip 2: it is pending, not failed" in out.stderr
    assert "clip 999: no such clip" in out.stderr
    spool = Spool(world / "data")
    try:
        assert [r.state for r in spool.rows()] == ["pending", "pending"]
    finally:
        spool.close()
    out = agent("queue", "retry", "--failed", "--config", config, env=environment(world), cwd=world)
    assert (out.returncode, out.stdout.strip()) == (0, "no failed clips to retry")


def test_the_credentials_failure_reads_the_same_in_every_command(world):
    """Same words from cloud init, search, fleet publish and fleet status, naming every place
    the chain looked; half an AccessKey pair is pointed out."""
    keygen = agent(
        "fleet", "keygen", "--out", str(world / "keys"), env=environment(world), cwd=world
    )
    assert keygen.returncode == 0, keygen.stderr
    config = str(world / "cloud.toml")
    commands = {
        "cloud init": ("cloud", "init", "--config", config),
        "search": ("search", "a person at the door", "--config", config),
        "fleet publish": (
            "fleet",
            "publish",
            str(world / "east.toml"),
            "--group",
            "g",
            "--key",
            str(world / "keys" / "fleet.key"),
            "--config",
            config,
        ),
        "fleet status": ("fleet", "status", "--config", config),
    }
    for half, hint in (
        ({}, None),
        (
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tHalfAPair"},
            "ALIBABA_CLOUD_ACCESS_KEY_ID is set "
            "but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not: set both.",
        ),
    ):
        said = {}
        for name, args in commands.items():
            out = agent(*args, env=environment(world, **half), cwd=world)
            assert out.returncode == 1, out.stderr
            assert "Traceback" not in out.stdout + out.stderr
            prefix = f"ipc-agent {name}: "
            assert out.stderr.startswith(prefix), out.stderr
            said[name] = out.stderr[len(prefix) :]
        assert len(set(said.values())) == 1, said
        text = said["search"]
        for place in (
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "~/.aliyun/config.json",
            "~/.alibabacloud/credentials.ini",
            "ECS RAM role",
            "OIDC",
            "ALIBABA_CLOUD_CREDENTIALS_URI",
        ):
            assert place in text
        assert (hint in text) if hint else ("is set but" not in text)


def test_the_credentials_library_traceback_never_reaches_the_user(world):
    """A credentials provider that fails (a credentials URI nobody serves) makes the library
    log a traceback of its internals: a one-shot command drops it, the daemon's log keeps
    the one-line message without it."""
    uri = {"ALIBABA_CLOUD_CREDENTIALS_URI": f"http://127.0.0.1:{free_tcp_port()}/credentials"}
    out = agent(
        "cloud",
        "init",
        "--config",
        str(world / "cloud.toml"),
        env=environment(world, **uri),
        cwd=world,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    assert out.stderr.startswith("ipc-agent cloud init: " + NO_CREDENTIALS)
    assert len(out.stderr.strip().splitlines()) == 1
    daemon_side = (
        "from agent import logs\n"
        "from agent.deliver.credentials import CredentialSource, CredentialsError\n"
        "logs.setup('info')\n"
        "try:\n    CredentialSource().get()\nexcept CredentialsError:\n    print('raised')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", daemon_side],
        capture_output=True,
        text=True,
        env=environment(world, **uri),
        timeout=120,
    )
    assert out.stdout.strip() == "raised"
    assert "ERROR credentials:" in out.stderr  # the library's own line, kept
    assert "Traceback" not in out.stderr


def test_an_unexpected_error_is_one_line_that_says_what_to_do(world):
    """The last resort: a spool newer than this agent raises an error no command handles."""
    data = world / "data"
    import sqlite3

    with sqlite3.connect(data / "spool.db") as db:
        db.execute("PRAGMA user_version = 999")
    out = agent("queue", "--config", str(world / "good.toml"), env=environment(world), cwd=world)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("ipc-agent queue: unexpected error: RuntimeError: ")
    assert "spool schema 999 is newer than this agent" in out.stderr
    assert "IPC_AGENT_DEBUG=1 shows the traceback" in out.stderr
    out = agent(
        "queue",
        "--config",
        str(world / "good.toml"),
        env=environment(world, IPC_AGENT_DEBUG="1"),
        cwd=world,
    )
    assert "Traceback" in out.stderr  # what a bug report needs, on request


def test_a_reader_that_leaves_early_gets_no_broken_pipe_noise(world):
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "queue", "--config", str(world / "good.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(world),
        cwd=world,
    )
    proc.stdout.close()  # like `ipc-agent queue | head -0`
    err = proc.stderr.read().decode()
    proc.wait(60)
    proc.stderr.close()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_status_without_a_daemon_or_a_spool_says_so(world):
    fresh = world / "fresh.toml"
    fresh.write_text(
        f'[agent]\ndata_dir = "{world / "fresh"}"\n[[cameras]]\nname = "cam"\nurl = "/x.mp4"\n'
    )
    out = agent("status", "--config", str(fresh), env=environment(world), cwd=world)
    assert out.returncode == 3, out.stderr
    assert "DAEMON NOT RUNNING" in out.stdout
    assert "\nspool: none yet" in out.stdout
    said = "".join(out.stdout.split())  # long lines wrap, anywhere in a path
    assert f"spool:noneyet(nocliprecordedin{world / 'fresh'})" in said


def test_the_example_config_names_the_command_that_checks_it():
    example = Path(__file__).parent.parent / "systemd" / "agent.example.toml"
    header = example.read_text().splitlines()[:5]
    assert any("ipc-agent config check /etc/ipc-agent/agent.toml" in line for line in header)
    out = subprocess.run(
        [sys.executable, "-m", "agent", "config", "check", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_a_bare_environment_still_gets_sentences(world):
    """No HOME, the C locale, no PATH beyond the interpreter's: as under a minimal init."""
    env = environment(world, LANG="C", LC_ALL="C", PATH="/nonexistent")
    del env["HOME"]
    for args, code, says in (
        (("cloud", "init", "--config", str(world / "cloud.toml")), 1, NO_CREDENTIALS),
        (("status", "--config", str(world / "good.toml")), 3, "DAEMON NOT RUNNING"),
        (("queue", "--config", str(world / "good.toml"), "--camera", "été"), 0, "0 clip(s)"),
    ):
        out = agent(*args, env=env, cwd=world)
        assert "Traceback" not in out.stdout + out.stderr, out.stderr
        assert out.returncode == code, out.stderr
        assert says in out.stdout + out.stderr
