"""Webhook delivery end to end: a real `outcrop serve`, a real receiver verifying signatures.

Every job's events must reach the receiver in the job's transition order, each verified with the
`standardwebhooks` reference library; a receiver that is down (and a server killed with -9 in
between) still gets every event once it is back, in order and once per webhook-id; a receiver
that never recovers sees its deliveries dead-lettered when the (shortened) retry window ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outcrop.events.signing import new_secret
from tests.acceptance.raw import RawClient
from tests.acceptance.webhook_receiver import WebhookReceiver
from tests.jobs import create_job, wait_for, wait_for_terminal, write_jsonl
from tests.server import OutcropServer

ECHO_MODEL = "outcrop.echo-v1"
HAPPY_PATH = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
FAST_RETRIES = {"OUTCROP_EVENT_RETRY_BASE_S": "0.1", "OUTCROP_EVENT_RETRY_MAX_S": "0.5"}


def records(n: int) -> list[dict[str, Any]]:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return [{"recordId": f"R{i:03d}", "modelInput": body} for i in range(n)]


def run_job(server: OutcropServer, bedrock: Any, name: str, input_uri: str | None = None) -> str:
    """Create an echo job on 3 records in the server's local buckets; returns its ARN."""
    (server.data_dir / "buckets" / "events-out").mkdir(parents=True, exist_ok=True)
    if input_uri is None:
        write_jsonl(server.data_dir / "buckets" / "events-in" / f"{name}.jsonl", records(3))
        input_uri = f"s3://events-in/{name}.jsonl"
    return create_job(bedrock, name, ECHO_MODEL, input_uri, "s3://events-out/")


def events_of(raw: RawClient, job_arn: str) -> list[dict[str, Any]]:
    response = raw.request("GET", "/events", query={"job": job_arn})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def start_server(tmp: Path, **env: str) -> OutcropServer:
    return OutcropServer(data_dir=tmp / "data", env={**FAST_RETRIES, **env}).start()


# -- receiver up ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secret() -> str:
    return new_secret()


@pytest.fixture(scope="module")
def receiver(secret: str) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver, secret: str
) -> Iterator[OutcropServer]:
    srv = start_server(
        tmp_path_factory.mktemp("events-webhook"),
        OUTCROP_EVENT_WEBHOOK_URL=receiver.url,
        OUTCROP_EVENT_WEBHOOK_SECRET=secret,
    )
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


def test_receiver_sees_every_transition_in_order_with_valid_signatures(
    server: OutcropServer, bedrock: Any, receiver: WebhookReceiver
) -> None:
    arn = run_job(server, bedrock, "in-order")
    assert wait_for_terminal(bedrock, arn)["status"] == "Completed"
    wait_for(lambda: len(receiver.for_job(arn)) >= len(HAPPY_PATH), timeout=30)

    got = receiver.for_job(arn)
    assert [r.event["detail"]["status"] for r in got] == HAPPY_PATH
    assert receiver.rejected == []  # every request verified with the standardwebhooks library
    # webhook-id is the event id: one id per event, a receiver's natural deduplication key.
    assert [r.webhook_id for r in got] == [r.event["id"] for r in got]
    assert len({r.webhook_id for r in got}) == len(got)
    for r in got:
        assert r.event["source"] == "aws.bedrock"
        assert r.event["detail-type"] == "Batch Inference Job State Change"
        assert r.event["resources"] == [arn]
        assert r.event["detail"]["batchJobArn"] == arn
        assert r.event["detail"]["batchJobName"] == "in-order"
        assert r.event["detail"]["failureMessage"] == ""
    completed = got[-1].event["detail"]
    assert completed["totalRecordCount"] == 3
    assert completed["successRecordCount"] == 3
    assert completed["errorRecordCount"] == 0


def test_concurrent_jobs_each_arrive_in_their_own_order(
    server: OutcropServer, bedrock: Any, receiver: WebhookReceiver
) -> None:
    arns = [run_job(server, bedrock, f"parallel-{i}") for i in range(4)]
    for arn in arns:
        assert wait_for_terminal(bedrock, arn)["status"] == "Completed"
    for arn in arns:
        wait_for(lambda arn=arn: len(receiver.for_job(arn)) >= len(HAPPY_PATH), timeout=30)
        assert receiver.statuses(arn) == HAPPY_PATH


def test_failed_job_event_carries_the_failure_message(
    server: OutcropServer, bedrock: Any, receiver: WebhookReceiver, raw: RawClient
) -> None:
    arn = run_job(server, bedrock, "doomed", input_uri="s3://no-such-bucket-evt/in.jsonl")
    job = wait_for_terminal(bedrock, arn)
    assert job["status"] == "Failed"
    wait_for(lambda: receiver.statuses(arn)[-1:] == ["Failed"], timeout=30)

    statuses = receiver.statuses(arn)
    assert statuses[0] == "Submitted" and statuses.count("Failed") == 1
    failed = receiver.for_job(arn)[-1].event["detail"]
    assert failed["failureMessage"] == job["message"]
    assert "no-such-bucket-evt" in failed["failureMessage"]
    # The earlier events of the job carry no failure.
    assert all(r.event["detail"]["failureMessage"] == "" for r in receiver.for_job(arn)[:-1])
    # Exactly the job's transitions, in order (the outbox is written with each transition).
    assert statuses == [e["event"]["detail"]["status"] for e in events_of(raw, arn)]
    assert statuses[:2] == ["Submitted", "Validating"]
    # GET /events shows the same event, delivered.
    last = events_of(raw, arn)[-1]
    assert last["event"]["detail"]["failureMessage"] == job["message"]
    wait_for(lambda: events_of(raw, arn)[-1]["deliveries"][0]["status"] == "delivered", 10)


def test_deliveries_are_reported_delivered(
    server: OutcropServer, bedrock: Any, receiver: WebhookReceiver, raw: RawClient
) -> None:
    arn = run_job(server, bedrock, "reported")
    wait_for_terminal(bedrock, arn)
    wait_for(lambda: len(receiver.for_job(arn)) >= len(HAPPY_PATH), timeout=30)

    def all_delivered() -> list[dict[str, Any]] | None:
        found = events_of(raw, arn)
        done = all(e["deliveries"] and e["deliveries"][0]["status"] == "delivered" for e in found)
        return found if done else None

    found = wait_for(all_delivered, timeout=10)
    assert [e["event"]["detail"]["status"] for e in found] == HAPPY_PATH
    for e in found:
        (delivery,) = e["deliveries"]
        assert delivery["target"] == "outcrop-webhook/0"
        assert delivery["attempts"] == 1
        assert delivery["deliveredTime"].endswith("Z")
        assert "lastError" not in delivery


# -- receiver down, server killed, receiver up ------------------------------------------------


def test_receiver_down_then_up_across_a_kill_9_gets_everything_in_order_once(
    tmp_path: Path,
) -> None:
    secret = new_secret()
    receiver = WebhookReceiver(secret)  # port chosen, nothing listening yet
    # A short lease lets the restarted dispatcher take over deliveries the killed one held.
    env = {
        "OUTCROP_EVENT_WEBHOOK_URL": receiver.url,
        "OUTCROP_EVENT_WEBHOOK_SECRET": secret,
        "OUTCROP_LEASE_SECONDS": "2",
    }
    server = start_server(tmp_path, **env)
    try:
        bedrock = server.client()
        raw = RawClient.for_server(server)
        arns = [run_job(server, bedrock, f"while-down-{i}") for i in range(2)]
        for arn in arns:
            assert wait_for_terminal(bedrock, arn)["status"] == "Completed"

        def retried(arn: str) -> list[dict[str, Any]] | None:
            found = events_of(raw, arn)
            first = found[0]["deliveries"] if found else []
            return found if first and first[0]["attempts"] > 0 else None

        for arn in arns:
            found = wait_for(lambda arn=arn: retried(arn), timeout=20)
            assert [e["event"]["detail"]["status"] for e in found] == HAPPY_PATH
            deliveries = [e["deliveries"][0] for e in found]
            assert all(d["status"] == "pending" for d in deliveries), deliveries
            assert "ConnectError" in deliveries[0]["lastError"]
            # In order: a later event is not tried while an earlier one of its job is pending.
            assert all(d["attempts"] == 0 for d in deliveries[1:]), deliveries
        raw.close()

        server.kill()
        server = start_server(tmp_path, **env)
        receiver.start()
        for arn in arns:
            wait_for(lambda arn=arn: len(receiver.for_job(arn)) >= len(HAPPY_PATH), timeout=30)

        raw = RawClient.for_server(server)

        def settled() -> bool:
            return all(
                e["deliveries"][0]["status"] == "delivered"
                for arn in arns
                for e in events_of(raw, arn)
            )

        wait_for(settled, timeout=10)
        raw.close()
        for arn in arns:
            assert receiver.statuses(arn) == HAPPY_PATH
        ids = [r.webhook_id for r in receiver.snapshot()]
        assert len(ids) == len(set(ids)) == 2 * len(HAPPY_PATH)
        assert receiver.rejected == []
    finally:
        server.stop()
        receiver.stop()


def test_unreachable_receiver_is_dead_lettered_after_the_retry_window(tmp_path: Path) -> None:
    secret = new_secret()
    receiver = WebhookReceiver(secret, answer=503).start()
    server = start_server(
        tmp_path,
        OUTCROP_EVENT_WEBHOOK_URL=receiver.url,
        OUTCROP_EVENT_WEBHOOK_SECRET=secret,
        OUTCROP_EVENT_RETRY_WINDOW_S="1",
    )
    raw = RawClient.for_server(server)
    try:
        bedrock = server.client()
        arn = run_job(server, bedrock, "to-the-dead")
        assert wait_for_terminal(bedrock, arn)["status"] == "Completed"

        def dead() -> list[dict[str, Any]] | None:
            response = raw.request("GET", "/event-deliveries", query={"status": "dead"})
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()["deliveries"]
            return found if len(found) >= len(HAPPY_PATH) else None

        found = wait_for(dead, timeout=30)
        assert [d["event"]["detail"]["status"] for d in found] == HAPPY_PATH
        for d in found:
            assert d["status"] == "dead"
            assert d["target"] == "outcrop-webhook/0"
            assert d["attempts"] >= 1
            assert d["lastError"] == f"HTTP 503 from {receiver.url}"
            assert "deliveredTime" not in d
        # The same, seen from GET /events.
        for e in events_of(raw, arn):
            assert [d["status"] for d in e["deliveries"]] == ["dead"]
        pending = raw.request("GET", "/event-deliveries", query={"status": "pending"}).json()
        assert pending["deliveries"] == []
        # Dead letters are not retried: once the receiver recovers, a new job's events arrive
        # (so the dispatcher has made passes since) and the dead ones are still not among them.
        receiver.answer = 204
        later = run_job(server, bedrock, "after-recovery")
        wait_for_terminal(bedrock, later)
        wait_for(lambda: len(receiver.for_job(later)) >= len(HAPPY_PATH), timeout=30)
        assert receiver.statuses(later) == HAPPY_PATH
        assert receiver.for_job(arn) == []
        assert receiver.rejected == []
    finally:
        raw.close()
        server.stop()
        receiver.stop()
