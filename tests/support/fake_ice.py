#!/usr/bin/env python3
"""A fake Alibaba Cloud ICE (Intelligent Media Services) search-library endpoint, for tests.

Run as a real process on loopback (stdlib only, any python >= 3.10)::

    python tests/support/fake_ice.py --port P --access-key-id AK --access-key-secret SK \
        [--security-token T] [--index-job-polls N] [--index-ready-polls N]

It prints ``READY <port>`` once listening. :class:`FakeIce` (bottom of this file) spawns it
from a test, like ``tests/support/rtsp.py`` does for the RTSP server.

**Strict like the real gateway, and independent of the client.** Each request is
re-derived from what arrived on the wire: the raw query string is decoded and re-encoded
with ``urllib.parse.quote`` (the client's ``agent/deliver/acs.py`` has its own encoder), the
canonical headers come from the received headers named in ``SignedHeaders``, the body hash
from the received body. Checked: ``POST /``; empty body matching ``x-acs-content-sha256``;
``x-acs-version`` 2020-11-09; a known ``x-acs-action``; ``x-acs-date`` within 15 min;
a nonce never seen before; ``host`` and every ``x-acs-*`` header signed; the STS token (when
configured) present, correct and signed; the ``ACS3-HMAC-SHA256`` signature. Failures answer
with the gateway's codes (``SignatureDoesNotMatch``, ``SignatureNonceUsed``,
``InvalidTimeStamp.Expired``, ...) as JSON ``{RequestId, HostId, Code, Message, Recommend}``.

Stricter than the real service, deliberately: a parameter with an empty value is rejected
(the client must drop those before signing and sending), and so is any request body.

**Per action**, the documented parameters are validated (required ones, ``SearchLibName``
must exist, ``ImagesInput`` only for ``IPCamera_`` libraries and ``MediaType=video`` with
``oss://`` images, ``MsgBody`` fields, ``PageSize`` 1..50, ...). Error codes the API
reference does not list are marked *invented* in :data:`ERRORS`; the duplicate-MediaId answer
(HTTP 409 ``MediaAlreadyExist``) is what ICE answers for a duplicate media registration
(developer.aliyun.com/ask/614862, RegisterMediaInfo).

**State** (in memory): search libraries with indexes (``IndexReadiness`` Initializing →
Normal after ``--index-ready-polls`` QuerySearchLib calls), media (index jobs ``Running`` for
the first ``--index-job-polls`` QueryMediaIndexJob calls, then ``Success``; only then
searchable). SearchMediaByHybrid matches the words of ``Text`` against ``MsgBody``'s title and
string custom fields; every hit gets one ``ClipInfo`` ``{From: 0.0, To: 5.0, Score}`` (the fake
never looks at the video), score = share of query words found.

**Control** (unsigned, for tests only):

- ``GET /__state`` → ``{"search_libs", "media", "insert_calls", "registered", "calls",
  "requests"}``: ``insert_calls`` counts InsertMediaToSearchLib attempts that reached the
  action per MediaId, ``registered`` successful registrations, ``requests`` the last 500
  requests as ``{action, status, code, security_token}``.
- ``POST /__control`` with one JSON object, by ``op``:

  - ``{"op": "fault", "action": A|"*", "kind": K, "count": N|null, ...}`` — the next ``N``
    (null: every) authenticated request of action ``A`` fails: ``kind`` ``"error"`` (HTTP 500
    ``InternalError``), ``"unavailable"`` (503 ``ServiceUnavailable``), ``"throttle"`` (400
    ``Throttling.User``, as Alibaba's gateway answers flow control), ``"delay"`` (the action
    takes effect at once, the answer comes ``"delay"`` seconds later), ``"drop"`` (connection
    closed without an answer; with ``"process": true`` after the action took effect),
    ``"raw"`` (answer ``"body"`` repeated ``"repeat"`` times, as ``"content_type"`` with
    ``"status"`` (200): HTML error pages, malformed or incomplete JSON, huge bodies).
    ``"status"``, ``"code"``, ``"message"`` override the error answer; ``"retry_after"`` (ms)
    adds an ``x-acs-retry-after`` header to it, as Alibaba Cloud's gateway does when it
    throttles.
  - ``{"op": "clear_faults"}``
  - ``{"op": "duplicate_insert", "mode": "reject"|"accept", "status": S, "code": C,
    "message": M}`` — a second insert of a MediaId: 409 ``MediaAlreadyExist`` (default; or
    the given status, code and message: the reference documents no answer for it) or an
    idempotent success.
  - ``{"op": "set", "index_job_polls": N, "index_ready_polls": N, "missing_media": A}`` —
    ``missing_media``: how QueryMediaIndexJob answers a MediaId the library does not have:
    ``"error"`` (404 ``MediaNotExist``, default) or ``"empty"`` (success, no jobs).
  - ``{"op": "job_status", "media_id": M, "status": "Fail"|"Running"|"Success"}`` — force.
  - ``{"op": "reset"}`` — forget everything (libraries, media, nonces, counters, faults).
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import errno
import hashlib
import hmac
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus
from urllib.request import ProxyHandler, Request, build_opener

# For the pytest-side wrapper only (stdlib too; found next to this file, run as a script or not).
if __package__:  # imported by the tests, as tests.support.fake_ice
    from .ready_process import ReadyProcessError, ReadyServer
    from .ready_process import free_tcp_port as free_tcp_port  # re-exported for tests
else:  # the server, run as a script: ready_process.py is beside it, on sys.path
    from ready_process import ReadyProcessError, ReadyServer

API_VERSION = "2020-11-09"
ALGORITHM = "ACS3-HMAC-SHA256"
MAX_CLOCK_SKEW = 15 * 60
HOST_ID = "ice.cn-shanghai.aliyuncs.com"
EXIT_PORT_IN_USE = 3
MAX_PAGE_SIZE = 50
CUSTOM_FIELDS = {"intField1": int, "strField1": str, "strField2": str}
INDEX_TYPES = ("mm", "face", "aiLabel")

ACTIONS = (
    "CreateSearchLib",
    "QuerySearchLib",
    "CreateSearchIndex",
    "InsertMediaToSearchLib",
    "SearchMediaByHybrid",
    "QueryMediaIndexJob",
    "DeleteMediaFromSearchLib",
)

#: code -> (HTTP status, message). Gateway codes and messages as Alibaba Cloud's gateway
#: answers them; the ones marked invented are not in the ICE API reference.
ERRORS: dict[str, tuple[int, str]] = {
    "InvalidAction.NotFound": (
        404,
        "Specified api is not found, please check your url and method.",
    ),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "MissingSignatureNonce": (400, "SignatureNonce is mandatory for this action."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "MissingSecurityToken": (400, "SecurityToken is mandatory for this action."),
    "InvalidSecurityToken.Malformed": (400, "Specified SecurityToken is malformed."),
    "InvalidSecurityToken.MismatchWithAccessKey": (
        400,
        "Specified SecurityToken mismatch with the AccessKey.",
    ),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InternalError": (
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "MediaAlreadyExist": (409, "The media with the given MediaId already exists."),
    "SearchLibAlreadyExist": (409, "The search lib already exists."),  # invented
    "SearchIndexAlreadyExist": (409, "The search index already exists."),  # invented
    "SearchLibNotExist": (404, "The specified search lib does not exist."),  # invented
    "MediaNotExist": (404, "The specified media does not exist."),  # invented
}

FAULT_KINDS = {
    "error": "InternalError",
    "unavailable": "ServiceUnavailable",
    "throttle": "Throttling.User",
    "delay": None,
    "drop": None,
    "raw": None,
}

_AUTH_RE = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=(?P<ak>[^,\s]+),"
    r"SignedHeaders=(?P<signed>[a-z0-9;\-]+),Signature=(?P<sig>[0-9a-f]{64})$"
)
#: "for IP camera (IPC) monitoring scenarios, the name must start with IPCamera_": letters
#: and digits after it.
_LIB_NAME_RE = re.compile(r"^(IPCamera_)?[A-Za-z0-9]{1,64}$")
#: The reference only says "unique" (example: 32 hex digits); we accept what our clip ids use.
_MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class ApiError(Exception):
    """An error answer: HTTP status, ``Code``, ``Message``."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        default_status, default_message = ERRORS.get(code, (400, "Request failed."))
        self.code = code
        self.status = status if status is not None else default_status
        self.message = message if message is not None else default_message
        super().__init__(f"{self.status} {code}: {self.message}")


def _missing(name: str) -> ApiError:
    return ApiError(f"Missing{name}", f"{name} is mandatory for this action.", 400)


def _invalid(name: str, why: str) -> ApiError:
    return ApiError("InvalidParameter", f"The specified parameter {name} is not valid: {why}")


# -- signature verification (independent of agent/deliver/acs.py) ------------------------


def rfc3986(value: str) -> str:
    """RFC 3986 encoding via urllib (only A-Za-z0-9-_.~ unescaped)."""
    return quote(value, safe="", encoding="utf-8")


def parse_wire_query(raw: str) -> dict[str, str]:
    """Decode the query string exactly as received (``+`` is a space, as form decoding does)."""
    params: dict[str, str] = {}
    for part in raw.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        key, value = unquote_plus(key), unquote_plus(value)
        if key in params:
            raise _invalid(key, "given twice")
        if value == "":
            raise _invalid(key, "empty value (parameters without a value must not be sent)")
        params[key] = value
    return params


def canonical_request(
    method: str, params: dict[str, str], headers: dict[str, str], signed: list[str], body: bytes
) -> str:
    query = "&".join(
        f"{k}={v}" for k, v in sorted((rfc3986(k), rfc3986(v)) for k, v in params.items())
    )
    canon_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    return "\n".join(
        [method, "/", query, canon_headers, ";".join(signed), hashlib.sha256(body).hexdigest()]
    )


# -- state ---------------------------------------------------------------------------------


class State:
    """Everything the fake remembers; every method runs under ``self.lock``."""

    def __init__(self, access_key_id: str, access_key_secret: str, token: str | None) -> None:
        self.lock = threading.Lock()
        self.keys = {access_key_id: access_key_secret}
        self.token = token
        self.index_job_polls = 1
        self.index_ready_polls = 0
        self.reset()

    def reset(self) -> None:
        self.libs: dict[str, dict[str, Any]] = {}
        self.media: dict[tuple[str, str], dict[str, Any]] = {}
        self.nonces: dict[str, float] = {}
        self.faults: list[dict[str, Any]] = []
        self.duplicate_mode = "reject"
        self.duplicate_answer: dict[str, Any] = {}
        self.missing_media = "error"
        self.insert_calls: dict[str, int] = {}
        self.registered: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []

    def use_nonce(self, nonce: str, now: float) -> bool:
        """False if ``nonce`` was seen within the replay window."""
        for old, seen in list(self.nonces.items()):
            if now - seen > 2 * MAX_CLOCK_SKEW:
                del self.nonces[old]
        if nonce in self.nonces:
            return False
        self.nonces[nonce] = now
        return True

    def take_fault(self, action: str) -> dict[str, Any] | None:
        for fault in self.faults:
            if fault["action"] in (action, "*") and fault["count"] != 0:
                if fault["count"] is not None:
                    fault["count"] -= 1
                return dict(fault)
        return None

    def record(self, action: str | None, status: int, code: str | None, token: bool) -> None:
        self.requests.append(
            {"action": action, "status": status, "code": code, "security_token": token}
        )
        del self.requests[:-500]

    def snapshot(self) -> dict[str, Any]:
        return {
            "search_libs": self.libs,
            "media": [
                {k: v for k, v in media.items() if not k.startswith("_")}
                | {"index_status": self.job_status(media)}
                for media in self.media.values()
            ],
            "insert_calls": self.insert_calls,
            "registered": self.registered,
            "calls": self.calls,
            "requests": self.requests,
        }

    def job_status(self, media: dict[str, Any]) -> str:
        if media["_forced_status"]:
            return media["_forced_status"]
        return "Success" if media["_polls"] >= self.index_job_polls else "Running"


# -- actions -------------------------------------------------------------------------------


def _require(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise _missing(name)
    return value


def _lib(state: State, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
    name = _require(params, "SearchLibName")
    lib = state.libs.get(name)
    if lib is None:
        raise ApiError("SearchLibNotExist", f"The specified search lib {name!r} does not exist.")
    return name, lib


def _json_param(params: dict[str, str], name: str) -> Any:
    try:
        return json.loads(params[name])
    except ValueError as exc:
        raise _invalid(name, f"not JSON ({exc})") from exc


def _ok(**fields: Any) -> dict[str, Any]:
    return {"Code": "200", "Success": "true", **fields}


def create_search_lib(state: State, params: dict[str, str]) -> dict[str, Any]:
    name = _require(params, "SearchLibName")
    if not _LIB_NAME_RE.match(name):
        raise _invalid("SearchLibName", "letters and digits only (and the IPCamera_ prefix)")
    config = None
    if "SearchLibConfig" in params:
        if not isinstance(_json_param(params, "SearchLibConfig"), dict):
            raise _invalid("SearchLibConfig", "must be a JSON object")
        config = params["SearchLibConfig"]
    if name in state.libs:
        raise ApiError("SearchLibAlreadyExist", f"The search lib {name!r} already exists.")
    state.libs[name] = {"status": "normal", "config": config, "indexes": {}}
    return _ok(SearchLibName=name)


def query_search_lib(state: State, params: dict[str, str]) -> dict[str, Any]:
    name, lib = _lib(state, params)
    info = []
    for index_type, index in lib["indexes"].items():
        index["queries"] += 1
        ready = index["queries"] > state.index_ready_polls
        info.append(
            {
                "IndexType": index_type,
                "IndexStatus": index["status"],
                "IndexReadiness": "Normal" if ready else "Initializing",
            }
        )
    answer = _ok(SearchLibName=name, Status=lib["status"], IndexInfo=info)
    if lib["config"] is not None:
        answer["SearchLibConfig"] = lib["config"]
    return answer


def create_search_index(state: State, params: dict[str, str]) -> dict[str, Any]:
    _, lib = _lib(state, params)
    index_type = _require(params, "IndexType")
    if index_type not in INDEX_TYPES:
        raise _invalid("IndexType", f"must be one of {', '.join(INDEX_TYPES)}")
    status = params.get("IndexStatus", "Active")
    if status not in ("Active", "Deactive"):
        raise _invalid("IndexStatus", "must be Active or Deactive")
    if "IndexConfig" in params:
        _json_param(params, "IndexConfig")
    if index_type in lib["indexes"]:
        raise ApiError("SearchIndexAlreadyExist", f"The {index_type} index already exists.")
    lib["indexes"][index_type] = {
        "status": status,
        "config": params.get("IndexConfig"),
        "queries": 0,
    }
    return _ok()


def _check_msg_body(params: dict[str, str]) -> dict[str, Any] | None:
    if "MsgBody" not in params:
        return None
    body = _json_param(params, "MsgBody")
    if not isinstance(body, dict):
        raise _invalid("MsgBody", "must be a JSON object")
    unknown = set(body) - {"title", "customFields"}
    if unknown:
        raise _invalid("MsgBody", f"unsupported fields {sorted(unknown)}")
    if "title" in body and not isinstance(body["title"], str):
        raise _invalid("MsgBody", "title must be a string")
    custom = body.get("customFields", {})
    if not isinstance(custom, dict):
        raise _invalid("MsgBody", "customFields must be an object")
    for key, value in custom.items():
        kind = CUSTOM_FIELDS.get(key)
        if kind is None:
            raise _invalid("MsgBody", f"customFields supports only {sorted(CUSTOM_FIELDS)}")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _invalid("MsgBody", f"customFields.{key} must be {kind.__name__}")
    return body


def _check_images(params: dict[str, str], lib_name: str, media_type: str) -> list[str] | None:
    if "ImagesInput" not in params:
        return None
    if not lib_name.startswith("IPCamera_"):
        raise _invalid("ImagesInput", "only supported for IPCamera_ search libraries")
    if media_type != "video":
        raise _invalid("ImagesInput", "MediaType must be video")
    value = _json_param(params, "ImagesInput")
    images = value.get("images") if isinstance(value, dict) else None
    if not isinstance(images, list) or not images:
        raise _invalid("ImagesInput", 'must be {"images": [oss://..., ...]}')
    for image in images:
        if not isinstance(image, str) or not re.match(r"^oss://[^/]+/.+", image):
            raise _invalid("ImagesInput", f"not an oss:// URL: {image!r}")
    return images


def insert_media(state: State, params: dict[str, str]) -> dict[str, Any]:
    lib_name, lib = _lib(state, params)
    source = _require(params, "Input")
    if not re.match(r"^(oss://[^/]+/.+|https?://.+)$", source):
        raise _invalid("Input", "must be oss://bucket/object or an http(s) URL")
    media_type = params.get("MediaType", "video")
    if media_type not in ("video", "image", "audio"):
        raise _invalid("MediaType", "must be video, image or audio")
    media_id = params.get("MediaId") or uuid.uuid4().hex
    if not _MEDIA_ID_RE.match(media_id):
        raise _invalid("MediaId", "letters, digits, '_' and '-', at most 128")
    state.insert_calls[media_id] = state.insert_calls.get(media_id, 0) + 1
    images = _check_images(params, lib_name, media_type)
    msg_body = _check_msg_body(params)
    if (lib_name, media_id) in state.media:
        if state.duplicate_mode == "accept":
            return _ok(MediaId=media_id)
        answer = state.duplicate_answer
        raise ApiError(
            answer.get("code") or "MediaAlreadyExist",
            answer.get("message") or f"The media with the given MediaId {media_id} already exists.",
            answer.get("status"),
        )
    state.media[(lib_name, media_id)] = {
        "search_lib": lib_name,
        "media_id": media_id,
        "namespace": params.get("Namespace"),
        "media_type": media_type,
        "input": source,
        "images": images,
        "msg_body": msg_body,
        "utc_create": int(time.time() * 1000),
        "_polls": 0,
        "_forced_status": None,
    }
    state.registered[media_id] = state.registered.get(media_id, 0) + 1
    return _ok(MediaId=media_id)


def _media(state: State, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
    lib_name, _ = _lib(state, params)
    media_id = _require(params, "MediaId")
    media = state.media.get((lib_name, media_id))
    if media is None:
        raise ApiError("MediaNotExist", f"The specified media {media_id} does not exist.")
    return lib_name, media


def query_media_index_job(state: State, params: dict[str, str]) -> dict[str, Any]:
    lib_name, _ = _lib(state, params)
    if state.missing_media == "empty" and (lib_name, params.get("MediaId")) not in state.media:
        _require(params, "MediaId")
        return _ok(IndexJobInfoList=[])
    lib_name, media = _media(state, params)
    status = state.job_status(media)  # Running for the first index_job_polls queries
    media["_polls"] += 1
    submit = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(media["utc_create"] / 1000))
    jobs = [
        {"IndexType": index_type, "Status": status, "GmtSubmit": submit}
        | ({"GmtFinish": submit} if status in ("Success", "Fail") else {})
        for index_type in state.libs[lib_name]["indexes"]
    ]
    return _ok(IndexJobInfoList=jobs)


def delete_media(state: State, params: dict[str, str]) -> dict[str, Any]:
    lib_name, media = _media(state, params)
    del state.media[(lib_name, media["media_id"])]
    return _ok(MediaId=media["media_id"])


def _matches_filter(value: Any, condition: Any) -> bool:
    if isinstance(condition, dict):
        if value is None:
            return False
        return ("gte" not in condition or value >= condition["gte"]) and (
            "lte" not in condition or value <= condition["lte"]
        )
    if isinstance(condition, list):
        return value in condition
    return value == condition


def _search_filters(params: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    custom: dict[str, Any] = {}
    if "CustomFilters" in params:
        custom = _json_param(params, "CustomFilters")
        if not isinstance(custom, dict) or set(custom) - set(CUSTOM_FIELDS):
            raise _invalid("CustomFilters", f"an object over {sorted(CUSTOM_FIELDS)}")
    utc = None
    if "UtcCreate" in params:
        utc = _json_param(params, "UtcCreate")
        if not isinstance(utc, dict) or not set(utc) <= {"gte", "lte"}:
            raise _invalid("UtcCreate", 'must be {"gte": ms, "lte": ms}')
    return custom, utc


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(name, default))
    except ValueError as exc:
        raise _invalid(name, "not an integer") from exc
    if not low <= value <= high:
        raise _invalid(name, f"must be {low}..{high}")
    return value


def _score(media: dict[str, Any], words: list[str]) -> float:
    if not words:
        return 1.0
    body = media["msg_body"] or {}
    texts = [body.get("title", "")] + [
        v for v in body.get("customFields", {}).values() if isinstance(v, str)
    ]
    haystack = set(re.findall(r"\w+", " ".join(texts).lower()))
    return sum(word in haystack for word in words) / len(words)


def search_media_by_hybrid(state: State, params: dict[str, str]) -> dict[str, Any]:
    lib_name, _ = _lib(state, params)
    page_no = _int_param(params, "PageNo", 1, 1, 10_000)
    page_size = _int_param(params, "PageSize", 10, 1, MAX_PAGE_SIZE)
    custom, utc = _search_filters(params)
    words = re.findall(r"\w+", params.get("Text", "").lower())
    hits = []
    for media in state.media.values():
        if media["search_lib"] != lib_name or state.job_status(media) != "Success":
            continue
        if "Namespace" in params and media["namespace"] != params["Namespace"]:
            continue
        if "MediaType" in params and media["media_type"] != params["MediaType"]:
            continue
        if "MediaId" in params and media["media_id"] != params["MediaId"]:
            continue
        fields = (media["msg_body"] or {}).get("customFields", {})
        if not all(_matches_filter(fields.get(k), c) for k, c in custom.items()):
            continue
        if utc is not None and not _matches_filter(media["utc_create"], utc):
            continue
        score = _score(media, words)
        if score > 0:
            hits.append((score, media["utc_create"], media["media_id"]))
    hits.sort(key=lambda h: (-h[0], -h[1], h[2]))
    page = hits[(page_no - 1) * page_size : page_no * page_size]
    media_list = [
        {"MediaId": media_id, "ClipInfo": [{"From": 0.0, "To": 5.0, "Score": round(score, 4)}]}
        for score, _, media_id in page
    ]
    return _ok(Total=len(hits), MediaList=media_list)


HANDLERS = {
    "CreateSearchLib": create_search_lib,
    "QuerySearchLib": query_search_lib,
    "CreateSearchIndex": create_search_index,
    "InsertMediaToSearchLib": insert_media,
    "SearchMediaByHybrid": search_media_by_hybrid,
    "QueryMediaIndexJob": query_media_index_job,
    "DeleteMediaFromSearchLib": delete_media,
}
assert set(HANDLERS) == set(ACTIONS)


# -- HTTP ----------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real endpoint (httpx pools)
    server: FakeIceServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    # -- plumbing --------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(
        self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        with contextlib.suppress(OSError):  # the client may have given up (timeout)
            self.send_response(status)
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def _send_error(
        self, err: ApiError, request_id: str, extra: dict[str, str] | None = None
    ) -> None:
        self._send_json(
            err.status,
            {
                "RequestId": request_id,
                "HostId": HOST_ID,
                "Code": err.code,
                "Message": err.message,
                "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=ICE",
            },
            extra,
        )

    def _send_raw(self, fault: dict[str, Any]) -> None:
        chunk = fault["body"].encode("utf-8")
        with contextlib.suppress(OSError):
            self.send_response(fault["status"] or 200)
            self.send_header("Content-Type", fault["content_type"])
            self.send_header("Content-Length", str(len(chunk) * fault["repeat"]))
            self.end_headers()
            for _ in range(fault["repeat"]):
                self.wfile.write(chunk)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/__state":
            with self.server.state.lock:
                snapshot = json.loads(json.dumps(self.server.state.snapshot()))
            self._send_json(200, snapshot)
            return
        self._api()

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/__control":
            self._control()
            return
        self._api()

    def do_PUT(self) -> None:  # noqa: N802 - stdlib naming
        self._api()

    def _control(self) -> None:
        try:
            op = json.loads(self._body() or b"{}")
            with self.server.state.lock:
                control(self.server.state, op)
        except (ValueError, KeyError, TypeError) as exc:
            self._send_json(400, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._send_json(200, {"ok": True})

    def _api(self) -> None:
        request_id = str(uuid.uuid4()).upper()
        state = self.server.state
        body = self._body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        action = headers.get("x-acs-action")
        has_token = "x-acs-security-token" in headers
        try:
            params = authenticate(self.command, self.path, headers, body, state)
        except ApiError as err:
            with state.lock:
                state.record(action, err.status, err.code, has_token)
            self._send_error(err, request_id)
            return
        assert action is not None
        with state.lock:
            state.calls[action] = state.calls.get(action, 0) + 1
            fault = state.take_fault(action)
        if fault is not None and fault["kind"] in ("error", "unavailable", "throttle"):
            err = ApiError(
                fault.get("code") or FAULT_KINDS[fault["kind"]],
                fault.get("message"),
                fault.get("status"),
            )
            with state.lock:
                state.record(action, err.status, err.code, has_token)
            extra = None
            if fault.get("retry_after") is not None:
                extra = {"x-acs-retry-after": str(fault["retry_after"])}
            self._send_error(err, request_id, extra)
            return
        if fault is not None and fault["kind"] == "raw":  # not what the API answers at all
            with state.lock:
                state.record(action, fault["status"] or 200, "raw", has_token)
            self._send_raw(fault)
            return
        if fault is not None and fault["kind"] == "drop" and not fault.get("process"):
            with state.lock:
                state.record(action, 0, "dropped", has_token)
            self._drop()
            return
        with state.lock:
            try:
                status, answer = 200, HANDLERS[action](state, params)
                code = None
            except ApiError as err:
                status, code = err.status, err.code
                answer = {
                    "RequestId": request_id,
                    "HostId": HOST_ID,
                    "Code": err.code,
                    "Message": err.message,
                }
            dropped = fault is not None and fault["kind"] == "drop"
            state.record(
                action, 0 if dropped else status, "dropped" if dropped else code, has_token
            )
        if dropped:
            self._drop()
            return
        if fault is not None and fault["kind"] == "delay":
            time.sleep(float(fault.get("delay", 1.0)))
        self._send_json(status, {"RequestId": request_id, **answer})


def authenticate(
    method: str, path: str, headers: dict[str, str], body: bytes, state: State
) -> dict[str, str]:
    """Check everything the gateway checks; the decoded parameters, or raise ApiError."""
    raw_path, _, raw_query = path.partition("?")
    if method != "POST" or raw_path != "/":
        raise ApiError("InvalidAction.NotFound")
    action = headers.get("x-acs-action", "")
    if action not in HANDLERS:
        raise ApiError("InvalidAction.NotFound")
    if headers.get("x-acs-version") != API_VERSION:
        raise ApiError("InvalidVersion")
    match = _AUTH_RE.match(headers.get("authorization", ""))
    if match is None:
        raise ApiError("IncompleteSignature")
    with state.lock:
        secret = state.keys.get(match["ak"])
        expected_token = state.token
    if secret is None:
        raise ApiError("InvalidAccessKeyId.NotFound")
    signed = match["signed"].split(";")
    must_sign = {"host"} | {n for n in headers if n.startswith("x-acs-") or n == "content-type"}
    if signed != sorted(signed) or not must_sign <= set(signed):
        missing = ", ".join(sorted(must_sign - set(signed))) or "(order)"
        raise ApiError("IncompleteSignature", f"SignedHeaders must list sorted: {missing}")
    now = time.time()
    try:
        date = calendar.timegm(time.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError as exc:
        raise ApiError("InvalidTimeStamp.Format") from exc
    if abs(now - date) > MAX_CLOCK_SKEW:
        raise ApiError("InvalidTimeStamp.Expired")
    nonce = headers.get("x-acs-signature-nonce")
    if not nonce:
        raise ApiError("MissingSignatureNonce")
    if body:
        raise _invalid("body", "this API takes every parameter in the query string")
    if headers.get("x-acs-content-sha256") != _EMPTY_SHA256:
        raise ApiError("SignatureDoesNotMatch", "x-acs-content-sha256 does not match the body.")
    token = headers.get("x-acs-security-token")
    if expected_token is None and token is not None:
        raise ApiError("InvalidSecurityToken.MismatchWithAccessKey")
    if expected_token is not None and not token:
        raise ApiError("MissingSecurityToken")
    if expected_token is not None and token != expected_token:
        raise ApiError("InvalidSecurityToken.Malformed")
    params = parse_wire_query(raw_query)
    canonical = canonical_request(method, params, headers, signed, body)
    hashed = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{hashed}"
    expected = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["sig"]):
        raise ApiError(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. "
            f"server string to sign is:{string_to_sign}",
        )
    with state.lock:
        if not state.use_nonce(nonce, now):
            raise ApiError("SignatureNonceUsed")
    return params


def control(state: State, op: dict[str, Any]) -> None:
    """Apply one control operation (see the module docstring)."""
    kind = op["op"]
    if kind == "fault":
        if op["kind"] not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {op['kind']!r}")
        action = op.get("action", "*")
        if action != "*" and action not in HANDLERS:
            raise ValueError(f"unknown action {action!r}")
        count = op.get("count", 1)
        state.faults.append(
            {
                "action": action,
                "kind": op["kind"],
                "count": None if count is None else int(count),
                "delay": float(op.get("delay", 1.0)),
                "process": bool(op.get("process", False)),
                "status": op.get("status"),
                "code": op.get("code"),
                "message": op.get("message"),
                "retry_after": op.get("retry_after"),
                # kind "raw": the answer's exact bytes (body x repeat) and content type
                "body": str(op.get("body", "")),
                "repeat": int(op.get("repeat", 1)),
                "content_type": str(op.get("content_type", "text/html")),
            }
        )
    elif kind == "clear_faults":
        state.faults.clear()
    elif kind == "duplicate_insert":
        if op["mode"] not in ("reject", "accept"):
            raise ValueError("mode must be reject or accept")
        state.duplicate_mode = op["mode"]
        state.duplicate_answer = {k: op[k] for k in ("status", "code", "message") if k in op}
    elif kind == "set":
        for key in ("index_job_polls", "index_ready_polls"):
            if key in op:
                setattr(state, key, int(op[key]))
        if "missing_media" in op:
            if op["missing_media"] not in ("error", "empty"):
                raise ValueError("missing_media must be error or empty")
            state.missing_media = op["missing_media"]
    elif kind == "job_status":
        matches = [m for m in state.media.values() if m["media_id"] == op["media_id"]]
        if not matches:
            raise KeyError(op["media_id"])
        for media in matches:
            media["_forced_status"] = op["status"]
    elif kind == "reset":
        state.reset()
    else:
        raise ValueError(f"unknown op {kind!r}")


class FakeIceServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, state: State, verbose: bool = False) -> None:
        self.state = state
        self.verbose = verbose
        super().__init__(("127.0.0.1", port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-key-id", required=True)
    parser.add_argument("--access-key-secret", required=True)
    parser.add_argument("--security-token")
    parser.add_argument("--index-job-polls", type=int, default=1)
    parser.add_argument("--index-ready-polls", type=int, default=0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    state = State(args.access_key_id, args.access_key_secret, args.security_token)
    state.index_job_polls = args.index_job_polls
    state.index_ready_polls = args.index_ready_polls
    try:
        server = FakeIceServer(args.port, state, args.verbose)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"port {args.port} in use", file=sys.stderr)
            return EXIT_PORT_IN_USE
        raise
    if args.exit_on_stdin_eof:  # the test runner holds our stdin: its death ends us too

        def watch() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            server.shutdown()

        threading.Thread(target=watch, daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


# -- the pytest-side wrapper ----------------------------------------------------------------

SCRIPT = Path(__file__).resolve()


class FakeIceError(RuntimeError):
    """The fake could not be started (the message includes its stderr)."""


class FakeIce(ReadyServer):
    """One ``fake_ice.py`` process on loopback; ``url`` is the endpoint to give the client."""

    name = "fake_ice"
    port_in_use_status = EXIT_PORT_IN_USE

    def __init__(
        self,
        *,
        access_key_id: str = "LTAI-fake-key-id",
        access_key_secret: str = "fake-secret",
        security_token: str | None = None,
        index_job_polls: int = 1,
        index_ready_polls: int = 0,
        port: int | None = None,
    ) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token
        self.index_job_polls = index_job_polls
        self.index_ready_polls = index_ready_polls
        super().__init__(port)
        self._http = build_opener(ProxyHandler({}))  # never through an environment proxy

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the server and block until it prints ``READY <port>`` (or raise)."""
        if self.running:
            raise RuntimeError("fake ICE already running")
        try:
            super().start(timeout)
        except ReadyProcessError as exc:
            raise FakeIceError(
                f"fake ICE did not become ready ({exc.reason}); stderr:\n{self.stderr_text()}"
            ) from exc

    def _command(self) -> list[str]:
        cmd = [
            sys.executable,
            str(SCRIPT),
            "--port",
            str(self.port),
            "--access-key-id",
            self.access_key_id,
            "--access-key-secret",
            self.access_key_secret,
            "--index-job-polls",
            str(self.index_job_polls),
            "--index-ready-polls",
            str(self.index_ready_polls),
            "--exit-on-stdin-eof",
        ]
        if self.security_token is not None:
            cmd += ["--security-token", self.security_token]
        return cmd

    # -- control ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with self._http.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    def control(self, op: str, **fields: Any) -> None:
        """``POST /__control`` — e.g. ``control("fault", action="*", kind="error", count=2)``."""
        self._request("POST", "/__control", {"op": op, **fields})

    def state(self) -> dict[str, Any]:
        """``GET /__state``."""
        return self._request("GET", "/__state")

    def media(self) -> Iterator[dict[str, Any]]:
        """The stored media, one dict each."""
        yield from self.state()["media"]


if __name__ == "__main__":
    sys.exit(main())
