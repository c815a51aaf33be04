"""Object storage: one ObjectStore interface; local-directory buckets and S3."""

from outcrop.storage.base import (
    AccessViolation,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectWriter,
    StorageError,
)
from outcrop.storage.factory import open_object_store
from outcrop.storage.uri import S3Location, check_key, parse_s3_uri

__all__ = [
    "AccessViolation",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectWriter",
    "S3Location",
    "StorageError",
    "check_key",
    "open_object_store",
    "parse_s3_uri",
]
