"""Signature V3 (ACS3-HMAC-SHA256): the published reference vector, encoding edge cases, and a
cross-check against the fake server's independent verifier."""

from __future__ import annotations

import hashlib
import random

import pytest

from agent.deliver.acs import (
    Credentials,
    canonical_query,
    percent_encode,
    sign,
)
from tests.support.fake_ice import canonical_request as fake_canonical_request
from tests.support.fake_ice import parse_wire_query

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def reference_request(**overrides: object) -> dict:
    """Alibaba Cloud's worked example (V3 request structure and signature, help.aliyun.com)."""
    args: dict = {
        "method": "POST",
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "path": "/",
        "query": {
            "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            "RegionId": "cn-shanghai",
        },
        "headers": {"x-acs-action": "RunInstances", "x-acs-version": "2014-05-26"},
        "body": b"",
        "access_key_id": "YourAccessKeyId",
        "access_key_secret": "YourAccessKeySecret",
        "date": "2023-10-26T10:22:32Z",
        "nonce": "3156853299f313e23d1673dc12e1703d",
    }
    args.update(overrides)
    return args


def test_reference_vector() -> None:
    signed = sign(**reference_request())
    assert signed.hashed_canonical_request == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert signed.signature == "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    assert signed.headers["authorization"] == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
        "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;"
        "x-acs-signature-nonce;x-acs-version,"
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )
    assert signed.headers["x-acs-content-sha256"] == EMPTY_SHA256
    assert signed.headers["host"] == "ecs.cn-shanghai.aliyuncs.com"
    assert signed.headers["x-acs-date"] == "2023-10-26T10:22:32Z"
    assert signed.headers["x-acs-signature-nonce"] == "3156853299f313e23d1673dc12e1703d"
    assert signed.canonical_request.split("\n")[:3] == [
        "POST",
        "/",
        "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai",
    ]


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("~", "~"),
        ("-_.", "-_."),
        ("a+b", "a%2Bb"),
        ("/", "%2F"),
        ("=&?#%", "%3D%26%3F%23%25"),
        ("你好", "%E4%BD%A0%E5%A5%BD"),
        ("é", "%C3%A9"),
        ("😀", "%F0%9F%98%80"),
        (
            '{"images":["oss://b/k 1.jpg"]}',
            "%7B%22images%22%3A%5B%22oss%3A%2F%2Fb%2Fk%201.jpg%22%5D%7D",
        ),
        ("", ""),
    ],
)
def test_percent_encode(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded


def test_canonical_query_sorts_encodes_and_drops_empty_values() -> None:
    query = canonical_query(
        {"b": "2", "a": "x y", "Empty": "", "None": None, "C": "*~"}  # type: ignore[dict-item]
    )
    assert query == "C=%2A~&a=x%20y&b=2"
    assert canonical_query({}) == ""


def test_every_input_is_covered_by_the_signature() -> None:
    base = sign(**reference_request()).signature
    changed = [
        reference_request(query={"ImageId": "other", "RegionId": "cn-shanghai"}),
        reference_request(query={"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"}),
        reference_request(date="2023-10-26T10:22:33Z"),
        reference_request(nonce="3156853299f313e23d1673dc12e1703e"),
        reference_request(access_key_secret="AnotherSecret"),
        reference_request(host="ecs.cn-hangzhou.aliyuncs.com"),
        reference_request(headers={"x-acs-action": "StopInstance", "x-acs-version": "2014-05-26"}),
        reference_request(body=b"{}"),
        reference_request(method="GET"),
    ]
    signatures = {sign(**args).signature for args in changed}
    assert base not in signatures
    assert len(signatures) == len(changed)


def test_body_hash_header() -> None:
    signed = sign(**reference_request(body=b"hello"))
    assert signed.headers["x-acs-content-sha256"] == hashlib.sha256(b"hello").hexdigest()


def test_security_token_is_sent_and_signed() -> None:
    plain = sign(**reference_request())
    sts = sign(**reference_request(), security_token="STS-token/with+odd=chars")
    assert sts.headers["x-acs-security-token"] == "STS-token/with+odd=chars"
    assert "x-acs-security-token" in sts.headers["authorization"].split("SignedHeaders=")[1]
    assert sts.signature != plain.signature
    assert "x-acs-security-token" not in plain.headers


def test_which_headers_are_signed() -> None:
    headers = {
        "X-Acs-Action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "Content-Type": "application/json",
        "User-Agent": "test",
        "Accept": "application/json",
    }
    signed = sign(**reference_request(headers=headers))
    signed_list = signed.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert signed_list == (
        "content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;"
        "x-acs-signature-nonce;x-acs-version"
    )
    assert signed.headers["user-agent"] == "test"  # passed through, unsigned
    unsigned_changed = sign(**reference_request(headers={**headers, "User-Agent": "other"}))
    assert unsigned_changed.signature == signed.signature


def test_action_and_version_are_required() -> None:
    with pytest.raises(ValueError, match="x-acs-action"):
        sign(**reference_request(headers={"x-acs-version": "2014-05-26"}))


def test_defaults_give_a_fresh_nonce_and_a_current_date() -> None:
    a = sign(**reference_request(date=None, nonce=None))
    b = sign(**reference_request(date=None, nonce=None))
    assert a.headers["x-acs-signature-nonce"] != b.headers["x-acs-signature-nonce"]
    assert a.headers["x-acs-date"].endswith("Z") and len(a.headers["x-acs-date"]) == 20


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("AKID", "the-secret", "the-token"))
    assert "AKID" in text
    assert "the-secret" not in text and "the-token" not in text


def _random_text(rng: random.Random) -> str:
    alphabet = "aZ09 -_.~*+/=&?%#'\"{}[]:,\\\n\té你好😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))


def test_agrees_with_the_fake_servers_independent_verifier() -> None:
    """Our canonical request == the one the fake rebuilds from the wire (urllib-based)."""
    rng = random.Random(1234)
    for _ in range(300):
        query = {_random_text(rng): _random_text(rng) for _ in range(rng.randint(0, 5))}
        headers = {"x-acs-action": "SearchMediaByHybrid", "x-acs-version": "2020-11-09"}
        signed = sign(**reference_request(query=query, headers=headers))
        wire_params = parse_wire_query(canonical_query(query))
        assert wire_params == {k: v for k, v in query.items() if v}
        names = signed.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
        rebuilt = fake_canonical_request("POST", wire_params, signed.headers, names.split(";"), b"")
        assert rebuilt == signed.canonical_request
