"""`outcrop jobs list/get/stop/tags/tag/untag`: inspect and steer jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from outcrop.cli.common import DataDir, EndpointOpt, OutputOpt, ProfileOpt, RegionOpt, out
from outcrop.cli.jobs.common import (
    JobArg,
    age,
    emit_json,
    job_id_of,
    jobs_app,
    parse_tags,
    progress_text,
    session,
)


@jobs_app.command("list")
def list_jobs(
    status: Annotated[str | None, typer.Option("--status", help="Only this status")] = None,
    name_contains: Annotated[
        str | None, typer.Option("--name-contains", help="Name substring")
    ] = None,
    after: Annotated[
        datetime | None, typer.Option("--after", help="Submitted after (ISO 8601)")
    ] = None,
    before: Annotated[
        datetime | None, typer.Option("--before", help="Submitted before (ISO 8601)")
    ] = None,
    ascending: Annotated[bool, typer.Option("--ascending", help="Oldest first")] = False,
    max_jobs: Annotated[int, typer.Option("--max", min=1, help="At most this many jobs")] = 50,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every job (ignores --max)")] = False,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """List jobs, newest first, following pagination."""
    params: dict[str, Any] = {"sortOrder": "Ascending" if ascending else "Descending"}
    for key, value in (
        ("statusEquals", status),
        ("nameContains", name_contains),
        ("submitTimeAfter", after),
        ("submitTimeBefore", before),
    ):
        if value is not None:
            params[key] = value
    jobs: list[dict[str, Any]] = []
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        while True:
            want = 1000 if all_jobs else min(1000, max_jobs - len(jobs))
            page = s.bedrock.list_model_invocation_jobs(maxResults=want, **params)
            jobs += page.get("invocationJobSummaries", [])
            params["nextToken"] = page.get("nextToken")
            if not params["nextToken"] or (not all_jobs and len(jobs) >= max_jobs):
                break
    if output == "json":
        emit_json(jobs)
        return
    table = Table("name", "id", "status", "progress", "model", "age")
    now = datetime.now(UTC)
    for job in jobs:
        table.add_row(
            job["jobName"],
            job_id_of(job["jobArn"]),
            job["status"],
            progress_text(job),
            job["modelId"],
            age(job.get("submitTime"), now),
        )
    out.print(table)


@jobs_app.command("get")
def get(
    job: JobArg,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Show one job."""
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        found = s.get(job)
    if output == "json":
        emit_json(found)
        return
    inputs = found["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
    outputs = found["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
    rows = [
        ("name", found["jobName"]),
        ("arn", found["jobArn"]),
        ("status", found["status"]),
        ("message", found.get("message")),
        ("model", found["modelId"]),
        ("invocation type", found.get("modelInvocationType")),
        ("input", inputs),
        ("output", f"{outputs.rstrip('/')}/{job_id_of(found['jobArn'])}/"),
        ("progress", progress_text(found)),
        ("succeeded", found.get("successRecordCount")),
        ("failed", found.get("errorRecordCount")),
        ("submitted", found.get("submitTime")),
        ("last modified", found.get("lastModifiedTime")),
        ("ended", found.get("endTime")),
        ("expires", found.get("jobExpirationTime")),
        ("timeout (hours)", found.get("timeoutDurationInHours")),
        ("role", found.get("roleArn")),
    ]
    table = Table("field", "value", show_header=False)
    for label, value in rows:
        if value is not None:
            table.add_row(label, value.isoformat() if isinstance(value, datetime) else str(value))
    out.print(table)


@jobs_app.command("stop")
def stop(
    job: JobArg,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Ask a job to stop; prints its status afterwards."""
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        s.bedrock.stop_model_invocation_job(jobIdentifier=job)
        found = s.get(job)
    if output == "json":
        emit_json({"jobArn": found["jobArn"], "status": found["status"]})
    else:
        out.print(f"{found['jobArn']}  {found['status']}")


@jobs_app.command("tags")
def tags(
    job: JobArg,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """List a job's tags."""
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        arn = s.get(job)["jobArn"]
        found = s.bedrock.list_tags_for_resource(resourceARN=arn).get("tags", [])
    if output == "json":
        emit_json({t["key"]: t["value"] for t in found})
        return
    table = Table("key", "value")
    for t in found:
        table.add_row(t["key"], t["value"])
    out.print(table)


@jobs_app.command("tag")
def tag(
    job: JobArg,
    pairs: Annotated[list[str], typer.Argument(help="key=value ...", show_default=False)],
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Add or replace tags on a job."""
    new_tags = parse_tags(pairs)
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        arn = s.get(job)["jobArn"]
        s.bedrock.tag_resource(resourceARN=arn, tags=new_tags)
    if output == "json":
        emit_json({"jobArn": arn, "tagged": {t["key"]: t["value"] for t in new_tags}})
    else:
        out.print(f"tagged {arn}")


@jobs_app.command("untag")
def untag(
    job: JobArg,
    keys: Annotated[list[str], typer.Argument(help="Tag keys to remove", show_default=False)],
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Remove tags from a job."""
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        arn = s.get(job)["jobArn"]
        s.bedrock.untag_resource(resourceARN=arn, tagKeys=keys)
    if output == "json":
        emit_json({"jobArn": arn, "removed": keys})
    else:
        out.print(f"untagged {arn}")
