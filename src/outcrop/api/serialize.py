"""Job -> Bedrock wire shapes (absent fields omitted, unions with exactly one member)."""

from __future__ import annotations

from typing import Any

from outcrop.domain.clock import iso
from outcrop.domain.jobs import Job


def job_to_wire(job: Job, summary: bool = False) -> dict[str, Any]:
    spec = job.spec
    s3_input: dict[str, Any] = {"s3Uri": spec.input_s3_uri}
    if spec.input_format:
        s3_input["s3InputFormat"] = spec.input_format
    if spec.input_bucket_owner:
        s3_input["s3BucketOwner"] = spec.input_bucket_owner
    s3_output: dict[str, Any] = {"s3Uri": spec.output_s3_uri}
    if spec.output_kms_key_id:
        s3_output["s3EncryptionKeyId"] = spec.output_kms_key_id
    if spec.output_bucket_owner:
        s3_output["s3BucketOwner"] = spec.output_bucket_owner
    body: dict[str, Any] = {
        "jobArn": job.arn,
        "jobName": spec.job_name,
        "modelId": spec.model_id,
        "clientRequestToken": spec.client_request_token,
        "roleArn": spec.role_arn,
        "status": job.status.value,
        "message": job.message,
        "submitTime": iso(job.submit_time),
        "lastModifiedTime": iso(job.last_modified_time),
        "endTime": iso(job.end_time) if job.end_time else None,
        "inputDataConfig": {"s3InputDataConfig": s3_input},
        "outputDataConfig": {"s3OutputDataConfig": s3_output},
        "vpcConfig": spec.vpc_config,
        "timeoutDurationInHours": spec.timeout_hours,
        "jobExpirationTime": iso(job.job_expiration_time),
        "modelInvocationType": spec.invocation_type,
        "totalRecordCount": job.counts.total,
        "processedRecordCount": job.counts.processed,
        "successRecordCount": job.counts.success,
        "errorRecordCount": job.counts.error,
    }
    return {k: v for k, v in body.items() if v is not None}
