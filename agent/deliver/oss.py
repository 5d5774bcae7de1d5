"""Uploading clips and keyframes to Alibaba Cloud OSS (through oss2), resumably and verifiably.

Why it looks the way it does:

* Object keys are deterministic (:func:`object_key`, made in agent/layout.py), so an upload
  repeated after a crash overwrites the same object instead of leaving a duplicate, and
  :meth:`OssUploader.exists` can tell that an object from before the crash is already complete
  (same size and CRC-64).
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

The bucket underneath — V4 signing, small objects, oss2's failures classified as
:class:`OssError` (no retry loops, no secret in a message) — is
:class:`agent.deliver.oss_bucket.OssBucket`; its public names are re-exported here.
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

from agent.deliver.credentials import CredentialSource
from agent.deliver.oss_bucket import (
    Fetched,
    ObjectMeta,
    OssBucket,
    OssError,
    check_region,
    check_timeouts,
    classify_error,
)
from agent.durable import fsync_dir
from agent.layout import normalize_prefix, object_key

__all__ = [
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "Fetched",
    "MAX_TRAFFIC_LIMIT_BPS",
    "MIN_PART_SIZE",
    "MIN_TRAFFIC_LIMIT_BPS",
    "ObjectMeta",
    "OssBucket",
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


class OssUploader(OssBucket):
    """Uploads files to one bucket.  Not thread-safe: one uploader per delivery thread.

    ``traffic_limit_bps`` caps each upload connection (OSS enforces it server-side);
    ``None`` = no cap.  The bucket's arguments are :class:`OssBucket`'s.
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
        check_region(region)
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
        check_timeouts(connect_timeout, read_timeout)
        self.traffic_limit_bps = traffic_limit_bps
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._store = _AtomicResumableStore(self.checkpoint_dir)
        super().__init__(
            endpoint=endpoint,
            region=region,
            bucket=bucket,
            credentials=credentials,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

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
