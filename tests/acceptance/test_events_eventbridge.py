"""The eventbridge and log targets, from a rules file, against moto's standalone server.

moto plays EventBridge: a rule on its default bus forwards Outcrop's events to an SQS queue that
the test reads, so what arrives went through a real PutEvents and a real pattern match there.
A second rule in the rules file appends only terminal events to a JSONL log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.acceptance.raw import RawClient
from tests.jobs import create_job, read_jsonl, wait_for, wait_for_terminal, write_jsonl
from tests.server import REGION, OutcropServer

HAPPY_PATH = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
SOURCE = "outcrop.bedrock"  # real EventBridge refuses aws.* sources in PutEvents
MOTO_KEYS = {"MOTO_KEY_ID": "testing", "MOTO_SECRET": "testing"}


def aws(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def queue_url(moto_endpoint: str) -> str:
    """An SQS queue fed by a rule on moto's default bus that matches Outcrop's events."""
    sqs, events = aws("sqs", moto_endpoint), aws("events", moto_endpoint)
    url: str = sqs.create_queue(QueueName="outcrop-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = {"source": [SOURCE], "detail-type": ["Batch Inference Job State Change"]}
    events.put_rule(Name="outcrop-to-sqs", EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule="outcrop-to-sqs", Targets=[{"Id": "queue", "Arn": arn}])
    return url


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, queue_url: str
) -> Iterator[OutcropServer]:
    root = tmp_path_factory.mktemp("events-eventbridge")
    rules = root / "rules.toml"
    rules.write_text(
        f"""
[[rules]]
name = "to-bus"

[[rules.targets]]
type = "eventbridge"
event_bus_name = "default"
region = "{REGION}"
endpoint_url = "{moto_endpoint}"
source = "{SOURCE}"
access_key_id_env = "MOTO_KEY_ID"
secret_access_key_env = "MOTO_SECRET"

[[rules]]
name = "terminal-log"
pattern = {{ source = ["aws.bedrock"], detail = {{ status = ["Completed", "Failed"] }} }}

[[rules.targets]]
type = "log"
path = "terminal.jsonl"
"""
    )
    env = {"OUTCROP_EVENT_RULES": str(rules), **MOTO_KEYS}
    srv = OutcropServer(data_dir=root / "data", env=env).start()
    yield srv
    srv.stop()


def receive_all(sqs: Any, url: str, want: int, timeout: float = 30) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    def enough() -> bool:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            got.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(got) >= want

    wait_for(enough, timeout)
    return got


def test_events_reach_sqs_through_an_eventbridge_rule(
    server: OutcropServer, moto_endpoint: str, queue_url: str
) -> None:
    bedrock = server.client()
    write_jsonl(
        server.data_dir / "buckets" / "bus-in" / "in.jsonl",
        [
            {
                "recordId": "R1",
                "modelInput": {
                    "anthropic_version": "bedrock-2023-05-31",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            }
        ],
    )
    (server.data_dir / "buckets" / "bus-out").mkdir(parents=True)
    arn = create_job(
        bedrock, "to-the-bus", "outcrop.echo-v1", "s3://bus-in/in.jsonl", "s3://bus-out/"
    )
    assert wait_for_terminal(bedrock, arn)["status"] == "Completed"

    sqs = aws("sqs", moto_endpoint)
    got = receive_all(sqs, queue_url, len(HAPPY_PATH))
    assert [e["detail"]["status"] for e in got] == HAPPY_PATH
    account = arn.split(":")[4]
    for event in got:
        assert event["source"] == SOURCE
        assert event["detail-type"] == "Batch Inference Job State Change"
        assert event["resources"] == [arn]
        assert event["detail"]["batchJobArn"] == arn
        assert event["detail"]["accountId"] == account
        assert event["detail"]["batchJobName"] == "to-the-bus"
        assert event["detail"]["batchModelId"].endswith(":foundation-model/outcrop.echo-v1")
    assert got[-1]["detail"]["successRecordCount"] == 1

    # GET /events reports both rules' deliveries: the bus got all five, the log only the last.
    raw = RawClient.for_server(server)
    try:

        def settled() -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = raw.request("GET", "/events", query={"job": arn}).json()[
                "events"
            ]
            statuses = [d["status"] for e in found for d in e["deliveries"]]
            return found if statuses and set(statuses) == {"delivered"} else None

        found = wait_for(settled, timeout=10)
    finally:
        raw.close()
    targets = [[d["target"] for d in e["deliveries"]] for e in found]
    assert targets == [["to-bus/0"]] * 4 + [["to-bus/0", "terminal-log/0"]]

    logged = read_jsonl(server.data_dir.parent / "terminal.jsonl")
    assert [e["detail"]["status"] for e in logged] == ["Completed"]
    assert logged[0]["id"] == found[-1]["event"]["id"]
    assert logged[0]["source"] == "aws.bedrock"  # the log keeps the envelope as it is
