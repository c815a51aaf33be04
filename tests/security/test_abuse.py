"""Abuse limits against the real server: request rate, active jobs, body and header size, replay."""

from __future__ import annotations

import itertools
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.acceptance.raw import RawClient, create_account, create_body, error_of
from tests.security.conftest import Servers
from tests.server import REGION, OutcropServer

RATE, BURST = 5, 5


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    """Poll a separate process's state until `predicate()` is truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)  # polling interval, not a synchronisation


def assert_healthy(server: OutcropServer) -> None:
    assert httpx.get(f"{server.endpoint}/healthz", timeout=5).status_code == 200
    raw = RawClient.for_server(server)
    try:
        assert raw.list({"maxResults": "1"}).status_code in (200, 429)
    finally:
        raw.close()


@pytest.fixture(scope="module")
def plain(module_servers: Servers) -> OutcropServer:
    return module_servers.start("plain", OUTCROP_ENGINE="false")  # default limits


# -- per-account request rate ---------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(module_servers: Servers) -> OutcropServer:
    return module_servers.start(
        "limited",
        OUTCROP_ENGINE="false",
        OUTCROP_RATE_LIMIT_RPS=str(RATE),
        OUTCROP_RATE_LIMIT_BURST=str(BURST),
    )


def test_a_burst_is_throttled_per_account_and_recovers(limited: OutcropServer) -> None:
    other = create_account(limited, "rate-other")
    mine = RawClient.for_server(limited)
    theirs = RawClient(limited.endpoint, other.access_key_id, other.secret_access_key)
    try:
        started = time.monotonic()
        burst = [mine.list({"maxResults": "1"}) for _ in range(20)]
        elapsed = time.monotonic() - started
        ok = [r for r in burst if r.status_code == 200]
        throttled = [r for r in burst if r.status_code == 429]
        assert len(ok) + len(throttled) == 20, [r.status_code for r in burst]
        assert throttled, "20 requests at once against a burst of 5 were never throttled"
        # The bucket holds BURST tokens and refills at RATE a second while the burst runs.
        assert 1 <= len(ok) <= BURST + int(elapsed * RATE) + 1, (len(ok), elapsed)
        for response in throttled:
            status, code, message = error_of(response)
            assert (status, code) == (429, "ThrottlingException")
            assert "rate" in message.lower()
            assert response.headers.get("x-amzn-RequestId")

        # Another account has a bucket of its own: a full burst of it goes through at once.
        assert [theirs.list().status_code for _ in range(BURST)] == [200] * BURST

        # The throttled account recovers once tokens refill (1/RATE s for the next one).
        wait_until(
            lambda: mine.list({"maxResults": "1"}).status_code == 200, 10, "the bucket to refill"
        )
    finally:
        mine.close()
        theirs.close()


def test_bad_signatures_do_not_spend_the_accounts_tokens(limited: OutcropServer) -> None:
    """Throttling comes after authentication: knowing an access key id is not enough to
    starve its owner."""
    account = create_account(limited, "rate-victim")
    forger = RawClient(limited.endpoint, account.access_key_id, "not-the-secret")
    owner = RawClient(limited.endpoint, account.access_key_id, account.secret_access_key)
    try:
        forged = [forger.list() for _ in range(3 * BURST)]
        assert {r.status_code for r in forged} == {403}
        assert [owner.list().status_code for _ in range(BURST)] == [200] * BURST
    finally:
        forger.close()
        owner.close()


def test_boto3_raises_a_typed_throttling_exception(limited: OutcropServer) -> None:
    account = create_account(limited, "rate-boto3")
    # Retries off: botocore's `max_attempts` counts retries (so the max_attempts=1 of
    # tests/server.py still retries a 429 once); `total_max_attempts` counts attempts.
    bedrock = boto3.client(
        "bedrock",
        endpoint_url=limited.endpoint,
        region_name=REGION,
        aws_access_key_id=account.access_key_id,
        aws_secret_access_key=account.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(bedrock.exceptions.ThrottlingException) as caught:
        for _ in range(BURST + 20):
            bedrock.list_model_invocation_jobs(maxResults=1)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Code"] == "ThrottlingException"
    assert error["Error"]["Message"]


# -- active jobs per account ------------------------------------------------------------------


def test_active_job_quota_and_idempotent_retry(servers: Servers) -> None:
    server = servers.start("quota", OUTCROP_ENGINE="false", OUTCROP_MAX_ACTIVE_JOBS_PER_ACCOUNT="2")
    bedrock = server.client()
    first = bedrock.create_model_invocation_job(
        **create_body(jobName="quota-1"), clientRequestToken="quota-token-1"
    )["jobArn"]
    bedrock.create_model_invocation_job(**create_body(jobName="quota-2"))
    with pytest.raises(bedrock.exceptions.ServiceQuotaExceededException) as caught:
        bedrock.create_model_invocation_job(**create_body(jobName="quota-3"))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert caught.value.response["Error"]["Message"]

    # A retried create (same token) is the same job, not a new one: the quota does not apply.
    again = bedrock.create_model_invocation_job(
        **create_body(jobName="quota-1"), clientRequestToken="quota-token-1"
    )["jobArn"]
    assert again == first
    jobs = bedrock.list_model_invocation_jobs()["invocationJobSummaries"]
    assert sorted(j["jobName"] for j in jobs) == ["quota-1", "quota-2"]

    # The quota is per account.
    other = create_account(server, "quota-other")
    theirs = server.client(
        aws_access_key_id=other.access_key_id, aws_secret_access_key=other.secret_access_key
    )
    assert theirs.create_model_invocation_job(**create_body(jobName="theirs"))["jobArn"]


# -- regular expressions (ReDoS) --------------------------------------------------------------


def _input_patterns() -> dict[str, tuple[str, int]]:
    """Shape name -> (pattern, max length) of every string the seven operations validate."""
    from outcrop.api.openapi import OPERATIONS
    from outcrop.api.shapes import input_shape

    found: dict[str, tuple[str, int]] = {}

    def walk(shape: Any) -> None:
        if "pattern" in shape.metadata:
            found[shape.name] = (shape.metadata["pattern"], shape.metadata.get("max", 2048))
        for member in getattr(shape, "members", {}).values():
            walk(member)
        if hasattr(shape, "member"):
            walk(shape.member)

    for name in OPERATIONS:
        walk(input_shape(name))
    return found


@pytest.mark.parametrize("shape", sorted(_input_patterns()))
def test_no_validation_pattern_backtracks_on_hostile_input(shape: str) -> None:
    """A value built to make a backtracking matcher try every split (a long run of one
    character, then one that fails) is decided in milliseconds, for every pattern checked."""
    from outcrop.api.shapes import safe_pattern

    pattern, limit = _input_patterns()[shape]
    compiled = re.compile(safe_pattern(pattern), re.ASCII)
    prefixes = ("", "a", "a1", "arn:aws:bedrock:us-east-1:123456789012:", "s3://bucket/")
    # Runs grow step by step, so exponential time fails the assertion in under a second
    # instead of hanging the test at full length.
    runs = [n for n in (8, 12, 16, 20, 24, 32, 48, 64, 128) if n < limit] + [limit]
    for prefix, char, tail, run in itertools.product(prefixes, "-a.:/0_ +", "!_~", runs):
        value = (prefix + char * run)[: limit - 1] + tail
        started = time.perf_counter()
        compiled.fullmatch(value)
        took = time.perf_counter() - started
        assert took < 0.05, f"{shape}: {took:.3f}s for {value[:40]!r}..."


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet="aZ9-+._!", max_size=14))
def test_linear_equivalents_accept_what_the_model_accepts(value: str) -> None:
    """Within the length limits; short values, where the model's own pattern is still quick."""
    from outcrop.api.shapes import LINEAR_EQUIVALENTS

    for original, linear in LINEAR_EQUIVALENTS.items():
        assert bool(re.fullmatch(original, value, re.ASCII)) == bool(
            re.fullmatch(linear, value, re.ASCII)
        ), (original, value)


def test_a_hostile_job_name_is_refused_promptly(plain: OutcropServer) -> None:
    """Found by the fuzzer: jobName "a", sixty dashes, "_" held the server (GIL and all) for
    years in the model's own pattern. boto3 sends such names; the server must not stall."""
    hostile = "a" + "-" * 60 + "_"
    raw = RawClient.for_server(plain)  # a stalled server fails this on the 30 s timeout
    try:
        for response in (
            raw.create(create_body(jobName=hostile)),
            raw.list({"nameContains": hostile}),
        ):
            status, code, message = error_of(response)
            assert (status, code) == (400, "ValidationException")
            assert "jobName" in message or "nameContains" in message
    finally:
        raw.close()
    assert_healthy(plain)


# -- request size ---------------------------------------------------------------------------


def test_an_oversized_signed_body_is_refused_with_413(plain: OutcropServer) -> None:
    raw = RawClient.for_server(plain)
    try:
        body = orjson.dumps(create_body(jobName="big", padding="x" * (2 * 1024 * 1024)))
        response = raw.create(body)
        status, code, message = error_of(response)
        assert (status, code) == (413, "ValidationException")
        assert str(1024 * 1024) in message
    finally:
        raw.close()
    assert_healthy(plain)


def test_an_oversized_chunked_body_is_cut_off_before_authentication(plain: OutcropServer) -> None:
    """No Content-Length to refuse up front: the server counts while reading and stops at the
    limit, so an anonymous client cannot make it buffer more than OUTCROP_MAX_REQUEST_BYTES."""

    def chunks() -> Any:
        for _ in range(64):
            yield b"x" * 32768  # 2 MiB in all

    response = httpx.post(
        f"{plain.endpoint}/model-invocation-job",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert "content-length" not in response.request.headers
    assert (response.status_code, response.headers.get("x-amzn-ErrorType")) == (
        413,
        "ValidationException",
    )
    assert_healthy(plain)


def test_a_lying_content_length_is_refused_without_reading(plain: OutcropServer) -> None:
    with socket.create_connection(("127.0.0.1", plain.port), timeout=10) as sock:
        sock.sendall(
            b"POST /model-invocation-job HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n{}"
        )
        head = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert_healthy(plain)


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _send_head(server: OutcropServer, padding: int) -> tuple[bytes, float]:
    """Send a request head with a `padding`-byte header; read until the server closes.

    Returns what came back and how long the close took (a 10 s socket timeout bounds it).
    """
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /model-invocation-jobs HTTP/1.1\r\nHost: x\r\nX-Padding: "
            + b"a" * padding
            + b"\r\n\r\n"
        )
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # the server closed with part of our head unread
            pass
    return answer, time.monotonic() - started


@pytest.mark.parametrize(
    ("padding", "status"),
    [
        (64 * 1024, b"431"),  # whole in one read: refused by the server's own check
        (1024 * 1024, b"400"),  # still arriving past the limit: refused by the HTTP parser
    ],
)
def test_an_oversized_header_is_refused_and_the_connection_closed(
    plain: OutcropServer, padding: int, status: bytes
) -> None:
    answer, took = _send_head(plain, padding)
    assert answer.split(b" ", 2)[1] == status, answer[:300]
    if status == b"431":
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"x-amzn-errortype: validationexception" in head.lower()
        assert b"16384" in body
    assert took < 5, f"the connection stayed open {took:.1f}s after the refusal"
    assert_healthy(plain)


def test_a_header_under_the_limit_is_accepted(plain: OutcropServer) -> None:
    raw = RawClient.for_server(plain)
    try:
        padded = {"X-Padding": "a" * (12 * 1024)}  # signed too, like any header sent
        response = raw.request("GET", "/model-invocation-jobs", headers=padded)
        assert response.status_code == 200, response.text
    finally:
        raw.close()


# -- replayed signatures ------------------------------------------------------------------------


def _signed(
    server: OutcropServer, method: str, path: str, body: bytes, at: datetime
) -> dict[str, str]:
    """The exact headers an SDK would send for this request, signed as of `at`."""
    creds = server.credentials()
    request = AWSRequest(method=method, url=server.endpoint + path, data=body)
    if body:
        request.headers["Content-Type"] = "application/json"
    request.context["timestamp"] = at.strftime("%Y%m%dT%H%M%SZ")
    signer = SigV4Auth(
        Credentials(creds["access_key_id"], creds["secret_access_key"]), "bedrock", REGION
    )
    # add_auth would stamp "now"; sign with the chosen timestamp instead.
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    signer._inject_signature_to_request(
        request, signer.signature(signer.string_to_sign(request, canonical), request)
    )
    return dict(request.headers.items())


def test_a_captured_signature_from_20_minutes_ago_is_refused(plain: OutcropServer) -> None:
    captured = _signed(
        plain, "GET", "/model-invocation-jobs", b"", datetime.now(UTC) - timedelta(minutes=20)
    )
    response = httpx.get(f"{plain.endpoint}/model-invocation-jobs", headers=captured)
    status, code, message = error_of(response)
    assert (status, code) == (403, "InvalidSignatureException")
    assert "expired" in message.lower()


def test_a_replay_inside_the_window_is_accepted_and_idempotency_protects_creates(
    plain: OutcropServer,
) -> None:
    """SigV4 carries no nonce: the same signed bytes are valid again until X-Amz-Date leaves
    the clock-skew window (OUTCROP_CLOCK_SKEW_SECONDS, 15 minutes). What keeps a replayed
    create from making a second job is its clientRequestToken (boto3 always sends one)."""
    body = orjson.dumps(create_body(jobName="replayed", clientRequestToken="replay-token-1"))
    captured = _signed(plain, "POST", "/model-invocation-job", body, datetime.now(UTC))
    url = f"{plain.endpoint}/model-invocation-job"
    first = httpx.post(url, content=body, headers=captured)
    replay = httpx.post(url, content=body, headers=captured)
    assert first.status_code == replay.status_code == 200, (first.text, replay.text)
    assert first.json()["jobArn"] == replay.json()["jobArn"]
    listed = plain.client().list_model_invocation_jobs(nameContains="replayed")
    assert len(listed["invocationJobSummaries"]) == 1
