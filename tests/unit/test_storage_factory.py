"""open_object_store picks the store the settings ask for."""

from __future__ import annotations

from pathlib import Path

from outcrop.config import Settings
from outcrop.storage import open_object_store
from outcrop.storage.factory import DEFAULT_ACCOUNT_ID
from outcrop.storage.local import LocalObjectStore
from outcrop.storage.s3 import S3ObjectStore


def test_local_buckets_live_under_data_dir(tmp_path: Path) -> None:
    store = open_object_store(Settings(data_dir=tmp_path, account_id="111122223333"))
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "buckets"
    (tmp_path / "buckets" / "b").mkdir(parents=True)
    assert store.bucket_owner("b") == "111122223333"


def test_local_owner_defaults_without_an_account_id(tmp_path: Path) -> None:
    store = open_object_store(Settings(data_dir=tmp_path))
    (tmp_path / "buckets" / "b").mkdir(parents=True)
    assert store.bucket_owner("b") == DEFAULT_ACCOUNT_ID


def test_s3(tmp_path: Path) -> None:
    settings = Settings(
        storage="s3",
        data_dir=tmp_path,
        account_id="111122223333",
        s3_endpoint_url="http://127.0.0.1:9",
        s3_access_key_id="ak",
        s3_secret_access_key="sk",
        s3_region="eu-west-1",
    )
    store = open_object_store(settings)
    try:
        assert isinstance(store, S3ObjectStore)
        assert store.endpoint_url == "http://127.0.0.1:9"
        assert store.default_owner_account_id == "111122223333"
    finally:
        store.close()
