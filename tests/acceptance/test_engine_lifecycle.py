"""Jobs that take time: live progress, Stop mid-run, timeout to PartiallyCompleted, and Expired.

A catalog model with latency makes jobs slow enough to watch; one job runs at a time
(MAX_JOBS_IN_PROGRESS=1) so that a second job waits in Scheduled. An "hour" lasts 0.1 s, so
timeoutDurationInHours=24 is 2.4 s and 168 is 16.8 s. Runs on local buckets and on moto S3.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.acceptance.conftest import (
    Deployment,
    Deployments,
    Watch,
    anthropic_body,
    assert_anthropic_output,
    assert_status_order,
    create_job,
    job_id_of,
    job_keys,
    jsonl,
    read_manifest,
    read_output,
    wait_for,
    wait_terminal,
    write_catalog,
)

SLOW_MODEL = "acme.slow-echo-v1"
LATENCY_MS = 100
SHARD_RECORDS = 10  # one backend call per shard, one shard at a time: ~100 records a second
HOUR_SECONDS = 0.1
LONG_TIMEOUT_HOURS = 168  # 16.8 s: long enough for any job here that should not time out
STOPPED_MESSAGE = "The job was stopped before this record was processed."
TIMED_OUT_MESSAGE = "The job's time ran out before this record was processed."


@pytest.fixture(scope="module")
def deployment(deployments: Deployments, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    catalog = write_catalog(
        tmp_path_factory.mktemp("catalog") / "catalog.toml", {SLOW_MODEL: LATENCY_MS}
    )
    return deployments.start(
        OUTCROP_CATALOG=str(catalog),
        OUTCROP_HOUR_SECONDS=str(HOUR_SECONDS),
        OUTCROP_MAX_JOBS_IN_PROGRESS="1",
        OUTCROP_SHARD_RECORDS=str(SHARD_RECORDS),
        OUTCROP_MAX_SHARD_RECORDS=str(SHARD_RECORDS),
        OUTCROP_SHARD_CONCURRENCY="1",
        OUTCROP_RECORD_CONCURRENCY="1",
        OUTCROP_PROGRESS_INTERVAL_S="0.1",
        OUTCROP_MANIFEST_INTERVAL_S="0.5",
    )


@pytest.fixture(scope="module")
def buckets_in_out(deployment: Deployment) -> tuple[str, str]:
    return deployment.buckets.create("in"), deployment.buckets.create("out")


def slow_input(n: int, bad_every: int = 0) -> tuple[bytes, list[dict[str, Any]]]:
    lines = []
    for i in range(n):
        body = anthropic_body(f"record {i} says hello to the slow model", max_tokens=4)
        if bad_every and i % bad_every == bad_every - 1:
            body = {"anthropic_version": body["anthropic_version"], "messages": body["messages"]}
        lines.append({"recordId": f"r{i:05d}", "modelInput": body})
    return jsonl(lines), lines


def start_slow_job(
    deployment: Deployment, buckets_in_out: tuple[str, str], name: str, n: int, **kw: Any
) -> tuple[str, list[dict[str, Any]]]:
    bucket_in, bucket_out = buckets_in_out
    data, lines = slow_input(n, kw.pop("bad_every", 0))
    deployment.buckets.put(bucket_in, f"{name}/in.jsonl", data)
    arn = create_job(
        deployment.bedrock,
        f"s3://{bucket_in}/{name}/",
        f"s3://{bucket_out}/{name}/",
        model_id=SLOW_MODEL,
        name=name,
        timeoutDurationInHours=kw.pop("timeout_hours", LONG_TIMEOUT_HOURS),
        **kw,
    )
    return arn, lines


def assert_partial_output(
    deployment: Deployment,
    buckets_in_out: tuple[str, str],
    name: str,
    job: dict[str, Any],
    lines: list[dict[str, Any]],
    unprocessed_message: str,
) -> dict[str, Any]:
    """Every record exactly once, in order; finished ones kept, the rest 408; counts agree."""
    _, bucket_out = buckets_in_out
    job_id = job_id_of(job["jobArn"])
    buckets = deployment.buckets
    assert job_keys(buckets, bucket_out, f"{name}/", job_id) == [
        "in.jsonl.out",
        "manifest.json.out",
    ]
    records = read_output(buckets, bucket_out, f"{name}/{job_id}/in.jsonl.out")
    assert [(r["recordId"], r["modelInput"]) for r in records] == [
        (line["recordId"], line["modelInput"]) for line in lines
    ]
    answered = [r for r in records if "modelOutput" in r]
    failed = [r for r in records if "error" in r and r["error"]["errorCode"] != 408]
    timed_out = [r for r in records if "error" in r and r["error"]["errorCode"] == 408]
    for record in answered:
        assert_anthropic_output(record, SLOW_MODEL)
    assert all(r["error"]["errorCode"] == 400 for r in failed)
    assert all(r["error"]["errorMessage"] == unprocessed_message for r in timed_out)
    assert answered and timed_out, (len(answered), len(timed_out))
    manifest = read_manifest(buckets, bucket_out, f"{name}/", job_id)
    assert manifest == {
        "totalRecordCount": len(lines),
        "processedRecordCount": len(answered) + len(failed),
        "successRecordCount": len(answered),
        "errorRecordCount": len(failed),
        "inputTokenCount": sum(r["modelOutput"]["usage"]["input_tokens"] for r in answered),
        "outputTokenCount": sum(r["modelOutput"]["usage"]["output_tokens"] for r in answered),
    }
    assert manifest["processedRecordCount"] + len(timed_out) == len(lines)
    assert job["totalRecordCount"] == manifest["totalRecordCount"]
    assert job["processedRecordCount"] == manifest["processedRecordCount"]
    assert job["successRecordCount"] == manifest["successRecordCount"]
    assert job["errorRecordCount"] == manifest["errorRecordCount"]
    assert job["endTime"] >= job["submitTime"]
    return manifest


def test_progress_is_visible_while_a_job_runs(
    deployment: Deployment, buckets_in_out: tuple[str, str]
) -> None:
    n = 300
    arn, _ = start_slow_job(deployment, buckets_in_out, "progress", n)
    watch = Watch()
    job, _ = wait_terminal(deployment.bedrock, arn, timeout=60, watch=watch)

    assert job["status"] == "Completed"
    assert_status_order(watch.statuses, "Completed")
    running = [seen for seen in watch.seen if seen["status"] == "InProgress"]
    assert running, watch.statuses
    assert all(seen["totalRecordCount"] == n for seen in running)
    processed = [seen["processedRecordCount"] for seen in running]
    assert processed == sorted(processed), "processedRecordCount went backwards"
    assert any(0 < p < n for p in processed), processed
    assert (job["processedRecordCount"], job["successRecordCount"]) == (n, n)


def test_stop_mid_run_keeps_finished_records_and_marks_the_rest_408(
    deployment: Deployment, buckets_in_out: tuple[str, str]
) -> None:
    bedrock = deployment.bedrock
    arn, lines = start_slow_job(deployment, buckets_in_out, "stop", 1000, bad_every=37)
    watch = Watch()

    def some_processed() -> bool:
        job = watch.poll(bedrock, arn)
        assert job["status"] in ("Submitted", "Validating", "Scheduled", "InProgress"), job
        return bool(job.get("processedRecordCount", 0) > 0)

    wait_for(some_processed, 30, "the first processed records")
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert watch.poll(bedrock, arn)["status"] in ("Stopping", "Stopped")
    job, _ = wait_terminal(bedrock, arn, timeout=30, watch=watch)

    assert_status_order(watch.statuses, "Stopped")
    manifest = assert_partial_output(
        deployment, buckets_in_out, "stop", job, lines, STOPPED_MESSAGE
    )
    assert 0 < manifest["processedRecordCount"] < manifest["totalRecordCount"]


def test_timeout_ends_a_running_job_partially_and_expires_a_waiting_one(
    deployment: Deployment, buckets_in_out: tuple[str, str]
) -> None:
    bedrock = deployment.bedrock
    # 4.8 s to run ~1000 records at ~100 a second: it cannot finish in time.
    running_arn, lines = start_slow_job(
        deployment, buckets_in_out, "partial", 1000, timeout_hours=48
    )
    running = Watch()
    wait_for(lambda: running.poll(bedrock, running_arn)["status"] == "InProgress", 10, "InProgress")
    # 2.4 s, all of it spent waiting for the only slot, which the first job holds for 4.8 s.
    waiting_arn, _ = start_slow_job(deployment, buckets_in_out, "expire", 5, timeout_hours=24)
    waiting = Watch()
    expired, _ = wait_terminal(bedrock, waiting_arn, timeout=20, watch=waiting)

    assert running.poll(bedrock, running_arn)["status"] == "InProgress"
    assert expired["status"] == "Expired"
    assert_status_order(waiting.statuses, "Expired")
    assert "Scheduled" in waiting.statuses
    assert expired["endTime"] >= expired["jobExpirationTime"]
    _, bucket_out = buckets_in_out
    assert job_keys(deployment.buckets, bucket_out, "expire/", job_id_of(waiting_arn)) == []

    job, _ = wait_terminal(bedrock, running_arn, timeout=30, watch=running)
    assert_status_order(running.statuses, "PartiallyCompleted")
    assert job["endTime"] >= job["jobExpirationTime"]
    manifest = assert_partial_output(
        deployment, buckets_in_out, "partial", job, lines, TIMED_OUT_MESSAGE
    )
    assert 0 < manifest["processedRecordCount"] < manifest["totalRecordCount"]
