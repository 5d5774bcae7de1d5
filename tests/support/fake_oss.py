"""A local Alibaba Cloud OSS for tests: moto's S3 server behind an adapter that speaks OSS.

No OSS emulator exists in the package registries, but OSS's object API is close to S3's.  So:

* ``python tests/support/fake_oss.py --serve-moto [--port P]`` runs moto's S3 server (moto 5,
  ``ThreadedMotoServer``) with OSS's 100 KB minimum part size (``S3_UPLOAD_PART_MIN_SIZE``),
  and prints ``READY <port>``;
* ``python tests/support/fake_oss.py --port P --upstream http://127.0.0.1:MOTOPORT
  --access-key-id AK --access-key-secret SK --region R`` runs the adapter, a reverse proxy that
  oss2 talks to (path-style, as oss2 does for IP endpoints), and prints ``READY <port>``.

Both are real processes on loopback ports (``--port 0``: the kernel picks one, reported in the
READY line, so there is no port race).  Both exit when their stdin reaches EOF, i.e. when the
test process that holds the pipe dies.

What the adapter does to each request, in order:

1. records it (``GET /__requests``), *after* reading the body and *before* answering, so a test
   can poll for "part 4 has arrived" while that request is still being held;
2. applies the first matching injected fault (``POST /__faults``, below);
3. checks it like OSS would (errors are OSS-shaped XML with ``x-oss-request-id``):
   ``Authorization: OSS4-HMAC-SHA256 Credential=AK/DATE/REGION/oss/aliyun_v4_request, ...``
   (V1 and anonymous requests are refused: the agent must sign V4), the AccessKey ID
   (``InvalidAccessKeyId``), the STS token when one is configured (``InvalidSecurityToken``),
   ``x-oss-date`` within 15 minutes (``RequestTimeTooSkewed``), ``x-oss-content-sha256``
   present, region and product in the scope, the full V4 signature recomputed from the
   request (``SignatureDoesNotMatch``), ``x-oss-traffic-limit`` an integer within
   819200..838860800 (``InvalidArgument``), and ``Content-MD5`` against the body
   (``InvalidDigest``);
4. forwards it to moto as S3: a SigV4-shaped ``Authorization`` so moto routes it to S3 (moto
   does not verify it), empty query parameters such as ``part-number-marker=`` dropped, the key
   re-quoted with ``/`` kept, a chunked body re-sent with a Content-Length;
5. answers like OSS: S3's ``xmlns`` stripped from XML (oss2 looks tags up without a namespace),
   ``x-oss-request-id`` added, and ``x-oss-hash-crc64ecma`` (CRC-64/XZ, what OSS reports)
   computed for PutObject, UploadPart, CompleteMultipartUpload, GetObject and HeadObject, so
   oss2's own CRC checks run as against the real service.

ListObjects gets the ``Type`` OSS adds to each object; ListParts works as it is.

Control endpoints (JSON; paths starting ``/__`` can never be a bucket):

* ``GET /__requests`` -> ``[{"seq", "method", "op", "bucket", "key", "params", "headers",
  "access_key_id", "body_size", "status", "code", "fault"}, ...]``; ``DELETE`` clears it.
  ``status`` is ``null`` while the request is still being processed (e.g. held by a fault).
* ``POST /__faults`` with ``{"kind": K, "count": N, "match": {...}, ...}`` -> ``{"id": n}``;
  ``GET`` lists the faults; ``DELETE`` removes them all and releases held requests.
  Kinds: ``"status"`` (answer ``status``/``code``, default 503 ServiceUnavailable, without
  forwarding; with ``retry_after``: a ``Retry-After`` header of that many seconds),
  ``"reset"`` (TCP RST, no answer), ``"stall"`` (hold the request unanswered until
  the faults are cleared or ``seconds`` passed, then reset it; never forwarded), ``"raw"``
  (answer ``status`` with ``body`` repeated ``repeat`` times as ``content_type``: an HTML
  error page, malformed XML, a huge body; never forwarded), ``"delay"``
  (wait ``seconds``, then forward), ``"bad-crc"`` (forward, then report a wrong CRC-64).
  ``count``: how many requests it hits (default 1; ``null`` = until cleared).
  ``match`` (all given must hold): ``method``, ``op`` (e.g. ``"UploadPart"``), ``key``,
  ``params`` (e.g. ``{"partNumber": "4"}``).

The pytest side is :class:`FakeOss` at the bottom.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import signal
import socket
import stat
import struct
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

if __package__:  # imported by the tests, as tests.support.fake_oss
    from .ready_process import ReadyProcess, ReadyProcessError
else:  # moto and the adapter, run as a script: ready_process.py is beside it, on sys.path
    from ready_process import ReadyProcess, ReadyProcessError

SCRIPT = Path(__file__).resolve()
#: OSS's smallest part (all but the last), which moto must enforce instead of S3's 5 MiB.
OSS_MIN_PART_SIZE = 100 * 1024
TRAFFIC_LIMIT_RANGE = (819_200, 838_860_800)
MAX_CLOCK_SKEW = 15 * 60
#: Credentials moto is "signed" with; moto only reads the scope to route the request to S3.
_MOTO_AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/{date}/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=" + "0" * 64
)
#: Query parameters that are S3/OSS sub-resource flags: sent with an empty value, but meaningful.
_FLAG_PARAMS = frozenset({"uploads", "delete", "acl", "tagging", "append", "symlink", "restore"})
#: Request headers kept in the request log.
_LOGGED_HEADERS = (
    "content-length",
    "content-md5",
    "content-type",
    "transfer-encoding",
    "x-oss-traffic-limit",
    "x-oss-date",
    "x-oss-content-sha256",
)
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
)
_XMLNS = re.compile(rb'\s+xmlns="http://s3\.amazonaws\.com/doc/2006-03-01/?"')

log = logging.getLogger("fake_oss")


# --------------------------------------------------------------------------------------------
# CRC-64 as OSS reports it (x-oss-hash-crc64ecma): CRC-64/XZ, reflected ECMA-182 polynomial.
# Written out here rather than borrowed from oss2, so the fake does not trust the code it tests.


def _crc64_table() -> list[int]:
    poly = 0xC96C5795D7870F42  # 0x42F0E1EBA9EA3693 reflected
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


try:  # crcmod (an oss2 dependency) has a C implementation: ~100x faster for MB-sized bodies
    import crcmod

    _crc64_fast = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, xorOut=0xFFFFFFFFFFFFFFFF)
except ImportError:  # pragma: no cover - oss2 always brings crcmod
    _crc64_fast = None
_CRC64_TABLE = _crc64_table()


def crc64(data: bytes) -> int:
    """CRC-64/XZ of ``data`` (check value of b"123456789": 0x995DC9BBDF1939FA)."""
    if _crc64_fast is not None:
        return _crc64_fast(data)
    crc = 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc = _CRC64_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


# --------------------------------------------------------------------------------------------
# OSS V4 signature, recomputed from the request as the service does.


def _v4_encode(text: str, keep_slash: bool) -> str:
    safe = "-_.~/" if keep_slash else "-_.~"
    return quote(text, safe=safe)


def _v4_signature(
    *,
    secret: str,
    method: str,
    bucket: str,
    key: str,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    additional: list[str],
    date_time: str,
    region: str,
    product: str,
) -> str:
    uri = _v4_encode(f"/{bucket}/{key}" if bucket else "/", True)
    encoded = sorted((_v4_encode(k, False), _v4_encode(v, False)) for k, v in params)
    query = "&".join(f"{k}={v}" if v else k for k, v in encoded)
    signed = sorted(
        (name, value)
        for name, value in headers.items()
        if name.startswith("x-oss-")
        or name in ("content-type", "content-md5")
        or name in additional
    )
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in signed)
    payload = headers.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
    canonical_request = "\n".join(
        [method, uri, query, canonical_headers, ";".join(sorted(additional)), payload]
    )
    scope = f"{date_time[:8]}/{region}/{product}/aliyun_v4_request"
    string_to_sign = "\n".join(
        [
            "OSS4-HMAC-SHA256",
            date_time,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    k = ("aliyun_v4" + secret).encode()
    for part in (date_time[:8], region, product, "aliyun_v4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _parse_v4_authorization(value: str) -> dict[str, str] | None:
    if not value.startswith("OSS4-HMAC-SHA256 "):
        return None
    fields: dict[str, str] = {}
    for item in value[len("OSS4-HMAC-SHA256 ") :].split(","):
        name, sep, val = item.strip().partition("=")
        if sep:
            fields[name] = val
    return fields if "Credential" in fields and "Signature" in fields else None


# --------------------------------------------------------------------------------------------
# The adapter process.


class _Reject(Exception):
    """An OSS error answer: ``status``, ``code``, ``message`` (and OSS's detailed ``ec``)."""

    def __init__(self, status: int, code: str, message: str, ec: str = "") -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.ec = status, code, message, ec


class _Fault:
    def __init__(self, fid: int, spec: dict[str, Any]) -> None:
        kind = spec.get("kind")
        if kind not in ("status", "reset", "stall", "delay", "bad-crc", "raw"):
            raise ValueError(f"unknown fault kind {kind!r}")
        self.id = fid
        self.kind: str = kind
        self.remaining: int | None = spec.get("count", 1)
        self.match: dict[str, Any] = spec.get("match") or {}
        self.status = int(spec.get("status", 503))
        self.code = str(spec.get("code", "ServiceUnavailable"))
        self.seconds = float(spec.get("seconds", 0 if kind == "delay" else 3600))
        # kind "status": a Retry-After header (seconds) on the answer, as throttling may send
        self.retry_after = spec.get("retry_after")
        self.hits = 0
        self.released = threading.Event()
        # kind "raw": answer exactly this (body x repeat), nothing like OSS's XML
        self.body = str(spec.get("body", "")).encode()
        self.repeat = int(spec.get("repeat", 1))
        self.content_type = str(spec.get("content_type", "text/html"))

    def matches(self, rec: dict[str, Any]) -> bool:
        m = self.match
        if "method" in m and m["method"].upper() != rec["method"]:
            return False
        if "op" in m and m["op"] != rec["op"]:
            return False
        if "key" in m and m["key"] != rec["key"]:
            return False
        return all(rec["params"].get(k) == str(v) for k, v in (m.get("params") or {}).items())

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "remaining": self.remaining,
            "match": self.match,
            "hits": self.hits,
        }


class _State:
    """Everything the handler threads share, behind one lock."""

    def __init__(self, args: argparse.Namespace) -> None:
        up = urlsplit(args.upstream)
        self.upstream_host = up.hostname or "127.0.0.1"
        self.upstream_port = up.port or 80
        self.access_key_id: str = args.access_key_id
        self.access_key_secret: str = args.access_key_secret
        self.security_token: str | None = args.security_token
        self.region: str = args.region
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.faults: list[_Fault] = []
        self.next_fault_id = 1

    def take_fault(self, rec: dict[str, Any]) -> _Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining != 0 and fault.matches(rec):
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def clear_faults(self) -> None:
        with self.lock:
            faults, self.faults = self.faults, []
        for fault in faults:
            fault.released.set()


def _operation(method: str, key: str, params: dict[str, str]) -> str:
    if not key:
        return {"PUT": "PutBucket", "GET": "GetBucket", "DELETE": "DeleteBucket"}.get(
            method, f"{method}Bucket"
        )
    if "uploadId" in params:
        return {
            "PUT": "UploadPart",
            "POST": "CompleteMultipartUpload",
            "GET": "ListParts",
            "DELETE": "AbortMultipartUpload",
        }.get(method, method)
    if method == "POST" and "uploads" in params:
        return "InitiateMultipartUpload"
    return {
        "PUT": "PutObject",
        "GET": "GetObject",
        "HEAD": "HeadObject",
        "DELETE": "DeleteObject",
    }.get(method, method)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State  # set on the class by serve_adapter()

    def version_string(self) -> str:
        return "AliyunOSS"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- plumbing ----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "content-length" not in {k.lower() for k in headers}:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(value).encode()
        self._send(status, {"Content-Type": "application/json"}, body)

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (what a dropped NAT mapping looks like)."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        self.close_connection = True

    def _oss_error(
        self, rid: str, err: _Reject, head: bool, extra: dict[str, str] | None = None
    ) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
            f"  <Code>{err.code}</Code>\n  <Message>{err.message}</Message>\n"
            f"  <RequestId>{rid}</RequestId>\n  <HostId>127.0.0.1</HostId>\n"
            + (f"  <EC>{err.ec}</EC>\n" if err.ec else "")
            + "</Error>\n"
        ).encode()
        headers = {"Content-Type": "application/xml", "x-oss-request-id": rid, **(extra or {})}
        if err.ec:
            headers["x-oss-ec"] = err.ec
        if head:  # no body on HEAD: OSS puts the error into a base64 header instead
            headers["x-oss-err"] = base64.b64encode(body).decode()
            headers["Content-Length"] = "0"
        self._send(err.status, headers, body, head=head)

    # -- control endpoints -------------------------------------------------------------

    def _control(self, method: str, path: str) -> None:
        st = self.state
        body = self._read_body()
        if path == "/__requests" and method == "GET":
            with st.lock:
                snapshot = [dict(r) for r in st.requests]
            self._send_json(snapshot)
        elif path == "/__requests" and method == "DELETE":
            with st.lock:
                st.requests.clear()
            self._send_json({"ok": True})
        elif path == "/__faults" and method == "POST":
            try:
                with st.lock:
                    fault = _Fault(st.next_fault_id, json.loads(body))
                    st.next_fault_id += 1
                    st.faults.append(fault)
            except (ValueError, TypeError) as exc:
                self._send_json({"error": str(exc)}, 400)
                return
            self._send_json({"id": fault.id})
        elif path == "/__faults" and method == "GET":
            with st.lock:
                self._send_json([f.describe() for f in st.faults])
        elif path == "/__faults" and method == "DELETE":
            st.clear_faults()
            self._send_json({"ok": True})
        else:
            self._send_json({"error": f"no control endpoint {method} {path}"}, 404)

    # -- data plane --------------------------------------------------------------------

    def _handle(self) -> None:
        method = self.command
        split = urlsplit(self.path)
        if split.path.startswith("/__"):
            self._control(method, split.path)
            return
        st = self.state
        rid = uuid.uuid4().hex[:24].upper()
        head = method == "HEAD"
        body = self._read_body()
        raw_path = split.path.lstrip("/")
        bucket, _, raw_key = raw_path.partition("/")
        key = unquote(raw_key)
        params = parse_qsl(split.query, keep_blank_values=True)
        pdict = dict(params)
        headers = {k.lower(): v for k, v in self.headers.items()}
        auth = _parse_v4_authorization(headers.get("authorization", ""))
        rec: dict[str, Any] = {
            "method": method,
            "op": _operation(method, key, pdict),
            "bucket": bucket,
            "key": key,
            "params": pdict,
            "headers": {h: headers[h] for h in _LOGGED_HEADERS if h in headers},
            "access_key_id": auth["Credential"].split("/")[0] if auth else None,
            "security_token": "x-oss-security-token" in headers,
            "body_size": len(body),
            "request_id": rid,
            "status": None,
            "code": None,
            "fault": None,
            "time": time.time(),
        }
        with st.lock:
            rec["seq"] = len(st.requests)
            st.requests.append(rec)

        fault = st.take_fault(rec)
        if fault is not None:
            rec["fault"] = fault.kind
            if fault.kind == "reset":
                rec["status"] = "reset"
                self._reset()
                return
            if fault.kind == "stall":
                fault.released.wait(fault.seconds)
                rec["status"] = "reset"
                self._reset()
                return
            if fault.kind == "raw":
                rec["status"], rec["code"] = fault.status, "raw"
                headers = {"Content-Type": fault.content_type, "x-oss-request-id": rid}
                self._send(fault.status, headers, fault.body * fault.repeat, head=head)
                return
            if fault.kind == "status":
                rec["status"], rec["code"] = fault.status, fault.code
                extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                reject = _Reject(fault.status, fault.code, "injected fault")
                self._oss_error(rid, reject, head, extra)
                return
            if fault.kind == "delay":
                time.sleep(fault.seconds)
        try:
            self._check(headers, auth, bucket, key, params, body)
        except _Reject as err:
            rec["status"], rec["code"] = err.status, err.code
            self._oss_error(rid, err, head)
            return
        status, resp_headers, resp_body = self._forward(method, bucket, key, params, headers, body)
        crc = self._response_crc(rec["op"], status, bucket, key, pdict, headers, body, resp_body)
        if crc is not None:
            if fault is not None and fault.kind == "bad-crc":
                crc ^= 0x1
            resp_headers["x-oss-hash-crc64ecma"] = str(crc)
        resp_headers["x-oss-request-id"] = rid
        rec["status"] = status
        if status >= 300 and resp_body.startswith(b"<"):
            m = re.search(rb"<Code>([^<]*)</Code>", resp_body)
            rec["code"] = m.group(1).decode() if m else None
        self._send(status, resp_headers, resp_body, head=head)

    def _check(
        self,
        headers: dict[str, str],
        auth: dict[str, str] | None,
        bucket: str,
        key: str,
        params: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        """Reject the request as OSS would (raises :class:`_Reject`)."""
        st = self.state
        if "authorization" not in headers:
            raise _Reject(403, "AccessDenied", "You have no right to access this object.")
        if auth is None:
            raise _Reject(
                403,
                "AccessDenied",
                "fake_oss accepts only V4 signatures (Authorization: OSS4-HMAC-SHA256 ...).",
            )
        scope = auth["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aliyun_v4_request":
            raise _Reject(400, "InvalidArgument", "Invalid credential scope in Authorization.")
        ak, date, region, product, _ = scope
        if ak != st.access_key_id:
            raise _Reject(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
                "0002-00000902",
            )
        token = headers.get("x-oss-security-token")
        if st.security_token is not None and token != st.security_token:
            raise _Reject(403, "InvalidSecurityToken", "The security token is invalid.")
        if st.security_token is None and token is not None:
            raise _Reject(403, "InvalidAccessKeyId", "AccessKey is not an STS key.")
        date_time = headers.get("x-oss-date", "")
        try:
            when = datetime.strptime(date_time, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise _Reject(403, "AccessDenied", "Missing or malformed x-oss-date.") from None
        if abs(when.timestamp() - time.time()) > MAX_CLOCK_SKEW:
            raise _Reject(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            )
        if date != date_time[:8]:
            raise _Reject(403, "SignatureDoesNotMatch", "Credential date != x-oss-date.")
        if "x-oss-content-sha256" not in headers:
            raise _Reject(400, "InvalidArgument", "x-oss-content-sha256 is required for V4.")
        if region != st.region or product != "oss":
            raise _Reject(
                403,
                "SignatureDoesNotMatch",
                f"Invalid signing region/product in the credential scope: {region}/{product}.",
            )
        additional = [h.strip().lower() for h in auth.get("AdditionalHeaders", "").split(";")]
        expected = _v4_signature(
            secret=st.access_key_secret,
            method=self.command,
            bucket=bucket,
            key=key,
            params=params,
            headers=headers,
            additional=[h for h in additional if h],
            date_time=date_time,
            region=region,
            product=product,
        )
        if not hmac.compare_digest(expected, auth["Signature"]):
            raise _Reject(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
                "0002-00000040",
            )
        limit = headers.get("x-oss-traffic-limit")
        if limit is not None:
            lo, hi = TRAFFIC_LIMIT_RANGE
            if not limit.isdigit() or not lo <= int(limit) <= hi:
                raise _Reject(
                    400,
                    "InvalidArgument",
                    f"x-oss-traffic-limit must be an integer in [{lo}, {hi}] bit/s.",
                    "0004-00000502",
                )
        md5 = headers.get("content-md5")
        if md5 is not None and base64.b64encode(hashlib.md5(body).digest()).decode() != md5:
            raise _Reject(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")

    def _upstream(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        st = self.state
        conn = http.client.HTTPConnection(st.upstream_host, st.upstream_port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _forward(
        self,
        method: str,
        bucket: str,
        key: str,
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        st = self.state
        kept = [(k, v) for k, v in params if v or k in _FLAG_PARAMS]
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in kept)
        path = f"/{bucket}/{quote(key, safe='/')}" if key else f"/{bucket}"
        if query:
            path += "?" + query
        date = datetime.now(timezone.utc).strftime("%Y%m%d")
        out = {"Authorization": _MOTO_AUTH.format(date=date)}
        for name, value in headers.items():
            if name in ("authorization", "host", "transfer-encoding", "content-length"):
                continue
            if name.startswith("x-oss-meta-"):
                out["x-amz-meta-" + name[len("x-oss-meta-") :]] = value
            elif not name.startswith("x-oss-"):
                out[name] = value
        out["Host"] = f"{st.upstream_host}:{st.upstream_port}"
        status, raw_headers, resp_body = self._upstream(
            method, path, out, body if method in ("PUT", "POST") else None
        )
        resp_headers: dict[str, str] = {}
        for name, value in raw_headers:
            lname = name.lower()
            if lname in _HOP_BY_HOP and not (method == "HEAD" and lname == "content-length"):
                continue
            if lname.startswith("x-amz-meta-"):
                resp_headers["x-oss-meta-" + name[len("x-amz-meta-") :]] = value
            elif lname.startswith("x-amz-"):
                continue
            else:
                resp_headers[name] = value
        if resp_body.lstrip().startswith(b"<"):
            resp_body = _XMLNS.sub(b"", resp_body)
            if b"<ListBucketResult" in resp_body[:200]:
                # OSS's ListObjects names each object's Type (Normal, Multipart, Appendable).
                resp_body = resp_body.replace(b"</Contents>", b"<Type>Normal</Type></Contents>")
        return status, resp_headers, resp_body

    def _response_crc(
        self,
        op: str,
        status: int,
        bucket: str,
        key: str,
        params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        resp_body: bytes,
    ) -> int | None:
        """The object's CRC-64 as OSS would report it in this response, or ``None``."""
        if status != 200:
            return None
        if op in ("PutObject", "UploadPart"):
            return crc64(body)
        if op == "GetObject" and "range" not in headers:
            return crc64(resp_body)
        if op in ("CompleteMultipartUpload", "HeadObject"):
            # moto does not keep CRC-64s: read the stored object back and compute it.
            date = datetime.now(timezone.utc).strftime("%Y%m%d")
            st, _, data = self._upstream(
                "GET",
                f"/{bucket}/{quote(key, safe='/')}",
                {"Authorization": _MOTO_AUTH.format(date=date)},
                None,
            )
            return crc64(data) if st == 200 else None
        return None

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_HEAD = do_DELETE = do_GET


def _watch_stdin_then_exit() -> None:
    """Exit when stdin (a pipe from the test process) reaches EOF, i.e. the test died."""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return
    if not stat.S_ISFIFO(mode):
        return

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        os._exit(0)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def serve_moto(port: int) -> None:
    """Run moto's S3 server with OSS's minimum part size; print ``READY <port>``."""
    os.environ["S3_UPLOAD_PART_MIN_SIZE"] = str(OSS_MIN_PART_SIZE)  # read at moto import
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer("127.0.0.1", port, verbose=False)
    server.start()
    _, real_port = server.get_host_and_port()
    print(f"READY {real_port}", flush=True)


def serve_adapter(args: argparse.Namespace) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"state": _State(args)})
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="adapter", daemon=True).start()
    print(f"READY {httpd.server_address[1]}", flush=True)
    return httpd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve-moto", action="store_true", help="run moto's S3 server instead")
    p.add_argument("--port", type=int, default=0, help="listen port (0: pick a free one)")
    p.add_argument("--upstream", help="moto's URL, e.g. http://127.0.0.1:5000")
    p.add_argument("--access-key-id", default="LTAI5tFakeOssTestKey01")
    p.add_argument("--access-key-secret", default="fake-oss-test-secret-0123456789")
    p.add_argument("--security-token", default=None, help="require this STS token")
    p.add_argument("--region", default="cn-hangzhou")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    _watch_stdin_then_exit()
    if args.serve_moto:
        serve_moto(args.port)
    else:
        if not args.upstream:
            p.error("--upstream is required (or --serve-moto)")
        serve_adapter(args)
    while True:  # the servers run in daemon threads; stdin EOF or SIGTERM ends the process
        signal.pause()


# --------------------------------------------------------------------------------------------
# The pytest side.


class FakeOssError(RuntimeError):
    """The fake could not be started (message includes the process's stderr)."""


class FakeOss:
    """moto + the OSS adapter as two real processes; use as a context manager.

    ``endpoint`` is what oss2 gets (``http://127.0.0.1:PORT``: an IP, so oss2 uses path-style
    URLs).  Only requests signed V4 with ``access_key_id``/``access_key_secret`` for
    ``region`` (and ``security_token`` if given) are accepted.
    """

    def __init__(
        self,
        *,
        access_key_id: str = "LTAI5tFakeOssTestKey01",
        access_key_secret: str = "fake-oss-test-secret-0123456789",
        region: str = "cn-hangzhou",
        security_token: str | None = None,
    ) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.region = region
        self.security_token = security_token
        self._moto: ReadyProcess | None = None
        self._adapter: ReadyProcess | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 20) -> None:
        if self._adapter is not None:
            raise RuntimeError("FakeOss already started")
        env = dict(os.environ, S3_UPLOAD_PART_MIN_SIZE=str(OSS_MIN_PART_SIZE))
        # No real AWS/Alibaba credentials or config may leak into the fake.
        for name in list(env):
            if name.startswith(("AWS_", "ALIBABA_CLOUD_")):
                del env[name]
        py = sys.executable
        try:
            self._moto = self._spawn("moto", [py, str(SCRIPT), "--serve-moto"], env, timeout)
            cmd = [
                py,
                str(SCRIPT),
                "--upstream",
                f"http://127.0.0.1:{self.moto_port}",
                "--access-key-id",
                self.access_key_id,
                "--access-key-secret",
                self.access_key_secret,
                "--region",
                self.region,
            ]
            if self.security_token is not None:
                cmd += ["--security-token", self.security_token]
            self._adapter = self._spawn("adapter", cmd, env, timeout)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _spawn(name: str, cmd: list[str], env: dict[str, str], timeout: float) -> ReadyProcess:
        """Start one child (``--port 0``: it reports its port) and wait until it is READY."""
        # Own process group: stop() takes down whatever the child may have started, too.
        proc = ReadyProcess(name, cmd, env=env, own_group=True)
        try:
            proc.wait_ready(time.monotonic() + timeout)
        except ReadyProcessError as exc:
            proc.close()
            raise FakeOssError(str(exc)) from exc
        return proc

    def stop(self) -> None:
        """Kill both processes (idempotent); state in moto is gone with it."""
        for proc in (self._adapter, self._moto):
            if proc is not None:
                proc.close()
        self._adapter = self._moto = None

    def __enter__(self) -> FakeOss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- info --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._adapter is None or self._adapter.port is None:
            raise RuntimeError("FakeOss not started")
        return self._adapter.port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def moto_port(self) -> int:
        if self._moto is None or self._moto.port is None:
            raise RuntimeError("FakeOss not started")
        return self._moto.port

    def stderr_text(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.stderr_text()}" for p in (self._moto, self._adapter) if p
        )

    # -- moto directly (bypassing the adapter: setup and ground truth) -------------------

    def _moto_request(self, method: str, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=30)
        try:
            date = datetime.now(timezone.utc).strftime("%Y%m%d")
            conn.request(method, path, headers={"Authorization": _MOTO_AUTH.format(date=date)})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def create_bucket(self, name: str) -> None:
        status, body = self._moto_request("PUT", f"/{name}")
        if status != 200:
            raise FakeOssError(f"create bucket {name}: HTTP {status}: {body[:300]!r}")

    def object_bytes(self, bucket: str, key: str) -> bytes | None:
        """What is stored (``None``: no such object), read from moto directly."""
        status, body = self._moto_request("GET", f"/{bucket}/{quote(key, safe='/')}")
        if status == 404:
            return None
        if status != 200:
            raise FakeOssError(f"get {bucket}/{key}: HTTP {status}: {body[:300]!r}")
        return body

    # -- the adapter's control endpoints ---------------------------------------------------

    def _control(self, method: str, path: str, payload: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            body = json.dumps(payload).encode() if payload is not None else None
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = json.loads(resp.read() or b"null")
            if resp.status != 200:
                raise FakeOssError(f"{method} {path}: HTTP {resp.status}: {data}")
            return data
        finally:
            conn.close()

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The request log from sequence number ``since`` on (see the module doc)."""
        return [r for r in self._control("GET", "/__requests") if r["seq"] >= since]

    def clear_requests(self) -> None:
        self._control("DELETE", "/__requests")

    def fault(
        self,
        kind: str,
        *,
        count: int | None = 1,
        method: str | None = None,
        op: str | None = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
        status: int = 503,
        code: str = "ServiceUnavailable",
        seconds: float | None = None,
        **raw: Any,
    ) -> int:
        """Inject a fault (kinds in the module doc); returns its id. ``raw``: ``body``,
        ``repeat``, ``content_type`` of a ``"raw"`` answer."""
        match = {
            k: v
            for k, v in {"method": method, "op": op, "key": key, "params": params}.items()
            if v is not None
        }
        spec: dict[str, Any] = {
            "kind": kind,
            "count": count,
            "match": match,
            "status": status,
            "code": code,
        }
        if seconds is not None:
            spec["seconds"] = seconds
        spec.update(raw)
        return self._control("POST", "/__faults", spec)["id"]

    def clear_faults(self) -> None:
        """Remove every fault; requests held by a ``stall`` are then reset."""
        self._control("DELETE", "/__faults")

    def wait_for_request(
        self, predicate: Any, *, timeout: float = 10, since: int = 0
    ) -> dict[str, Any]:
        """Poll the request log (with a deadline) until a request satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.requests(since):
                if predicate(rec):
                    return rec
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no matching request within {timeout:g}s")
            time.sleep(0.01)  # polling a condition with a deadline


if __name__ == "__main__":
    sys.exit(main())
