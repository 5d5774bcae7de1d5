"""One OSS bucket through oss2: the connection, small objects, and every failure classified.

* Signing is V4 (``ProviderAuthV4``), which needs the region, with credentials asked from the
  :class:`~agent.deliver.credentials.CredentialSource` for every request (STS refresh).
* No retry loops here.  oss2 does not retry PutObject/UploadPart; failures become
  :class:`OssError` with ``retryable`` telling the caller whether backing off and trying again
  can help.  The only internal retries are oss2's own (ListParts on 5xx).
* No secret reaches a log or an exception: our messages carry code, status and request id, and
  oss2's DEBUG logs (which print request headers, including an STS token) are silenced.

Uploading files (resumable, verified end to end) is :class:`agent.deliver.oss.OssUploader`,
built on :class:`OssBucket`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass

import oss2
import oss2.exceptions

from agent.deliver.credentials import CredentialSource, OssCredentialsProvider

#: Codes worth retrying with backoff.  Time skew: an edge box's clock is often fixed by NTP
#: shortly after boot.  Token expiry: the credential chain refreshes STS tokens.  NoSuchUpload:
#: the multipart upload vanished (lifecycle rule); resumable_upload starts over next time.
#: RequestTimeout: OSS gave up on a body that came in too slowly.
_RETRYABLE_CODES = frozenset(
    {
        "RequestTimeTooSkewed",
        "SecurityTokenExpired",
        "InvalidSecurityToken.Expired",
        "NoSuchUpload",
        "RequestTimeout",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "TooManyRequests",
    }
)


class OssError(Exception):
    """An OSS operation failed.

    ``retryable``: the same call may succeed later, so back off and retry (network trouble,
    5xx, throttling, a CRC mismatch, clock skew, an expired token).  Not retryable: it needs a
    change first (credentials, permissions, bucket name, configuration).  Either way the file
    is still local and nothing must be dropped because of it.

    The message carries the operation, key, code, HTTP status and OSS request id (what Alibaba
    Cloud support asks for), never a credential.  ``status`` is oss2's for client-side
    failures: -1 client error, -2 network, -3 CRC mismatch.
    """

    def __init__(
        self,
        *,
        retryable: bool,
        code: str,
        message: str,
        request_id: str = "",
        status: int | None = None,
        operation: str = "",
        key: str = "",
        ec: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.retryable = retryable
        #: seconds OSS asked us to wait (``Retry-After`` on a throttled answer), or None
        self.retry_after = retry_after
        self.code = code
        self.message = message
        self.request_id = request_id
        self.status = status
        self.operation = operation
        self.key = key
        self.ec = ec
        where = f"{operation} {key}".strip()
        parts = [f"OSS {where}: {code}" if where else f"OSS: {code}"]
        if status is not None and status > 0:
            parts.append(f"(HTTP {status})")
        text = " ".join(parts)
        if message:
            text += f": {message}"
        if request_id:
            text += f" [request id {request_id}]"
        text += " (retryable)" if retryable else " (not retryable)"
        super().__init__(text)


def classify_error(exc: BaseException, *, operation: str = "", key: str = "") -> OssError:
    """Map an oss2 exception to :class:`OssError` with ``retryable`` set.

    We build the message from the code and OSS's own one-line message only.  The oss2
    exception's ``str()`` includes the full error details, which for SignatureDoesNotMatch
    contain the canonical request, i.e. every ``x-oss-*`` header including an STS token.
    """
    ctx = {"operation": operation, "key": key}
    if isinstance(exc, oss2.exceptions.RequestError):
        inner = getattr(exc, "exception", None)
        what = type(inner).__name__ if inner is not None else "RequestError"
        return OssError(
            retryable=True,
            code="RequestError",
            message=f"network error ({what})",
            status=exc.status,
            **ctx,
        )
    if isinstance(exc, oss2.exceptions.InconsistentError):
        return OssError(
            retryable=True,
            code="InconsistentError",
            message="CRC-64 of the data sent and of what OSS stored differ",
            request_id=exc.request_id,
            status=exc.status,
            **ctx,
        )
    if isinstance(exc, oss2.exceptions.ClientError):
        return OssError(
            retryable=False, code="ClientError", message=str(exc.body)[:300], status=-1, **ctx
        )
    if isinstance(exc, oss2.exceptions.OssError):
        status = int(exc.status)
        code = exc.code or f"HTTP{status}"
        retryable = status >= 500 or status == 429 or code in _RETRYABLE_CODES
        return OssError(
            retryable=retryable,
            code=code,
            message=(exc.message or "")[:300],
            request_id=exc.request_id or "",
            status=status,
            ec=getattr(exc, "ec", "") or "",
            retry_after=_retry_after(getattr(exc, "headers", None)),
            **ctx,
        )
    raise TypeError(f"not an OSS error: {type(exc).__name__}")


def _retry_after(headers: object) -> float | None:
    """``Retry-After`` in seconds (RFC 9110's delay-seconds form), or None."""
    try:
        value = float(headers.get("Retry-After"))  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        return None
    return value if 0 < value < float("inf") else None


@dataclass(frozen=True)
class ObjectMeta:
    """An existing object, from HeadObject."""

    key: str
    size: int | None
    crc64: int | None
    etag: str | None
    last_modified: int | None


@dataclass(frozen=True)
class Fetched:
    """What a conditional GET brought: ``data`` None means "not modified since ``etag``"."""

    data: bytes | None
    etag: str


def _too_large(key: str, size: str, limit: int) -> OssError:
    return OssError(
        retryable=False,
        code="TooLarge",
        message=f"{size}; at most {limit} are accepted",
        operation="GetObject",
        key=key,
    )


def _silence_oss2_debug() -> None:
    """oss2 logs request headers at DEBUG (an STS token among them) and full error details at
    INFO (SignatureDoesNotMatch details echo the canonical request): keep it at WARNING."""
    logger = logging.getLogger("oss2")
    if logger.level == logging.NOTSET or logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)
    # resumable_upload's part workers log every failed part as ERROR with its traceback, then
    # re-raise it to us: the uploader logs the outcome once, without the noise.
    logging.getLogger("oss2.task_queue").setLevel(logging.CRITICAL)


def check_region(region: str) -> None:
    if not region:
        raise ValueError("region is required (V4 signatures include it), e.g. 'cn-hangzhou'")


def check_timeouts(connect_timeout: float, read_timeout: float) -> None:
    if connect_timeout <= 0 or read_timeout <= 0:
        raise ValueError("timeouts must be positive")


class OssBucket:
    """One bucket: whether an object is there, small objects read, written and listed.

    ``endpoint`` is e.g. ``https://oss-cn-hangzhou.aliyuncs.com`` (or an internal/accelerate
    endpoint) and ``region`` e.g. ``cn-hangzhou`` (V4 signatures include it).  IP and localhost
    endpoints get path-style URLs (oss2 decides), which is what the test server needs.
    ``connect_timeout``/``read_timeout`` go to requests per request.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        bucket: str,
        credentials: CredentialSource,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        check_region(region)
        check_timeouts(connect_timeout, read_timeout)
        _silence_oss2_debug()
        self.endpoint = endpoint
        self.region = region
        self.bucket_name = bucket
        auth = oss2.ProviderAuthV4(OssCredentialsProvider(credentials))
        try:
            # oss2 hands connect_timeout to requests as its timeout: a (connect, read) tuple
            # works and keeps a dead uplink from hanging an upload for minutes.
            self._bucket = oss2.Bucket(
                auth,
                endpoint,
                bucket,
                region=region,
                # Our CRC-64 (file_digests) is computed once per file and checked against
                # the server's; oss2's would be a second pass, in pure Python on gateways
                # without a compiler (see agent.deliver.oss).
                enable_crc=False,
                connect_timeout=(connect_timeout, read_timeout),
            )
        except oss2.exceptions.ClientError as exc:  # invalid endpoint or bucket name
            raise ValueError(f"OSS endpoint {endpoint!r} / bucket {bucket!r}: {exc.body}") from None

    def exists(self, key: str) -> ObjectMeta | None:
        """The object's metadata, or ``None`` if there is no such object.

        Raises :class:`OssError` or :class:`~agent.deliver.credentials.CredentialsError`.
        """
        try:
            head = self._bucket.head_object(key)
        except oss2.exceptions.OssError as exc:
            if isinstance(exc, oss2.exceptions.ServerError) and exc.status == 404:
                return None
            raise classify_error(exc, operation="HeadObject", key=key) from None
        return ObjectMeta(
            key=key,
            size=head.content_length,
            crc64=head.server_crc,
            etag=head.etag,
            last_modified=head.last_modified,
        )

    def fetch(self, key: str, *, etag: str | None = None, limit: int) -> Fetched | None:
        """A small object's bytes, or ``None`` if there is no such object.

        With ``etag`` the GET is conditional (``If-None-Match``): an unchanged object comes
        back as ``Fetched(None, etag)`` without its body.  An object larger than ``limit``
        bytes is refused (``OssError`` code ``TooLarge``) before its body is read.
        """
        headers = {"If-None-Match": f'"{etag}"'} if etag else None
        try:
            result = self._bucket.get_object(key, headers=headers)
            size = result.content_length
            if size is not None and size > limit:
                result.resp.response.close()
                raise _too_large(key, f"{size} bytes", limit)
            data = result.read(limit + 1)
        except oss2.exceptions.NotModified:
            return Fetched(None, etag or "")
        except oss2.exceptions.OssError as exc:
            if isinstance(exc, oss2.exceptions.ServerError) and exc.status == 404:
                return None
            raise classify_error(exc, operation="GetObject", key=key) from None
        if len(data) > limit:
            raise _too_large(key, f"more than {limit} bytes", limit)
        return Fetched(data, result.etag)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> str:
        """Write a small object in one PUT (Content-MD5 checked by OSS); its ETag."""
        headers = {
            "Content-Type": content_type,
            "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        }
        try:
            return self._bucket.put_object(key, data, headers=headers).etag
        except oss2.exceptions.OssError as exc:
            raise classify_error(exc, operation="PutObject", key=key) from None

    def list_keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``."""
        try:
            return [obj.key for obj in oss2.ObjectIterator(self._bucket, prefix=prefix)]
        except oss2.exceptions.OssError as exc:
            raise classify_error(exc, operation="ListObjects", key=prefix) from None
