"""One contract for every ObjectStore: the same tests against local folders and a moto S3 server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from outcrop.storage import ObjectInfo, ObjectNotFound, ObjectStore, StorageError
from outcrop.storage.base import PART_SIZE
from outcrop.storage.local import TMP_PREFIX, LocalObjectStore
from outcrop.storage.s3 import S3ObjectStore

OWNER = "111122223333"
MIB = 1024**2
# A tiny read buffer makes every line and every read cross chunk boundaries.
CHUNK = 7


class Boom(Exception):
    """Raised inside a write to abandon it."""


@dataclass
class Case:
    kind: str
    store: ObjectStore
    bucket: str
    # What an abandoned write could leave behind: temp files, or pending multipart uploads.
    leftovers: Callable[[], list[str]]
    head_etag: Callable[[str], str | None]


@pytest.fixture
def local_case(tmp_path: Path) -> Iterator[Case]:
    root = tmp_path / "buckets"
    (root / "bucket").mkdir(parents=True)
    store = LocalObjectStore(root, OWNER, read_chunk_size=CHUNK)

    def leftovers() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob(f"{TMP_PREFIX}*"))

    yield Case("local", store, "bucket", leftovers, lambda key: None)
    store.close()


@pytest.fixture
def s3_case(moto_server: str, moto_s3_client: Any, moto_s3_bucket: str) -> Iterator[Case]:
    store = S3ObjectStore(
        moto_server,
        "testing",
        "testing",
        "us-east-1",
        default_owner_account_id=OWNER,
        read_chunk_size=CHUNK,
    )

    def leftovers() -> list[str]:
        uploads = moto_s3_client.list_multipart_uploads(Bucket=moto_s3_bucket)
        return [upload["Key"] for upload in uploads.get("Uploads", [])]

    def head_etag(key: str) -> str | None:
        etag: str = moto_s3_client.head_object(Bucket=moto_s3_bucket, Key=key)["ETag"]
        return etag.strip('"')

    yield Case("s3", store, moto_s3_bucket, leftovers, head_etag)
    store.close()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def case(request: pytest.FixtureRequest) -> Case:
    found: Case = request.getfixturevalue(f"{request.param}_case")
    return found


def big_blocks(count: int) -> Iterator[bytes]:
    """1 MiB blocks that differ from each other, so reordered parts would not read back equal."""
    for index in range(count):
        yield f"{index:07d}\n".encode() * (MIB // 8)


class TestObjectStoreContract:
    def test_write_read_round_trip(self, case: Case) -> None:
        with case.store.open_write(case.bucket, "in/records.jsonl") as writer:
            writer.write(b'{"recordId":"1"}\n')
            writer.write(b'{"recordId":"2"}\n')
        assert case.store.read_bytes(case.bucket, "in/records.jsonl", 1000) == (
            b'{"recordId":"1"}\n{"recordId":"2"}\n'
        )
        with case.store.open_read(case.bucket, "in/records.jsonl") as stream:
            assert stream.read(5) == b'{"rec'
            assert stream.read(20) == b'ordId":"1"}\n{"record'
            assert stream.read() == b'Id":"2"}\n'
            assert stream.read(1) == b""

    def test_put_bytes_overwrites(self, case: Case) -> None:
        case.store.put_bytes(case.bucket, "out/manifest.json.out", b'{"a":1}')
        case.store.put_bytes(case.bucket, "out/manifest.json.out", b'{"a":2}')
        assert case.store.read_bytes(case.bucket, "out/manifest.json.out", 100) == b'{"a":2}'
        assert case.store.head(case.bucket, "out/manifest.json.out") == ObjectInfo(
            "out/manifest.json.out", 7
        )

    def test_empty_object(self, case: Case) -> None:
        with case.store.open_write(case.bucket, "empty.jsonl"):
            pass
        assert case.store.head(case.bucket, "empty.jsonl") == ObjectInfo("empty.jsonl", 0)
        with case.store.open_read(case.bucket, "empty.jsonl") as stream:
            assert list(stream) == []

    def test_lines_cross_chunk_boundaries(self, case: Case) -> None:
        lines = [
            b'{"recordId":"a-long-record-id-over-the-chunk-size"}\r\n',
            b"\n",
            b"\r\n",
            b"short\n",
            b"x" * 50 + b"\r\n",
            b"no trailing newline at the end",
        ]
        case.store.put_bytes(case.bucket, "lines.jsonl", b"".join(lines))
        with case.store.open_read(case.bucket, "lines.jsonl") as stream:
            assert list(stream) == lines

    def test_read_bytes_limit(self, case: Case) -> None:
        case.store.put_bytes(case.bucket, "small", b"0123456789")
        assert case.store.read_bytes(case.bucket, "small", 10) == b"0123456789"
        with pytest.raises(StorageError, match="larger than 9 bytes"):
            case.store.read_bytes(case.bucket, "small", 9)

    def test_list_recursion_and_prefix(self, case: Case) -> None:
        keys = [
            "a.jsonl",
            "in/x.jsonl",
            "in/sub/y.jsonl",
            "in/sub/deeper/z.txt",
            "in/sub2/q",
            "in/sub-b/r",
            "in-other/w.jsonl",
            "inx",
        ]
        for index, key in enumerate(keys):
            case.store.put_bytes(case.bucket, key, b"x" * index)
        sizes = {key: index for index, key in enumerate(keys)}

        def listed(prefix: str) -> list[ObjectInfo]:
            return list(case.store.list_objects(case.bucket, prefix))

        def expected(prefix: str) -> list[ObjectInfo]:
            return [ObjectInfo(k, sizes[k]) for k in sorted(keys) if k.startswith(prefix)]

        # S3 order: "in-other/" < "in/" < "inx" and "sub-b/" < "sub/" < "sub2/" ("-" < "/" < "2").
        assert [info.key for info in listed("")] == [
            "a.jsonl",
            "in-other/w.jsonl",
            "in/sub-b/r",
            "in/sub/deeper/z.txt",
            "in/sub/y.jsonl",
            "in/sub2/q",
            "in/x.jsonl",
            "inx",
        ]
        for prefix in ["", "in", "in/", "in/sub", "in/sub/", "in/sub/y.jsonl", "in/s", "i"]:
            assert listed(prefix) == expected(prefix), prefix
        assert listed("nothing/") == []
        assert listed("in/sub/y.jsonl/") == []
        assert listed("in/sub/deeper/z.txt.out") == []

    def test_head(self, case: Case) -> None:
        case.store.put_bytes(case.bucket, "in/a.jsonl", b"abc")
        assert case.store.head(case.bucket, "in/a.jsonl") == ObjectInfo("in/a.jsonl", 3)
        assert case.store.head(case.bucket, "in/missing.jsonl") is None
        assert case.store.head(case.bucket, "in/a.jsonl/below") is None
        # Prefixes and the bucket root are not objects.
        assert case.store.head(case.bucket, "in/") is None
        assert case.store.head(case.bucket, "in") is None
        assert case.store.head(case.bucket, "") is None

    def test_missing_object(self, case: Case) -> None:
        with pytest.raises(ObjectNotFound, match=r"missing\.jsonl"):
            case.store.read_bytes(case.bucket, "missing.jsonl", 10)
        with (
            pytest.raises(ObjectNotFound, match=r"missing\.jsonl"),
            case.store.open_read(case.bucket, "missing.jsonl"),
        ):
            pass

    def test_object_is_invisible_until_the_write_ends(self, case: Case) -> None:
        with case.store.open_write(case.bucket, "out/x.out") as writer:
            writer.write(b"partial\n")
            assert case.store.head(case.bucket, "out/x.out") is None
            assert list(case.store.list_objects(case.bucket, "")) == []
        assert case.store.head(case.bucket, "out/x.out") == ObjectInfo("out/x.out", 8)

    @pytest.mark.parametrize("size", [10, PART_SIZE + MIB], ids=["small", "multipart"])
    def test_failed_write_leaves_nothing(self, case: Case, size: int) -> None:
        with pytest.raises(Boom), case.store.open_write(case.bucket, "out/x.out") as writer:
            for offset in range(0, size, MIB):
                writer.write(b"y" * min(MIB, size - offset))
            raise Boom
        assert case.store.head(case.bucket, "out/x.out") is None
        assert list(case.store.list_objects(case.bucket, "")) == []
        assert case.leftovers() == []

    def test_failed_overwrite_keeps_the_old_object(self, case: Case) -> None:
        case.store.put_bytes(case.bucket, "out/x.out", b"old")
        with pytest.raises(Boom), case.store.open_write(case.bucket, "out/x.out") as writer:
            writer.write(b"new")
            raise Boom
        assert case.store.read_bytes(case.bucket, "out/x.out", 10) == b"old"
        assert case.leftovers() == []

    def test_multipart_write_reads_back_equal(self, case: Case) -> None:
        written = hashlib.sha256()
        with case.store.open_write(case.bucket, "out/big.out") as writer:
            for block in big_blocks(9):
                writer.write(block)
                written.update(block)
            writer.write(b"tail without newline")
            written.update(b"tail without newline")
        size = 9 * MIB + len(b"tail without newline")
        assert case.store.head(case.bucket, "out/big.out") == ObjectInfo("out/big.out", size)
        read = hashlib.sha256()
        total = 0
        with case.store.open_read(case.bucket, "out/big.out") as stream:
            while chunk := stream.read(MIB):
                assert len(chunk) <= MIB
                read.update(chunk)
                total += len(chunk)
        assert (total, read.hexdigest()) == (size, written.hexdigest())
        assert case.leftovers() == []
        if case.kind == "s3":
            etag = case.head_etag("out/big.out")
            assert etag is not None
            assert etag.endswith("-2"), "two parts: one of 8 MiB and the rest"

    def test_delete(self, case: Case) -> None:
        for key in ["out/job/a.out", "out/job/b.out", "out/jobx", "keep/c"]:
            case.store.put_bytes(case.bucket, key, b"z")
        case.store.delete(case.bucket, "out/job/a.out")
        case.store.delete(case.bucket, "out/job/a.out")  # already gone: fine
        case.store.delete(case.bucket, "never/existed")
        assert case.store.head(case.bucket, "out/job/a.out") is None
        case.store.delete_prefix(case.bucket, "out/job/")
        assert [i.key for i in case.store.list_objects(case.bucket, "")] == ["keep/c", "out/jobx"]
        case.store.delete_prefix(case.bucket, "")
        assert list(case.store.list_objects(case.bucket, "")) == []

    def test_missing_bucket(self, case: Case) -> None:
        missing = "no-such-bucket-outcrop"
        assert case.store.bucket_exists(missing) is False
        assert case.store.bucket_exists(case.bucket) is True
        message = f"bucket '{missing}' does not exist"
        calls: list[Callable[[], object]] = [
            lambda: case.store.list_objects(missing, ""),
            lambda: case.store.head(missing, "k"),
            lambda: case.store.read_bytes(missing, "k", 10),
            lambda: case.store.put_bytes(missing, "k", b"v"),
            lambda: case.store.delete(missing, "k"),
            lambda: case.store.bucket_owner(missing),
        ]
        for call in calls:
            with pytest.raises(StorageError, match=message) as info:
                call()
            assert not isinstance(info.value, ObjectNotFound)
        with pytest.raises(StorageError, match=message), case.store.open_write(missing, "k") as w:
            w.write(b"v")

    def test_bucket_owner(self, case: Case) -> None:
        assert case.store.bucket_owner(case.bucket) == OWNER
