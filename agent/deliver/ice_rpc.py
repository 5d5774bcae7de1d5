"""One ICE call on the wire: the request built and signed, the answer read and judged.

Wire format (RPC style, as the SDK sends these operations): every call is ``POST /`` on the
regional endpoint (``https://ice.<region>.aliyuncs.com``) with all parameters in the query
string, an empty body and the V3 signature headers; ``x-acs-action`` names the operation and
``x-acs-version`` is ``2020-11-09``. We build the query string ourselves with
:func:`acs.canonical_query`, so the bytes on the wire are exactly the bytes we signed
(httpx's ``params=`` would send spaces as ``+``).

Responses are JSON. A success carries ``RequestId`` and usually ``Success`` ("true" — a
string in the API reference, a bool is tolerated) and ``Code`` ("200"). An error carries
``Code``, ``Message`` and ``RequestId`` with a 4xx/5xx status — and some gateways answer
throttling with HTTP **400** (``Throttling``/``Throttling.User``; developer.aliyun.com/ask/128391
and /ask/571020), so errors are classified by ``Code`` first, status second
(:func:`~agent.deliver.ice_errors.classify_error`).

No retries here: the caller (the uploader loop) owns backoff and persistence; every raised
:class:`~agent.deliver.ice_errors.IceError` says whether a retry can help (``retryable``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from agent.deliver.acs import Credentials, canonical_query, format_date, new_nonce, sign
from agent.deliver.ice_errors import (
    IceConnectionError,
    IceCredentialsError,
    IceServerError,
    IceTimeout,
    classify_error,
    retry_after_seconds,
)

log = logging.getLogger("agent.deliver.ice")  # the name its lines have always had

API_VERSION = "2020-11-09"
DEFAULT_TIMEOUT = 10.0
#: Our answers are a few kB; a bigger body is a proxy's or portal's page, not worth the memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024

ParamValue = str | int | float | bool | Mapping[str, Any] | list[Any] | None
_Connection = TypeVar("_Connection", bound="IceConnection")


def query_params(params: Mapping[str, ParamValue]) -> dict[str, str]:
    """The query string's parameters: ``None`` and empty values left out."""
    return {k: v for k, v in ((k, _to_param(v)) for k, v in params.items()) if v}


def _to_param(value: ParamValue) -> str | None:
    """Query-string value: JSON for structures (compact, UTF-8 kept), ``None`` to omit."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def parse_answer(action: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a successful answer; else the :class:`IceError` it amounts to."""
    status = response.status_code
    wait = retry_after_seconds(response.headers.get("x-acs-retry-after"))
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        snippet = response.text[:200].replace("\n", " ")
        if status < 400 or status >= 500:
            raise IceServerError(
                f"unexpected non-JSON answer: {snippet!r}",
                status=status,
                action=action,
                retry_after=wait,
            )
        raise classify_error(
            status, None, f"non-JSON error answer: {snippet!r}", action=action, retry_after=wait
        )
    if 200 <= status < 300 and not _is_false(body.get("Success")):
        return body
    raise classify_error(
        status,
        body.get("Code"),
        str(body.get("Message") or "request failed"),
        request_id=body.get("RequestId"),
        action=action,
        retry_after=wait,
    )


class IceConnection:
    """One ICE endpoint, one set of credentials, one pooled HTTP connection: :meth:`call`.

    ``credentials`` is called before every request, so an STS provider can refresh behind
    it. ``clock``, ``nonce`` and ``transport`` exist for tests (a skewed clock, a repeated
    nonce, a canned answer).
    Not thread-safe beyond what httpx.Client is; use one per uploader thread.
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Callable[[], Credentials],
        *,
        connect_timeout: float = DEFAULT_TIMEOUT,
        read_timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = new_nonce,
        user_agent: str = "ipc-edge-agent",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = httpx.URL(endpoint)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"ICE endpoint must be an http(s) URL, got {endpoint!r}")
        if url.path not in ("", "/") or url.query:
            raise ValueError(f"ICE endpoint must not have a path or query: {endpoint!r}")
        self._base = f"{url.scheme}://{url.netloc.decode('ascii')}"
        self._host = url.netloc.decode("ascii")
        self._credentials = credentials
        self._clock = clock
        self._nonce = nonce
        self._user_agent = user_agent
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        self._http = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)

    @property
    def endpoint(self) -> str:
        return self._base

    def close(self) -> None:
        self._http.close()

    def __enter__(self: _Connection) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one generic call --------------------------------------------------------------

    def call(self, action: str, params: Mapping[str, ParamValue]) -> dict[str, Any]:
        """Perform ``action`` once; the parsed JSON body on success, else raise IceError."""
        query = query_params(params)
        creds = self._get_credentials(action)
        signed = sign(
            "POST",
            self._host,
            "/",
            query,
            {
                "x-acs-action": action,
                "x-acs-version": API_VERSION,
                "accept": "application/json",
                "user-agent": self._user_agent,
            },
            b"",
            creds.access_key_id,
            creds.access_key_secret,
            security_token=creds.security_token,
            date=format_date(self._clock()),
            nonce=self._nonce(),
        )
        qs = canonical_query(query)
        url = f"{self._base}/?{qs}" if qs else f"{self._base}/"
        started = time.monotonic()
        try:
            with self._http.stream("POST", url, headers=signed.headers, content=b"") as answer:
                data = bytearray()
                for chunk in answer.iter_bytes():  # decoded (gzip) already
                    data += chunk
                    if len(data) > MAX_ANSWER_BYTES:
                        raise IceServerError(
                            f"answer larger than {MAX_ANSWER_BYTES} bytes",
                            status=answer.status_code,
                            action=action,
                        )
            kept = {"content-type": answer.headers.get("content-type", "")}
            if "x-acs-retry-after" in answer.headers:
                kept["x-acs-retry-after"] = answer.headers["x-acs-retry-after"]
            response = httpx.Response(answer.status_code, headers=kept, content=bytes(data))
        except httpx.TimeoutException as exc:
            raise IceTimeout(f"no answer in time ({type(exc).__name__})", action=action) from exc
        except httpx.TransportError as exc:
            raise IceConnectionError(f"{type(exc).__name__}: {exc}", action=action) from exc
        body = parse_answer(action, response)
        log.debug(
            "ICE %s: HTTP %d RequestId %s in %.2fs",
            action,
            response.status_code,
            body.get("RequestId"),
            time.monotonic() - started,
        )
        return body

    def _get_credentials(self, action: str) -> Credentials:
        try:
            return self._credentials()
        except Exception as exc:  # the provider's own failure, whatever its type
            raise IceCredentialsError(
                f"credentials provider failed: {type(exc).__name__}", action=action
            ) from exc
