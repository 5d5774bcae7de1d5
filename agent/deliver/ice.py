"""Client for the search library of Alibaba Cloud Intelligent Media Services (ICE, 2020-11-09).

Plain httpx and our own signer (:mod:`agent.deliver.acs`) instead of the vendor SDK: the SDK
pulls in a large dependency tree, hides the HTTP status and retries on its own, while the
uploader needs one attempt per call and a precise verdict — *retry later* or *give up*.

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
(:func:`classify_error`).

No retries here: the caller (the uploader loop) owns backoff and persistence; every raised
:class:`IceError` says whether a retry can help (``retryable``).

Where the request/response field names come from (checked against the API reference pages
``help.aliyun.com/.../api-ice-2020-11-09-<operation>`` and the generated SDK models in
``aliyun/alibabacloud-python-sdk``, ``ice-20201109/alibabacloud_ice20201109/models/``):

- CreateSearchLib: ``SearchLibName`` (required; "for IP camera (IPC) monitoring scenarios, the
  name must start with the ``IPCamera_`` prefix"), ``SearchLibConfig`` (JSON) →
  ``SearchLibName``.
- QuerySearchLib: ``SearchLibName`` → ``SearchLibName``, ``Status`` ("normal"),
  ``SearchLibConfig``, ``IndexInfo[]`` of ``IndexType``/``IndexStatus`` (Active|Deactive)/
  ``IndexReadiness`` (Initializing|Normal|Fail).
- CreateSearchIndex: ``SearchLibName``, ``IndexType`` (required: mm|face|aiLabel),
  ``IndexConfig`` (JSON string), ``IndexStatus`` (Active|Deactive).
- InsertMediaToSearchLib: ``SearchLibName``, ``MediaId`` ("each media ID is unique", generated
  when absent), ``MediaType`` (video|image|audio, default video), ``Input`` (required; OSS
  ``oss://bucket/path`` recommended, same region), ``MsgBody`` (JSON: ``title``, ``customFields``
  with ``intField1``/``strField1``/``strField2``), ``ImagesInput`` (JSON ``{"images": [oss://...]}``,
  "supports only the IPCamera scenario, and MediaType must be video"), ``Namespace`` →
  ``MediaId``.
- SearchMediaByHybrid: ``SearchLibName``, ``Text``, ``MediaType``, ``MediaId``, ``Namespace``,
  ``PageNo`` (default 1), ``PageSize`` (1–50, default 10), ``CustomFilters`` (JSON over the
  custom fields: exact, list or ``{"gte":..,"lte":..}``), ``UtcCreate`` (JSON range, ms) →
  ``Total``, ``MediaList[]`` of ``MediaId`` and ``ClipInfo[]`` of ``From``/``To``/``Score``.
- QueryMediaIndexJob: ``SearchLibName``, ``MediaId`` (required) → ``IndexJobInfoList[]`` of
  ``IndexType``, ``Status`` (Running|Success|Fail), ``GmtSubmit``, ``GmtFinish``.
- DeleteMediaFromSearchLib: ``SearchLibName``, ``MediaId`` (required), ``Namespace``,
  ``MsgBody`` → ``MediaId``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from agent.deliver.acs import Credentials, canonical_query, format_date, new_nonce, sign

log = logging.getLogger(__name__)

API_VERSION = "2020-11-09"
DEFAULT_TIMEOUT = 10.0
#: SearchMediaByHybrid: "The number of entries per page. Valid values: 1 to 50."
MAX_PAGE_SIZE = 50
#: Our answers are a few kB; a bigger body is a proxy's or portal's page, not worth the memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024

ParamValue = str | int | float | bool | Mapping[str, Any] | list[Any] | None


# -- errors --------------------------------------------------------------------------------


class IceError(Exception):
    """A failed ICE call. ``retryable`` tells the caller whether trying again can help.

    ``code``/``message``/``request_id`` are the service's (``None`` when the request never got
    an answer); ``status`` is the HTTP status (``None`` for transport failures).
    """

    retryable_default = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        status: int | None = None,
        action: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        #: seconds the service asked us to wait (``x-acs-retry-after``), None when it did not
        self.retry_after = retry_after
        self.code = code
        self.request_id = request_id
        self.status = status
        self.action = action
        self.retryable = self.retryable_default if retryable is None else retryable
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"{self.action}: " if self.action else ""]
        if self.code:
            parts.append(f"{self.code}: ")
        parts.append(self.message)
        if self.status is not None:
            parts.append(f" (HTTP {self.status})")
        if self.request_id:
            parts.append(f" [RequestId {self.request_id}]")
        return "".join(parts)


class IceThrottled(IceError):
    """Flow control (``Throttling*`` codes, HTTP 429): back off and retry."""

    retryable_default = True


class IceServerError(IceError):
    """5xx, or an answer that is not the JSON we expect: a transient service-side fault."""

    retryable_default = True


class IceTimeout(IceError):
    """No answer within the timeout. The call may still have taken effect server-side."""

    retryable_default = True


class IceConnectionError(IceError):
    """Could not connect, or the connection broke before a response (DNS, refused, reset)."""

    retryable_default = True


class IceCredentialsError(IceError):
    """The credentials provider raised (e.g. an STS refresh failed); retry later."""

    retryable_default = True


class IceAuthError(IceError):
    """Authentication/authorisation refused (bad key, bad signature, no permission, 401/403)."""


class IceClockSkew(IceAuthError):
    """``InvalidTimeStamp.*``: our clock is off by more than the 15 min the gateway allows.

    Retryable on purpose although it is an auth error: gateways without an RTC boot with a
    wrong clock and NTP fixes it later; nothing about the request itself is wrong.
    """

    retryable_default = True


class IceParameterError(IceError):
    """The request is wrong (``InvalidParameter*``, ``MissingParameter*``, 400): don't retry."""


class IceNotFound(IceParameterError):
    """The named search library / media does not exist (404, ``*NotExist*``/``*NotFound``)."""


class IceAlreadyExists(IceError):
    """The resource exists already (HTTP 409, ``*AlreadyExist*`` codes).

    For an insert retried after a timeout this usually means the first attempt succeeded;
    the caller decides whether that counts as success.
    """


_THROTTLING_STATUSES = frozenset({429})
_AUTH_CODE_PREFIXES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
    "MissingSecurityToken",
    "Forbidden",
    "NoPermission",
    "InvalidAuthorization",
    "MissingAuthorization",
)
#: ``InvalidParameter*``, ``MissingParameter*`` and their relatives (``InvalidMediaId``, ...);
#: checked after the auth codes, which share the ``Invalid``/``Missing`` prefixes.
_PARAMETER_CODE_PREFIXES = ("Invalid", "Missing", "Illegal")
_SERVER_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServerError",
        "ServiceUnavailable",
        "ServiceUnavailableTemporary",
        "SerivceUnavailableTemporary",  # sic: spelled so in Alibaba Cloud's public code table
    }
)


def classify_error(
    status: int | None,
    code: str | None,
    message: str,
    *,
    request_id: str | None = None,
    action: str | None = None,
    retry_after: float | None = None,
) -> IceError:
    """The :class:`IceError` subclass for an error answer: by ``Code`` first, then by status.

    Code first because the status alone misleads: throttling arrives as HTTP 400 and an
    unknown AccessKey as 404. Order matters: specific codes before the broad prefixes.
    """
    c = code or ""
    kw: dict[str, Any] = {
        "code": code,
        "request_id": request_id,
        "status": status,
        "action": action,
        "retry_after": retry_after,
    }
    if "AlreadyExist" in c or status == 409:
        return IceAlreadyExists(message, **kw)
    if c.startswith("Throttling") or status in _THROTTLING_STATUSES:
        return IceThrottled(message, **kw)
    if c.startswith(("InvalidTimeStamp", "IllegalTimestamp")):
        return IceClockSkew(message, **kw)
    if c == "SignatureNonceUsed":
        # We send a fresh nonce per attempt, so a retry is a different request.
        return IceAuthError(message, retryable=True, **kw)
    if c.startswith(_AUTH_CODE_PREFIXES):
        return IceAuthError(message, **kw)
    if c.startswith(("InvalidAction", "InvalidVersion")):
        return IceParameterError(message, **kw)
    if "NotExist" in c or c.endswith("NotFound") or (status == 404 and not c):
        return IceNotFound(message, **kw)
    if c.startswith(_PARAMETER_CODE_PREFIXES):
        return IceParameterError(message, **kw)
    if c in _SERVER_CODES or (status is not None and status >= 500):
        return IceServerError(message, **kw)
    if status in (401, 403):
        return IceAuthError(message, **kw)
    if status == 404:
        return IceNotFound(message, **kw)
    if status is not None and 400 <= status < 500:
        return IceParameterError(message, **kw)
    return IceError(message, **kw)


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchIndexInfo:
    """One entry of QuerySearchLib's ``IndexInfo``."""

    index_type: str
    status: str | None  # IndexStatus: Active | Deactive
    readiness: str | None  # IndexReadiness: Initializing | Normal | Fail


@dataclass(frozen=True)
class SearchLib:
    """QuerySearchLib's answer."""

    name: str
    status: str | None
    indexes: tuple[SearchIndexInfo, ...]
    config: str | None
    request_id: str | None

    def index(self, index_type: str) -> SearchIndexInfo | None:
        """The index of that type, if the library has one."""
        return next((i for i in self.indexes if i.index_type == index_type), None)


@dataclass(frozen=True)
class IndexJob:
    """One entry of QueryMediaIndexJob's ``IndexJobInfoList``."""

    index_type: str | None
    status: str | None  # Running | Success | Fail
    gmt_submit: str | None
    gmt_finish: str | None


@dataclass(frozen=True)
class MediaIndexJobs:
    """QueryMediaIndexJob's answer, with the verdict the uploader needs."""

    media_id: str
    jobs: tuple[IndexJob, ...]
    request_id: str | None

    @property
    def succeeded(self) -> bool:
        """Every index job finished with ``Success`` (and there is at least one)."""
        return bool(self.jobs) and all(job.status == "Success" for job in self.jobs)

    @property
    def failed(self) -> bool:
        """Some index job ended in ``Fail``."""
        return any(job.status == "Fail" for job in self.jobs)


@dataclass(frozen=True)
class Clip:
    """One ``ClipInfo`` entry: the relevant span of the media, in seconds, and its score."""

    start: float | None  # From
    end: float | None  # To
    score: float | None


@dataclass(frozen=True)
class SearchHit:
    """One ``MediaList`` entry of SearchMediaByHybrid."""

    media_id: str
    clips: tuple[Clip, ...]


@dataclass(frozen=True)
class SearchResult:
    """SearchMediaByHybrid's answer."""

    total: int
    hits: tuple[SearchHit, ...]
    request_id: str | None


# -- client --------------------------------------------------------------------------------


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


def _items(body: Mapping[str, Any], key: str, action: str) -> list[Any]:
    """A list field of an answer ([] when absent); another type is a broken answer, which
    must become a typed error, not a TypeError that ends an upload worker."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise IceServerError(f"unexpected answer: {key} is not a list", action=action)
    return value


def _count(value: Any, action: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise IceServerError(f"unexpected answer: Total = {value!r:.40}", action=action) from None


def retry_after_seconds(value: str | None) -> float | None:
    """``x-acs-retry-after``: milliseconds to wait (what Alibaba Cloud's SDKs read it as);
    None when absent, not a number or not positive."""
    try:
        ms = float(value) if value is not None else 0.0
    except ValueError:
        return None
    return ms / 1000.0 if 0 < ms < float("inf") else None


def _opt_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


class IceClient:
    """One ICE endpoint, one set of credentials, one pooled HTTP connection.

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

    def __enter__(self) -> IceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one generic call --------------------------------------------------------------

    def call(self, action: str, params: Mapping[str, ParamValue]) -> dict[str, Any]:
        """Perform ``action`` once; the parsed JSON body on success, else raise IceError."""
        query = {k: v for k, v in ((k, _to_param(v)) for k, v in params.items()) if v}
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
        body = self._parse(action, response)
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

    @staticmethod
    def _parse(action: str, response: httpx.Response) -> dict[str, Any]:
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

    # -- operations ------------------------------------------------------------------------

    def create_search_lib(self, name: str, config: Mapping[str, Any] | None = None) -> str:
        """CreateSearchLib; returns ``SearchLibName``. IPC libraries must be ``IPCamera_...``."""
        body = self.call("CreateSearchLib", {"SearchLibName": name, "SearchLibConfig": config})
        return str(body.get("SearchLibName") or name)

    def query_search_lib(self, name: str) -> SearchLib:
        """QuerySearchLib: status and indexes (raises :class:`IceNotFound` if absent)."""
        body = self.call("QuerySearchLib", {"SearchLibName": name})
        indexes = tuple(
            SearchIndexInfo(
                index_type=str(item.get("IndexType")),
                status=item.get("IndexStatus"),
                readiness=item.get("IndexReadiness"),
            )
            for item in _items(body, "IndexInfo", "QuerySearchLib")
            if isinstance(item, dict)
        )
        return SearchLib(
            name=str(body.get("SearchLibName") or name),
            status=body.get("Status"),
            indexes=indexes,
            config=body.get("SearchLibConfig"),
            request_id=body.get("RequestId"),
        )

    def create_search_index(
        self,
        search_lib: str,
        index_type: str = "mm",
        index_config: Mapping[str, Any] | None = None,
        *,
        index_status: str | None = None,
    ) -> None:
        """CreateSearchIndex (``mm`` = the large visual model the IPC search uses)."""
        self.call(
            "CreateSearchIndex",
            {
                "SearchLibName": search_lib,
                "IndexType": index_type,
                "IndexConfig": index_config,
                "IndexStatus": index_status,
            },
        )

    def insert_media(
        self,
        search_lib: str,
        namespace: str | None,
        media_id: str,
        input_url: str,
        images: list[str],
        msg_body: Mapping[str, Any] | None,
    ) -> str:
        """InsertMediaToSearchLib as a video with its keyframes; returns the ``MediaId``.

        ``input_url`` is the clip (``oss://bucket/key``), ``images`` its keyframes
        (``oss://``), sent as ``ImagesInput={"images": [...]}``; ``msg_body`` is the
        ``MsgBody`` JSON (``title``, ``customFields``). ``media_id`` is ours so a retry after a
        timeout hits :class:`IceAlreadyExists` instead of registering the clip twice.
        """
        if not media_id:
            raise ValueError("media_id is required (it makes retries idempotent)")
        if not input_url:
            raise ValueError("input_url is required")
        params: dict[str, ParamValue] = {
            "SearchLibName": search_lib,
            "Namespace": namespace,
            "MediaId": media_id,
            "MediaType": "video",
            "Input": input_url,
            "ImagesInput": {"images": list(images)} if images else None,
            "MsgBody": msg_body,
        }
        body = self.call("InsertMediaToSearchLib", params)
        return str(body.get("MediaId") or media_id)

    def search_media_by_hybrid(
        self,
        search_lib: str,
        text: str | None,
        *,
        namespace: str | None = None,
        page_no: int = 1,
        page_size: int = 10,
        media_type: str | None = None,
        media_id: str | None = None,
        custom_filters: Mapping[str, Any] | None = None,
        utc_create: Mapping[str, int] | None = None,
    ) -> SearchResult:
        """SearchMediaByHybrid: natural-language ``text`` → matching media and their clips."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        if page_no < 1:
            raise ValueError(f"page_no must be >= 1, got {page_no}")
        body = self.call(
            "SearchMediaByHybrid",
            {
                "SearchLibName": search_lib,
                "Text": text,
                "Namespace": namespace,
                "PageNo": page_no,
                "PageSize": page_size,
                "MediaType": media_type,
                "MediaId": media_id,
                "CustomFilters": custom_filters,
                "UtcCreate": utc_create,
            },
        )
        hits = tuple(
            SearchHit(
                media_id=str(item.get("MediaId")),
                clips=tuple(
                    Clip(
                        start=_opt_float(clip.get("From")),
                        end=_opt_float(clip.get("To")),
                        score=_opt_float(clip.get("Score")),
                    )
                    for clip in _items(item, "ClipInfo", "SearchMediaByHybrid")
                    if isinstance(clip, dict)
                ),
            )
            for item in _items(body, "MediaList", "SearchMediaByHybrid")
            if isinstance(item, dict)
        )
        total = body.get("Total")
        return SearchResult(
            total=_count(total, "SearchMediaByHybrid") if total is not None else len(hits),
            hits=hits,
            request_id=body.get("RequestId"),
        )

    def query_media_index_job(self, search_lib: str, media_id: str) -> MediaIndexJobs:
        """QueryMediaIndexJob: the per-index jobs of one media (Running/Success/Fail)."""
        body = self.call("QueryMediaIndexJob", {"SearchLibName": search_lib, "MediaId": media_id})
        jobs = tuple(
            IndexJob(
                index_type=item.get("IndexType"),
                status=item.get("Status"),
                gmt_submit=item.get("GmtSubmit"),
                gmt_finish=item.get("GmtFinish"),
            )
            for item in _items(body, "IndexJobInfoList", "QueryMediaIndexJob")
            if isinstance(item, dict)
        )
        return MediaIndexJobs(media_id=media_id, jobs=jobs, request_id=body.get("RequestId"))

    def media_exists(self, search_lib: str, media_id: str) -> bool:
        """Is ``media_id`` in the library? Asked with QueryMediaIndexJob, a documented read.

        An insert starts one index job per index of the library, so a media that is there
        has jobs: a non-empty ``IndexJobInfoList`` means yes. No jobs, or a not-found answer
        (``*NotExist*``/``*NotFound``/404 — the reference lists no codes for this), means no.
        Anything else (timeouts, 5xx, auth) raises :class:`IceError`: the question is open.
        """
        try:
            return bool(self.query_media_index_job(search_lib, media_id).jobs)
        except IceNotFound:
            return False

    def delete_media(self, search_lib: str, media_id: str, namespace: str | None = None) -> None:
        """DeleteMediaFromSearchLib."""
        self.call(
            "DeleteMediaFromSearchLib",
            {"SearchLibName": search_lib, "MediaId": media_id, "Namespace": namespace},
        )
