"""Local-directory buckets: bucket `b` is the folder `root/b`; a key is a path below it."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from outcrop.errors import ValidationError
from outcrop.storage.base import (
    READ_CHUNK_SIZE,
    AccessViolation,
    ObjectInfo,
    ObjectNotFound,
    ObjectWriter,
    StorageError,
    buffered_reader,
    object_uri,
    read_limited,
    stream_copy,
)
from outcrop.storage.uri import check_key

TMP_PREFIX = ".outcrop-tmp-"
_ACCOUNT_ID = re.compile(r"[0-9]{12}", re.ASCII)


class LocalObjectStore:
    """Buckets as folders. Nothing is read or written outside a bucket's real (symlink-resolved)
    folder. Listings skip in-flight temp files and do not descend into directory symlinks, so
    they cannot loop or wander; a file symlink is listed only when it stays inside the bucket.

    The checks are made on paths, not file descriptors: they keep job keys inside the bucket but
    assume nobody swaps folders for symlinks under the root while a job runs.
    """

    def __init__(
        self,
        root: Path,
        owner_account_id: str,
        bucket_owners: dict[str, str] | None = None,
        *,
        read_chunk_size: int = READ_CHUNK_SIZE,
    ) -> None:
        owners = {"": owner_account_id, **(bucket_owners or {})}
        for owner in owners.values():
            if _ACCOUNT_ID.fullmatch(owner) is None:
                raise ValueError(f"bucket owner {owner!r} is not a 12-digit account id")
        self.root = root
        self.owner_account_id = owner_account_id
        self.bucket_owners = dict(bucket_owners or {})
        self.read_chunk_size = read_chunk_size

    # -- buckets ---------------------------------------------------------------------------

    def bucket_exists(self, bucket: str) -> bool:
        return _plausible_bucket(bucket) and (self.root / bucket).is_dir()

    def bucket_owner(self, bucket: str) -> str:
        self._bucket_dir(bucket)
        return self.bucket_owners.get(bucket, self.owner_account_id)

    def _bucket_dir(self, bucket: str) -> Path:
        """The bucket's real folder; StorageError when there is none."""
        if not _plausible_bucket(bucket):
            raise AccessViolation(f"'{bucket}' cannot name a bucket")
        path = self.root / bucket
        if not path.is_dir():
            raise StorageError(f"bucket '{bucket}' does not exist")
        return Path(os.path.realpath(path))

    # -- reading ---------------------------------------------------------------------------

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        bucket_dir = self._bucket_dir(bucket)
        _check_local_key(bucket, prefix)
        folder, _, leaf = prefix.rpartition("/")
        segments = folder.split("/") if folder else []
        if "" in segments:
            return iter(())  # "a//b" names no file on disk, so nothing can match it
        start = bucket_dir.joinpath(*segments)
        real_start = _real(start)
        if not _inside(real_start, bucket_dir):
            raise AccessViolation(f"{object_uri(bucket, prefix)} leads outside its bucket")
        if not real_start.is_dir():
            return iter(())
        return self._walk(bucket, bucket_dir, real_start, folder + "/" if folder else "", leaf)

    def _walk(
        self, bucket: str, bucket_dir: Path, folder: Path, key_base: str, name_prefix: str
    ) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(folder) as scan:
                entries = [e for e in scan if e.name.startswith(name_prefix)]
        except FileNotFoundError:
            return  # deleted while we listed
        except OSError as exc:
            raise StorageError(f"cannot list {object_uri(bucket, key_base)}: {_why(exc)}") from exc
        # A folder sorts as "name/", which places all its keys exactly where S3 would list them.
        ranked: list[tuple[str, Path | None, int]] = []
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    ranked.append((entry.name + "/", Path(entry.path), 0))
                elif entry.is_symlink():
                    target = _real(Path(entry.path))
                    if _inside(target, bucket_dir) and target.is_file():
                        ranked.append((entry.name, None, target.stat().st_size))
                elif entry.is_file(follow_symlinks=False):
                    ranked.append((entry.name, None, entry.stat(follow_symlinks=False).st_size))
            except FileNotFoundError:
                continue  # deleted while we listed
            except OSError as exc:
                raise StorageError(
                    f"cannot list {object_uri(bucket, key_base + entry.name)}: {_why(exc)}"
                ) from exc
        ranked.sort(key=lambda item: item[0])
        for name, subfolder, size in ranked:
            if subfolder is None:
                yield ObjectInfo(key_base + name, size)
            else:
                yield from self._walk(bucket, bucket_dir, subfolder, key_base + name, "")

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._existing_path(bucket, key)
        if path is None:
            return None
        try:
            return ObjectInfo(key, path.stat().st_size) if path.is_file() else None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {object_uri(bucket, key)}: {_why(exc)}") from exc

    @contextmanager
    def open_read(self, bucket: str, key: str, start: int = 0) -> Iterator[BinaryIO]:
        uri = object_uri(bucket, key)
        path = self._existing_path(bucket, key)
        if path is None or not path.is_file():  # a folder or a FIFO is no object
            raise ObjectNotFound(f"{uri} does not exist")
        try:
            raw = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by the reader below)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"{uri} does not exist") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {_why(exc)}") from exc
        if start:
            raw.seek(start)

        def read(size: int) -> bytes:
            try:
                return raw.read(size) or b""
            except OSError as exc:
                raise StorageError(f"cannot read {uri}: {_why(exc)}") from exc

        with buffered_reader(read, raw.close, self.read_chunk_size) as reader:
            yield reader

    def read_bytes(self, bucket: str, key: str, limit: int) -> bytes:
        with self.open_read(bucket, key) as stream:
            return read_limited(stream, object_uri(bucket, key), limit)

    def _existing_path(self, bucket: str, key: str) -> Path | None:
        """The real path of `key` for reading, or None when the key cannot name a local file."""
        bucket_dir = self._bucket_dir(bucket)
        segments = _segments(bucket, key)
        if segments is None:
            return None
        path = _real(bucket_dir.joinpath(*segments))
        if not _inside(path, bucket_dir):
            raise AccessViolation(f"{object_uri(bucket, key)} leads outside its bucket")
        return path

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def open_write(self, bucket: str, key: str) -> Iterator[ObjectWriter]:
        uri = object_uri(bucket, key)
        target = self._prepare_target(bucket, key)
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {_why(exc)}") from exc
        committed = False
        try:
            with os.fdopen(fd, "wb") as file:
                yield _FileWriter(file, uri)
                try:
                    file.flush()
                    os.fsync(file.fileno())
                except OSError as exc:
                    raise StorageError(f"cannot write {uri}: {_why(exc)}") from exc
            try:
                # mkstemp creates 0600; objects should be as readable as any file the user makes.
                os.chmod(tmp_name, 0o644)
                os.replace(tmp_name, target)
                committed = True
            except OSError as exc:
                raise StorageError(f"cannot write {uri}: {_why(exc)}") from exc
            _fsync_folder(target.parent)
        finally:
            if not committed:
                with suppress(OSError):
                    os.unlink(tmp_name)

    def discard_incomplete(self, bucket: str, prefix: str) -> None:
        bucket_dir = self._bucket_dir(bucket)
        folder = _real(bucket_dir / prefix) if prefix.endswith("/") else None
        if folder is None or not _inside(folder, bucket_dir) or not folder.is_dir():
            return
        for path in folder.rglob(f"{TMP_PREFIX}*"):
            if path.is_file() and not path.is_symlink() and _inside(_real(path), bucket_dir):
                with suppress(OSError):
                    path.unlink()

    def append_object(self, writer: ObjectWriter, bucket: str, key: str) -> None:
        if not isinstance(writer, _FileWriter):
            with self.open_read(bucket, key) as source:
                stream_copy(source, writer)
            return
        uri = object_uri(bucket, key)
        path = self._existing_path(bucket, key)
        if path is None or not path.is_file():
            raise ObjectNotFound(f"{uri} does not exist")
        writer.copy_file(path, uri)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        with self.open_write(bucket, key) as writer:
            writer.write(data)

    def _prepare_target(self, bucket: str, key: str) -> Path:
        """Check `key` stays in the bucket, create its folders, and return its lexical path."""
        uri = object_uri(bucket, key)
        bucket_dir = self._bucket_dir(bucket)
        segments = _segments(bucket, key)
        if segments is None:
            raise StorageError(f"cannot write {uri}: the key does not name a file")
        target = bucket_dir.joinpath(*segments)
        # Check before mkdir: creating folders through a symlink would already escape.
        if not _inside(_real(target.parent), bucket_dir):
            raise AccessViolation(f"{uri} leads outside its bucket")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StorageError(
                f"cannot write {uri}: part of its path is a file, not a folder"
            ) from exc
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {_why(exc)}") from exc
        if not _inside(_real(target), bucket_dir):
            raise AccessViolation(f"{uri} leads outside its bucket")
        return target

    # -- deleting --------------------------------------------------------------------------

    def delete(self, bucket: str, key: str) -> None:
        uri = object_uri(bucket, key)
        bucket_dir = self._bucket_dir(bucket)
        segments = _segments(bucket, key)
        if segments is None:
            return
        path = bucket_dir.joinpath(*segments)
        # The parent must stay inside; the last component may be a symlink, and unlink removes
        # the link itself, never its target.
        if not _inside(_real(path.parent), bucket_dir):
            raise AccessViolation(f"{uri} leads outside its bucket")
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {uri}: {_why(exc)}") from exc

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        for info in self.list_objects(bucket, prefix):
            self.delete(bucket, info.key)
        self.discard_incomplete(bucket, prefix)
        if prefix.endswith("/"):
            # S3 has no folders: once a "folder" prefix is emptied, leave no empty directory.
            bucket_dir = self._bucket_dir(bucket)
            folder = _real(bucket_dir / prefix)
            if folder != bucket_dir and _inside(folder, bucket_dir) and folder.is_dir():
                for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if path.is_dir() and not path.is_symlink():
                        with contextlib.suppress(OSError):
                            path.rmdir()
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def close(self) -> None:
        pass


class _FileWriter:
    """Only `write`: callers must not close or seek the temp file behind the atomic write."""

    def __init__(self, file: BinaryIO, uri: str) -> None:
        self._file = file
        self._uri = uri

    def write(self, data: bytes, /) -> int:
        try:
            return self._file.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {self._uri}: {_why(exc)}") from exc

    def copy_file(self, path: Path, uri: str) -> None:
        """Append a whole file in the kernel (copy_file_range), without a trip through Python."""
        try:
            self._file.flush()
            out_fd = self._file.fileno()
            with open(path, "rb") as source:
                remaining = os.fstat(source.fileno()).st_size
                while remaining > 0:
                    copied = os.copy_file_range(source.fileno(), out_fd, remaining)
                    if copied == 0:
                        break
                    remaining -= copied
        except OSError as exc:
            raise StorageError(f"cannot copy {uri} into {self._uri}: {_why(exc)}") from exc


def _plausible_bucket(bucket: str) -> bool:
    # Looser than S3's naming rule (operators make these folders by hand) but never a path.
    return (
        bool(bucket)
        and bucket not in (".", "..")
        and not bucket.startswith(TMP_PREFIX)
        and not any(c in bucket for c in "/\\\x00")
    )


def _check_local_key(bucket: str, key: str) -> None:
    try:
        check_key(key)
    except ValidationError as exc:
        raise AccessViolation(f"{object_uri(bucket, key)}: {exc.message}") from exc


def _segments(bucket: str, key: str) -> list[str] | None:
    """The key's path segments, or None when no file could have this key ("", "a/", "a//b")."""
    _check_local_key(bucket, key)
    segments = key.split("/")
    if "" in segments:
        return None
    return segments


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable, not just the file's bytes.

    Best effort: the object is already in place, and some filesystems refuse to sync folders.
    """
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
