"""Checksums at native speed on every install path: CRC-64 computed once per file by compiled code
(anycrc), never again inside oss2 (whose crcmod is pure Python where no compiler was), and the
server's CRC-64 still checked. Against the fake OSS, which computes its CRC independently."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import anycrc
import anycrc.crc
import oss2.utils
import pytest

from agent.deliver import oss as oss_module
from agent.deliver.oss import CRC64, OssError, crc64, file_digests
from tests.support.fake_oss import crc64 as server_crc64
from tests.support.oss_upload import BUCKET, THRESHOLD, write_file


def test_the_crc64_is_anycrc_compiled_code_and_runs_at_native_speed(tmp_path):
    # anycrc's model, from its compiled extension module (not a pure-Python fallback).
    assert type(CRC64).__module__ == "anycrc.crc"
    assert anycrc.crc.__file__.endswith(".so"), anycrc.crc.__file__
    data = os.urandom(32 * 2**20)
    started = time.process_time()
    for _ in range(4):
        value = crc64(data)
    cpu = (time.process_time() - started) / 4
    # Pure Python (crcmod without its extension) does ~6 MB/s: 5 s for this; compiled, ms.
    assert len(data) / cpu > 200e6, f"{len(data) / cpu / 1e6:.0f} MB/s: not the fast path"
    assert value == server_crc64(data) == crc64(data[7:], crc64(data[:7]))


@pytest.mark.parametrize("size", [0, 1, 65_537, 3 * 2**20 + 5])
def test_file_digests_agree_with_an_independent_crc64_and_md5(tmp_path, size):
    path = tmp_path / "f.bin"
    data = write_file(path, size) if size else (path.write_bytes(b"") or b"")
    got_size, got_crc, got_md5 = file_digests(path)
    assert got_size == len(data)
    assert got_crc == server_crc64(data)
    assert got_md5 == base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def no_oss2_crc(monkeypatch):
    """Any CRC oss2 would compute now fails the upload: it must compute none."""

    class Forbidden:
        def __init__(self, *args, **kwargs):
            raise AssertionError("oss2 computed a CRC of its own")

    monkeypatch.setattr(oss2.utils, "Crc64", Forbidden)


@pytest.mark.parametrize("size", [50_000, 5 * THRESHOLD + 123])  # PutObject, multipart
def test_uploads_compute_the_crc_once_and_check_the_servers(
    tmp_path: Path,
    oss_server,
    make_oss_uploader,
    no_oss2_crc,
    monkeypatch,
    size,
):
    path = tmp_path / "clip.mp4"
    data = write_file(path, size)
    reads = []
    real = oss_module.file_digests

    def counting(p):
        reads.append(p)
        return real(p)

    monkeypatch.setattr(oss_module, "file_digests", counting)
    result = make_oss_uploader().upload_file("c/clip.mp4", path)
    assert reads == [path], "the file was hashed more than once"
    assert result.crc64 == server_crc64(data) and result.multipart == (size >= THRESHOLD)
    assert oss_server.object_bytes(BUCKET, "c/clip.mp4") == data
    # The server's CRC is still checked: a wrong one is a retryable mismatch.
    oss_server.fault("bad-crc", op="CompleteMultipartUpload" if result.multipart else "PutObject")
    with pytest.raises(OssError) as err:
        make_oss_uploader().upload_file("c/clip2.mp4", path)
    assert err.value.code == "CrcMismatch" and err.value.retryable
