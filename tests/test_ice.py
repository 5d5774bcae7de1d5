"""The ICE client against the fake ICE server running as a real process on loopback.

The fake re-verifies every signature from the raw request it received, so a signing or
encoding bug in the client shows up here as ``SignatureDoesNotMatch``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from agent.deliver.acs import Credentials, sign
from agent.deliver.ice import (
    IceAlreadyExists,
    IceAuthError,
    IceClient,
    IceClockSkew,
    IceConnectionError,
    IceCredentialsError,
    IceError,
    IceNotFound,
    IceParameterError,
    IceServerError,
    IceThrottled,
    IceTimeout,
    classify_error,
)
from tests.support.fake_ice import FakeIce, free_tcp_port

LIB = "IPCamera_test"
CLIP = "front-door_20260101T120000Z_a1b2c3"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback must never go through a proxy from the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def fake() -> Iterator[FakeIce]:
    with FakeIce(index_job_polls=1) as server:
        yield server


@pytest.fixture
def fake_sts() -> Iterator[FakeIce]:
    with FakeIce(security_token="CAIS-sts-token+/=") as server:
        yield server


@pytest.fixture
def make_client() -> Iterator[Callable[..., IceClient]]:
    """``make_client(fake, **overrides)``: a client for that fake, closed at teardown."""
    clients: list[IceClient] = []

    def make(
        server: FakeIce,
        *,
        secret: str | None = None,
        key_id: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> IceClient:
        creds = Credentials(
            key_id or server.access_key_id,
            secret or server.access_key_secret,
            token,
        )
        kwargs.setdefault("connect_timeout", 2.0)
        kwargs.setdefault("read_timeout", 5.0)
        client = IceClient(server.url, lambda: creds, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(fake: FakeIce, make_client: Callable[..., IceClient]) -> IceClient:
    return make_client(fake)


def setup_lib(client: IceClient, name: str = LIB) -> None:
    client.create_search_lib(name)
    client.create_search_index(name, "mm")


def insert(client: IceClient, media_id: str = CLIP, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "search_lib": LIB,
        "namespace": "gw-0001",
        "media_id": media_id,
        "input_url": f"oss://clips-bucket/gw-0001/{media_id}.mp4",
        "images": [f"oss://clips-bucket/gw-0001/{media_id}_{i}.jpg" for i in range(3)],
        "msg_body": {
            "title": "a person walks to the front door",
            "customFields": {"strField1": "front-door", "intField1": 1767268800},
        },
    }
    args.update(overrides)
    return client.insert_media(**args)


# -- every operation round-trips -----------------------------------------------------------


def test_search_library_and_index(client: IceClient, fake: FakeIce) -> None:
    assert client.create_search_lib(LIB) == LIB
    lib = client.query_search_lib(LIB)
    assert (lib.name, lib.status, lib.indexes) == (LIB, "normal", ())
    fake.control("set", index_ready_polls=1)
    client.create_search_index(LIB, "mm", {"any": "config"})
    assert client.query_search_lib(LIB).index("mm").readiness == "Initializing"
    ready = client.query_search_lib(LIB).index("mm")
    assert (ready.index_type, ready.status, ready.readiness) == ("mm", "Active", "Normal")
    assert fake.state()["search_libs"][LIB]["indexes"]["mm"]["config"] == '{"any":"config"}'


def test_insert_index_job_search_delete(client: IceClient, fake: FakeIce) -> None:
    setup_lib(client)
    assert insert(client) == CLIP
    (stored,) = fake.media()
    assert stored["media_type"] == "video"
    assert stored["input"] == f"oss://clips-bucket/gw-0001/{CLIP}.mp4"
    assert stored["images"] == [f"oss://clips-bucket/gw-0001/{CLIP}_{i}.jpg" for i in range(3)]
    assert stored["namespace"] == "gw-0001"
    assert stored["msg_body"]["customFields"]["strField1"] == "front-door"

    first = client.query_media_index_job(LIB, CLIP)
    assert [(j.index_type, j.status) for j in first.jobs] == [("mm", "Running")]
    assert not first.succeeded and not first.failed
    done = client.query_media_index_job(LIB, CLIP)
    assert done.succeeded and done.jobs[0].gmt_finish

    result = client.search_media_by_hybrid(LIB, "person at the door", namespace="gw-0001")
    assert result.total == 1
    (hit,) = result.hits
    assert hit.media_id == CLIP
    (clip,) = hit.clips
    assert clip.start == 0.0 and clip.end == 5.0 and 0 < clip.score <= 1
    assert client.search_media_by_hybrid(LIB, "person", namespace="other").total == 0
    assert client.search_media_by_hybrid(LIB, "bicycle").total == 0

    client.delete_media(LIB, CLIP)
    assert list(fake.media()) == []
    with pytest.raises(IceNotFound) as err:
        client.query_media_index_job(LIB, CLIP)
    assert not err.value.retryable and err.value.status == 404


def test_search_pages_and_filters(client: IceClient, fake: FakeIce) -> None:
    fake.control("set", index_job_polls=0)  # searchable at once
    setup_lib(client)
    for i in range(5):
        insert(
            client,
            f"cam_{i}",
            msg_body={"title": f"car number {i}", "customFields": {"intField1": i}},
        )
    page1 = client.search_media_by_hybrid(LIB, "car", page_no=1, page_size=2)
    page3 = client.search_media_by_hybrid(LIB, "car", page_no=3, page_size=2)
    assert page1.total == page3.total == 5
    assert len(page1.hits) == 2 and len(page3.hits) == 1
    ranged = client.search_media_by_hybrid(
        LIB, "car", page_size=50, custom_filters={"intField1": {"gte": 1, "lte": 2}}
    )
    assert sorted(h.media_id for h in ranged.hits) == ["cam_1", "cam_2"]
    with pytest.raises(ValueError, match="page_size"):
        client.search_media_by_hybrid(LIB, "car", page_size=51)


def test_failed_index_job(client: IceClient, fake: FakeIce) -> None:
    setup_lib(client)
    insert(client)
    fake.control("job_status", media_id=CLIP, status="Fail")
    jobs = client.query_media_index_job(LIB, CLIP)
    assert jobs.failed and not jobs.succeeded


def test_spaces_unicode_and_reserved_characters_are_signed_correctly(
    client: IceClient, fake: FakeIce
) -> None:
    fake.control("set", index_job_polls=0)
    setup_lib(client)
    title = 'Zwei Personen + 1 Hund * "Tür" ~ 50% & mehr; 两个人 😀 a/b?c=d'
    msg_body = {"title": title, "customFields": {"strField1": "vorne rechts", "strField2": "é"}}
    insert(client, msg_body=msg_body)
    (stored,) = fake.media()
    assert stored["msg_body"] == msg_body  # byte-exact after the round trip
    hits = client.search_media_by_hybrid(LIB, "Hund  两个人 😀 + *", namespace="gw-0001")
    assert [h.media_id for h in hits.hits] == [CLIP]
    assert all(r["code"] is None for r in fake.state()["requests"])


def test_empty_optional_parameters_are_not_sent(client: IceClient, fake: FakeIce) -> None:
    """The fake rejects empty values, so these succeed only if the client drops them."""
    setup_lib(client)
    insert(client, namespace="", images=[], msg_body=None)
    (stored,) = fake.media()
    assert stored["namespace"] is None and stored["images"] is None
    assert client.search_media_by_hybrid(LIB, "", namespace="").total == 0


# -- authentication ------------------------------------------------------------------------


def test_wrong_secret_is_rejected(fake: FakeIce, make_client: Callable[..., IceClient]) -> None:
    client = make_client(fake, secret="not-the-secret")
    with pytest.raises(IceAuthError) as err:
        client.query_search_lib(LIB)
    assert err.value.code == "SignatureDoesNotMatch"
    assert not err.value.retryable
    assert err.value.request_id


def test_unknown_access_key_is_an_auth_error_despite_404(
    fake: FakeIce, make_client: Callable[..., IceClient]
) -> None:
    client = make_client(fake, key_id="LTAI-unknown")
    with pytest.raises(IceAuthError) as err:
        client.query_search_lib(LIB)
    assert (err.value.code, err.value.status, err.value.retryable) == (
        "InvalidAccessKeyId.NotFound",
        404,
        False,
    )


def _raw_post(fake: FakeIce, query: str, headers: dict[str, str]) -> dict[str, Any]:
    with httpx.Client() as http:
        response = http.post(f"{fake.url}/?{query}", headers=headers, content=b"")
    return {"status": response.status_code, **response.json()}


def _flip_last(text: str) -> str:
    """Change the last hex digit of the signature (always to a different one)."""
    return text[:-1] + ("1" if text[-1] == "0" else "0")


def _signed(fake: FakeIce, params: dict[str, str]) -> dict[str, str]:
    return sign(
        "POST",
        f"127.0.0.1:{fake.port}",
        "/",
        params,
        {"x-acs-action": "QuerySearchLib", "x-acs-version": "2020-11-09"},
        b"",
        fake.access_key_id,
        fake.access_key_secret,
    ).headers


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda q, h: (q.replace("IPCamera_a", "IPCamera_b"), h), "SignatureDoesNotMatch"),
        (
            lambda q, h: (q, {**h, "authorization": _flip_last(h["authorization"])}),
            "SignatureDoesNotMatch",
        ),
        (lambda q, h: (q, {**h, "x-acs-date": "2023-10-26T10:22:32Z"}), "InvalidTimeStamp.Expired"),
        (lambda q, h: (q, {**h, "x-acs-version": "2014-05-26"}), "InvalidVersion"),
        (lambda q, h: (q, {**h, "x-acs-action": "RunInstances"}), "InvalidAction.NotFound"),
        (lambda q, h: (q, {**h, "x-acs-extra": "unsigned"}), "IncompleteSignature"),
        (lambda q, h: (q, {**h, "x-acs-content-sha256": "0" * 64}), "SignatureDoesNotMatch"),
        (lambda q, h: (q.replace("%20", "+"), h), None),  # '+' decodes as a space: same value
    ],
)
def test_tampered_requests_are_rejected(fake: FakeIce, tamper: Callable, code: str | None) -> None:
    params = {"SearchLibName": "IPCamera_a", "Text": "a b"}
    query, headers = tamper("SearchLibName=IPCamera_a&Text=a%20b", _signed(fake, params))
    answer = _raw_post(fake, query, headers)
    if code is None:  # signature accepted; the library just does not exist
        assert answer["Code"] == "SearchLibNotExist"
        return
    assert answer["Code"] == code
    error = classify_error(answer["status"], answer["Code"], answer["Message"])
    assert isinstance(error, IceAuthError | IceParameterError)
    assert error.retryable is isinstance(error, IceClockSkew)  # NTP may fix the clock


def test_sts_token_is_sent_and_verified(
    fake_sts: FakeIce, make_client: Callable[..., IceClient]
) -> None:
    good = make_client(fake_sts, token=fake_sts.security_token)
    assert good.create_search_lib(LIB) == LIB
    assert fake_sts.state()["requests"][-1] == {
        "action": "CreateSearchLib",
        "status": 200,
        "code": None,
        "security_token": True,
    }
    for token, code in [
        (None, "MissingSecurityToken"),
        ("wrong", "InvalidSecurityToken.Malformed"),
    ]:
        with pytest.raises(IceAuthError) as err:
            make_client(fake_sts, token=token).query_search_lib(LIB)
        assert err.value.code == code and not err.value.retryable


def test_credentials_are_fetched_for_every_request(fake: FakeIce) -> None:
    """An STS provider refreshes behind the callable; the client must not cache."""
    calls = 0

    def provider() -> Credentials:
        nonlocal calls
        calls += 1
        return Credentials(fake.access_key_id, fake.access_key_secret)

    with IceClient(fake.url, provider) as client:
        client.create_search_lib(LIB)
        client.query_search_lib(LIB)
    assert calls == 2


def test_failing_credentials_provider_is_retryable(fake: FakeIce) -> None:
    def provider() -> Credentials:
        raise RuntimeError("STS endpoint unreachable")

    with IceClient(fake.url, provider) as client, pytest.raises(IceCredentialsError) as err:
        client.query_search_lib(LIB)
    assert err.value.retryable


def test_replayed_nonce_is_rejected(fake: FakeIce, make_client: Callable[..., IceClient]) -> None:
    client = make_client(fake, nonce=lambda: "always-the-same-nonce")
    client.create_search_lib(LIB)
    with pytest.raises(IceAuthError) as err:
        client.query_search_lib(LIB)
    assert err.value.code == "SignatureNonceUsed"
    assert err.value.retryable  # a retry signs with a fresh nonce


def test_clock_skew(fake: FakeIce, make_client: Callable[..., IceClient]) -> None:
    client = make_client(fake, clock=lambda: time.time() - 20 * 60)
    with pytest.raises(IceClockSkew) as err:
        client.query_search_lib(LIB)
    assert err.value.code == "InvalidTimeStamp.Expired"
    assert isinstance(err.value, IceAuthError) and err.value.retryable


def test_no_secret_in_logs_or_errors(
    fake_sts: FakeIce, make_client: Callable[..., IceClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = make_client(fake_sts, token=fake_sts.security_token)
    good.create_search_lib(LIB)
    bad = make_client(fake_sts, secret="wrong-secret-value", token=fake_sts.security_token)
    with pytest.raises(IceAuthError) as err:
        bad.query_search_lib(LIB)
    text = caplog.text + str(err.value) + repr(err.value)
    assert "CreateSearchLib" in caplog.text  # the client did log
    for secret in (fake_sts.access_key_secret, "wrong-secret-value", fake_sts.security_token):
        assert secret not in text
    assert "Signature=" not in text


# -- faults --------------------------------------------------------------------------------


def test_throttling_is_retryable(client: IceClient, fake: FakeIce) -> None:
    fake.control("fault", action="CreateSearchLib", kind="throttle", count=1)
    with pytest.raises(IceThrottled) as err:
        client.create_search_lib(LIB)
    assert (err.value.code, err.value.status, err.value.retryable) == ("Throttling.User", 400, True)
    assert client.create_search_lib(LIB) == LIB  # the fault was for one request only


@pytest.mark.parametrize(("status", "code"), [(503, "Throttling"), (429, "Throttling.Api")])
def test_throttling_with_other_statuses(
    client: IceClient, fake: FakeIce, status: int, code: str
) -> None:
    fake.control("fault", action="*", kind="throttle", status=status, code=code)
    with pytest.raises(IceThrottled) as err:
        client.query_search_lib(LIB)
    assert err.value.status == status and err.value.retryable


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("error", 500, "InternalError"), ("unavailable", 503, "ServiceUnavailable")],
)
def test_server_errors_are_retryable(
    client: IceClient, fake: FakeIce, kind: str, status: int, code: str
) -> None:
    fake.control("fault", action="*", kind=kind, count=2)
    for _ in range(2):
        with pytest.raises(IceServerError) as err:
            client.create_search_lib(LIB)
        assert (err.value.status, err.value.code, err.value.retryable) == (status, code, True)
    client.create_search_lib(LIB)


def test_timeout_is_retryable_and_retry_finds_the_insert(
    fake: FakeIce, make_client: Callable[..., IceClient]
) -> None:
    client = make_client(fake, read_timeout=0.3)
    setup_lib(client)
    fake.control("fault", action="InsertMediaToSearchLib", kind="delay", delay=1.5)
    started = time.monotonic()
    with pytest.raises(IceTimeout) as err:
        insert(client)
    assert err.value.retryable
    assert time.monotonic() - started < 1.2  # gave up at the read timeout, not the delay
    with pytest.raises(IceAlreadyExists) as dup:  # the first attempt did take effect
        insert(client)
    assert (dup.value.code, dup.value.status, dup.value.retryable) == (
        "MediaAlreadyExist",
        409,
        False,
    )
    state = fake.state()
    assert state["registered"] == {CLIP: 1} and state["insert_calls"] == {CLIP: 2}


def test_dropped_connection_is_retryable(client: IceClient, fake: FakeIce) -> None:
    setup_lib(client)
    fake.control("fault", action="InsertMediaToSearchLib", kind="drop", process=True)
    with pytest.raises(IceConnectionError) as err:
        insert(client)
    assert err.value.retryable and err.value.status is None
    with pytest.raises(IceAlreadyExists):
        insert(client)
    assert fake.state()["registered"] == {CLIP: 1}


def test_connection_refused_is_retryable(make_client: Callable[..., IceClient]) -> None:
    nobody = FakeIce(port=free_tcp_port())  # never started: nothing listens there
    client = make_client(nobody)
    with pytest.raises(IceConnectionError) as err:
        client.query_search_lib(LIB)
    assert err.value.retryable and err.value.code is None


def test_duplicate_insert(client: IceClient, fake: FakeIce) -> None:
    setup_lib(client)
    insert(client)
    with pytest.raises(IceAlreadyExists) as err:
        insert(client)
    assert not err.value.retryable
    fake.control("duplicate_insert", mode="accept")
    assert insert(client) == CLIP
    state = fake.state()
    assert state["registered"] == {CLIP: 1} and state["insert_calls"] == {CLIP: 3}


# -- parameter errors ----------------------------------------------------------------------


def test_parameter_errors_are_not_retryable(client: IceClient, fake: FakeIce) -> None:
    with pytest.raises(IceNotFound):
        client.query_search_lib("IPCamera_missing")
    setup_lib(client)
    client.create_search_lib("plainlib")
    cases: list[Callable[[], Any]] = [
        lambda: insert(client, search_lib="plainlib"),  # ImagesInput needs IPCamera_
        lambda: insert(client, images=["https://example.com/a.jpg"]),  # not oss://
        lambda: insert(client, msg_body={"title": "x", "customFields": {"color": "red"}}),
        lambda: insert(client, media_id="bad id with spaces"),
        lambda: client.call("SearchMediaByHybrid", {"SearchLibName": LIB, "PageSize": 51}),
        lambda: client.call("InsertMediaToSearchLib", {"SearchLibName": LIB}),  # no Input
        lambda: client.create_search_index(LIB, "nonsense"),
    ]
    for case in cases:
        with pytest.raises(IceParameterError) as err:
            case()
        assert not err.value.retryable and err.value.status == 400
    with pytest.raises(IceAlreadyExists):
        client.create_search_lib(LIB)
    with pytest.raises(IceAlreadyExists):
        client.create_search_index(LIB, "mm")
    assert fake.state()["registered"] == {}


# -- classification without a server -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind", "retryable"),
    [
        (400, "Throttling", IceThrottled, True),
        (400, "Throttling.User", IceThrottled, True),
        (503, "Throttling.Api", IceThrottled, True),
        (429, None, IceThrottled, True),
        (500, "InternalError", IceServerError, True),
        (503, "ServiceUnavailable", IceServerError, True),
        (502, None, IceServerError, True),
        (404, "InvalidAccessKeyId.NotFound", IceAuthError, False),
        (400, "InvalidAccessKeyId.Inactive", IceAuthError, False),
        (400, "SignatureDoesNotMatch", IceAuthError, False),
        (403, "Forbidden.RAM", IceAuthError, False),
        (400, "InvalidSecurityToken.Expired", IceAuthError, False),
        (403, "SomethingElse", IceAuthError, False),
        (401, None, IceAuthError, False),
        (400, "InvalidTimeStamp.Expired", IceClockSkew, True),
        (400, "SignatureNonceUsed", IceAuthError, True),
        (400, "InvalidParameter", IceParameterError, False),
        (400, "MissingSearchLibName", IceParameterError, False),
        (400, "MissingParameter.MediaId", IceParameterError, False),
        (404, "InvalidAction.NotFound", IceParameterError, False),
        (404, "SearchLibNotExist", IceNotFound, False),
        (404, None, IceNotFound, False),
        (409, "MediaAlreadyExist", IceAlreadyExists, False),
        (400, "EntityAlreadyExist.SearchLib", IceAlreadyExists, False),
        (409, None, IceAlreadyExists, False),
        (200, "SomethingOdd", IceError, False),
    ],
)
def test_classify_error(
    status: int, code: str | None, kind: type[IceError], retryable: bool
) -> None:
    error = classify_error(status, code, "msg", request_id="RID", action="Act")
    assert type(error) is kind
    assert error.retryable is retryable
    assert (error.code, error.status, error.request_id) == (code, status, "RID")
    assert error.message == "msg"


def _canned(status: int, body: bytes, content_type: str = "application/json") -> IceClient:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(status, content=body, headers={"content-type": content_type})
    )
    return IceClient(
        "https://ice.cn-shanghai.aliyuncs.com",
        lambda: Credentials("AK", "SK"),
        transport=transport,
    )


def test_success_false_in_a_200_answer_is_an_error() -> None:
    body = {"RequestId": "R", "Success": "false", "Code": "InvalidParameter", "Message": "no"}
    with _canned(200, json.dumps(body).encode()) as client, pytest.raises(IceParameterError):
        client.query_search_lib(LIB)
    body_bool = {"RequestId": "R", "Success": False, "Code": "Throttling.User", "Message": "slow"}
    with _canned(200, json.dumps(body_bool).encode()) as client, pytest.raises(IceThrottled):
        client.query_search_lib(LIB)


def test_non_json_answers() -> None:
    with _canned(502, b"<html>Bad Gateway</html>", "text/html") as client:
        with pytest.raises(IceServerError) as err:
            client.query_search_lib(LIB)
        assert err.value.retryable and err.value.status == 502
    captive = _canned(200, b"<html>captive portal</html>", "text/html")
    with captive as client, pytest.raises(IceServerError):
        client.query_search_lib(LIB)
    with _canned(403, b"denied", "text/plain") as client, pytest.raises(IceAuthError):
        client.query_search_lib(LIB)


def test_request_shape_on_the_wire() -> None:
    """POST /, everything in the query (%20, not +), empty body, version header."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"RequestId": "R", "Success": "true", "Total": 0})

    with IceClient(
        "https://ice.cn-shanghai.aliyuncs.com",
        lambda: Credentials("AK", "SK", "TOKEN"),
        transport=httpx.MockTransport(handler),
    ) as client:
        client.search_media_by_hybrid(LIB, "a b*", namespace=None)
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/"
    assert request.url.query == b"PageNo=1&PageSize=10&SearchLibName=IPCamera_test&Text=a%20b%2A"
    assert request.content == b""
    assert request.headers["x-acs-action"] == "SearchMediaByHybrid"
    assert request.headers["x-acs-version"] == "2020-11-09"
    assert request.headers["host"] == "ice.cn-shanghai.aliyuncs.com"
    assert request.headers["x-acs-security-token"] == "TOKEN"


def test_endpoint_validation() -> None:
    for bad in ("ftp://ice.example.com", "https://ice.example.com/path", "ice.example.com"):
        with pytest.raises(ValueError):
            IceClient(bad, lambda: Credentials("AK", "SK"))
