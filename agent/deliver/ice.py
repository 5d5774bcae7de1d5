"""Client for the search library of Alibaba Cloud Intelligent Media Services (ICE, 2020-11-09).

Plain httpx and our own signer (:mod:`agent.deliver.acs`) instead of the vendor SDK: the SDK
pulls in a large dependency tree, hides the HTTP status and retries on its own, while the
uploader needs one attempt per call and a precise verdict — *retry later* or *give up*.

Here: the operations (:class:`IceClient`) and what their answers mean (the result classes,
read from the JSON by pure functions). The wire — request building and signing, one call, its
answer judged — is :mod:`agent.deliver.ice_rpc`; the errors and their verdicts are
:mod:`agent.deliver.ice_errors`, re-exported here.

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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.deliver.ice_errors import (
    IceAlreadyExists,
    IceAuthError,
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
    retry_after_seconds,
)
from agent.deliver.ice_rpc import (
    API_VERSION,
    DEFAULT_TIMEOUT,
    MAX_ANSWER_BYTES,
    IceConnection,
    ParamValue,
)

__all__ = [
    "API_VERSION",
    "Clip",
    "DEFAULT_TIMEOUT",
    "IceAlreadyExists",
    "IceAuthError",
    "IceClient",
    "IceClockSkew",
    "IceConnectionError",
    "IceCredentialsError",
    "IceError",
    "IceNotFound",
    "IceParameterError",
    "IceServerError",
    "IceThrottled",
    "IceTimeout",
    "IndexJob",
    "MAX_ANSWER_BYTES",
    "MAX_PAGE_SIZE",
    "MediaIndexJobs",
    "ParamValue",
    "SearchHit",
    "SearchIndexInfo",
    "SearchLib",
    "SearchResult",
    "classify_error",
    "index_jobs_from",
    "retry_after_seconds",
    "search_lib_from",
    "search_result_from",
]

#: SearchMediaByHybrid: "The number of entries per page. Valid values: 1 to 50."
MAX_PAGE_SIZE = 50


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


# -- the answers read (pure: a parsed JSON body in, a result out) ---------------------------


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


def _opt_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def search_lib_from(body: Mapping[str, Any], name: str) -> SearchLib:
    """QuerySearchLib's answer (``name``: the library asked for, if the answer lacks it)."""
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


def search_result_from(body: Mapping[str, Any]) -> SearchResult:
    """SearchMediaByHybrid's answer; ``Total`` defaults to the hits on this page."""
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


def index_jobs_from(body: Mapping[str, Any], media_id: str) -> MediaIndexJobs:
    """QueryMediaIndexJob's answer for ``media_id``."""
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


# -- the operations ------------------------------------------------------------------------


class IceClient(IceConnection):
    """The search-library operations, each one :meth:`~IceConnection.call`: one endpoint, one
    set of credentials, one pooled HTTP connection (see :class:`IceConnection`)."""

    def create_search_lib(self, name: str, config: Mapping[str, Any] | None = None) -> str:
        """CreateSearchLib; returns ``SearchLibName``. IPC libraries must be ``IPCamera_...``."""
        body = self.call("CreateSearchLib", {"SearchLibName": name, "SearchLibConfig": config})
        return str(body.get("SearchLibName") or name)

    def query_search_lib(self, name: str) -> SearchLib:
        """QuerySearchLib: status and indexes (raises :class:`IceNotFound` if absent)."""
        return search_lib_from(self.call("QuerySearchLib", {"SearchLibName": name}), name)

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
        return search_result_from(body)

    def query_media_index_job(self, search_lib: str, media_id: str) -> MediaIndexJobs:
        """QueryMediaIndexJob: the per-index jobs of one media (Running/Success/Fail)."""
        body = self.call("QueryMediaIndexJob", {"SearchLibName": search_lib, "MediaId": media_id})
        return index_jobs_from(body, media_id)

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
