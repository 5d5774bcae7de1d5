"""The cloud-answers corpus: what OSS, ICE and the proxies in between answer when things go
wrong, served by the real local OSS and ICE servers (their "raw" faults send exact bytes).

Each answer must become a typed error (IceError / OssError) with the right retry verdict,
and the uploader must make the right decision: a transient fault defers the clip and backs
off, rejected credentials pause delivery without failing clips, a refused request fails the
clip with the service's reason — and none of it ever escapes `DeliveryLoop.step` as another
exception (which would end an upload worker thread).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agent.deliver.acs import Credentials
from agent.deliver.credentials import StaticCredentialSource
from agent.deliver.ice import (
    MAX_ANSWER_BYTES,
    IceAuthError,
    IceClient,
    IceError,
    IceNotFound,
    IceServerError,
)
from agent.deliver.oss import OssError, OssUploader
from tests.support.delivery import (
    AK,
    BUCKET,
    REGION,
    SK,
    Clock,
    assert_registered_once,
    drain,
    make_clips,
    make_uploader,
)
from tests.support.fake_ice import FakeIce

LIB = "IPCamera_test"
HTML = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def client(ice: FakeIce) -> Iterator[IceClient]:  # noqa: F811 - the fixture above
    with IceClient(ice.url, lambda: Credentials(AK, SK)) as c:
        yield c


def raw_ice(ice: FakeIce, action: str, status: int, body: str, **kw) -> None:  # noqa: F811
    ice.control("fault", action=action, kind="raw", status=status, body=body, count=1, **kw)


# -- ICE: each answer becomes a typed error with the right verdict -----------------------------

ICE_ANSWERS = {
    # name: (status, content type, body, repeat, error class, retryable, in the message)
    "malformed-json": (
        200,
        "application/json",
        '{"RequestId": "R", "Med',
        1,
        IceServerError,
        True,
        "non-JSON",
    ),
    "json-array": (200, "application/json", "[1, 2]", 1, IceServerError, True, "[1, 2]"),
    "html-502": (502, "text/html", HTML, 1, IceServerError, True, "HTTP 502"),
    "html-403-waf": (
        403,
        "text/html",
        "<html>Access denied by WAF</html>",
        1,
        IceAuthError,
        False,
        "HTTP 403",
    ),
    "html-404": (404, "text/html", "<html>Not Found</html>", 1, IceNotFound, False, "HTTP 404"),
    "html-200-captive-portal": (
        200,
        "text/html",
        "<html>Log in to Wi-Fi</html>",
        1,
        IceServerError,
        True,
        "Log in",
    ),
    "huge-html-502": (502, "text/html", HTML, 100_000, IceServerError, True, "larger than"),
    "huge-json-200": (
        200,
        "application/json",
        " " * 1000,
        5_000,
        IceServerError,
        True,
        "larger than",
    ),
    "empty-500": (500, "application/json", "", 1, IceServerError, True, "HTTP 500"),
}


@pytest.mark.parametrize("name", sorted(ICE_ANSWERS))
def test_ice_answers_become_typed_errors(ice, client, name):  # noqa: F811
    status, ctype, body, repeat, cls, retryable, needle = ICE_ANSWERS[name]
    assert len(body) * repeat <= MAX_ANSWER_BYTES or needle == "larger than"
    raw_ice(ice, "QuerySearchLib", status, body, repeat=repeat, content_type=ctype)
    with pytest.raises(IceError) as err:
        client.query_search_lib(LIB)
    assert type(err.value) is cls, f"{name}: {type(err.value).__name__}: {err.value}"
    assert err.value.retryable is retryable, f"{name}: {err.value}"
    message = str(err.value)
    assert needle in message and len(message) < 600, message[:700]
    assert "QuerySearchLib" in message, message
    client.query_search_lib(LIB)  # the same client goes on working


ICE_FIELDS = {
    # an answer with missing or wrongly typed fields: (action, body)
    "jobs-not-a-list": ("QueryMediaIndexJob", {"IndexJobInfoList": 5}),
    "jobs-a-string": ("QueryMediaIndexJob", {"IndexJobInfoList": "Success"}),
    "media-list-a-dict": ("SearchMediaByHybrid", {"MediaList": {"MediaId": "x"}, "Total": 1}),
    "total-not-a-number": ("SearchMediaByHybrid", {"MediaList": [], "Total": "many"}),
    "clip-info-a-number": (
        "SearchMediaByHybrid",
        {"MediaList": [{"MediaId": "m", "ClipInfo": 3}], "Total": 1},
    ),
    "index-info-a-string": ("QuerySearchLib", {"SearchLibName": LIB, "IndexInfo": "mm"}),
}


@pytest.mark.parametrize("name", sorted(ICE_FIELDS))
def test_ice_answers_with_wrong_field_types_are_server_errors(ice, client, name):  # noqa: F811
    action, body = ICE_FIELDS[name]
    raw_ice(
        ice, action, 200, json.dumps({"RequestId": "R", **body}), content_type="application/json"
    )
    call = {
        "QueryMediaIndexJob": lambda: client.query_media_index_job(LIB, "m" * 32),
        "SearchMediaByHybrid": lambda: client.search_media_by_hybrid(LIB, "a person"),
        "QuerySearchLib": lambda: client.query_search_lib(LIB),
    }[action]
    with pytest.raises(IceServerError, match="unexpected answer") as err:
        call()
    assert err.value.retryable


def test_ice_answers_without_optional_fields_are_accepted(ice, client):  # noqa: F811
    raw_ice(ice, "InsertMediaToSearchLib", 200, "{}", content_type="application/json")
    assert client.insert_media(LIB, "ns", "m" * 32, "oss://b/k.mp4", [], None) == "m" * 32
    raw_ice(ice, "QueryMediaIndexJob", 200, '{"RequestId": "R"}', content_type="application/json")
    jobs = client.query_media_index_job(LIB, "m" * 32)
    assert not jobs.succeeded and not jobs.failed  # polled again later, not a verdict


# -- OSS: XML errors, HTML pages, huge bodies ---------------------------------------------------


@pytest.fixture
def uploader(tmp_path, oss) -> OssUploader:  # noqa: F811
    return OssUploader(
        endpoint=oss.endpoint,
        region=REGION,
        bucket=BUCKET,
        credentials=StaticCredentialSource(Credentials(AK, SK)),
        checkpoint_dir=tmp_path / "ckpt",
    )


OSS_ANSWERS = {
    # name: (fault spec, retryable, code, in the message)
    "html-502": (dict(kind="raw", status=502, body=HTML), True, "HTTP502", "HTTP 502"),
    "html-403-proxy": (
        dict(kind="raw", status=403, body="<html>Forbidden</html>"),
        False,
        "HTTP403",
        "HTTP 403",
    ),
    "malformed-xml-500": (
        dict(
            kind="raw",
            status=500,
            body="<?xml version='1.0'?><Error><Code>Intern",
            content_type="application/xml",
        ),
        True,
        "HTTP500",
        "HTTP 500",
    ),
    "huge-html-503": (
        dict(kind="raw", status=503, body=HTML, repeat=200_000),
        True,
        "HTTP503",
        "HTTP 503",
    ),
    "xml-invalid-argument": (
        dict(kind="status", status=400, code="InvalidArgument"),
        False,
        "InvalidArgument",
        "request id",
    ),
    "xml-no-such-bucket": (
        dict(kind="status", status=404, code="NoSuchBucket"),
        False,
        "NoSuchBucket",
        "HTTP 404",
    ),
    "xml-token-expired-403": (
        dict(kind="status", status=403, code="SecurityTokenExpired"),
        True,
        "SecurityTokenExpired",
        "HTTP 403",
    ),
    "xml-slow-down": (
        dict(kind="status", status=503, code="SlowDown"),
        True,
        "SlowDown",
        "HTTP 503",
    ),
}


@pytest.mark.parametrize("name", sorted(OSS_ANSWERS))
def test_oss_answers_become_typed_errors(oss, uploader, tmp_path, name):  # noqa: F811
    spec, retryable, code, needle = OSS_ANSWERS[name]
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00" * 10_000)
    oss.fault(op="PutObject", **spec)
    with pytest.raises(OssError) as err:
        uploader.upload_file(f"answers/{name}.mp4", path)
    assert err.value.retryable is retryable, str(err.value)
    assert err.value.code == code, str(err.value)
    message = str(err.value)
    assert needle in message and len(message) < 600, message[:700]
    assert uploader.upload_file(f"answers/{name}.mp4", path).size == 10_000  # goes on working


# -- the uploader's decision -------------------------------------------------------------------

DECISIONS = {
    # name: (where the fault goes, fault, state of the clip after one step, health reason)
    "ice-html-502-on-insert": (
        "ice",
        ("InsertMediaToSearchLib", 502, HTML),
        "uploaded",
        "cloud unreachable",
    ),
    "ice-garbled-json-on-index": (
        "ice",
        ("QueryMediaIndexJob", 200, '{"Index'),
        "registered",
        "cloud unreachable",
    ),
    "ice-jobs-not-a-list": (
        "ice",
        ("QueryMediaIndexJob", 200, '{"IndexJobInfoList": 7}'),
        "registered",
        "cloud unreachable",
    ),
    "ice-token-expired": (
        "ice-error",
        ("InsertMediaToSearchLib", 403, "InvalidSecurityToken.Expired"),
        "uploaded",
        "credentials rejected",
    ),
    "oss-token-expired": (
        "oss",
        dict(kind="status", status=403, code="SecurityTokenExpired"),
        "uploading",
        "credentials rejected",
    ),
    "oss-proxy-403-page": (
        "oss",
        dict(kind="raw", status=403, body="<html>Forbidden</html>"),
        "uploading",
        "credentials rejected",
    ),
    "oss-html-502": (
        "oss",
        dict(kind="raw", status=502, body=HTML),
        "uploading",
        "cloud unreachable",
    ),
    "oss-xml-invalid-argument": (
        "oss",
        dict(kind="status", status=400, code="InvalidArgument"),
        "failed",
        None,
    ),
}


def _stage(up, spool, clock, state: str) -> None:
    """Step until the clip is in `state` (the stage the fault is aimed at)."""
    o, i = up.make_oss(), up.make_ice()
    try:
        for _ in range(20):
            [row] = spool.rows()
            if row.state == state:
                return
            if not up.step(spool, o, i):
                clock.now += 1
    finally:
        i.close()
    raise AssertionError(f"clip never reached {state}: {row.state}")


@pytest.mark.parametrize("name", sorted(DECISIONS))
def test_the_uploader_decides_right_for_each_answer(tmp_path, oss, ice, name):  # noqa: F811
    target, fault, state_after, reason = DECISIONS[name]
    spool = make_clips(tmp_path, 1)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock, max_backoff=60)
    if target.startswith("ice"):
        action = fault[0]
        _stage(up, spool, clock, "uploaded" if action == "InsertMediaToSearchLib" else "registered")
        if target == "ice-error":
            ice.control("fault", action=action, kind="error", status=fault[1], code=fault[2])
        else:
            raw_ice(ice, action, fault[1], fault[2], content_type="application/json")
    else:
        oss.fault(op="PutObject", count=1, **fault)
    o, i = up.make_oss(), up.make_ice()
    try:
        assert up.step(spool, o, i), "nothing was due"  # must not raise, whatever came back
    finally:
        i.close()
    [row] = spool.rows()
    assert row.state == state_after, (row.state, row.reason, row.last_error)
    if reason is None:
        assert row.reason and "InvalidArgument" in row.reason, row.reason
        assert up.health.online, "a refused request is not an outage"
        return
    assert not up.health.online and up.health.reason == reason, up.health
    assert row.last_error, "the deferred clip does not say why"
    assert SK not in (row.last_error or "") and SK not in (up.last_error or ("", ""))[1]
    drain(up, spool, clock)  # the fault was one answer: everything goes through afterwards
    assert_registered_once(spool, oss, ice)
