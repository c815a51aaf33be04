"""One job: details page, its live fragment, stop (with a confirm step), tags, output downloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response, StreamingResponse

from outcrop.console import files, present
from outcrop.console.web import PREFIX, Ctx, Deps, not_found, see_other, stream_url
from outcrop.domain.jobs import Job, parse_job_identifier
from outcrop.errors import OutcropError
from outcrop.storage.base import StorageError

MAX_EVENTS = 200


def _job(deps: Deps, ctx: Ctx) -> Job | None:
    """The path's job when it belongs to the signed-in account; another account's is "not found"."""
    ref = parse_job_identifier(ctx.request.path_params["job_id"])
    if ref is None or ref.account_id is not None:
        return None
    job = deps.store.get_job(ref.job_id)
    if job is None or job.account_id != ctx.account_id:
        return None
    return job


def _live(deps: Deps, job: Job) -> dict[str, Any]:
    transitions = deps.store.transitions(job.job_id)
    now = datetime.now(UTC)
    return {
        "job": job,
        "progress": present.progress_of(job),
        "rate": present.rate(job, transitions, now),
        "duration": present.duration(job, now),
        "transitions": transitions,
        "stoppable": job.status in present.STOPPABLE,
    }


def _events(deps: Deps, job: Job) -> list[dict[str, Any]]:
    found = deps.outbox.list_events(job.account_id, job.job_id, 0, MAX_EVENTS)
    deliveries = deps.outbox.deliveries_of([e.seq for e in found])
    return [
        {
            "seq": e.seq,
            "status": e.payload.get("detail", {}).get("status", ""),
            "time": e.payload.get("time", ""),
            "payload": e.payload,
            "deliveries": deliveries.get(e.seq, []),
        }
        for e in found
    ]


def job_details(deps: Deps, ctx: Ctx, tag_error: str | None = None, status: int = 200) -> Response:
    live_url = stream_url(deps, ctx)
    job = _job(deps, ctx)
    if job is None:
        return not_found(deps, ctx, "job")
    context = ctx.base(
        "jobs",
        stream_url=live_url,
        title=job.spec.job_name,
        live=_live(deps, job),
        output=files.job_output(deps.storage(), job),
        events=_events(deps, job),
        tags=deps.store.list_tags(job.job_id),
        tag_error=tag_error,
    )
    return deps.render("job.html", context, status=status)


def job_live(deps: Deps, ctx: Ctx) -> Response:
    job = _job(deps, ctx)
    if job is None:
        return Response(status_code=404)
    return deps.render("_job_live.html", {"live": _live(deps, job)})


def confirm_stop(deps: Deps, ctx: Ctx) -> Response:
    job = _job(deps, ctx)
    if job is None:
        return not_found(deps, ctx, "job")
    return deps.render("stop.html", ctx.base("jobs", title=f"Stop {job.spec.job_name}", job=job))


def stop_job(deps: Deps, ctx: Ctx) -> Response:
    job = _job(deps, ctx)
    if job is None:
        return not_found(deps, ctx, "job")
    try:
        deps.api.StopModelInvocationJob(ctx.caller, job.job_id)
    except OutcropError as exc:
        return deps.render(
            "stop.html",
            ctx.base("jobs", title=f"Stop {job.spec.job_name}", job=job, error=exc.message),
            status=409,
        )
    return see_other(f"{PREFIX}/jobs/{job.job_id}")


def add_tag(deps: Deps, ctx: Ctx) -> Response:
    job = _job(deps, ctx)
    if job is None:
        return not_found(deps, ctx, "job")
    tag = {"key": ctx.form.get("key", ""), "value": ctx.form.get("value", "")}
    try:
        deps.api.TagResource(ctx.caller, {"resourceARN": job.arn, "tags": [tag]})
    except OutcropError as exc:
        return job_details(deps, ctx, tag_error=exc.message, status=400)
    return see_other(f"{PREFIX}/jobs/{job.job_id}#tags")


def remove_tag(deps: Deps, ctx: Ctx) -> Response:
    job = _job(deps, ctx)
    if job is None:
        return not_found(deps, ctx, "job")
    try:
        deps.api.UntagResource(
            ctx.caller, {"resourceARN": job.arn, "tagKeys": [ctx.form.get("key", "")]}
        )
    except OutcropError as exc:
        return job_details(deps, ctx, tag_error=exc.message, status=400)
    return see_other(f"{PREFIX}/jobs/{job.job_id}#tags")


def download(deps: Deps, ctx: Ctx) -> Response:
    """Stream one of the job's output objects; nothing outside the job's output folder."""
    job = _job(deps, ctx)
    storage = deps.storage()
    if job is None or storage is None:
        return not_found(deps, ctx, "file")
    target = files.download_target(job, ctx.request.query_params.get("key", ""))
    try:
        info = None if target is None else files.find_object(storage, *target)
    except StorageError:
        info = None
    if target is None or info is None:
        return not_found(deps, ctx, "file")
    name = target[1].rsplit("/", 1)[-1]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "download"
    return StreamingResponse(
        files.stream_object(storage, *target),
        media_type="application/octet-stream",
        headers={
            "content-disposition": f'attachment; filename="{safe}"',
            "content-length": str(info.size),
        },
    )
