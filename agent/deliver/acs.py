"""Alibaba Cloud request signing, signature V3 (``ACS3-HMAC-SHA256``), as pure functions.

Pure on purpose: no HTTP library, no clock or randomness unless the caller leaves them to us,
so the published reference vector can be reproduced exactly and the HTTP client (``ice.py``)
stays a thin shell around it.

The algorithm, from Alibaba Cloud's "V3 request structure and signature" (help.aliyun.com
document 2593177; alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature):

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQueryString \\n
                       CanonicalHeaders \\n SignedHeaders \\n hex(SHA256(body))
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(SHA256(CanonicalRequest))
    Signature        = hex(HMAC-SHA256(AccessKeySecret, StringToSign))
    Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<...>,Signature=<...>

CanonicalHeaders are ``host``, every ``x-acs-*`` header and ``content-type`` (if sent), names
lower-case, sorted, each ``name:value\\n`` (value trimmed). Query keys and values are
RFC 3986-encoded (UTF-8; ``%20`` for space, ``%2A`` for ``*``, ``~`` kept) and sorted by key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

ALGORITHM = "ACS3-HMAC-SHA256"
#: ``x-acs-date`` format: UTC, second precision (the gateway allows 15 min of clock skew).
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, optionally temporary (STS) with its security token.

    The secret and the token are kept out of ``repr`` so a logged object leaks nothing.
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SignedRequest:
    """What :func:`sign` produced: the headers to send, plus the intermediate values.

    The intermediates carry no secret; they are here so tests (and a debugging session
    comparing against the server's "string to sign" in a ``SignatureDoesNotMatch`` message)
    can see each step.
    """

    headers: dict[str, str] = field(repr=False)
    canonical_request: str
    hashed_canonical_request: str
    signature: str


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding of ``value``'s UTF-8 bytes (only ``A-Za-z0-9-_.~`` kept).

    Written out rather than borrowed from ``urllib`` so the fake server's verifier (which
    uses ``urllib.parse.quote``) is an independent implementation.
    """
    out: list[str] = []
    for byte in value.encode("utf-8"):
        out.append(chr(byte) if byte in _UNRESERVED else f"%{byte:02X}")
    return "".join(out)


def canonical_query(params: Mapping[str, str]) -> str:
    """``k=v&...`` with keys and values encoded and sorted by encoded key.

    Parameters whose value is empty (or ``None``) are dropped: the client must send exactly
    the string it signed, so the same function builds both.
    """
    pairs = sorted(
        (percent_encode(key), percent_encode(value))
        for key, value in params.items()
        if value is not None and value != ""
    )
    return "&".join(f"{key}={value}" for key, value in pairs)


def canonical_uri(path: str) -> str:
    """The path with each segment encoded (``/`` kept); RPC-style APIs such as ICE use ``/``."""
    if not path:
        return "/"
    return "/".join(percent_encode(segment) for segment in path.split("/"))


def format_date(epoch_seconds: float) -> str:
    """``x-acs-date`` for a Unix time."""
    return time.strftime(DATE_FORMAT, time.gmtime(epoch_seconds))


def new_nonce() -> str:
    """A fresh ``x-acs-signature-nonce``: the gateway rejects a nonce it has already seen."""
    return secrets.token_hex(16)


def _is_signed(name: str) -> bool:
    return name == "host" or name == "content-type" or name.startswith("x-acs-")


def sign(
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    access_key_secret: str,
    *,
    security_token: str | None = None,
    date: str | None = None,
    nonce: str | None = None,
) -> SignedRequest:
    """Sign one request; returns the complete headers to send (``Authorization`` included).

    ``headers`` must carry ``x-acs-action`` and ``x-acs-version``; any other ``x-acs-*``
    header and ``content-type`` are signed too, everything else is passed through unsigned.
    ``date`` (``x-acs-date``) and ``nonce`` default to now and a random value; tests inject
    them. The body hash goes out as ``x-acs-content-sha256``; with STS credentials the
    ``x-acs-security-token`` header is added and signed.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        out[name.lower()] = str(value).strip()
    for required in ("x-acs-action", "x-acs-version"):
        if not out.get(required):
            raise ValueError(f"sign() needs the {required} header")
    out["host"] = host
    out["x-acs-date"] = date if date is not None else format_date(time.time())
    out["x-acs-signature-nonce"] = nonce if nonce is not None else new_nonce()
    body_hash = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    out["x-acs-content-sha256"] = body_hash
    if security_token:
        out["x-acs-security-token"] = security_token

    signed_names = sorted(name for name in out if _is_signed(name))
    canonical_headers = "".join(f"{name}:{out[name]}\n" for name in signed_names)
    signed_headers = ";".join(signed_names)
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            signed_headers,
            body_hash,
        ]
    )
    hashed = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{hashed}"
    signature = hmac.new(
        access_key_secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    out["authorization"] = (
        f"{ALGORITHM} Credential={access_key_id},"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )
    return SignedRequest(
        headers=out,
        canonical_request=canonical_request,
        hashed_canonical_request=hashed,
        signature=signature,
    )
