"""Signed raw HTTP requests (botocore's SigV4 signer + httpx), for what boto3 refuses to send."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.server import REGION, OutcropServer


class _FixedTimeSigV4(SigV4Auth):
    """SigV4Auth signing as of a chosen moment (botocore always signs "now")."""

    def __init__(self, credentials: Credentials, service: str, region: str, at: datetime) -> None:
        super().__init__(credentials, service, region)
        self._at = at

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._at.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


def encode_query(params: dict[str, str] | list[tuple[str, str]]) -> str:
    """Percent-encode a query string the way boto3 does (only unreserved characters stay)."""
    items = params.items() if isinstance(params, dict) else params
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in items)


@dataclass
class RawClient:
    """Send exactly the bytes a test chooses, signed (or not) like an AWS SDK would."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = REGION
    service: str = "bedrock"

    @classmethod
    def for_server(cls, server: OutcropServer) -> RawClient:
        creds = server.credentials()
        return cls(server.endpoint, creds["access_key_id"], creds["secret_access_key"])

    def __post_init__(self) -> None:
        self._http = httpx.Client(timeout=30)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: str | dict[str, str] | list[tuple[str, str]] = "",
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        signed_at: datetime | None = None,
        secret_access_key: str | None = None,
        access_key_id: str | None = None,
    ) -> httpx.Response:
        """`path` must already be percent-encoded; `query` as a str is sent verbatim."""
        raw_query = query if isinstance(query, str) else encode_query(query)
        data = orjson.dumps(body) if isinstance(body, dict) else (body or b"")
        target = path + (f"?{raw_query}" if raw_query else "")
        all_headers = {"Content-Type": "application/json"} if data else {}
        all_headers.update(headers or {})
        if sign:
            aws = AWSRequest(method=method, url=self.endpoint + target, data=data)
            for name, value in all_headers.items():
                aws.headers[name] = value
            creds = Credentials(
                access_key_id or self.access_key_id, secret_access_key or self.secret_access_key
            )
            signer = _FixedTimeSigV4(
                creds, self.service, self.region, signed_at or datetime.now(UTC)
            )
            signer.add_auth(aws)
            all_headers = dict(aws.headers.items())
        url = httpx.URL(self.endpoint).copy_with(raw_path=target.encode("ascii"))
        return self._http.request(method, url, content=data, headers=all_headers)

    # -- the seven routes -------------------------------------------------------------------

    def create(self, body: dict[str, Any] | bytes) -> httpx.Response:
        return self.request("POST", "/model-invocation-job", body=body)

    def get(self, identifier: str) -> httpx.Response:
        return self.request("GET", "/model-invocation-job/" + quote(identifier, safe=""))

    def stop(self, identifier: str) -> httpx.Response:
        return self.request("POST", "/model-invocation-job/" + quote(identifier, safe="") + "/stop")

    def list(self, query: str | dict[str, str] | list[tuple[str, str]] = "") -> httpx.Response:
        return self.request("GET", "/model-invocation-jobs", query=query)

    def tag(self, body: dict[str, Any] | bytes) -> httpx.Response:
        return self.request("POST", "/tagResource", body=body)

    def untag(self, body: dict[str, Any] | bytes) -> httpx.Response:
        return self.request("POST", "/untagResource", body=body)

    def list_tags(self, body: dict[str, Any] | bytes) -> httpx.Response:
        return self.request("POST", "/listTagsForResource", body=body)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    """(status, x-amzn-ErrorType, message) of an error response; asserts the AWS error shape."""
    code = response.headers.get("x-amzn-ErrorType", "")
    body = response.json()
    assert isinstance(body, dict), body
    message = body.get("message")
    assert isinstance(message, str) and message, body
    return response.status_code, code, message


ROLE_ARN = "arn:aws:iam::123456789012:role/BatchRole"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def create_body(**overrides: Any) -> dict[str, Any]:
    """A valid CreateModelInvocationJob body (wire names); keyword arguments replace members."""
    body: dict[str, Any] = {
        "jobName": "job-1",
        "roleArn": ROLE_ARN,
        "modelId": MODEL_ID,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://input-bucket/in/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://output-bucket/out/"}},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@dataclass(frozen=True)
class Account:
    account_id: str
    access_key_id: str
    secret_access_key: str


def create_account(server: OutcropServer, name: str) -> Account:
    """Run `outcrop accounts create NAME --data-dir D` (the real CLI) and parse what it prints."""
    import re
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "outcrop",
            "accounts",
            "create",
            name,
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    fields = dict(
        re.findall(r"^(account id|access key id|secret access key):\s+(\S+)\s*$", done.stdout, re.M)
    )
    return Account(fields["account id"], fields["access key id"], fields["secret access key"])
