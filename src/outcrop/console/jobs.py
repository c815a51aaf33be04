"""The "Batch inference jobs" list (with its live rows fragment) and the create-job form."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.responses import Response

from outcrop.console import present
from outcrop.console.web import PREFIX, Ctx, Deps, see_other, stream_url
from outcrop.domain.jobs import JobStatus, parse_job_identifier
from outcrop.errors import OutcropError, ValidationError

PAGE_SIZE = 20
INVOCATION_TYPES = ("InvokeModel", "Converse")
DEFAULT_ROLE = "arn:aws:iam::123456789012:role/BatchInferenceRole"


# -- list ---------------------------------------------------------------------------------


def _filters(ctx: Ctx) -> dict[str, str]:
    q = ctx.request.query_params
    status = q.get("status", "")
    return {
        "status": status if status in {s.value for s in JobStatus} else "",
        "name": q.get("name", "")[:63],
        "after": q.get("after", "")[:40],
        "before": q.get("before", "")[:40],
        "sort": "asc" if q.get("sort") == "asc" else "desc",
        "token": q.get("token", "")[:4096],
    }


def _api_query(filters: dict[str, str]) -> str:
    pairs = [
        ("maxResults", str(PAGE_SIZE)),
        ("sortOrder", "Ascending" if filters["sort"] == "asc" else "Descending"),
    ]
    for key, wire in (
        ("status", "statusEquals"),
        ("name", "nameContains"),
        ("after", "submitTimeAfter"),
        ("before", "submitTimeBefore"),
        ("token", "nextToken"),
    ):
        if filters[key]:
            pairs.append((wire, filters[key]))
    return urlencode(pairs)


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _row(summary: dict[str, Any], now: datetime) -> dict[str, Any]:
    ref = parse_job_identifier(summary["jobArn"])
    submitted = _when(summary["submitTime"])
    ended = _when(summary.get("endTime"))
    assert ref is not None and submitted is not None
    return {
        "job_id": ref.job_id,
        "name": summary["jobName"],
        "status": JobStatus(summary["status"]),
        "model": summary["modelId"],
        "submitted": submitted,
        "duration": present.span(((ended or now) - submitted).total_seconds()),
        "progress": present.Progress(
            summary.get("totalRecordCount"),
            summary.get("processedRecordCount") or 0,
            summary.get("successRecordCount") or 0,
            summary.get("errorRecordCount") or 0,
        ),
    }


def _page(deps: Deps, ctx: Ctx) -> dict[str, Any]:
    live_url = stream_url(deps, ctx)
    filters = _filters(ctx)
    rows: list[dict[str, Any]] = []
    next_token = None
    error = None
    try:
        response = deps.api.ListModelInvocationJobs(ctx.caller, _api_query(filters))
        body = orjson.loads(bytes(response.body))
        now = datetime.now(UTC)
        rows = [_row(s, now) for s in body["invocationJobSummaries"]]
        next_token = body.get("nextToken")
    except OutcropError as exc:
        error = exc.message
    shown = {k: v for k, v in filters.items() if v and k != "token"}
    next_url = None
    if next_token:
        next_url = f"{PREFIX}/jobs?{urlencode({**shown, 'token': next_token})}"
    rows_url = f"{PREFIX}/jobs/rows?{urlencode({k: v for k, v in filters.items() if v})}"
    return {
        "filters": filters,
        "rows": rows,
        "error": error,
        "next_url": next_url,
        "first_url": f"{PREFIX}/jobs?{urlencode(shown)}" if filters["token"] else None,
        "rows_url": rows_url,
        "stream_url": live_url,
        "statuses": [s.value for s in JobStatus],
    }


def list_jobs(deps: Deps, ctx: Ctx) -> Response:
    return deps.render(
        "jobs.html", ctx.base("jobs", title="Batch inference jobs", **_page(deps, ctx))
    )


def job_rows(deps: Deps, ctx: Ctx) -> Response:
    return deps.render("_job_rows.html", _page(deps, ctx))


# -- create -------------------------------------------------------------------------------


def _form_defaults(deps: Deps) -> dict[str, str]:
    models = deps.catalog()
    return {
        "jobName": "",
        "modelId": models[0].model_id if models else "",
        "roleArn": DEFAULT_ROLE,
        "inputS3Uri": "s3://",
        "outputS3Uri": "s3://",
        "timeoutDurationInHours": "24",
        "modelInvocationType": "InvokeModel",
        "tags": "",
        "clientRequestToken": str(uuid.uuid4()),
    }


def _render_form(
    deps: Deps,
    ctx: Ctx,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    summary: str | None = None,
    status: int = 200,
) -> Response:
    return deps.render(
        "create.html",
        ctx.base(
            "jobs",
            title="Create batch inference job",
            values=values,
            errors=errors or {},
            summary=summary,
            models=deps.catalog(),
            invocation_types=INVOCATION_TYPES,
        ),
        status=status,
    )


def new_job_form(deps: Deps, ctx: Ctx) -> Response:
    return _render_form(deps, ctx, _form_defaults(deps))


def _tags(text: str) -> list[dict[str, str]]:
    tags = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValidationError(f"Tags line {number}: write each tag as key=value.")
        tags.append({"key": key.strip(), "value": value.strip()})
    return tags


def _request_body(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The CreateModelInvocationJob body the form describes, plus errors the form alone finds."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "jobName": values["jobName"],
        "modelId": values["modelId"],
        "roleArn": values["roleArn"],
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": values["inputS3Uri"]}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": values["outputS3Uri"]}},
        "modelInvocationType": values["modelInvocationType"],
    }
    if values["clientRequestToken"]:
        body["clientRequestToken"] = values["clientRequestToken"]
    timeout = values["timeoutDurationInHours"].strip()
    if timeout:
        try:
            body["timeoutDurationInHours"] = int(timeout)
        except ValueError:
            errors["timeoutDurationInHours"] = "Enter a whole number of hours."
    try:
        tags = _tags(values["tags"])
        if tags:
            body["tags"] = tags
    except ValidationError as exc:
        errors["tags"] = exc.message
    return body, errors


def create_job(deps: Deps, ctx: Ctx) -> Response:
    defaults = _form_defaults(deps)
    values = {k: ctx.form.get(k, "") for k in defaults}
    body, errors = _request_body(values)
    if errors:
        return _render_form(deps, ctx, values, errors, "Fix the fields marked below.", 400)
    try:
        response = deps.api.CreateModelInvocationJob(ctx.caller, body)
    except OutcropError as exc:
        errors = present.field_errors(exc.message)
        summary = exc.message if not errors else "Fix the fields marked below."
        return _render_form(deps, ctx, values, errors, summary, 400)
    arn = orjson.loads(bytes(response.body))["jobArn"]
    ref = parse_job_identifier(arn)
    assert ref is not None
    return see_other(f"{PREFIX}/jobs/{ref.job_id}")
