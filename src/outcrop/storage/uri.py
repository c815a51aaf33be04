"""S3 URIs: parsing, joining, and the key checks applied to every job's input and output URI."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from outcrop.errors import ValidationError

_SCHEME = "s3://"
# S3's bucket naming rule; it also keeps "." and ".." from ever naming a local bucket directory.
_BUCKET = re.compile(r"[a-z0-9][-.a-z0-9]{1,61}[a-z0-9]", re.ASCII)
# Enough rounds to see through double and triple percent-encoding; each round only shrinks the key.
_DECODE_ROUNDS = 4


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key; the key is an object key or a prefix ("" or ending in "/")."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{_SCHEME}{self.bucket}/{self.key}"

    def child(self, relative_key: str) -> S3Location:
        """The location `relative_key` below this one, treating this key as a folder.

        `S3Location("b", "out").child("job/x.out")` and `S3Location("b", "out/").child(...)` are
        both `s3://b/out/job/x.out`. The relative key must itself pass `check_key`.
        """
        if not relative_key:
            raise ValidationError("relative key must not be empty")
        check_key(relative_key)
        base = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return S3Location(self.bucket, base + relative_key)


def parse_s3_uri(uri: str) -> S3Location:
    """Split `s3://bucket/key` into an S3Location; the key may be empty or end with "/"."""
    if not uri.startswith(_SCHEME):
        raise ValidationError(f"'{uri}' is not an S3 URI (expected s3://bucket/key)")
    bucket, _, key = uri[len(_SCHEME) :].partition("/")
    if _BUCKET.fullmatch(bucket) is None:
        raise ValidationError(f"'{uri}' does not name a valid S3 bucket")
    return S3Location(bucket, key)


def check_key(key: str) -> None:
    """Refuse keys that could climb out of a bucket or alias another key on a filesystem.

    Checked on the key as given and on every round of percent-decoding, so `%2e%2e` (any case,
    even double-encoded) counts as `..`. Raises ValidationError.
    """
    seen = key
    for _ in range(_DECODE_ROUNDS):
        _check_plain(key, seen)
        decoded = unquote(seen)
        if decoded == seen:
            return
        seen = decoded
    _check_plain(key, seen)


def _check_plain(original: str, key: str) -> None:
    if "\x00" in key:
        raise ValidationError(f"S3 key {original!r} contains a NUL byte")
    if "\\" in key:
        raise ValidationError(f"S3 key {original!r} contains a backslash")
    if key.startswith("/"):
        raise ValidationError(f"S3 key {original!r} must not start with '/'")
    for segment in key.split("/"):
        if segment in (".", ".."):
            raise ValidationError(f"S3 key {original!r} contains a '{segment}' path segment")
