"""The EventBridge envelope of a "Batch Inference Job State Change" event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from outcrop.domain.clock import iso
from outcrop.domain.jobs import Job

DETAIL_TYPE = "Batch Inference Job State Change"
SOURCE = "aws.bedrock"


def _model_arn(job: Job) -> str:
    """Bedrock's own events name the model by its foundation-model ARN."""
    model_id = job.spec.model_id
    if model_id.startswith("arn:"):
        return model_id
    return f"arn:aws:bedrock:{job.region}::foundation-model/{model_id}"


def state_change_event(job: Job, at: datetime, event_id: str | None = None) -> dict[str, Any]:
    """The event for `job` having just entered its current status.

    Record counts and token totals at that moment are an Outcrop extension of `detail`
    (present once the job has been validated).
    """
    detail: dict[str, Any] = {
        "version": "0.0",
        "accountId": job.account_id,
        "batchJobName": job.spec.job_name,
        "batchJobArn": job.arn,
        "batchModelId": _model_arn(job),
        "status": job.status.value,
        "failureMessage": job.message or "",
        "creationTime": iso(job.submit_time),
    }
    counts = job.counts
    extension = {
        "totalRecordCount": counts.total,
        "processedRecordCount": counts.processed,
        "successRecordCount": counts.success,
        "errorRecordCount": counts.error,
        "inputTokenCount": counts.input_tokens,
        "outputTokenCount": counts.output_tokens,
    }
    detail.update({k: v for k, v in extension.items() if v is not None})
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": job.account_id,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": job.region,
        "resources": [job.arn],
        "detail": detail,
    }
