"""The object storage seam: the ObjectStore interface, its errors, and helpers shared by stores.

StorageError            a job-level storage fault (missing bucket, unwritable, unreachable)
├── ObjectNotFound      the object does not exist
└── AccessViolation     the key or a symlink leads outside its bucket
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

PART_SIZE = 8 * 1024**2
READ_CHUNK_SIZE = 1024**2


class StorageError(Exception):
    """A storage fault that fails the job as a whole; the message is meant for the job's user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ObjectNotFound(StorageError):
    """The object does not exist (its bucket does)."""


class AccessViolation(StorageError):
    """The key, or a symlink on its path, leads outside its bucket."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class ObjectWriter(Protocol):
    def write(self, data: bytes, /) -> int: ...


class ObjectStore(Protocol):
    """Buckets of objects, S3-style. Implementations are thread-safe.

    Every method raises StorageError (or a subclass) and nothing else for storage faults. Reads
    of a bucket that does not exist raise StorageError naming the bucket.
    """

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (a string prefix, not a folder), sorted
        by key, at any depth; fetched lazily, page by page."""
        ...

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's size, or None when there is no object at `key`."""
        ...

    def open_read(self, bucket: str, key: str, start: int = 0) -> AbstractContextManager[BinaryIO]:
        """A buffered binary stream from byte `start`: `.read(n)`, or iterate for lines ending in
        b"\\n" (the last line may lack it; CRLF lines keep their b"\\r\\n"). Raises ObjectNotFound."""
        ...

    def open_write(self, bucket: str, key: str) -> AbstractContextManager[ObjectWriter]:
        """A writer whose object appears, whole, only when the block exits normally. If the block
        raises, nothing new is visible at `key` and no partial upload is left behind."""
        ...

    def discard_incomplete(self, bucket: str, prefix: str) -> None:
        """Remove what interrupted writes under `prefix` left behind (local temp files, S3
        multipart uploads never completed). Never touches a complete object."""
        ...

    def append_object(self, writer: ObjectWriter, bucket: str, key: str) -> None:
        """Copy the whole object at `key` onto the end of `writer` (from this same store), as
        cheaply as the store allows (a kernel copy for local buckets)."""
        ...

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        """Write a small object atomically (manifests and the like)."""
        ...

    def read_bytes(self, bucket: str, key: str, limit: int) -> bytes:
        """Read a small object whole; StorageError if it is larger than `limit` bytes."""
        ...

    def delete(self, bucket: str, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        ...

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        """Delete every object `list_objects(bucket, prefix)` would yield."""
        ...

    def bucket_exists(self, bucket: str) -> bool: ...

    def bucket_owner(self, bucket: str) -> str:
        """The 12-digit account id that owns the bucket."""
        ...

    def close(self) -> None: ...


def stream_copy(source: BinaryIO, writer: ObjectWriter, chunk: int = 1024 * 1024) -> None:
    while data := source.read(chunk):
        writer.write(data)


def object_uri(bucket: str, key: str) -> str:
    """How error messages name an object: the way the job's user wrote it."""
    return f"s3://{bucket}/{key}"


def read_limited(stream: BinaryIO, uri: str, limit: int) -> bytes:
    """Read at most `limit` bytes, refusing (without reading on) anything larger."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise StorageError(f"{uri} is larger than {limit} bytes")
    return data


class ChunkStream(io.RawIOBase):
    """Presents a `read(n)` callable as a raw stream so io.BufferedReader can add read(n) and
    line iteration on top, without ever holding more than one buffer of the object."""

    def __init__(self, read: Callable[[int], bytes], on_close: Callable[[], None]) -> None:
        super().__init__()
        self._read = read
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._on_close()
            finally:
                super().close()


def buffered_reader(
    read: Callable[[int], bytes], on_close: Callable[[], None], chunk_size: int
) -> BinaryIO:
    return io.BufferedReader(ChunkStream(read, on_close), buffer_size=chunk_size)
