"""Uploads straight to the local OSS (tests.support.fake_oss) by an OssUploader: the bucket, part
sizes small enough for multipart on ~1 MB files, and files to upload.

The server is the ``oss_server`` fixture of tests/conftest.py, the uploader ``make_oss_uploader``.
"""

from __future__ import annotations

import os
from pathlib import Path

BUCKET = "clips"
PART = 100 * 1024  # OSS's (and our moto's) smallest part
THRESHOLD = 200 * 1024  # multipart from 200 KiB, so ~1 MB test files go in ~10 parts


def write_file(path: Path, size: int, seed: int = 0) -> bytes:
    data = (seed.to_bytes(4, "big") + os.urandom(61)) * (size // 65) + os.urandom(size % 65)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data
