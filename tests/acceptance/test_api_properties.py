"""Random (correctly signed) requests to every route never get a 5xx or an untyped error."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.acceptance.raw import RawClient, create_body

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: bigger than 64 bits too
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)

# Plausible strings: valid-looking values, near misses, and noise.
plausible_strings = st.sampled_from(
    [
        "",
        " ",
        "job-1",
        "a_b",
        "a" * 64,
        "s3://bucket/in/",
        "s3://bucket/in/../x",
        "s3://Bucket/x",
        "arn:aws:iam::123456789012:role/R",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefghijkl",
        "arn:aws:bedrock:us-east-1:000000000000:model-invocation-job/abcdefghijkl",
        "abcdefghijkl",
        "REAL_ARN",
        "REAL_ID",
        "JSONL",
        "Converse",
        "%2e%2e",
        "\x00",
        "\ud7ff",
        "2024-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
    ]
) | st.text(max_size=80)

values = json_values | plausible_strings | st.integers(min_value=-5, max_value=300)


def _valid_tags() -> st.SearchStrategy[Any]:
    tag = st.fixed_dictionaries({"key": plausible_strings, "value": plausible_strings})
    return st.lists(tag, max_size=60) | values


def _mutated_create() -> st.SearchStrategy[dict[str, Any]]:
    base = create_body()
    fields = {
        **{k: st.just(v) | values for k, v in base.items()},
        "inputDataConfig": st.just(base["inputDataConfig"])
        | st.fixed_dictionaries(
            {
                "s3InputDataConfig": st.fixed_dictionaries(
                    {"s3Uri": plausible_strings},
                    optional={"s3InputFormat": values, "s3BucketOwner": values},
                )
            }
        )
        | values,
    }
    optional = {
        "timeoutDurationInHours": values,
        "tags": _valid_tags(),
        "clientRequestToken": plausible_strings,
        "modelInvocationType": plausible_strings,
        "vpcConfig": st.fixed_dictionaries(
            {"subnetIds": st.lists(plausible_strings, max_size=20), "securityGroupIds": values}
        )
        | values,
    }
    return st.fixed_dictionaries(fields, optional=optional)


bodies = (
    _mutated_create().map(lambda b: json.dumps(b).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
    | st.sampled_from([b"", b"NaN", b'{"a": NaN}', b"[" * 2000, b"\xff\xfe", b'{"jobName": 1e999}'])
)


@pytest.fixture(scope="module")
def real(raw: RawClient) -> dict[str, str]:
    """A job that exists, so random requests also reach the code behind a successful lookup."""
    arn: str = raw.create(create_body(tags=[{"key": "k", "value": "v"}])).json()["jobArn"]
    return {"REAL_ARN": arn, "REAL_ID": arn.rsplit("/", 1)[1]}


def with_real(text: str, real: dict[str, str]) -> str:
    for placeholder, value in real.items():
        text = text.replace(placeholder, value)
    return text


def with_real_bytes(body: bytes, real: dict[str, str]) -> bytes:
    for placeholder, value in real.items():
        body = body.replace(placeholder.encode(), value.encode())
    return body


def assert_well_formed(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.headers.get("x-amzn-RequestId")
    if response.status_code == 200:
        assert isinstance(response.json(), dict)
        return
    assert 400 <= response.status_code < 500
    assert response.headers.get("x-amzn-ErrorType"), response.text
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("message"), str) and body["message"].strip(), body


@SETTINGS
@given(body=bodies)
def test_create_with_random_bodies(raw: RawClient, body: bytes):
    assert_well_formed(raw.request("POST", "/model-invocation-job", body=body))


@SETTINGS
@given(body=_mutated_create())
def test_create_with_mostly_valid_bodies(raw: RawClient, body: dict[str, Any]):
    # Dicts with unbounded ints are sent through the stdlib encoder, as any client might.
    assert_well_formed(raw.request("POST", "/model-invocation-job", body=json.dumps(body).encode()))


identifiers = (
    plausible_strings | st.text(max_size=1100) | st.from_regex(r"[a-z0-9]{12}", fullmatch=True)
)


@SETTINGS
@given(identifier=identifiers, encode=st.booleans())
@example(identifier="%zz", encode=False)
@example(identifier="a/b/c", encode=False)
@example(identifier="%252F", encode=False)
def test_get_with_random_identifiers(
    raw: RawClient, real: dict[str, str], identifier: str, encode: bool
):
    path = quote(with_real(identifier, real), safe="" if encode else "/%")
    assert_well_formed(raw.request("GET", "/model-invocation-job/" + path))


@SETTINGS
@given(identifier=identifiers, body=st.none() | bodies)
def test_stop_with_random_identifiers(
    raw: RawClient, real: dict[str, str], identifier: str, body: bytes | None
):
    path = "/model-invocation-job/" + quote(with_real(identifier, real), safe="") + "/stop"
    assert_well_formed(raw.request("POST", path, body=body))


query_keys = st.sampled_from(
    [
        "submitTimeAfter",
        "submitTimeBefore",
        "statusEquals",
        "nameContains",
        "maxResults",
        "nextToken",
        "sortBy",
        "sortOrder",
    ]
) | st.text(max_size=10)
query_values = (
    plausible_strings
    | st.integers().map(str)
    | st.sampled_from(["Submitted", "Stopping", "Ascending", "Descending", "CreationTime", "1e3"])
    | st.datetimes().map(lambda d: d.isoformat())
)


@SETTINGS
@given(pairs=st.lists(st.tuples(query_keys, query_values), max_size=6))
@example(pairs=[("submitTimeAfter", "9999-12-31T23:59:59-01:00")])
@example(pairs=[("submitTimeBefore", "0001-01-01T00:00:00+01:00")])
def test_list_with_random_query_strings(raw: RawClient, pairs: list[tuple[str, str]]):
    assert_well_formed(raw.list(pairs))


@SETTINGS
@given(query=st.text(max_size=60).map(lambda q: quote(q, safe="=&")))
def test_list_with_random_raw_query_text(raw: RawClient, query: str):
    assert_well_formed(raw.list(query))


def _tag_bodies() -> st.SearchStrategy[bytes]:
    arn = (
        plausible_strings
        | st.from_regex(
            r"arn:aws:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/[a-z0-9]{12}",
            fullmatch=True,
        )
        | values
    )
    structured = st.fixed_dictionaries(
        {},
        optional={
            "resourceARN": arn,
            "tags": _valid_tags(),
            "tagKeys": st.lists(plausible_strings, max_size=30) | values,
        },
    ).map(lambda b: json.dumps(b).encode())
    return structured | bodies


@SETTINGS
@given(
    route=st.sampled_from(["/tagResource", "/untagResource", "/listTagsForResource"]),
    body=_tag_bodies(),
)
def test_tag_routes_with_random_bodies(
    raw: RawClient, real: dict[str, str], route: str, body: bytes
):
    assert_well_formed(raw.request("POST", route, body=with_real_bytes(body, real)))
