"""Fuzz the seven Bedrock routes from the server's own /openapi.json with Schemathesis.

Every generated request is signed with SigV4 (botocore's signer), so the cases reach the
operations rather than stopping at authentication. Checks: no 5xx, and every answer is one the
document describes (status code, content type, headers, body schema).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from outcrop.api.openapi import OPERATIONS
from outcrop.api.patterns import ecma_pattern
from outcrop.api.shapes import safe_pattern
from tests.server import REGION, OutcropServer, running_server

# OUTCROP_TEST_FUZZ_EXAMPLES=500 OUTCROP_TEST_FUZZ_RANDOM=1 makes a longer, fresh campaign.
MAX_EXAMPLES = int(os.environ.get("OUTCROP_TEST_FUZZ_EXAMPLES", "50"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class SigV4RequestsAuth(requests.auth.AuthBase):
    """Sign a prepared `requests` request exactly as sent (final URL, body) with SigV4."""

    def __init__(self, access_key_id: str, secret_access_key: str) -> None:
        self.credentials = Credentials(access_key_id, secret_access_key)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert isinstance(body, bytes), f"unsigned body type {type(body)}"
        assert request.url is not None and request.method is not None
        aws = AWSRequest(method=request.method, url=request.url, data=body)
        if "Content-Type" in request.headers:
            aws.headers["Content-Type"] = request.headers["Content-Type"]
        SigV4Auth(self.credentials, "bedrock", REGION).add_auth(aws)
        for name in ("Authorization", "X-Amz-Date"):
            request.headers[name] = aws.headers[name]
        return request


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # The same cases every run unless asked otherwise, so a failure here reproduces.
        derandomize=not os.environ.get("OUTCROP_TEST_FUZZ_RANDOM"),
        # No shrinking: against a live server it is slow, and each report carries a curl line.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcropServer]:
    # No engine (jobs stay Submitted, so Stop has something to act on) and no rate limit:
    # hundreds of requests a second are the point here, not a 429 for each.
    data = tmp_path_factory.mktemp("outcrop-fuzz") / "data"
    with running_server(data, OUTCROP_ENGINE="false", OUTCROP_RATE_LIMIT_RPS="0") as srv:
        yield srv


@pytest.fixture(scope="module")
def fuzz_auth(fuzz_server: OutcropServer) -> SigV4RequestsAuth:
    creds = fuzz_server.credentials()
    return SigV4RequestsAuth(creds["access_key_id"], creds["secret_access_key"])


@pytest.fixture(scope="module")
def fuzz_jobs(fuzz_server: OutcropServer) -> list[str]:
    """Real jobs: the targets of the existing-job cases, and of the shape checks."""
    bedrock = fuzz_server.client()
    return [
        bedrock.create_model_invocation_job(
            jobName=f"fuzz-{i}",
            roleArn="arn:aws:iam::123456789012:role/R",
            modelId="outcrop.echo-v1",
            inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://in-bucket/in/"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://out-bucket/out/"}},
        )["jobArn"]
        for i in range(2)
    ]


@pytest.fixture(scope="module")
def bedrock_schema(fuzz_server: OutcropServer, fuzz_jobs: list[str]) -> Any:
    """The document as the running server serves it."""
    return schemathesis.openapi.from_url(f"{fuzz_server.endpoint}/openapi.json")


# Schemathesis' own pytest integration for a schema from a fixture (`from_fixture`) does not run
# under pytest 9 (it sets `Node._nodeid`), so each operation is a parametrized Hypothesis test
# over the operation's strategy instead. Negative cases (values outside the document) are fewer:
# the server must answer them with a documented 4xx as well.
ROUTES = [
    ("POST", "/model-invocation-job"),
    ("GET", "/model-invocation-job/{jobIdentifier}"),
    ("GET", "/model-invocation-jobs"),
    ("POST", "/model-invocation-job/{jobIdentifier}/stop"),
    ("POST", "/tagResource"),
    ("POST", "/untagResource"),
    ("POST", "/listTagsForResource"),
]
MODES = [
    (schemathesis.GenerationMode.POSITIVE, MAX_EXAMPLES),
    (schemathesis.GenerationMode.NEGATIVE, MAX_EXAMPLES // 2),
]


@pytest.mark.parametrize(("mode", "examples"), MODES, ids=lambda m: getattr(m, "value", m))
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_generated_requests_get_documented_answers(
    bedrock_schema: Any,
    fuzz_auth: SigV4RequestsAuth,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
    examples: int,
) -> None:
    operation = bedrock_schema[path][method]

    @fuzz_settings(examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(auth=fuzz_auth, checks=CHECKS, timeout=10)

    run()


def _on_existing_job(operation: Any, mode: Any, identifier: str) -> Any:
    """Cases of `operation` aimed at an existing job: its id in the path, or its ARN in the body."""
    if "{jobIdentifier}" in operation.path:
        return operation.as_strategy(mode, path_parameters={"jobIdentifier": identifier})

    def aim(case: Any) -> Any:
        if isinstance(case.body, dict):
            case.body["resourceARN"] = identifier
        return case

    return operation.as_strategy(mode).map(aim)


JOB_ROUTES = [r for r in ROUTES if r[1] not in ("/model-invocation-job", "/model-invocation-jobs")]


@pytest.mark.parametrize(("method", "path"), JOB_ROUTES, ids=[f"{m} {p}" for m, p in JOB_ROUTES])
def test_generated_requests_on_existing_jobs_get_documented_answers(
    bedrock_schema: Any, fuzz_auth: SigV4RequestsAuth, fuzz_jobs: list[str], method: str, path: str
) -> None:
    """Random ids rarely exist: these cases reach the operations' found-a-job paths (tags, stop)."""
    operation = bedrock_schema[path][method]
    arn = fuzz_jobs[-1]
    identifiers = [arn] if "{jobIdentifier}" not in path else [arn, arn.rsplit("/", 1)[1]]
    strategy = st.one_of(
        [_on_existing_job(operation, schemathesis.GenerationMode.POSITIVE, i) for i in identifiers]
    )

    @fuzz_settings(MAX_EXAMPLES // 2)
    @given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(auth=fuzz_auth, checks=CHECKS, timeout=10)

    run()


# -- the document itself ------------------------------------------------------------------


def test_openapi_json_is_public_and_covers_the_seven_operations(fuzz_server: OutcropServer) -> None:
    response = httpx.get(f"{fuzz_server.endpoint}/openapi.json")  # unsigned on purpose
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.0.")
    operations = {
        (method.upper(), path): op["operationId"]
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    }
    assert operations == {
        ("POST", "/model-invocation-job"): "CreateModelInvocationJob",
        ("GET", "/model-invocation-job/{jobIdentifier}"): "GetModelInvocationJob",
        ("GET", "/model-invocation-jobs"): "ListModelInvocationJobs",
        ("POST", "/model-invocation-job/{jobIdentifier}/stop"): "StopModelInvocationJob",
        ("POST", "/tagResource"): "TagResource",
        ("POST", "/untagResource"): "UntagResource",
        ("POST", "/listTagsForResource"): "ListTagsForResource",
    }
    assert sorted(operations.values()) == sorted(OPERATIONS)
    assert document["security"] == [{"sigv4": []}]
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI 3.0 schema
    for path, methods in document["paths"].items():
        for op in methods.values():
            for status in ("400", "403", "413", "429", "431", "500"):
                error = op["responses"][status]
                assert error["headers"]["x-amzn-ErrorType"]["required"], (path, status)
                body = error["content"]["application/json"]["schema"]
                assert body["required"] == ["message"], (path, status)


def test_a_real_job_conforms_to_the_documented_shapes(
    bedrock_schema: Any, fuzz_server: OutcropServer, fuzz_jobs: list[str]
) -> None:
    """Get and List answers about real jobs validate (not only what the fuzzer reaches)."""
    from tests.acceptance.raw import RawClient

    get = bedrock_schema["/model-invocation-job/{jobIdentifier}"]["GET"]
    list_jobs = bedrock_schema["/model-invocation-jobs"]["GET"]
    raw = RawClient.for_server(fuzz_server)
    try:
        by_arn = raw.get(fuzz_jobs[0])
        get.validate_response(by_arn)
        assert by_arn.json()["status"] == "Submitted"
        by_id = raw.get(fuzz_jobs[0].rsplit("/", 1)[1])
        assert by_id.json() == by_arn.json()
        page = raw.list({"maxResults": "1"})
        list_jobs.validate_response(page)
        assert len(page.json()["invocationJobSummaries"]) == 1 and "nextToken" in page.json()
    finally:
        raw.close()


def test_a_newline_in_a_job_identifier_is_a_validation_error(fuzz_server: OutcropServer) -> None:
    """Found by this fuzzer: %0A in the path label made the route unmatched (404
    UnknownOperationException) instead of the operation's ValidationException."""
    from tests.acceptance.raw import RawClient, error_of

    raw = RawClient.for_server(fuzz_server)
    try:
        for response in (raw.get("abcdefghij12\n"), raw.stop("abc\ndefghij12")):
            assert error_of(response)[:2] == (400, "ValidationException"), response.text
    finally:
        raw.close()


# -- pattern translation --------------------------------------------------------------------


def _model_patterns() -> list[tuple[str, str]]:
    import botocore.session

    from outcrop.api.shapes import input_shape

    model = botocore.session.get_session().get_service_model("bedrock")
    found: dict[str, str] = {}

    def walk(shape: Any) -> None:
        if shape.name in found:
            return
        if "pattern" in shape.metadata:
            found[shape.name] = shape.metadata["pattern"]
        for member in getattr(shape, "members", {}).values():
            walk(member)
        if hasattr(shape, "member"):
            walk(shape.member)

    for name in OPERATIONS:
        walk(input_shape(name))
        walk(model.operation_model(name).output_shape)
    return sorted(found.items())


@pytest.mark.parametrize(("shape", "pattern"), _model_patterns())
def test_translated_patterns_accept_exactly_what_the_server_accepts(
    shape: str, pattern: str
) -> None:
    """A translated pattern (searched, as JSON Schema does) agrees with the server's full match."""
    translated = ecma_pattern(safe_pattern(pattern))
    if translated is None:
        pytest.skip(f"{shape}: kept as x-aws-pattern")
    server = re.compile(safe_pattern(pattern), re.ASCII)  # what the server matches with
    document = re.compile(translated)

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        st.one_of(
            st.from_regex(server, fullmatch=True),
            st.from_regex(document),
            st.text(alphabet=st.characters(codec="ascii"), max_size=40),
        )
    )
    def agree(text: str) -> None:
        # Python's `$` also matches before a final newline; JSON Schema validators (ECMA) don't.
        if text.endswith("\n"):
            return
        assert bool(server.fullmatch(text)) == bool(document.search(text)), text

    agree()
