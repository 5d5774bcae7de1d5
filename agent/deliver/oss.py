"""Uploading clips and keyframes to Alibaba Cloud OSS (through oss2), resumably and verifiably.

Why it looks the way it does:

* Object keys are deterministic (:func:`object_key`, made in agent/layout.py), so an upload
  repeated after a crash overwrites the same object instead of leaving a duplicate, and
  :meth:`OssUploader.exists` can tell that an object from before the crash is already complete
  (same size and CRC-64).
* Signing is V4 (``ProviderAuthV4``), which needs the region, with credentials asked from the
  :class:`~agent.deliver.credentials.CredentialSource` for every request (STS refresh).
* Small files go in one PutObject with ``Content-MD5`` (OSS rejects a body that does not match).
  Large ones go through ``oss2.resumable_upload``: its checkpoint (upload id, file size and
  mtime) lives under ``checkpoint_dir`` (inside the agent's data_dir, never ``$HOME``), and the
  parts already on OSS are found with ListParts, so an upload cut short by a kill or a power
  cut continues with the missing parts on the next call.
* Every upload is checked end to end: we hash the local file once (CRC-64 and MD5, one read)
  and compare with the CRC-64 OSS reports for the stored object (``x-oss-hash-crc64ecma``;
  a HeadObject when an answer lacks it).  oss2's own CRC is off (``enable_crc=False``): it
  would compute the same CRC again while sending, through ``crcmod``, whose C extension is
  built only where a compiler is (oss2 ships no wheel, so a gateway installed without one
  gets pure Python: ~6 MB/s on x86, slower on ARM, seconds of CPU per clip, twice).  Our
  CRC-64 is ``anycrc`` (zlib licence, no dependencies, wheels for x86_64 and aarch64 and
  every CPython from 3.10, abi3 from 3.11; Mark Adler's crcany underneath): ~14 GB/s here,
  and MD5 is hashlib's (OpenSSL).  oss2 also skipped its whole-object check after a resume
  (parts found by ListParts carry no CRC); ours always runs.
* Bandwidth: OSS throttles a connection to ``x-oss-traffic-limit`` bit/s, sent on PutObject and
  UploadPart (``resumable_upload`` forwards that header to UploadPart; it also passes all
  headers to InitiateMultipartUpload, where OSS ignores it).
* No retry loops here.  oss2 does not retry PutObject/UploadPart; failures become
  :class:`OssError` with ``retryable`` telling the caller whether backing off and trying again
  can help.  The only internal retries are oss2's own (ListParts on 5xx).
* No secret reaches a log or an exception: our messages carry code, status and request id, and
  oss2's DEBUG logs (which print request headers, including an STS token) are silenced.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anycrc
import oss2
import oss2.exceptions

from agent.deliver.credentials import CredentialSource, OssCredentialsProvider
from agent.durable import fsync_dir
from agent.layout import normalize_prefix, object_key

__all__ = [
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "MAX_TRAFFIC_LIMIT_BPS",
    "MIN_PART_SIZE",
    "MIN_TRAFFIC_LIMIT_BPS",
    "ObjectMeta",
    "OssError",
    "OssUploader",
    "UploadResult",
    "classify_error",
    "file_digests",
    "normalize_prefix",
    "object_key",
]

log = logging.getLogger(__name__)

#: OSS's range for ``x-oss-traffic-limit``, bit/s (100 KB/s .. 100 MB/s).
MIN_TRAFFIC_LIMIT_BPS = 819_200
MAX_TRAFFIC_LIMIT_BPS = 838_860_800
#: OSS's smallest part (all but the last); oss2 silently doubles a smaller part size.
MIN_PART_SIZE = 100 * 1024
MAX_PART_SIZE = 5 * 1024**3
DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024
#: 1 MiB parts: at most 1 MiB is sent twice after a crash, ~8 s per part at 1 Mbit/s uplink.
DEFAULT_PART_SIZE = 1024 * 1024

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
class UploadResult:
    """What was uploaded and how it was verified."""

    key: str
    size: int
    crc64: int  #: CRC-64/XZ of the local file, equal to what OSS reported for the object
    md5: str  #: base64 MD5 of the local file (the Content-MD5 form)
    etag: str | None
    multipart: bool
    resumed_bytes: int = 0  #: bytes already on OSS from an interrupted earlier attempt
    request_id: str = ""
    skipped: bool = False  #: True: an identical object was already there, nothing was sent
    seconds: float = 0.0


@dataclass(frozen=True)
class ObjectMeta:
    """An existing object, from HeadObject."""

    key: str
    size: int | None
    crc64: int | None
    etag: str | None
    last_modified: int | None


def _too_large(key: str, size: str, limit: int) -> OssError:
    return OssError(
        retryable=False,
        code="TooLarge",
        message=f"{size}; at most {limit} are accepted",
        operation="GetObject",
        key=key,
    )


@dataclass(frozen=True)
class Fetched:
    """What a conditional GET brought: ``data`` None means "not modified since ``etag``"."""

    data: bytes | None
    etag: str


#: CRC-64/XZ (a.k.a. CRC-64/GO-ECMA: poly 0x42F0E1EBA9EA3693, reflected, init and xorout all
#: ones), what OSS reports as ``x-oss-hash-crc64ecma``; compiled code on every install path.
CRC64 = anycrc.Model("CRC64-XZ")


def crc64(data: bytes, crc: int | None = None) -> int:
    """CRC-64/XZ of `data`, continuing from `crc` (the value of the bytes before it)."""
    return CRC64.calc(data) if crc is None else CRC64.calc(data, crc)


def file_digests(path: str | os.PathLike[str]) -> tuple[int, int, str]:
    """``(size, crc64, base64 md5)`` of a file, in one read."""
    crc = CRC64.calc(b"")
    md5 = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            crc = CRC64.calc(chunk, crc)
            md5.update(chunk)
            size += len(chunk)
    return size, crc, base64.b64encode(md5.digest()).decode()


class _AtomicResumableStore(oss2.ResumableStore):
    """oss2's checkpoint store, writing each checkpoint atomically and durably.

    oss2 rewrites the JSON file in place, so a power cut mid-write leaves a torn file (which
    oss2 then discards, restarting the upload from scratch).  Files go straight into the
    configured directory.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(root=str(directory.parent), dir=directory.name)

    def put(self, key: str, value: object) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(value, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(self.dir, key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(self.dir)


def _silence_oss2_debug() -> None:
    """oss2 logs request headers at DEBUG (an STS token among them) and full error details at
    INFO (SignatureDoesNotMatch details echo the canonical request): keep it at WARNING."""
    logger = logging.getLogger("oss2")
    if logger.level == logging.NOTSET or logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)
    # resumable_upload's part workers log every failed part as ERROR with its traceback, then
    # re-raise it to us: the uploader logs the outcome once, without the noise.
    logging.getLogger("oss2.task_queue").setLevel(logging.CRITICAL)


class OssUploader:
    """Uploads files to one bucket.  Not thread-safe: one uploader per delivery thread.

    ``endpoint`` is e.g. ``https://oss-cn-hangzhou.aliyuncs.com`` (or an internal/accelerate
    endpoint) and ``region`` e.g. ``cn-hangzhou`` (V4 signatures include it).  IP and localhost
    endpoints get path-style URLs (oss2 decides), which is what the test server needs.
    ``traffic_limit_bps`` caps each upload connection (OSS enforces it server-side);
    ``None`` = no cap.  ``connect_timeout``/``read_timeout`` go to requests per request.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        bucket: str,
        credentials: CredentialSource,
        checkpoint_dir: str | os.PathLike[str],
        traffic_limit_bps: int | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if not region:
            raise ValueError("region is required (V4 signatures include it), e.g. 'cn-hangzhou'")
        if traffic_limit_bps is not None and not (
            isinstance(traffic_limit_bps, int)
            and MIN_TRAFFIC_LIMIT_BPS <= traffic_limit_bps <= MAX_TRAFFIC_LIMIT_BPS
        ):
            raise ValueError(
                f"traffic_limit_bps = {traffic_limit_bps!r}: OSS accepts an integer from "
                f"{MIN_TRAFFIC_LIMIT_BPS} (100 KB/s) to {MAX_TRAFFIC_LIMIT_BPS} (100 MB/s) "
                "bit/s, or None for no limit"
            )
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(
                f"part_size = {part_size}: OSS parts are {MIN_PART_SIZE}..{MAX_PART_SIZE} bytes"
            )
        if multipart_threshold < part_size:
            raise ValueError(
                f"multipart_threshold ({multipart_threshold}) must be >= part_size ({part_size})"
            )
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        _silence_oss2_debug()
        self.endpoint = endpoint
        self.region = region
        self.bucket_name = bucket
        self.traffic_limit_bps = traffic_limit_bps
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._store = _AtomicResumableStore(self.checkpoint_dir)
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
                # without a compiler (see the module docstring).
                enable_crc=False,
                connect_timeout=(connect_timeout, read_timeout),
            )
        except oss2.exceptions.ClientError as exc:  # invalid endpoint or bucket name
            raise ValueError(f"OSS endpoint {endpoint!r} / bucket {bucket!r}: {exc.body}") from None

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.traffic_limit_bps is not None:
            headers[oss2.headers.OSS_TRAFFIC_LIMIT] = str(self.traffic_limit_bps)
        return headers

    def checkpoint_path(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Where the checkpoint of uploading ``path`` to ``key`` lives (exists only mid-upload)."""
        name = self._store.make_store_key(self.bucket_name, key, os.path.abspath(path))
        return self.checkpoint_dir / name

    def upload_file(self, key: str, path: str | os.PathLike[str]) -> UploadResult:
        """Upload ``path`` to ``key`` (overwriting), resuming an interrupted multipart upload.

        Raises :class:`OssError` (see ``retryable``).  Passed through as they are:
        :class:`~agent.deliver.credentials.CredentialsError` (no usable credentials: pause
        delivery, an operator must act) and ``OSError`` for an unreadable local file.
        """
        return self._upload(key, path, file_digests(path), time.monotonic())

    def _upload(
        self,
        key: str,
        path: str | os.PathLike[str],
        digests: tuple[int, int, str],
        started: float,
    ) -> UploadResult:
        size, crc, md5 = digests
        headers = self._headers()
        multipart = size >= self.multipart_threshold
        first_progress: list[int] = []

        def progress(consumed: int, total: int | None) -> None:
            if not first_progress:  # resumable_upload reports the bytes already done first
                first_progress.append(consumed)

        op = "ResumableUpload" if multipart else "PutObject"
        try:
            if multipart:
                result = oss2.resumable_upload(
                    self._bucket,
                    key,
                    os.fspath(path),
                    store=self._store,
                    headers=headers,
                    multipart_threshold=self.multipart_threshold,
                    part_size=self.part_size,
                    num_threads=1,
                    progress_callback=progress,
                )
            else:
                headers["Content-MD5"] = md5
                result = self._bucket.put_object_from_file(key, os.fspath(path), headers=headers)
            server_crc = result.crc
            if server_crc is None:  # OSS always sends it; check rather than trust silence
                meta = self.exists(key)
                server_crc = meta.crc64 if meta is not None else None
        except oss2.exceptions.OssError as exc:
            raise classify_error(exc, operation=op, key=key) from None
        if server_crc != crc:
            raise OssError(
                retryable=True,
                code="CrcMismatch",
                message=f"local CRC-64 {crc} but OSS reports {server_crc} for the object",
                request_id=result.request_id,
                operation=op,
                key=key,
            )
        resumed = first_progress[0] if multipart and first_progress else 0
        elapsed = time.monotonic() - started
        log.info(
            "uploaded %s (%d bytes%s%s) in %.2fs",
            key,
            size,
            ", multipart" if multipart else "",
            f", resumed after {resumed} bytes" if resumed else "",
            elapsed,
        )
        return UploadResult(
            key=key,
            size=size,
            crc64=crc,
            md5=md5,
            etag=result.etag,
            multipart=multipart,
            resumed_bytes=resumed,
            request_id=result.request_id,
            seconds=elapsed,
        )

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

    def ensure_uploaded(self, key: str, path: str | os.PathLike[str]) -> UploadResult:
        """Upload unless an identical object (same size and CRC-64) is already there.

        For the case "uploaded, then crashed before the spool recorded it": one HeadObject
        instead of sending the whole clip again.
        """
        started = time.monotonic()
        size, crc, md5 = digests = file_digests(path)
        meta = self.exists(key)
        if meta is not None and meta.size == size and meta.crc64 == crc:
            log.info("%s already on OSS with the same size and CRC-64; not re-sent", key)
            return UploadResult(
                key=key,
                size=size,
                crc64=crc,
                md5=md5,
                etag=meta.etag,
                multipart=size >= self.multipart_threshold,
                skipped=True,
                seconds=time.monotonic() - started,
            )
        return self._upload(key, path, digests, started)
