"""S3 and S3-compatible servers (MinIO, Ceph, moto) through one boto3 client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from outcrop.storage.base import (
    PART_SIZE,
    READ_CHUNK_SIZE,
    ObjectInfo,
    ObjectNotFound,
    ObjectWriter,
    StorageError,
    buffered_reader,
    object_uri,
    read_limited,
    stream_copy,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIN_PART_SIZE = 5 * 1024**2  # S3 refuses smaller parts except the last
_ACCOUNT_ID = re.compile(r"[0-9]{12}", re.ASCII)
_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {
    "AccessDenied",
    "403",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}
_DELETE_BATCH = 1000  # DeleteObjects' per-request maximum


class S3ObjectStore:
    """Objects in S3 or an S3-compatible server.

    Credentials come from the arguments or, when those are None, boto3's standard chain. With an
    `endpoint_url` the client uses path-style addressing, which S3-compatible servers expect.

    `bucket_owner` reads the bucket ACL's owner id. Real S3 gives a canonical user id there, not
    an account id, as do most compatible servers; when it is not 12 digits (or the ACL cannot be
    read) the store answers `default_owner_account_id`, and raises StorageError without one.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str | None,
        *,
        default_owner_account_id: str | None = None,
        part_size: int = PART_SIZE,
        read_chunk_size: int = READ_CHUNK_SIZE,
        max_attempts: int = 5,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self.endpoint_url = endpoint_url
        self.default_owner_account_id = default_owner_account_id
        self.part_size = part_size
        self.read_chunk_size = read_chunk_size
        config = Config(
            s3={"addressing_style": "path"} if endpoint_url else {},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # The newer default CRC checksums trip up many S3-compatible servers; S3 needs none.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self._client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)

    # -- buckets ---------------------------------------------------------------------------

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self._client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in _NOT_FOUND or code in _NO_BUCKET:
                return False
            if code in ("403", "AccessDenied"):
                return True  # it exists; it just is not ours to look at
            self._fail(exc, "check", bucket, "")
        except BotoCoreError as exc:
            self._fail(exc, "check", bucket, "")
        return True

    def bucket_owner(self, bucket: str) -> str:
        try:
            owner = self._client.get_bucket_acl(Bucket=bucket).get("Owner", {}).get("ID", "")
        except ClientError as exc:
            if _code(exc) in _NO_BUCKET or self.default_owner_account_id is None:
                self._fail(exc, "read the ACL of", bucket, "")
            owner = ""  # e.g. NotImplemented or AccessDenied: fall back below
        except BotoCoreError as exc:
            self._fail(exc, "read the ACL of", bucket, "")
        if _ACCOUNT_ID.fullmatch(owner):
            return owner
        if self.default_owner_account_id is None:
            raise StorageError(f"cannot tell which account owns bucket '{bucket}'")
        return self.default_owner_account_id

    # -- reading ---------------------------------------------------------------------------

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        pages = iter(
            self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        # Fetch the first page now so a missing bucket fails at the call, as it does locally.
        first = self._next_page(pages, bucket, prefix)
        return self._listing(first, pages, bucket, prefix)

    def _listing(
        self, page: dict[str, Any] | None, pages: Iterator[Any], bucket: str, prefix: str
    ) -> Iterator[ObjectInfo]:
        while page is not None:
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"], item["Size"])
            page = self._next_page(pages, bucket, prefix)

    def _next_page(self, pages: Iterator[Any], bucket: str, prefix: str) -> dict[str, Any] | None:
        try:
            page: dict[str, Any] = next(pages)
        except StopIteration:
            return None
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "list", bucket, prefix)
        return page

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        if not key:
            return None  # the bucket root names no object
        try:
            response = self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            # HEAD responses have no body, so a missing bucket looks like a missing key.
            if _code(exc) not in _NOT_FOUND:
                self._fail(exc, "read", bucket, key)
            if not self.bucket_exists(bucket):
                raise StorageError(f"bucket '{bucket}' does not exist") from exc
            return None
        except BotoCoreError as exc:
            self._fail(exc, "read", bucket, key)
        return ObjectInfo(key, response["ContentLength"])

    @contextmanager
    def open_read(self, bucket: str, key: str, start: int = 0) -> Iterator[BinaryIO]:
        uri = object_uri(bucket, key)
        try:
            if start:
                body = self._client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-")[
                    "Body"
                ]
            else:
                body = self._client.get_object(Bucket=bucket, Key=key)["Body"]
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "read", bucket, key)

        def read(size: int) -> bytes:
            try:
                data: bytes = body.read(size)
            except (BotoCoreError, OSError) as exc:
                raise StorageError(f"reading {uri} failed: {exc}") from exc
            return data

        with buffered_reader(read, body.close, self.read_chunk_size) as reader:
            yield reader

    def discard_incomplete(self, bucket: str, prefix: str) -> None:
        try:
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    self._client.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "clean up", bucket, prefix)

    def append_object(self, writer: ObjectWriter, bucket: str, key: str) -> None:
        with self.open_read(bucket, key) as source:
            stream_copy(source, writer)

    def read_bytes(self, bucket: str, key: str, limit: int) -> bytes:
        with self.open_read(bucket, key) as stream:
            return read_limited(stream, object_uri(bucket, key), limit)

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def open_write(self, bucket: str, key: str) -> Iterator[ObjectWriter]:
        writer = _MultipartWriter(self, bucket, key)
        try:
            yield writer
            writer.finish()
        except BaseException:
            writer.abort()
            raise

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=data)
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "write", bucket, key)

    # -- deleting --------------------------------------------------------------------------

    def delete(self, bucket: str, key: str) -> None:
        try:
            self._client.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "delete", bucket, key)

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        batch: list[str] = []
        for info in self.list_objects(bucket, prefix):
            batch.append(info.key)
            if len(batch) == _DELETE_BATCH:
                self._delete_batch(bucket, batch)
                batch = []
        if batch:
            self._delete_batch(bucket, batch)

    def _delete_batch(self, bucket: str, keys: list[str]) -> None:
        try:
            response = self._client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "delete", bucket, keys[0])
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise StorageError(
                f"cannot delete {object_uri(bucket, first.get('Key', ''))}: "
                f"{first.get('Code', 'error')}: {first.get('Message', '')}"
            )

    def close(self) -> None:
        self._client.close()

    # -- errors ----------------------------------------------------------------------------

    def _fail(self, exc: Exception, action: str, bucket: str, key: str) -> NoReturn:
        """Translate a botocore error into StorageError with a message for the job's user."""
        uri = object_uri(bucket, key)
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _NO_BUCKET or (code in _NOT_FOUND and not key):
                raise StorageError(f"bucket '{bucket}' does not exist") from exc
            if code in _NOT_FOUND:
                raise ObjectNotFound(f"{uri} does not exist") from exc
            if code in _DENIED:
                raise StorageError(f"access denied: cannot {action} {uri}") from exc
            message = exc.response.get("Error", {}).get("Message", "")
            raise StorageError(f"cannot {action} {uri}: {code}: {message}".rstrip(": ")) from exc
        where = self.endpoint_url or "S3"
        raise StorageError(f"cannot {action} {uri}: {where} unreachable or failing: {exc}") from exc


class _MultipartWriter:
    """Buffers one part; a single put_object if the whole object fits in it, else multipart."""

    def __init__(self, store: S3ObjectStore, bucket: str, key: str) -> None:
        self._store = store
        self._client = store._client
        self._bucket = bucket
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []

    def write(self, data: bytes, /) -> int:
        self._buffer += data
        while len(self._buffer) >= self._store.part_size:
            part = bytes(self._buffer[: self._store.part_size])
            del self._buffer[: self._store.part_size]
            self._upload(part)
        return len(data)

    def _upload(self, part: bytes) -> None:
        try:
            if self._upload_id is None:
                created = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            response = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
            )
        except (ClientError, BotoCoreError) as exc:
            self._store._fail(exc, "write", self._bucket, self._key)
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def finish(self) -> None:
        if self._upload_id is None:
            self._store.put_bytes(self._bucket, self._key, bytes(self._buffer))
            return
        if self._buffer:
            self._upload(bytes(self._buffer))
            self._buffer.clear()
        try:
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        except (ClientError, BotoCoreError) as exc:
            self._store._fail(exc, "write", self._bucket, self._key)
        self._upload_id = None

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is None:
            return
        # Best effort: the original error matters more; a bucket lifecycle rule can sweep leftovers.
        with suppress(ClientError, BotoCoreError):
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        self._upload_id = None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
