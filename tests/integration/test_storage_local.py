"""Local-folder buckets: nothing outside a bucket's folder is ever read, written or listed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outcrop.storage import AccessViolation, ObjectInfo, ObjectNotFound, StorageError
from outcrop.storage.local import TMP_PREFIX, LocalObjectStore

OWNER = "111122223333"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "buckets" / "bucket").mkdir(parents=True)
    return tmp_path / "buckets"


@pytest.fixture
def store(root: Path) -> LocalObjectStore:
    return LocalObjectStore(root, OWNER, {"other": "444455556666"})


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"secret")
    return folder


def keys(store: LocalObjectStore, prefix: str = "") -> list[str]:
    return [info.key for info in store.list_objects("bucket", prefix)]


def test_folder_symlink_out_of_the_bucket(
    store: LocalObjectStore, root: Path, outside: Path
) -> None:
    (root / "bucket" / "link").symlink_to(outside, target_is_directory=True)
    store.put_bytes("bucket", "in/a.jsonl", b"a")
    with pytest.raises(AccessViolation, match="outside its bucket"):
        store.read_bytes("bucket", "link/secret.txt", 100)
    with pytest.raises(AccessViolation):
        store.head("bucket", "link/secret.txt")
    with pytest.raises(AccessViolation):
        store.put_bytes("bucket", "link/new.txt", b"x")
    with pytest.raises(AccessViolation):
        store.put_bytes("bucket", "link/sub/new.txt", b"x")
    with pytest.raises(AccessViolation):
        store.delete("bucket", "link/secret.txt")
    with pytest.raises(AccessViolation):
        store.list_objects("bucket", "link/")
    assert keys(store) == ["in/a.jsonl"]  # the walk does not follow the link
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"


def test_file_symlink_out_of_the_bucket(store: LocalObjectStore, root: Path, outside: Path) -> None:
    (root / "bucket" / "secret.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(AccessViolation):
        store.read_bytes("bucket", "secret.txt", 100)
    with pytest.raises(AccessViolation):
        store.head("bucket", "secret.txt")
    with pytest.raises(AccessViolation), store.open_write("bucket", "secret.txt") as writer:
        writer.write(b"overwritten")
    assert keys(store) == []
    assert (outside / "secret.txt").read_bytes() == b"secret"


def test_symlinks_within_the_bucket_are_fine(store: LocalObjectStore, root: Path) -> None:
    store.put_bytes("bucket", "data/real.jsonl", b"12345")
    (root / "bucket" / "alias.jsonl").symlink_to(root / "bucket" / "data" / "real.jsonl")
    (root / "bucket" / "datalink").symlink_to(root / "bucket" / "data", target_is_directory=True)
    assert store.read_bytes("bucket", "alias.jsonl", 100) == b"12345"
    assert store.head("bucket", "datalink/real.jsonl") == ObjectInfo("datalink/real.jsonl", 5)
    # Folder symlinks are never walked (no loops); file symlinks are listed with their size.
    assert list(store.list_objects("bucket", "")) == [
        ObjectInfo("alias.jsonl", 5),
        ObjectInfo("data/real.jsonl", 5),
    ]


def test_symlink_loop_is_a_storage_error(store: LocalObjectStore, root: Path) -> None:
    (root / "bucket" / "loop").symlink_to(root / "bucket" / "loop")
    with pytest.raises(StorageError):
        store.read_bytes("bucket", "loop", 10)
    assert keys(store) == []


@pytest.mark.parametrize(
    "key", ["../outside/secret.txt", "a/../../outside/secret.txt", "/etc/passwd", "a\\..\\b", "./x"]
)
def test_traversal_keys_are_refused(store: LocalObjectStore, outside: Path, key: str) -> None:
    with pytest.raises(AccessViolation):
        store.read_bytes("bucket", key, 100)
    with pytest.raises(AccessViolation):
        store.head("bucket", key)
    with pytest.raises(AccessViolation):
        store.put_bytes("bucket", key, b"x")
    with pytest.raises(AccessViolation):
        store.delete("bucket", key)
    with pytest.raises(AccessViolation):
        store.list_objects("bucket", key)
    assert (outside / "secret.txt").read_bytes() == b"secret"


@pytest.mark.parametrize("bucket", ["..", ".", "bucket/..", "a/b", "", "a\\b"])
def test_bucket_names_that_are_paths_are_refused(store: LocalObjectStore, bucket: str) -> None:
    assert store.bucket_exists(bucket) is False
    with pytest.raises(AccessViolation):
        store.list_objects(bucket, "")
    with pytest.raises(AccessViolation):
        store.put_bytes(bucket, "x", b"x")


def test_bucket_folder_may_itself_be_a_symlink(root: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    (root / "linked").symlink_to(real, target_is_directory=True)
    store = LocalObjectStore(root, OWNER)
    store.put_bytes("linked", "a/b.jsonl", b"ok")
    assert (real / "a" / "b.jsonl").read_bytes() == b"ok"
    assert [i.key for i in store.list_objects("linked", "")] == ["a/b.jsonl"]


def test_path_component_that_is_a_file_is_a_storage_error(store: LocalObjectStore) -> None:
    # Fails even as root, unlike permission bits.
    store.put_bytes("bucket", "blocker", b"file")
    with pytest.raises(StorageError, match="part of its path is a file"):
        store.put_bytes("bucket", "blocker/x.out", b"x")
    with pytest.raises(StorageError, match="part of its path is a file"):
        store.put_bytes("bucket", "blocker/deeper/x.out", b"x")


def test_writing_over_a_folder_is_a_storage_error(store: LocalObjectStore) -> None:
    store.put_bytes("bucket", "out/x.out", b"x")
    with pytest.raises(StorageError, match="cannot write s3://bucket/out"):
        store.put_bytes("bucket", "out", b"x")
    with pytest.raises(ObjectNotFound):
        store.read_bytes("bucket", "out", 10)
    assert keys(store) == ["out/x.out"]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores permission bits; the file-as-folder test covers unwritable paths",
)
def test_unwritable_folder_is_a_storage_error(store: LocalObjectStore, root: Path) -> None:
    (root / "bucket" / "ro").mkdir()
    (root / "bucket" / "ro").chmod(0o500)
    try:
        with pytest.raises(StorageError, match="Permission denied"):
            store.put_bytes("bucket", "ro/x.out", b"x")
    finally:
        (root / "bucket" / "ro").chmod(0o700)


def test_keys_no_file_can_have(store: LocalObjectStore) -> None:
    with pytest.raises(StorageError, match="does not name a file"):
        store.put_bytes("bucket", "folder/", b"x")
    with pytest.raises(StorageError, match="does not name a file"):
        store.put_bytes("bucket", "a//b", b"x")
    assert store.head("bucket", "a//b") is None
    assert keys(store, "a//") == []


def test_temp_files_are_never_listed(store: LocalObjectStore, root: Path) -> None:
    (root / "bucket" / "in").mkdir()
    (root / "bucket" / "in" / f"{TMP_PREFIX}leftover").write_bytes(b"crashed writer")
    store.put_bytes("bucket", "in/a.jsonl", b"a")
    with store.open_write("bucket", "in/b.jsonl") as writer:
        writer.write(b"b")
        assert keys(store) == ["in/a.jsonl"]
    assert keys(store) == ["in/a.jsonl", "in/b.jsonl"]


def test_written_objects_are_plain_readable_files(store: LocalObjectStore, root: Path) -> None:
    store.put_bytes("bucket", "deep/er/x.out", b"x")
    path = root / "bucket" / "deep" / "er" / "x.out"
    assert path.read_bytes() == b"x"
    assert path.stat().st_mode & 0o777 == 0o644


def test_bucket_owners(store: LocalObjectStore, root: Path) -> None:
    (root / "other").mkdir()
    assert store.bucket_owner("bucket") == OWNER
    assert store.bucket_owner("other") == "444455556666"


def test_owner_must_be_an_account_id(root: Path) -> None:
    with pytest.raises(ValueError, match="12-digit"):
        LocalObjectStore(root, "me")
    with pytest.raises(ValueError, match="12-digit"):
        LocalObjectStore(root, OWNER, {"b": "12"})


def test_special_files_are_not_objects(store: LocalObjectStore, root: Path) -> None:
    os.mkfifo(root / "bucket" / "pipe")
    assert store.head("bucket", "pipe") is None
    with pytest.raises(ObjectNotFound):  # and does not block waiting for a writer
        store.read_bytes("bucket", "pipe", 10)
    assert keys(store) == []
