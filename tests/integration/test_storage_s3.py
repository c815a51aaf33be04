"""S3 specifics: error translation, owner fallback and part sizes, against moto or a dead port."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from outcrop.storage import StorageError
from outcrop.storage.s3 import MIN_PART_SIZE, S3ObjectStore

pytestmark = pytest.mark.s3


def dead_endpoint() -> str:
    """A localhost port nothing listens on: bind one, then let it go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_endpoint_is_a_storage_error() -> None:
    endpoint = dead_endpoint()
    store = S3ObjectStore(endpoint, "testing", "testing", "us-east-1", max_attempts=1)
    try:
        with pytest.raises(StorageError, match=f"cannot list s3://bucket/in/: {endpoint}"):
            store.list_objects("bucket", "in/")
        with pytest.raises(StorageError, match="unreachable"):
            store.put_bytes("bucket", "k", b"v")
        with pytest.raises(StorageError, match="unreachable"), store.open_read("bucket", "k"):
            pass
        with pytest.raises(StorageError, match="unreachable"):
            store.bucket_exists("bucket")
    finally:
        store.close()


def test_bucket_owner_needs_a_fallback_for_canonical_ids(
    moto_server: str, moto_s3_bucket: str
) -> None:
    # moto, like S3, answers a 64-hex canonical user id, which is not an account id.
    store = S3ObjectStore(moto_server, "testing", "testing", "us-east-1")
    try:
        with pytest.raises(StorageError, match=f"which account owns bucket '{moto_s3_bucket}'"):
            store.bucket_owner(moto_s3_bucket)
    finally:
        store.close()


def test_smaller_parts_are_used_when_configured(
    moto_server: str, moto_s3_client: Any, moto_s3_bucket: str
) -> None:
    store = S3ObjectStore(moto_server, "testing", "testing", "us-east-1", part_size=MIN_PART_SIZE)
    data = bytes(range(256)) * (MIN_PART_SIZE * 2 // 256 + 1)  # three parts, the last short
    try:
        with store.open_write(moto_s3_bucket, "three-parts") as writer:
            writer.write(data)  # one large write is still cut into parts
        assert store.read_bytes(moto_s3_bucket, "three-parts", len(data)) == data
    finally:
        store.close()
    etag = moto_s3_client.head_object(Bucket=moto_s3_bucket, Key="three-parts")["ETag"]
    assert etag.strip('"').endswith("-3")


def test_part_size_below_the_s3_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3ObjectStore(None, "testing", "testing", "us-east-1", part_size=MIN_PART_SIZE - 1)
