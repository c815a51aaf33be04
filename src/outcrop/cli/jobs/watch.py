"""`outcrop jobs watch`: follow a job to its end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from outcrop.cli.common import DataDir, EndpointOpt, OutputOpt, ProfileOpt, RegionOpt, out
from outcrop.cli.jobs.common import (
    MANIFEST_FIELDS,
    JobArg,
    Session,
    age,
    emit_json,
    job_layout,
    jobs_app,
    session,
)


@jobs_app.command("watch")
def watch(
    job: JobArg,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between polls")
    ] = 0.5,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Follow a job to its end: a live progress bar (json: one line per status change).

    Exit code 0 when the job Completed, 1 when it ended any other way.
    """
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        if output == "json":
            final = _watch_lines(s, job, interval)
        else:
            final = _watch_bar(s, job, interval)
            _summary(final)
    raise typer.Exit(0 if final["status"] == "Completed" else 1)


def _poll(s: Session, job: str, interval: float) -> Iterator[tuple[dict[str, Any], bool]]:
    """Each Get until the job is terminal, with whether its status just changed."""
    from outcrop.domain.jobs import TERMINAL_STATUSES

    last = None
    while True:
        found = s.get(job)
        yield found, found["status"] != last
        last = found["status"]
        if last in TERMINAL_STATUSES:
            return
        time.sleep(interval)  # the API has no long poll; Get is cheap


def _watch_lines(s: Session, job: str, interval: float) -> dict[str, Any]:
    found: dict[str, Any] = {}
    fields = ("jobArn", "jobName", "status", "message", *MANIFEST_FIELDS[:4])
    for found, changed in _poll(s, job, interval):
        if changed:
            line = {k: found[k] for k in fields if k in found}
            emit_json({**line, "observedAt": datetime.now(UTC)}, compact=True)
    return found


def _watch_bar(s: Session, job: str, interval: float) -> dict[str, Any]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    found: dict[str, Any] = {}
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn())
    rate = TextColumn("{task.fields[rate]}")
    with Progress(*columns, rate, TimeRemainingColumn(), console=out, refresh_per_second=2) as bar:
        task = bar.add_task("", total=None, rate="")
        for found, changed in _poll(s, job, interval):
            if changed:
                note = f": {found['message']}" if found.get("message") else ""
                stamp = datetime.now().strftime("%H:%M:%S")
                bar.console.print(f"{stamp}  {found['status']}{note}", highlight=False)
            bar.update(
                task,
                description=found["status"],
                total=found.get("totalRecordCount") or None,
                completed=found.get("processedRecordCount") or 0,
            )
            speed = bar.tasks[0].finished_speed or bar.tasks[0].speed
            bar.update(task, rate=f"{speed:,.1f} rec/s" if speed else "")
    return found


def _summary(found: dict[str, Any]) -> None:
    status = found["status"]
    colour = "green" if status == "Completed" else "red"
    took = ""
    if found.get("endTime") and found.get("submitTime"):
        took = f" in {age(found['submitTime'], found['endTime'])}"
    out.print(
        f"[{colour}]{found['jobName']} {status}[/{colour}]{took}  ({found['jobArn']})",
        highlight=False,
    )
    total = found.get("totalRecordCount")
    if total is not None:
        out.print(
            f"  records: {found.get('processedRecordCount', 0)} of {total} processed, "
            f"{found.get('successRecordCount', 0)} succeeded, "
            f"{found.get('errorRecordCount', 0)} failed"
        )
    if found.get("message"):
        out.print(f"  message: {found['message']}")
    if status != "Failed":
        out.print(
            f"  output:  s3://{job_layout(found).output_bucket}/{job_layout(found).output_root}"
        )
