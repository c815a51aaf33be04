"""Reading events: GET /events (paged), GET /event-deliveries, and the live SSE stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from outcrop.api.bedrock import json_response
from outcrop.domain.clock import from_us, iso
from outcrop.domain.jobs import parse_job_identifier
from outcrop.errors import AccessDeniedError, ValidationError
from outcrop.store.outbox import Delivery, OutboxStore

STREAM_POLL_S = 0.25
MAX_PAGE = 1000


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}")
    return value


def _job_filter(request: Request, account_id: str) -> str | None:
    job = request.query_params.get("job")
    if job is None:
        return None
    ref = parse_job_identifier(job)
    if ref is None:
        raise ValidationError("job must be a job id or job ARN")
    if ref.account_id is not None and ref.account_id != account_id:
        raise AccessDeniedError("That job belongs to another account.")
    return ref.job_id


def _delivery_wire(d: Delivery) -> dict[str, Any]:
    body: dict[str, Any] = {"target": d.target, "status": d.status, "attempts": d.attempts}
    if d.last_error:
        body["lastError"] = d.last_error
    if d.delivered_us:
        body["deliveredTime"] = iso(from_us(d.delivered_us))
    return body


class EventRoutes:
    def __init__(self, outbox: OutboxStore) -> None:
        self.outbox = outbox

    def list_events(self, account_id: str, request: Request) -> Response:
        job_id = _job_filter(request, account_id)
        limit = _int_param(request, "maxResults", 100, 1, MAX_PAGE)
        after = _int_param(request, "nextToken", 0, 0, 2**62)
        found = self.outbox.list_events(account_id, job_id, after, limit + 1)
        page = found[:limit]
        deliveries = self.outbox.deliveries_of([e.seq for e in page])
        body: dict[str, Any] = {
            "events": [
                {
                    "sequence": e.seq,
                    "event": e.payload,
                    "deliveries": [_delivery_wire(d) for d in deliveries.get(e.seq, [])],
                }
                for e in page
            ]
        }
        if len(found) > limit:
            body["nextToken"] = str(page[-1].seq)
        return json_response(body)

    def list_deliveries(self, account_id: str, request: Request) -> Response:
        status = request.query_params.get("status")
        if status not in (None, "pending", "delivered", "dead"):
            raise ValidationError("status must be pending, delivered or dead")
        limit = _int_param(request, "maxResults", 100, 1, MAX_PAGE)
        after = _int_param(request, "nextToken", 0, 0, 2**62)
        found = self.outbox.list_deliveries(account_id, status, after, limit + 1)
        page = found[:limit]
        body: dict[str, Any] = {
            "deliveries": [{"id": d.id, **_delivery_wire(d), "event": event} for d, event in page]
        }
        if len(found) > limit:
            body["nextToken"] = str(page[-1][0].id)
        return json_response(body)

    def stream(self, account_id: str, request: Request) -> Response:
        """Server-sent events; each carries its sequence as `id`, so Last-Event-ID resumes."""
        job_id = _job_filter(request, account_id)
        start = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        try:
            after = int(start)
        except ValueError:
            raise ValidationError("Last-Event-ID must be an event sequence number") from None

        async def frames() -> AsyncIterator[bytes]:
            cursor = after
            yield b": outcrop event stream\n\n"
            while not await request.is_disconnected():
                batch = await run_in_threadpool(
                    self.outbox.list_events, account_id, job_id, cursor, 200
                )
                for event in batch:
                    cursor = event.seq
                    yield b"id: %d\nevent: job-state-change\ndata: %s\n\n" % (
                        event.seq,
                        orjson.dumps(event.payload),
                    )
                if not batch:
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(STREAM_POLL_S)

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
