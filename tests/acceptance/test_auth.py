"""SigV4 authentication: each failure gives its typed 403, and a good signature is accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.acceptance.raw import RawClient, create_body, error_of
from tests.server import REGION, OutcropServer

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/model-invocation-job", create_body()),
    ("GET", "/model-invocation-job/abcdefghijkl", None),
    ("POST", "/model-invocation-job/abcdefghijkl/stop", None),
    ("GET", "/model-invocation-jobs", None),
    ("POST", "/tagResource", {"resourceARN": "x" * 20, "tags": []}),
    ("POST", "/untagResource", {"resourceARN": "x" * 20, "tagKeys": []}),
    ("POST", "/listTagsForResource", {"resourceARN": "x" * 20}),
]


def assert_auth_error(response: Any, code: str) -> None:
    status, got, _message = error_of(response)
    assert (status, got) == (403, code), response.text
    assert response.headers.get("x-amzn-RequestId")


def assert_client_auth_error(exc: ClientError, code: str) -> None:
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert exc.response["Error"]["Code"] == code
    assert exc.response["Error"]["Message"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_no_authorization_header(
    raw: RawClient, method: str, path: str, body: dict[str, Any] | None
):
    response = raw.request(method, path, body=body, sign=False)
    assert_auth_error(response, "MissingAuthenticationTokenException")


def test_unsigned_boto3_client(quiet_server: OutcropServer):
    client = boto3.client(
        "bedrock",
        endpoint_url=quiet_server.endpoint,
        region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as caught:
        client.list_model_invocation_jobs()
    assert_client_auth_error(caught.value, "MissingAuthenticationTokenException")


def test_unknown_access_key(quiet_server: OutcropServer):
    client = quiet_server.client(
        aws_access_key_id="AKOCNOSUCHKEY0000000", aws_secret_access_key="whatever"
    )
    with pytest.raises(ClientError) as caught:
        client.list_model_invocation_jobs()
    assert_client_auth_error(caught.value, "UnrecognizedClientException")


def test_wrong_secret(quiet_server: OutcropServer):
    client = quiet_server.client(aws_secret_access_key="not-the-secret")
    for call in (
        lambda: client.list_model_invocation_jobs(),
        lambda: client.create_model_invocation_job(**create_body()),
        lambda: client.get_model_invocation_job(jobIdentifier="abcdefghijkl"),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert_client_auth_error(caught.value, "InvalidSignatureException")


def test_a_correct_signature_is_accepted(raw: RawClient):
    assert raw.list({"maxResults": "1"}).status_code == 200
    assert raw.create(create_body(jobName="signed-raw")).status_code == 200


@pytest.mark.parametrize("minutes", [-20, 20, -60 * 24])
def test_signature_outside_the_clock_skew_is_refused(raw: RawClient, minutes: int):
    signed_at = datetime.now(UTC) + timedelta(minutes=minutes)
    response = raw.request("GET", "/model-invocation-jobs", signed_at=signed_at)
    assert_auth_error(response, "InvalidSignatureException")
    assert "expired" in response.json()["message"].lower()


@pytest.mark.parametrize("minutes", [-14, 14])
def test_signature_inside_the_clock_skew_is_accepted(raw: RawClient, minutes: int):
    signed_at = datetime.now(UTC) + timedelta(minutes=minutes)
    assert raw.request("GET", "/model-invocation-jobs", signed_at=signed_at).status_code == 200


def _signed_headers(raw: RawClient, method: str, path: str, body: bytes) -> dict[str, str]:
    """The headers boto3's signer would send for this request."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=raw.endpoint + path, data=body)
    if body:
        request.headers["Content-Type"] = "application/json"
    SigV4Auth(Credentials(raw.access_key_id, raw.secret_access_key), "bedrock", REGION).add_auth(
        request
    )
    return dict(request.headers.items())


def test_tampering_after_signing_is_refused(raw: RawClient):
    import orjson

    body = orjson.dumps(create_body(jobName="tamper-a"))
    headers = _signed_headers(raw, "POST", "/model-invocation-job", body)
    tampered_body = body.replace(b"tamper-a", b"tamper-b")
    response = raw.request(
        "POST", "/model-invocation-job", body=tampered_body, headers=headers, sign=False
    )
    assert_auth_error(response, "InvalidSignatureException")

    headers = _signed_headers(raw, "GET", "/model-invocation-jobs?maxResults=1", b"")
    response = raw.request(
        "GET", "/model-invocation-jobs", query="maxResults=2", headers=headers, sign=False
    )
    assert_auth_error(response, "InvalidSignatureException")

    headers = _signed_headers(raw, "GET", "/model-invocation-job/abcdefghijkl", b"")
    response = raw.request("GET", "/model-invocation-job/abcdefghijkm", headers=headers, sign=False)
    assert_auth_error(response, "InvalidSignatureException")


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("AWS4-HMAC-SHA256 garbage", "InvalidSignatureException"),
        ("AWS key:signature", "InvalidSignatureException"),
        (
            "AWS4-HMAC-SHA256 Credential=KEY/20240101/us-east-1/bedrock, "
            "SignedHeaders=host, Signature=abcd",
            "InvalidSignatureException",
        ),
        ("Bearer some-bedrock-api-key", "UnrecognizedClientException"),
    ],
)
def test_malformed_authorization_header(raw: RawClient, authorization: str, code: str):
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = raw.request(
        "GET",
        "/model-invocation-jobs",
        headers={"Authorization": authorization, "X-Amz-Date": now},
        sign=False,
    )
    assert_auth_error(response, code)


def test_missing_or_mismatched_date_is_refused(raw: RawClient):
    headers = _signed_headers(raw, "GET", "/model-invocation-jobs", b"")
    without_date = {k: v for k, v in headers.items() if k.lower() != "x-amz-date"}
    response = raw.request("GET", "/model-invocation-jobs", headers=without_date, sign=False)
    assert_auth_error(response, "InvalidSignatureException")
    wrong_scope = dict(headers)
    wrong_scope["Authorization"] = headers["Authorization"].replace(
        headers["X-Amz-Date"][:8], "20000101"
    )
    response = raw.request("GET", "/model-invocation-jobs", headers=wrong_scope, sign=False)
    assert_auth_error(response, "InvalidSignatureException")


def test_credential_scope_region_is_not_checked(raw: RawClient):
    # Decision (COMPATIBILITY.md): the signature is verified with the scope's own region.
    other_region = RawClient(raw.endpoint, raw.access_key_id, raw.secret_access_key, "eu-west-1")
    try:
        assert other_region.list().status_code == 200
    finally:
        other_region.close()


def test_authentication_comes_before_validation(raw: RawClient):
    response = raw.request("POST", "/model-invocation-job", body=b"{not json", sign=False)
    assert_auth_error(response, "MissingAuthenticationTokenException")
    response = raw.request(
        "GET", "/model-invocation-jobs", query="maxResults=5000", secret_access_key="wrong"
    )
    assert_auth_error(response, "InvalidSignatureException")


def test_healthz_needs_no_signature(raw: RawClient):
    assert raw.request("GET", "/healthz", sign=False).status_code == 200
