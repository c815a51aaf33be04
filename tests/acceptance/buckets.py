"""Test-side view of a server's buckets: local folders or a moto S3 server, behind one interface.

The same acceptance tests put input files and read output objects through `Buckets`, so they run
unchanged against `OUTCROP_STORAGE=local` (bucket = folder under `<data-dir>/buckets`) and
`OUTCROP_STORAGE=s3` (a real S3-compatible server, moto). Both sides list keys in S3's order.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Protocol

import boto3

MOTO_ACCESS_KEY_ID = "testing"
MOTO_SECRET_ACCESS_KEY = "testing"
MOTO_REGION = "us-east-1"
LOCAL_TMP_PREFIX = ".outcrop-tmp-"  # outcrop.storage.local.TMP_PREFIX


class Buckets(Protocol):
    kind: str

    def server_env(self) -> dict[str, str]:
        """The OUTCROP_* settings that point a server at these buckets."""
        ...

    def create(self, hint: str) -> str:
        """Create a fresh, empty bucket; returns its name (unique, starting with `hint`)."""
        ...

    def put(self, bucket: str, key: str, data: bytes) -> None: ...

    def get(self, bucket: str, key: str) -> bytes: ...

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under `prefix`, sorted as S3 lists them."""
        ...

    def close(self) -> None: ...


def _unique(hint: str) -> str:
    return f"{hint}-{uuid.uuid4().hex[:10]}"


class LocalBuckets:
    """Buckets as folders under `<data-dir>/buckets`, read and written as plain files."""

    kind = "local"

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "buckets"
        self.root.mkdir(parents=True, exist_ok=True)

    def server_env(self) -> dict[str, str]:
        return {"OUTCROP_STORAGE": "local"}

    def create(self, hint: str) -> str:
        name = _unique(hint)
        (self.root / name).mkdir()
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        path = self.root / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def get(self, bucket: str, key: str) -> bytes:
        return (self.root / bucket / key).read_bytes()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        # An interrupted atomic write leaves a temp file, which is no object (as an unfinished
        # multipart upload is none in S3); the server's own listings skip them the same way.
        base = self.root / bucket
        found = [
            p.relative_to(base).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(LOCAL_TMP_PREFIX)
        ]
        return sorted(k for k in found if k.startswith(prefix))

    def temp_files(self, bucket: str) -> list[str]:
        """Temp files of interrupted writes (kill -9 mid-write leaves them)."""
        base = self.root / bucket
        return sorted(
            p.relative_to(base).as_posix()
            for p in base.rglob(f"{LOCAL_TMP_PREFIX}*")
            if p.is_file()
        )

    def close(self) -> None:
        return None


class S3Buckets:
    """Buckets on an S3-compatible server, through a plain boto3 client."""

    kind = "s3"

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=MOTO_ACCESS_KEY_ID,
            aws_secret_access_key=MOTO_SECRET_ACCESS_KEY,
            region_name=MOTO_REGION,
        )

    def server_env(self) -> dict[str, str]:
        return {
            "OUTCROP_STORAGE": "s3",
            "OUTCROP_S3_ENDPOINT_URL": self.endpoint_url,
            "OUTCROP_S3_ACCESS_KEY_ID": MOTO_ACCESS_KEY_ID,
            "OUTCROP_S3_SECRET_ACCESS_KEY": MOTO_SECRET_ACCESS_KEY,
            "OUTCROP_S3_REGION": MOTO_REGION,
        }

    def create(self, hint: str) -> str:
        name = _unique(hint)
        self.client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def close(self) -> None:
        self.client.close()


def open_buckets(kind: str, data_dir: Path, s3_endpoint_url: str | None = None) -> Buckets:
    if kind == "local":
        return LocalBuckets(data_dir)
    if kind == "s3":
        assert s3_endpoint_url is not None, "S3 buckets need the moto server's endpoint"
        return S3Buckets(s3_endpoint_url)
    raise ValueError(f"unknown bucket kind {kind!r}")
