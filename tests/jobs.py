"""Helpers for tests that run jobs: write inputs into local buckets, wait for the end, read outputs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

TERMINAL = {"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"}
ROLE = "arn:aws:iam::123456789012:role/BatchRole"


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for record in records:
            handle.write(orjson.dumps(record) + b"\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 60.0,
    what: str = "condition",
    interval: float = 0.05,
) -> Any:
    """Poll until `predicate()` is truthy; return its value. Polls a separate process's state."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # the polling interval of a condition, not a synchronisation


def wait_for_terminal(bedrock: Any, job_arn: str, timeout: float = 120.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = bedrock.get_model_invocation_job(jobIdentifier=job_arn)
        return job if job["status"] in TERMINAL else None

    result: dict[str, Any] = wait_for(done, timeout)
    return result


def create_job(
    bedrock: Any, name: str, model_id: str, input_uri: str, output_uri: str, **extra: Any
) -> str:
    arn: str = bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE,
        modelId=model_id,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}},
        **extra,
    )["jobArn"]
    return arn
