"""Operational endpoints and middleware: /healthz, /readyz, /metrics, and API latency by operation."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outcrop.metrics import CONTENT_TYPE, Metrics

ReadinessCheck = Callable[[], list[str]]


def operation_of(method: str, path: str) -> str:
    """The Bedrock operation (or Outcrop endpoint) a request is for: a bounded label set."""
    if path == "/model-invocation-job":
        return "CreateModelInvocationJob"
    if path == "/model-invocation-jobs":
        return "ListModelInvocationJobs"
    if path.startswith("/model-invocation-job/"):
        return "StopModelInvocationJob" if method == "POST" else "GetModelInvocationJob"
    fixed = {
        "/tagResource": "TagResource",
        "/untagResource": "UntagResource",
        "/listTagsForResource": "ListTagsForResource",
        "/events": "ListEvents",
        "/events/stream": "StreamEvents",
        "/event-deliveries": "ListEventDeliveries",
        "/healthz": "Healthz",
        "/readyz": "Readyz",
        "/metrics": "Metrics",
        "/openapi.json": "OpenAPI",
    }
    if path in fixed:
        return fixed[path]
    if path.startswith("/console"):
        return "Console"
    return "Unknown"


class LatencyMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            operation = operation_of(scope["method"], scope["path"])
            self.metrics.http_latency.labels(operation, str(status)).observe(
                time.perf_counter() - started
            )


def ops_routes(metrics: Metrics, readiness: ReadinessCheck) -> list[Route]:
    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")  # the process is up and serving

    async def readyz(_request: Request) -> Response:
        problems = await run_in_threadpool(readiness)
        if problems:
            return JSONResponse({"ready": False, "problems": problems}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics_endpoint(_request: Request) -> Response:
        body = await run_in_threadpool(metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
