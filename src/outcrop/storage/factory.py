"""Build the configured ObjectStore; the one place that chooses between local folders and S3."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from outcrop.storage.base import ObjectStore

# Owner of local buckets when no account id is configured; the example account of AWS's docs.
DEFAULT_ACCOUNT_ID = "123456789012"


class StorageSettings(Protocol):
    """The slice of outcrop.config.Settings that storage needs."""

    @property
    def storage(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def account_id(self) -> str | None: ...
    @property
    def s3_endpoint_url(self) -> str | None: ...
    @property
    def s3_access_key_id(self) -> str | None: ...
    @property
    def s3_secret_access_key(self) -> str | None: ...
    @property
    def s3_region(self) -> str | None: ...


def open_object_store(settings: StorageSettings) -> ObjectStore:
    """Local buckets live in `data_dir/buckets/<bucket>`; S3 is imported only when chosen."""
    if settings.storage == "local":
        from outcrop.storage.local import LocalObjectStore

        return LocalObjectStore(
            settings.data_dir / "buckets", settings.account_id or DEFAULT_ACCOUNT_ID
        )
    if settings.storage == "s3":
        from outcrop.storage.s3 import S3ObjectStore

        return S3ObjectStore(
            settings.s3_endpoint_url,
            settings.s3_access_key_id,
            settings.s3_secret_access_key,
            settings.s3_region,
            default_owner_account_id=settings.account_id,
        )
    raise ValueError(f"unknown storage {settings.storage!r} (expected 'local' or 's3')")
