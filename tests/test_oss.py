"""OSS upload against a real local OSS: moto's S3 server behind the adapter of ``fake_oss.py``.

Both run as real processes; oss2 talks HTTP to the adapter, which checks V4 signatures,
Content-MD5 and x-oss-traffic-limit like OSS, logs every request and injects faults.  Crash
tests run the uploader in a child process and SIGKILL it while the adapter holds one part.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import oss2
import pytest

from agent.deliver.credentials import (
    Credentials,
    CredentialsError,
    CredentialSource,
    OssCredentialsProvider,
    StaticCredentialSource,
)
from agent.deliver.oss import (
    MAX_TRAFFIC_LIMIT_BPS,
    MIN_TRAFFIC_LIMIT_BPS,
    OssError,
    OssUploader,
    classify_error,
    file_digests,
    normalize_prefix,
    object_key,
)
from tests.support.fake_oss import FakeOss, crc64
from tests.support.oss_upload import BUCKET, PART, THRESHOLD, write_file

REPO = Path(__file__).resolve().parent.parent


def _ops(records: list[dict[str, Any]]) -> list[str]:
    return [r["op"] for r in records]


def _parts(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["params"]["partNumber"]) for r in records if r["op"] == "UploadPart"]


# -- keys --------------------------------------------------------------------------------


def test_object_key_layout() -> None:
    t = 1709337599.5  # 2024-03-01T23:59:59.5Z: the UTC date, whatever the local zone
    assert (
        object_key("", "gw-0001", "front-door", t, "front-door_20240301T235959Z_a1b2c3", ".mp4")
        == "gw-0001/front-door/2024/03/01/front-door_20240301T235959Z_a1b2c3.mp4"
    )
    assert (
        object_key("ipc/", "gw", "cam", t + 1, "c1", "_2.jpg") == "ipc/gw/cam/2024/03/02/c1_2.jpg"
    )
    for prefix in ("ipc", "/ipc", "ipc/", "/ipc//", " ipc "):
        assert normalize_prefix(prefix) == "ipc/"
    assert normalize_prefix("a/b") == "a/b/"
    assert normalize_prefix("") == normalize_prefix("/") == ""
    assert object_key("/a/b", "d", "c", 0, "x", ".mp4") == "a/b/d/c/1970/01/01/x.mp4"
    for bad in ({"device_id": ""}, {"camera": "a/b"}, {"clip_id": ".."}, {"suffix": "/x"}):
        args = {"device_id": "d", "camera": "c", "clip_id": "x", "suffix": ".mp4"} | bad
        with pytest.raises(ValueError):
            object_key("", args["device_id"], args["camera"], 0, args["clip_id"], args["suffix"])


# -- simple uploads ----------------------------------------------------------------------


def test_small_put_sends_content_md5_and_checks_crc64(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    data = write_file(tmp_path / "c.mp4", 50_000)
    up = make_oss_uploader()
    res = up.upload_file("gw/cam/2024/03/01/c.mp4", tmp_path / "c.mp4")
    assert not res.multipart and not res.skipped
    assert res.size == len(data)
    assert res.crc64 == crc64(data)
    assert res.request_id
    assert oss_server.object_bytes(BUCKET, "gw/cam/2024/03/01/c.mp4") == data

    (put,) = oss_server.requests()
    assert put["op"] == "PutObject" and put["status"] == 200
    assert put["key"] == "gw/cam/2024/03/01/c.mp4"
    assert put["headers"]["content-md5"] == res.md5 == file_digests(tmp_path / "c.mp4")[2]
    assert put["headers"]["content-type"] == "video/mp4"
    assert put["access_key_id"] == oss_server.access_key_id
    assert "x-oss-traffic-limit" not in put["headers"]


def test_crc_mismatch_reported_by_oss_is_retryable(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    write_file(tmp_path / "k_0.jpg", 20_000)
    oss_server.fault("bad-crc", op="PutObject")
    with pytest.raises(OssError) as info:
        make_oss_uploader().upload_file("k_0.jpg", tmp_path / "k_0.jpg")
    # Our check (oss2's own CRC is off: we compute it once per file).
    assert info.value.retryable and info.value.code == "CrcMismatch"
    make_oss_uploader().upload_file("k_0.jpg", tmp_path / "k_0.jpg")  # the caller's retry


def test_fake_rejects_bad_content_md5_and_traffic_limit(oss_server: FakeOss) -> None:
    """The adapter's own checks, through plain oss2 (our uploader never sends these)."""
    auth = oss2.ProviderAuthV4(
        oss2.credentials.StaticCredentialsProvider(
            oss_server.access_key_id, oss_server.access_key_secret
        )
    )
    bucket = oss2.Bucket(auth, oss_server.endpoint, BUCKET, region=oss_server.region)
    with pytest.raises(oss2.exceptions.OssError) as info:
        bucket.put_object("x", b"abc", headers={"Content-MD5": oss2.utils.content_md5(b"abd")})
    assert (info.value.status, info.value.code) == (400, "InvalidDigest")
    assert not classify_error(info.value).retryable
    for limit in ("819199", "838860801", "fast"):
        with pytest.raises(oss2.exceptions.OssError) as info:
            bucket.put_object("x", b"abc", headers={"x-oss-traffic-limit": limit})
        assert (info.value.status, info.value.code) == (400, "InvalidArgument")
    v1 = oss2.Bucket(
        oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret),
        oss_server.endpoint,
        BUCKET,
    )
    with pytest.raises(oss2.exceptions.OssError) as info:
        v1.put_object("x", b"abc")
    assert info.value.status == 403
    assert oss_server.object_bytes(BUCKET, "x") is None


# -- multipart and resume ------------------------------------------------------------------


def test_multipart_upload_in_small_parts(
    oss_server: FakeOss,
    make_oss_uploader: Callable[..., OssUploader],
    tmp_path: Path,
    checkpoint_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # oss2's default checkpoint place: must stay unused
    data = write_file(tmp_path / "big.mp4", 1_000_000)
    res = make_oss_uploader().upload_file("big.mp4", tmp_path / "big.mp4")
    assert res.multipart and res.resumed_bytes == 0 and res.crc64 == crc64(data)
    assert oss_server.object_bytes(BUCKET, "big.mp4") == data

    recs = oss_server.requests()
    assert _ops(recs)[0] == "InitiateMultipartUpload"
    assert _ops(recs)[-1] == "CompleteMultipartUpload"
    assert _parts(recs) == list(range(1, 11))
    sizes = [r["body_size"] for r in recs if r["op"] == "UploadPart"]
    assert sizes == [PART] * 9 + [len(data) - 9 * PART]
    assert all(r["status"] == 200 for r in recs)
    assert checkpoint_dir.is_dir() and list(checkpoint_dir.iterdir()) == []  # done: removed
    assert list(home.iterdir()) == []


def test_transient_error_mid_multipart_resumes_on_next_call(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    data = write_file(tmp_path / "m.mp4", 700_000)
    up = make_oss_uploader()
    oss_server.fault(
        "status", op="UploadPart", params={"partNumber": 3}, status=503, code="SlowDown"
    )
    with pytest.raises(OssError) as info:
        up.upload_file("m.mp4", tmp_path / "m.mp4")
    assert info.value.retryable and info.value.status == 503 and info.value.code == "SlowDown"
    assert up.checkpoint_path("m.mp4", tmp_path / "m.mp4").is_file()

    mark = len(oss_server.requests())
    res = up.upload_file("m.mp4", tmp_path / "m.mp4")
    assert res.resumed_bytes == 2 * PART
    again = oss_server.requests(mark)
    assert "InitiateMultipartUpload" not in _ops(again)
    assert _parts(again) == [3, 4, 5, 6, 7]
    assert oss_server.object_bytes(BUCKET, "m.mp4") == data


_CHILD = textwrap.dedent(
    """
    import json, sys
    from agent.deliver.credentials import Credentials, StaticCredentialSource
    from agent.deliver.oss import OssUploader

    a = json.loads(sys.argv[1])
    up = OssUploader(
        endpoint=a["endpoint"], region=a["region"], bucket=a["bucket"],
        credentials=StaticCredentialSource(Credentials(a["ak"], a["sk"])),
        checkpoint_dir=a["checkpoint_dir"], multipart_threshold=a["threshold"],
        part_size=a["part_size"], read_timeout=30.0,
    )
    r = up.upload_file(a["key"], a["path"])
    print(json.dumps({"crc64": r.crc64, "resumed_bytes": r.resumed_bytes, "size": r.size}))
    """
)


def _spawn_upload(
    oss_server: FakeOss, checkpoint_dir: Path, key: str, path: Path
) -> subprocess.Popen:
    args = {
        "endpoint": oss_server.endpoint,
        "region": oss_server.region,
        "bucket": BUCKET,
        "ak": oss_server.access_key_id,
        "sk": oss_server.access_key_secret,
        "checkpoint_dir": str(checkpoint_dir),
        "threshold": THRESHOLD,
        "part_size": PART,
        "key": key,
        "path": str(path),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_upload_killed_mid_multipart_resumes_in_a_new_process(
    oss_server: FakeOss, tmp_path: Path, checkpoint_dir: Path
) -> None:
    data = write_file(tmp_path / "crash.mp4", 1_000_000)
    key = "gw/cam/2024/03/01/crash.mp4"
    # Part 4 is held unanswered: the child is surely past parts 1-3 and blocked when we kill.
    oss_server.fault("stall", op="UploadPart", params={"partNumber": 4})
    child = _spawn_upload(oss_server, checkpoint_dir, key, tmp_path / "crash.mp4")
    try:
        held = oss_server.wait_for_request(
            lambda r: r["op"] == "UploadPart" and r["params"]["partNumber"] == "4", timeout=20
        )
        checkpoints = list(checkpoint_dir.iterdir())
        assert len(checkpoints) == 1  # the upload id, under the configured directory
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    first = oss_server.requests()
    assert _parts(first) == [1, 2, 3, 4]
    assert [r["status"] for r in first if r["op"] == "UploadPart"] == [200, 200, 200, None]
    upload_id = held["params"]["uploadId"]
    oss_server.clear_faults()  # the held request is reset now; moto never saw part 4

    mark = len(oss_server.requests())
    child = _spawn_upload(oss_server, checkpoint_dir, key, tmp_path / "crash.mp4")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    result = json.loads(out)
    assert result == {"crc64": crc64(data), "resumed_bytes": 3 * PART, "size": len(data)}

    second = oss_server.requests(mark)
    assert "InitiateMultipartUpload" not in _ops(second)
    assert "ListParts" in _ops(second)  # how oss2 learns which parts OSS already has
    assert _parts(second) == list(range(4, 11))
    assert {r["params"]["uploadId"] for r in second if "uploadId" in r["params"]} == {upload_id}
    assert _ops(second)[-1] == "CompleteMultipartUpload"
    assert oss_server.object_bytes(BUCKET, key) == data
    assert list(checkpoint_dir.iterdir()) == [] and checkpoints[0].parent == checkpoint_dir


# -- bandwidth -----------------------------------------------------------------------------


def test_traffic_limit_header_on_put_and_every_part(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    write_file(tmp_path / "s.jpg", 10_000)
    write_file(tmp_path / "l.mp4", 450_000)
    up = make_oss_uploader(traffic_limit_bps=MIN_TRAFFIC_LIMIT_BPS)
    up.upload_file("s.jpg", tmp_path / "s.jpg")
    up.upload_file("l.mp4", tmp_path / "l.mp4")
    sent = [r for r in oss_server.requests() if r["op"] in ("PutObject", "UploadPart")]
    assert len(sent) == 1 + 5
    assert {r["headers"].get("x-oss-traffic-limit") for r in sent} == {str(MIN_TRAFFIC_LIMIT_BPS)}


@pytest.mark.parametrize(
    "limit", [MIN_TRAFFIC_LIMIT_BPS - 1, MAX_TRAFFIC_LIMIT_BPS + 1, 0, 1e6, True]
)
def test_traffic_limit_out_of_range_is_a_config_error(
    limit: Any, make_oss_uploader: Callable[..., OssUploader]
) -> None:
    with pytest.raises(ValueError, match="819200"):
        make_oss_uploader(traffic_limit_bps=limit)


# -- errors --------------------------------------------------------------------------------


def test_wrong_access_key_is_not_retryable_and_leaks_no_secret(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    write_file(tmp_path / "a.jpg", 5_000)
    with pytest.raises(OssError) as info:
        make_oss_uploader(
            access_key_id="LTAI5tWrongKey", access_key_secret="s3cr3t-value"
        ).upload_file("a.jpg", tmp_path / "a.jpg")
    err = info.value
    assert (err.retryable, err.code, err.status) == (False, "InvalidAccessKeyId", 403)
    assert err.request_id and err.request_id in str(err)
    assert "s3cr3t-value" not in str(err) and "s3cr3t-value" not in repr(err.args)

    with pytest.raises(OssError) as info:
        make_oss_uploader(access_key_secret="wrong-secret").upload_file("a.jpg", tmp_path / "a.jpg")
    assert (info.value.retryable, info.value.code) == (False, "SignatureDoesNotMatch")
    assert oss_server.object_bytes(BUCKET, "a.jpg") is None


def test_503_and_connection_reset_are_retryable(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    data = write_file(tmp_path / "r.mp4", 30_000)
    up = make_oss_uploader()
    oss_server.fault("status", op="PutObject", status=503, code="ServiceUnavailable")
    with pytest.raises(OssError) as info:
        up.upload_file("r.mp4", tmp_path / "r.mp4")
    assert (info.value.retryable, info.value.status) == (True, 503)

    oss_server.fault("reset", op="PutObject")
    with pytest.raises(OssError) as info:
        up.upload_file("r.mp4", tmp_path / "r.mp4")
    assert (info.value.retryable, info.value.code) == (True, "RequestError")
    assert "ConnectionError" in info.value.message

    oss_server.fault("status", op="HeadObject", status=500, code="InternalError")
    with pytest.raises(OssError) as info:
        up.exists("r.mp4")
    assert (info.value.retryable, info.value.status) == (True, 500)

    assert oss_server.object_bytes(BUCKET, "r.mp4") is None
    up.upload_file("r.mp4", tmp_path / "r.mp4")  # faults used up: the caller's retry works
    assert oss_server.object_bytes(BUCKET, "r.mp4") == data
    assert [r.get("fault") for r in oss_server.requests()][:2] == ["status", "reset"]


def test_read_timeout_is_retryable(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    write_file(tmp_path / "t.jpg", 1_000)
    oss_server.fault("delay", op="PutObject", seconds=1.0)
    with pytest.raises(OssError) as info:
        make_oss_uploader(read_timeout=0.2).upload_file("t.jpg", tmp_path / "t.jpg")
    assert (info.value.retryable, info.value.code) == (True, "RequestError")
    assert "Timeout" in info.value.message


def test_classify_error_table() -> None:
    def server(status: int, code: str) -> oss2.exceptions.OssError:
        return oss2.exceptions.ServerError(status, {}, b"", {"Code": code, "Message": "m"})

    retryable = [
        (500, "InternalError"),
        (502, ""),
        (503, "SlowDown"),
        (503, "ServiceUnavailable"),
        (403, "RequestTimeTooSkewed"),
        (403, "SecurityTokenExpired"),
        (404, "NoSuchUpload"),
        (400, "RequestTimeout"),
        (429, ""),
    ]
    final = [
        (403, "AccessDenied"),
        (403, "InvalidAccessKeyId"),
        (403, "SignatureDoesNotMatch"),
        (404, "NoSuchBucket"),
        (400, "InvalidArgument"),
        (400, "EntityTooSmall"),
    ]
    for status, code in retryable:
        assert classify_error(server(status, code)).retryable, (status, code)
    for status, code in final:
        assert not classify_error(server(status, code)).retryable, (status, code)
    assert classify_error(oss2.exceptions.RequestError(OSError("x"))).retryable
    assert classify_error(oss2.exceptions.InconsistentError("crc", "rid")).retryable
    assert not classify_error(oss2.exceptions.ClientError("bad")).retryable
    for other in (ValueError("not oss"), CredentialsError("none")):
        with pytest.raises(TypeError):
            classify_error(other)


def test_missing_bucket_is_not_retryable(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    write_file(tmp_path / "n.jpg", 1_000)
    with pytest.raises(OssError) as info:
        make_oss_uploader(bucket="no-such-bucket").upload_file("n.jpg", tmp_path / "n.jpg")
    assert (info.value.retryable, info.value.code, info.value.status) == (
        False,
        "NoSuchBucket",
        404,
    )


# -- exists / skip -------------------------------------------------------------------------


def test_exists_and_ensure_uploaded_skips_identical_object(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    up = make_oss_uploader()
    data = write_file(tmp_path / "e.mp4", 300_000)
    assert up.exists("e.mp4") is None
    res = up.upload_file("e.mp4", tmp_path / "e.mp4")
    meta = up.exists("e.mp4")
    assert meta is not None
    assert (meta.size, meta.crc64) == (len(data), res.crc64)

    oss_server.clear_requests()
    again = up.ensure_uploaded("e.mp4", tmp_path / "e.mp4")  # e.g. after a crash before commit
    assert again.skipped and again.crc64 == res.crc64
    assert _ops(oss_server.requests()) == ["HeadObject"]

    write_file(tmp_path / "e.mp4", 300_000, seed=1)  # a different file under the same key
    oss_server.clear_requests()
    changed = up.ensure_uploaded("e.mp4", tmp_path / "e.mp4")
    assert not changed.skipped
    assert _ops(oss_server.requests())[:2] == ["HeadObject", "InitiateMultipartUpload"]
    assert oss_server.object_bytes(BUCKET, "e.mp4") == (tmp_path / "e.mp4").read_bytes()


# -- credentials ---------------------------------------------------------------------------


class _CountingSource(CredentialSource):
    """Hands out whatever ``current`` is, counting calls (an STS chain refreshing)."""

    def __init__(self, current: Credentials) -> None:
        super().__init__()
        self.current = current
        self.calls = 0

    def get(self) -> Credentials:
        self.calls += 1
        return self.current


def test_sts_token_is_asked_for_per_request_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "CAIS-sts-token-value-0123456789"
    write_file(tmp_path / "s.jpg", 2_000)
    with FakeOss(security_token=token) as server:
        server.create_bucket(BUCKET)
        stale = Credentials(server.access_key_id, server.access_key_secret, "expired-token")
        source = _CountingSource(stale)
        up = OssUploader(
            endpoint=server.endpoint,
            region=server.region,
            bucket=BUCKET,
            credentials=source,
            checkpoint_dir=tmp_path / "ckpt",
        )
        caplog.set_level(logging.DEBUG)
        with pytest.raises(OssError) as info:
            up.upload_file("s.jpg", tmp_path / "s.jpg")
        assert info.value.code == "InvalidSecurityToken"
        source.current = Credentials(server.access_key_id, server.access_key_secret, token)
        up.upload_file("s.jpg", tmp_path / "s.jpg")  # the refreshed token is used at once
        assert up.exists("s.jpg") is not None
        assert source.calls == 3
        assert all(r["security_token"] for r in server.requests())
    for secret in (token, server.access_key_secret):
        assert secret not in caplog.text
        assert secret not in str(info.value)


class _NoCredentials(CredentialSource):
    def get(self) -> Credentials:
        raise CredentialsError("no Alibaba Cloud credentials found (test)")


def test_missing_credentials_propagate_as_credentials_error(
    oss_server: FakeOss, make_oss_uploader: Callable[..., OssUploader], tmp_path: Path
) -> None:
    """The delivery loop pauses on CredentialsError instead of failing the clip."""
    write_file(tmp_path / "c.jpg", 1_000)
    up = make_oss_uploader(credentials=_NoCredentials())
    with pytest.raises(CredentialsError):
        up.upload_file("c.jpg", tmp_path / "c.jpg")
    with pytest.raises(CredentialsError):
        up.exists("c.jpg")
    assert oss_server.requests() == []  # nothing unsigned was sent


def test_oss_credentials_provider_bridge() -> None:
    provider = OssCredentialsProvider(StaticCredentialSource(Credentials("AK", "SK")))
    c = provider.get_credentials()
    assert (c.get_access_key_id(), c.get_access_key_secret(), c.get_security_token()) == (
        "AK",
        "SK",
        "",
    )
    assert "SK" not in repr(Credentials("AK", "SK", "TOKEN"))
    assert "TOKEN" not in repr(StaticCredentialSource(Credentials("AK", "SK", "TOKEN")))


_CHAIN_CHILD = textwrap.dedent(
    """
    import json
    from agent.deliver.credentials import CredentialSource, CredentialsError
    try:
        c = CredentialSource().get()
        print(json.dumps({"ak": c.access_key_id, "sk": c.access_key_secret,
                          "token": c.security_token}))
    except CredentialsError as e:
        print(json.dumps({"error": str(e)}))
    """
)


def _chain(tmp_path: Path, **env: str) -> dict[str, Any]:
    """Run the default chain in a fresh process (the library reads the environment once)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    clean.update(HOME=str(home), ALIBABA_CLOUD_ECS_METADATA_DISABLED="true", **env)
    res = subprocess.run(
        [sys.executable, "-c", _CHAIN_CHILD],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_credential_chain_reads_environment(tmp_path: Path) -> None:
    got = _chain(
        tmp_path,
        ALIBABA_CLOUD_ACCESS_KEY_ID="LTAI5tEnvKey",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET="env-secret",
        ALIBABA_CLOUD_SECURITY_TOKEN="env-token",
    )
    assert got == {"ak": "LTAI5tEnvKey", "sk": "env-secret", "token": "env-token"}


def test_credential_chain_reads_credentials_file(tmp_path: Path) -> None:
    ini = tmp_path / "credentials.ini"
    ini.write_text(
        "[default]\ntype = access_key\n"
        "access_key_id = LTAI5tFile\naccess_key_secret = file-secret\n"
    )
    got = _chain(tmp_path, ALIBABA_CLOUD_CREDENTIALS_FILE=str(ini))
    assert got == {"ak": "LTAI5tFile", "sk": "file-secret", "token": None}


def test_no_credentials_error_says_what_was_tried(tmp_path: Path) -> None:
    got = _chain(tmp_path, ALIBABA_CLOUD_ACCESS_KEY_SECRET="lonely-secret")
    msg = got["error"]
    for hint in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "credentials.ini", "ECS RAM role", "config.json"):
        assert hint in msg
    assert "lonely-secret" not in msg
