"""Reading events back: GET /events (paging, job filter, accounts), the SSE stream, and the CLI.

One server without event targets (events are recorded whatever the rules), signed requests as
any SigV4 client would send them, and `outcrop events ...` run as a real subprocess.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.acceptance.conftest import write_catalog
from tests.acceptance.raw import Account, RawClient, create_account, error_of
from tests.jobs import create_job, wait_for_terminal, write_jsonl
from tests.server import REGION, OutcropServer

HAPPY_PATH = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
SLOW_MODEL = "acme.slow-echo-v1"


def records(n: int) -> list[dict[str, Any]]:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return [{"recordId": f"R{i:03d}", "modelInput": body} for i in range(n)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcropServer]:
    root = tmp_path_factory.mktemp("events-api")
    catalog = write_catalog(root / "catalog.toml", {SLOW_MODEL: 50})
    # One record at a time, so the slow model's jobs last long enough to follow live.
    env = {"OUTCROP_CATALOG": str(catalog), "OUTCROP_RECORD_CONCURRENCY": "1"}
    srv = OutcropServer(data_dir=root / "data", env=env).start()
    (srv.data_dir / "buckets" / "api-out").mkdir(parents=True)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def bedrock(server: OutcropServer) -> Any:
    return server.client()


@pytest.fixture(scope="module")
def raw(server: OutcropServer) -> Iterator[RawClient]:
    client = RawClient.for_server(server)
    yield client
    client.close()


def start_job(server: OutcropServer, bedrock: Any, name: str, n: int = 3, model: str = "") -> str:
    write_jsonl(server.data_dir / "buckets" / "api-in" / f"{name}.jsonl", records(n))
    model_id = model or "outcrop.echo-v1"
    return create_job(bedrock, name, model_id, f"s3://api-in/{name}.jsonl", "s3://api-out/")


@pytest.fixture(scope="module")
def two_jobs(server: OutcropServer, bedrock: Any) -> list[str]:
    arns = [start_job(server, bedrock, f"paged-{i}") for i in range(2)]
    for arn in arns:
        assert wait_for_terminal(bedrock, arn)["status"] == "Completed"
    return arns


def get_events(raw: RawClient, **query: str) -> dict[str, Any]:
    response = raw.request("GET", "/events", query=query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def all_events(raw: RawClient, **query: str) -> list[dict[str, Any]]:
    return list(get_events(raw, maxResults="1000", **query)["events"])


# -- GET /events --------------------------------------------------------------------------------


def test_paging_visits_every_event_once_in_sequence_order(
    raw: RawClient, two_jobs: list[str]
) -> None:
    everything = all_events(raw)
    pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    while True:
        query = {"maxResults": "3", **({"nextToken": token} if token else {})}
        body = get_events(raw, **query)
        pages.append(body["events"])
        token = body.get("nextToken")
        if token is None:
            break
    assert all(len(page) == 3 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 3
    paged = [e for page in pages for e in page]
    assert paged == everything
    sequences = [e["sequence"] for e in paged]
    assert sequences == sorted(set(sequences))
    for arn in two_jobs:
        mine = [e["event"]["detail"]["status"] for e in paged if e["event"]["resources"] == [arn]]
        assert mine == HAPPY_PATH
    # No rules are configured: events are kept all the same, with no deliveries.
    assert all(e["deliveries"] == [] for e in paged)


def test_job_filter_by_arn_or_id(raw: RawClient, two_jobs: list[str]) -> None:
    arn = two_jobs[0]
    by_arn = all_events(raw, job=arn)
    by_id = all_events(raw, job=arn.rsplit("/", 1)[1])
    assert by_arn == by_id
    assert [e["event"]["detail"]["status"] for e in by_arn] == HAPPY_PATH
    assert {e["event"]["detail"]["batchJobArn"] for e in by_arn} == {arn}
    # Paging within one job.
    first = get_events(raw, job=arn, maxResults="2")
    assert [e["sequence"] for e in first["events"]] == [e["sequence"] for e in by_arn[:2]]
    rest = get_events(raw, job=arn, maxResults="10", nextToken=first["nextToken"])
    assert rest["events"] == by_arn[2:] and "nextToken" not in rest


@pytest.mark.parametrize(
    "query",
    [{"maxResults": "0"}, {"maxResults": "1001"}, {"nextToken": "x"}, {"job": "not-a-job"}],
)
def test_bad_parameters_are_validation_errors(raw: RawClient, query: dict[str, str]) -> None:
    status, code, _ = error_of(raw.request("GET", "/events", query=query))
    assert (status, code) == (400, "ValidationException")


def test_event_routes_need_a_signature(raw: RawClient) -> None:
    for path in ("/events", "/event-deliveries", "/events/stream"):
        assert raw.request("GET", path, sign=False).status_code == 403


@pytest.fixture(scope="module")
def other(server: OutcropServer) -> Iterator[tuple[Account, RawClient]]:
    account = create_account(server, "events-other")
    client = RawClient(server.endpoint, account.access_key_id, account.secret_access_key)
    yield account, client
    client.close()


def test_other_accounts_events_are_invisible(
    server: OutcropServer,
    raw: RawClient,
    two_jobs: list[str],
    other: tuple[Account, RawClient],
) -> None:
    account, other_raw = other
    assert all(e["event"]["account"] != account.account_id for e in all_events(raw))
    before = all_events(other_raw)
    assert all(e["event"]["account"] == account.account_id for e in before)

    # Another account's job ARN is refused; its bare id finds nothing.
    status, code, _ = error_of(other_raw.request("GET", "/events", query={"job": two_jobs[0]}))
    assert (status, code) == (403, "AccessDeniedException")
    assert all_events(other_raw, job=two_jobs[0].rsplit("/", 1)[1]) == []
    deliveries = other_raw.request("GET", "/event-deliveries").json()["deliveries"]
    assert deliveries == []

    # The other account's own job: it sees the event, the first account does not.
    other_bedrock = server.client(
        aws_access_key_id=account.access_key_id,
        aws_secret_access_key=account.secret_access_key,
    )
    arn = start_job(server, other_bedrock, "other-account-job")
    assert f":{account.account_id}:" in arn
    mine = all_events(other_raw, job=arn)
    assert mine and mine[0]["event"]["detail"]["status"] == "Submitted"
    assert mine[0]["event"]["account"] == account.account_id
    assert all(e["event"]["resources"] != [arn] for e in all_events(raw))
    status, code, _ = error_of(raw.request("GET", "/events", query={"job": arn}))
    assert (status, code) == (403, "AccessDeniedException")
    wait_for_terminal(other_bedrock, arn)

    # The stream from the beginning: the backlog, then a keep-alive once it is drained.
    streamed = []
    frames = sse_frames(server, {}, last_event_id=0, account=account)
    for frame in frames:
        if frame.get("comment") == "keep-alive":
            break
        if "data" in frame:
            streamed.append(frame["data"])
    frames.close()
    assert streamed and {e["account"] for e in streamed} == {account.account_id}
    assert [e["id"] for e in streamed] == [e["event"]["id"] for e in all_events(other_raw)]


# -- GET /events/stream -------------------------------------------------------------------------


def signed_headers(
    server: OutcropServer, url: str, extra: dict[str, str], account: Account | None = None
) -> dict[str, str]:
    if account is None:
        creds = server.credentials()
        credentials = Credentials(creds["access_key_id"], creds["secret_access_key"])
    else:
        credentials = Credentials(account.access_key_id, account.secret_access_key)
    request = AWSRequest(method="GET", url=url, headers=extra)
    SigV4Auth(credentials, "bedrock", REGION).add_auth(request)
    return dict(request.headers.items())


def sse_frames(
    server: OutcropServer,
    params: dict[str, str],
    last_event_id: int | None = None,
    account: Account | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each SSE frame as {"id", "event", "data"} (comments as {"comment"}), forever."""
    url = str(httpx.URL(server.endpoint + "/events/stream", params=params))
    extra = {"last-event-id": str(last_event_id)} if last_event_id is not None else {}
    headers = signed_headers(server, url, extra, account)
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                yield {"comment": line[1:].strip()}
            elif line:
                name, _, value = line.partition(":")
                frame[name] = value.removeprefix(" ")
            elif frame:
                yield {
                    "id": int(frame["id"]),
                    "event": frame["event"],
                    "data": json.loads(frame["data"]),
                }
                frame = {}


def read_until_terminal(frames: Iterator[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    for frame in frames:  # keep-alive comments every 0.25 s bring us back to the deadline check
        if time.monotonic() > deadline:
            raise AssertionError(f"no terminal event within {timeout} s; got {got}")
        if "data" in frame:
            got.append(frame)
            if frame["data"]["detail"]["status"] in ("Completed", "Failed"):
                return got
    raise AssertionError("the stream ended")


def test_stream_delivers_events_live_and_resumes_from_last_event_id(
    server: OutcropServer, bedrock: Any, raw: RawClient, two_jobs: list[str]
) -> None:
    latest = all_events(raw)[-1]["sequence"]
    frames = sse_frames(server, {}, last_event_id=latest)
    assert next(frames) == {"comment": "outcrop event stream"}  # connected before the job exists
    arn = start_job(server, bedrock, "streamed", n=10, model=SLOW_MODEL)
    live = read_until_terminal(frames, timeout=60)
    frames.close()

    assert [f["data"]["detail"]["status"] for f in live] == HAPPY_PATH
    assert all(f["event"] == "job-state-change" for f in live)
    assert all(f["data"]["resources"] == [arn] for f in live)
    stored = all_events(raw, job=arn)
    assert [f["id"] for f in live] == [e["sequence"] for e in stored]
    assert [f["data"] for f in live] == [e["event"] for e in stored]

    # Reconnecting with Last-Event-ID (as an EventSource does) resumes right after it.
    resumed = sse_frames(server, {"job": arn}, last_event_id=live[1]["id"])
    rest = read_until_terminal(resumed, timeout=30)
    resumed.close()
    assert [f["id"] for f in rest] == [f["id"] for f in live[2:]]


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_tail_prints_the_jobs_events(server: OutcropServer, bedrock: Any) -> None:
    arn = start_job(server, bedrock, "tailed", n=20, model=SLOW_MODEL)
    cmd = [sys.executable, "-m", "outcrop", "events", "tail", "--output", "json", "--job", arn]
    cmd += ["--endpoint-url", server.endpoint]
    lines: queue.Queue[str | None] = queue.Queue()
    with subprocess.Popen(
        cmd, env=server.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as tail:
        assert tail.stdout is not None

        def pump(stream: Any) -> None:
            for line in stream:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, args=(tail.stdout,), daemon=True)
        reader.start()
        printed: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        try:
            while not printed or printed[-1]["detail"]["status"] != "Completed":
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                assert line is not None, f"tail exited: {tail.stderr.read() if tail.stderr else ''}"
                printed.append(json.loads(line))
        finally:
            tail.terminate()
            tail.wait(10)
            reader.join(10)
    assert [e["detail"]["status"] for e in printed] == HAPPY_PATH
    assert {e["detail"]["batchJobArn"] for e in printed} == {arn}
    assert [e["id"] for e in printed] == [e["event"]["id"] for e in all_events_for(server, arn)]


def all_events_for(server: OutcropServer, arn: str) -> list[dict[str, Any]]:
    client = RawClient.for_server(server)
    try:
        return all_events(client, job=arn)
    finally:
        client.close()


def test_cli_rules_shows_rules_with_secrets_masked(tmp_path: Path) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f"""
[[rules]]
name = "failures"
pattern = {{ source = ["aws.bedrock"], detail = {{ status = ["Failed"] }} }}

[[rules.targets]]
type = "webhook"
url = "https://hooks.example.com/outcrop"
secret = "{secret}"

[[rules.targets]]
type = "log"
path = "failures.jsonl"

[[rules]]
name = "to-bus"

[[rules.targets]]
type = "eventbridge"
event_bus_name = "default"
region = "eu-west-1"
source = "outcrop.bedrock"
access_key_id_env = "BUS_KEY_ID"
secret_access_key_env = "BUS_SECRET"
"""
    )
    shortcut_secret = "whsec_c2hvcnRjdXQtc2VjcmV0LXZhbHVlLWhlcmU="
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OUTCROP_")},
        "OUTCROP_EVENT_RULES": str(rules),
        "OUTCROP_EVENT_WEBHOOK_URL": "https://hooks.example.com/all",
        "OUTCROP_EVENT_WEBHOOK_SECRET": shortcut_secret,
    }
    done = subprocess.run(
        [sys.executable, "-m", "outcrop", "events", "rules", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout and shortcut_secret not in done.stdout
    shown = json.loads(done.stdout)
    assert [r["name"] for r in shown] == ["failures", "to-bus", "outcrop-webhook"]
    failures, bus, shortcut = shown
    assert failures["pattern"] == {"source": ["aws.bedrock"], "detail": {"status": ["Failed"]}}
    assert failures["targets"] == [
        {"type": "webhook", "url": "https://hooks.example.com/outcrop", "secret": "****"},
        {"type": "log", "path": "failures.jsonl"},
    ]
    # No pattern: every Outcrop event.
    assert bus["pattern"] == {
        "source": ["aws.bedrock"],
        "detail-type": ["Batch Inference Job State Change"],
    }
    assert bus["targets"][0]["type"] == "eventbridge"
    assert bus["targets"][0]["source"] == "outcrop.bedrock"
    assert bus["targets"][0]["access_key_id_env"] == "BUS_KEY_ID"
    assert shortcut["targets"] == [
        {"type": "webhook", "url": "https://hooks.example.com/all", "secret": "****"}
    ]


def test_cli_rules_rejects_a_bad_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nname = "x"\npattern = { source = "aws.bedrock" }\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTCROP_")}
    done = subprocess.run(
        [sys.executable, "-m", "outcrop", "events", "rules"],
        env={**env, "OUTCROP_EVENT_RULES": str(rules)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "rule 'x'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["events", "rules"], ["serve", "--port", "0"]])
def test_private_webhook_refused_when_private_targets_are_not_allowed(
    tmp_path: Path, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTCROP_")}
    env |= {
        "OUTCROP_ALLOW_PRIVATE_TARGETS": "false",
        "OUTCROP_EVENT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "OUTCROP_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "outcrop", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "private or loopback" in done.stderr and "Traceback" not in done.stderr
