"""The EventBridge envelope of a state-change event, built from a constructed Job (spec section 10)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from outcrop.domain.jobs import Job, JobSpec, JobStatus, RecordCounts
from outcrop.events.envelope import state_change_event
from outcrop.events.patterns import matches

ACCOUNT = "123456789012"
JOB_ID = "abcdefghwxyz"
JOB_ARN = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:model-invocation-job/{JOB_ID}"
MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"
SUBMITTED = datetime(2024, 8, 28, 22, 47, 53, 811_000, tzinfo=UTC)
AT = datetime(2024, 8, 28, 22, 58, 30, 987_654, tzinfo=UTC)

BASE_DETAIL_KEYS = {
    "version",
    "accountId",
    "batchJobName",
    "batchJobArn",
    "batchModelId",
    "status",
    "failureMessage",
    "creationTime",
}
EXTENSION_KEYS = {
    "totalRecordCount",
    "processedRecordCount",
    "successRecordCount",
    "errorRecordCount",
    "inputTokenCount",
    "outputTokenCount",
}


def make_job(
    status: JobStatus = JobStatus.COMPLETED,
    *,
    model_id: str = MODEL,
    message: str | None = None,
    counts: RecordCounts = RecordCounts(),
) -> Job:
    spec = JobSpec(
        job_name="dummy-batch-job-name",
        model_id=model_id,
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/BatchRole",
        input_s3_uri="s3://in/records.jsonl",
        output_s3_uri="s3://out/",
        timeout_hours=24,
        invocation_type="InvokeModel",
    )
    return Job(
        job_id=JOB_ID,
        account_id=ACCOUNT,
        region="us-east-1",
        spec=spec,
        status=status,
        submit_time=SUBMITTED,
        last_modified_time=AT,
        job_expiration_time=SUBMITTED + timedelta(days=7),
        message=message,
        counts=counts,
    )


def test_envelope_shape() -> None:
    event = state_change_event(make_job(), AT, event_id="a1b2c3d4")
    assert event == {
        "version": "0",
        "id": "a1b2c3d4",
        "detail-type": "Batch Inference Job State Change",
        "source": "aws.bedrock",
        "account": ACCOUNT,
        "time": "2024-08-28T22:58:30Z",
        "region": "us-east-1",
        "resources": [JOB_ARN],
        "detail": {
            "version": "0.0",
            "accountId": ACCOUNT,
            "batchJobName": "dummy-batch-job-name",
            "batchJobArn": JOB_ARN,
            "batchModelId": f"arn:aws:bedrock:us-east-1::foundation-model/{MODEL}",
            "status": "Completed",
            "failureMessage": "",
            "creationTime": "2024-08-28T22:47:53.811Z",
        },
    }


def test_time_is_whole_seconds_utc_with_z() -> None:
    later = datetime(2024, 8, 29, 1, 2, 3, 999_999, tzinfo=timezone(timedelta(hours=2)))
    event = state_change_event(make_job(), later)
    assert event["time"] == "2024-08-28T23:02:03Z"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", event["time"])


def test_each_event_gets_a_fresh_uuid_unless_given() -> None:
    first = state_change_event(make_job(), AT)
    second = state_change_event(make_job(), AT)
    assert first["id"] != second["id"]
    assert str(uuid.UUID(first["id"])) == first["id"]


def test_every_status_is_reported_by_its_bedrock_name() -> None:
    for status in JobStatus:
        assert state_change_event(make_job(status), AT)["detail"]["status"] == status.value


def test_failure_message_is_the_jobs_message() -> None:
    message = "Validation failed: the input bucket in does not exist"
    event = state_change_event(make_job(JobStatus.FAILED, message=message), AT)
    assert event["detail"]["failureMessage"] == message
    assert event["detail"]["status"] == "Failed"


def test_a_model_arn_is_passed_through() -> None:
    profile = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.{MODEL}"
    event = state_change_event(make_job(model_id=profile), AT)
    assert event["detail"]["batchModelId"] == profile


def test_record_counts_extension_appears_once_known() -> None:
    before = state_change_event(make_job(JobStatus.SUBMITTED), AT)
    assert set(before["detail"]) == BASE_DETAIL_KEYS

    counts = RecordCounts(
        total=10, processed=10, success=9, error=1, input_tokens=120, output_tokens=45
    )
    detail = state_change_event(make_job(counts=counts), AT)["detail"]
    assert set(detail) == BASE_DETAIL_KEYS | EXTENSION_KEYS
    assert {k: detail[k] for k in EXTENSION_KEYS} == {
        "totalRecordCount": 10,
        "processedRecordCount": 10,
        "successRecordCount": 9,
        "errorRecordCount": 1,
        "inputTokenCount": 120,
        "outputTokenCount": 45,
    }


def test_partial_counts_only_carry_what_is_known() -> None:
    detail = state_change_event(make_job(counts=RecordCounts(total=5)), AT)["detail"]
    assert set(detail) == BASE_DETAIL_KEYS | {"totalRecordCount"}


def test_envelope_is_json_and_matches_the_typical_rule() -> None:
    event: dict[str, Any] = orjson.loads(orjson.dumps(state_change_event(make_job(), AT)))
    rule = {
        "source": ["aws.bedrock"],
        "detail-type": ["Batch Inference Job State Change"],
        "detail": {"status": ["Completed"]},
    }
    assert matches(rule, event)
    assert not matches(rule, state_change_event(make_job(JobStatus.FAILED), AT))
