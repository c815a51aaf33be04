"""The seven Bedrock batch-inference operations: parse the wire request, call the store, serialise."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from outcrop.api.auth import Caller
from outcrop.api.pagination import CursorCodec
from outcrop.api.serialize import job_to_wire
from outcrop.api.shapes import querystring_params, validate_input
from outcrop.domain.clock import iso, to_us
from outcrop.domain.jobs import JobRef, JobSpec, JobStatus, ListQuery, Tag, parse_job_identifier
from outcrop.errors import (
    AccessDeniedError,
    ResourceNotFoundError,
    ValidationError,
)
from outcrop.storage.uri import check_key, parse_s3_uri
from outcrop.store.sql import SqlJobStore

DEFAULT_TIMEOUT_HOURS = 24


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationError("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    return body


@dataclass
class BedrockApi:
    store: SqlJobStore
    region: str
    hour_seconds: float
    cursors: CursorCodec
    max_active_jobs_per_account: int
    default_max_results: int = 1000
    notify: Callable[[], None] | None = None  # wakes an in-process engine after a change

    def _changed(self) -> None:
        if self.notify is not None:
            self.notify()

    # -- identifiers ----------------------------------------------------------------------

    def _resolve(self, caller: Caller, identifier: str, field: str) -> JobRef:
        if field == "jobIdentifier":
            validate_input("GetModelInvocationJob", {"jobIdentifier": identifier})
        ref = parse_job_identifier(identifier)
        if ref is None:
            raise ValidationError(
                f"Value '{identifier[:100]}' at '{field}' is not a job id or job ARN."
            )
        if ref.account_id is not None and ref.account_id != caller.account_id:
            raise AccessDeniedError(
                f"Account {caller.account_id} is not authorized to access resources of account "
                f"{ref.account_id}."
            )
        if ref.region is not None and ref.region != self.region:
            raise ResourceNotFoundError(f"Job {ref.job_id} was not found in region {ref.region}.")
        return ref

    def _resource(self, caller: Caller, arn: str) -> str:
        ref = parse_job_identifier(arn)
        if ref is None or ref.account_id is None:
            raise ResourceNotFoundError(f"Resource {arn[:200]} was not found.")
        ref = self._resolve(caller, arn, "resourceARN")
        return self.store.require_job(caller.account_id, ref.job_id).job_id

    # -- operations -------------------------------------------------------------------------

    def CreateModelInvocationJob(self, caller: Caller, body: dict[str, Any]) -> Response:
        validate_input("CreateModelInvocationJob", body)
        s3_in = body["inputDataConfig"]["s3InputDataConfig"]
        s3_out = body["outputDataConfig"]["s3OutputDataConfig"]
        for field, uri in (
            ("inputDataConfig", s3_in["s3Uri"]),
            ("outputDataConfig", s3_out["s3Uri"]),
        ):
            try:
                check_key(parse_s3_uri(uri).key)
            except ValidationError as exc:
                raise ValidationError(f"{field}: {exc.message}") from None
        spec = JobSpec(
            job_name=body["jobName"],
            model_id=body["modelId"],
            role_arn=body["roleArn"],
            input_s3_uri=s3_in["s3Uri"],
            output_s3_uri=s3_out["s3Uri"],
            timeout_hours=body.get("timeoutDurationInHours") or DEFAULT_TIMEOUT_HOURS,
            invocation_type=body.get("modelInvocationType") or "InvokeModel",
            client_request_token=body.get("clientRequestToken"),
            input_format=s3_in.get("s3InputFormat"),
            input_bucket_owner=s3_in.get("s3BucketOwner"),
            output_kms_key_id=s3_out.get("s3EncryptionKeyId"),
            output_bucket_owner=s3_out.get("s3BucketOwner"),
            vpc_config=body.get("vpcConfig"),
            # A key given twice keeps its last value, as TagResource does.
            tags=tuple(
                {t["key"]: Tag(t["key"], t["value"]) for t in body.get("tags") or ()}.values()
            ),
        )
        if len(spec.tags) > 50:
            raise ValidationError("A job can have at most 50 tags.")
        job, created = self.store.create_job(
            caller.account_id,
            self.region,
            spec,
            self.hour_seconds,
            self.max_active_jobs_per_account,
        )
        if created:
            self._changed()
        return json_response({"jobArn": job.arn})

    def GetModelInvocationJob(self, caller: Caller, identifier: str) -> Response:
        ref = self._resolve(caller, identifier, "jobIdentifier")
        job = self.store.require_job(caller.account_id, ref.job_id)
        return json_response(job_to_wire(job))

    def StopModelInvocationJob(self, caller: Caller, identifier: str) -> Response:
        ref = self._resolve(caller, identifier, "jobIdentifier")
        self.store.request_stop(caller.account_id, ref.job_id)
        self._changed()
        return json_response({})

    def ListModelInvocationJobs(self, caller: Caller, raw_query: str) -> Response:
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        params = querystring_params("ListModelInvocationJobs", pairs)
        validate_input("ListModelInvocationJobs", params)
        ascending = params.get("sortOrder", "Descending") == "Ascending"
        filters = {
            "statusEquals": params.get("statusEquals"),
            "nameContains": params.get("nameContains"),
            "submitTimeAfter": iso(params["submitTimeAfter"])
            if "submitTimeAfter" in params
            else None,
            "submitTimeBefore": iso(params["submitTimeBefore"])
            if "submitTimeBefore" in params
            else None,
            "sortOrder": "Ascending" if ascending else "Descending",
        }
        limit = params.get("maxResults", self.default_max_results)
        after = None
        if "nextToken" in params:
            after = self.cursors.decode(params["nextToken"], caller.account_id, filters)
        status = params.get("statusEquals")
        query = ListQuery(
            status=JobStatus(status) if status else None,
            name_contains=params.get("nameContains"),
            submitted_after=params.get("submitTimeAfter"),
            submitted_before=params.get("submitTimeBefore"),
            ascending=ascending,
            limit=limit + 1,  # one extra row tells whether another page exists
            after=after,
        )
        found = self.store.list_jobs(caller.account_id, query)
        page = found[:limit]
        body: dict[str, Any] = {
            "invocationJobSummaries": [job_to_wire(j, summary=True) for j in page]
        }
        if len(found) > limit:
            last = page[-1]
            body["nextToken"] = self.cursors.encode(
                caller.account_id, filters, (to_us(last.submit_time), last.job_id)
            )
        return json_response(body)

    def TagResource(self, caller: Caller, body: dict[str, Any]) -> Response:
        validate_input("TagResource", body)
        job_id = self._resource(caller, body["resourceARN"])
        tags = [Tag(t["key"], t["value"]) for t in body["tags"]]
        self.store.tag_job(job_id, tags, body["resourceARN"])
        return json_response({})

    def UntagResource(self, caller: Caller, body: dict[str, Any]) -> Response:
        validate_input("UntagResource", body)
        job_id = self._resource(caller, body["resourceARN"])
        self.store.untag_job(job_id, list(body["tagKeys"]))
        return json_response({})

    def ListTagsForResource(self, caller: Caller, body: dict[str, Any]) -> Response:
        validate_input("ListTagsForResource", body)
        job_id = self._resource(caller, body["resourceARN"])
        tags = self.store.list_tags(job_id)
        return json_response({"tags": [{"key": t.key, "value": t.value} for t in tags]})


def split_job_path(raw_path: str) -> tuple[str, bool]:
    """Split a raw `/model-invocation-job/...` path into (identifier, is_stop).

    Matching happens on the raw path so that a percent-encoded ARN (%2F) stays one segment.
    """
    rest = raw_path[len("/model-invocation-job/") :]
    is_stop = rest.endswith("/stop")
    if is_stop:
        rest = rest[: -len("/stop")]
    return unquote(rest), is_stop


def new_secret() -> str:
    return secrets.token_hex(32)
