"""S3 URI parsing, joining and the key checks made at job creation."""

from __future__ import annotations

import pytest

from outcrop.errors import ValidationError
from outcrop.storage.uri import S3Location, check_key, parse_s3_uri


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://bucket", "bucket", ""),
        ("s3://bucket/", "bucket", ""),
        ("s3://bucket/in/", "bucket", "in/"),
        ("s3://my.bucket-1/in/records.jsonl", "my.bucket-1", "in/records.jsonl"),
        ("s3://abc/a//b", "abc", "a//b"),
    ],
)
def test_parse_s3_uri(uri: str, bucket: str, key: str) -> None:
    location = parse_s3_uri(uri)
    assert location == S3Location(bucket, key)
    assert location.uri == f"s3://{bucket}/{key}"


@pytest.mark.parametrize(
    "uri",
    ["", "bucket/key", "http://bucket/key", "s3:/bucket/key", "s3://", "s3:///key", "s3://ab/x",
     "s3://Bucket/x", "s3://-bucket/x", "s3://bucket-/x", "s3://../x", "s3://bu_cket/x",
     "s3://" + "a" * 64 + "/x"],
)  # fmt: skip
def test_parse_s3_uri_rejects(uri: str) -> None:
    with pytest.raises(ValidationError):
        parse_s3_uri(uri)


def test_uri_round_trips() -> None:
    for uri in ["s3://bucket/", "s3://bucket/a/b.jsonl", "s3://bucket/out/"]:
        assert parse_s3_uri(uri).uri == uri


@pytest.mark.parametrize(
    ("base", "relative", "expected"),
    [
        ("", "job/x.out", "job/x.out"),
        ("out", "job/x.out", "out/job/x.out"),
        ("out/", "job/x.out", "out/job/x.out"),
        ("a/b/", "manifest.json.out", "a/b/manifest.json.out"),
    ],
)
def test_child(base: str, relative: str, expected: str) -> None:
    assert S3Location("bucket", base).child(relative) == S3Location("bucket", expected)


@pytest.mark.parametrize("relative", ["", "/abs", "../up", "a/./b", "a\\b"])
def test_child_refuses_bad_relative_keys(relative: str) -> None:
    with pytest.raises(ValidationError):
        S3Location("bucket", "out/").child(relative)


@pytest.mark.parametrize(
    "key",
    ["", "in/", "in/records.jsonl", "a.b/c..d/..e/f..", "...", ".hidden/x", "a%2e/b", "100%"],
)
def test_check_key_accepts(key: str) -> None:
    check_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "..",
        "../x",
        "a/../b",
        "a/..",
        "a/../",
        ".",
        "./a",
        "a/./b",
        "a/.",
        "/abs",
        "//x",
        "a\\b",
        "..\\x",
        "a\x00b",
        "%2e%2e/x",
        "%2E%2E/x",
        "a/%2e%2E/b",
        ".%2e/x",
        "%2e./x",
        "%2e/x",
        "a%2f..%2fb",
        "%2fetc/passwd",
        "a%5cb",
        "a%00b",
        "%252e%252e/x",
        "%25252e%25252e/x",
    ],
)
def test_check_key_refuses(key: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_key(key)
    assert repr(key) in info.value.message
