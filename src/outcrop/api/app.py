"""The ASGI application: Bedrock routes under SigV4, request ids, and error mapping."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outcrop.api.auth import Caller, SigV4Verifier
from outcrop.api.bedrock import BedrockApi, json_body, split_job_path
from outcrop.api.errors import SafetyNetMiddleware, handle_outcrop_error, wire_error
from outcrop.api.events import EventRoutes
from outcrop.api.limits import BodyLimitMiddleware, HeaderLimitMiddleware, RateLimiter
from outcrop.api.openapi import openapi_routes
from outcrop.api.ops import LatencyMiddleware, ReadinessCheck, ops_routes
from outcrop.errors import OutcropError, ValidationError
from outcrop.logs import request_id_var
from outcrop.metrics import Metrics


class RequestIdMiddleware:
    """Give every request an id and return it as x-amzn-RequestId, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-amzn-requestid", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def _raw_query(request: Request) -> str:
    return bytes(request.scope.get("query_string", b"")).decode("latin-1")


async def authenticate(verifier: SigV4Verifier, request: Request) -> Caller:
    """Verify the request's SigV4 signature (off the event loop), then the caller's rate."""
    body = await request.body()
    caller = await run_in_threadpool(
        verifier.verify,
        request.method,
        _raw_path(request),
        _raw_query(request),
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
        body,
    )
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        limiter.check(caller.account_id)
    return caller


class BedrockRoutes:
    """Glue between Starlette and BedrockApi: authenticate, parse, run the operation off the loop."""

    def __init__(self, api: BedrockApi, verifier: SigV4Verifier) -> None:
        self.api = api
        self.verifier = verifier

    async def _caller(self, request: Request) -> Caller:
        return await authenticate(self.verifier, request)

    async def create(self, request: Request) -> Response:
        caller = await self._caller(request)
        body = await json_body(request)
        return await run_in_threadpool(self.api.CreateModelInvocationJob, caller, body)

    async def list_jobs(self, request: Request) -> Response:
        caller = await self._caller(request)
        return await run_in_threadpool(
            self.api.ListModelInvocationJobs, caller, _raw_query(request)
        )

    async def job(self, request: Request) -> Response:
        caller = await self._caller(request)
        identifier, is_stop = split_job_path(_raw_path(request))
        if request.method == "GET" and not is_stop:
            return await run_in_threadpool(self.api.GetModelInvocationJob, caller, identifier)
        if request.method == "POST" and is_stop:
            return await run_in_threadpool(self.api.StopModelInvocationJob, caller, identifier)
        raise ValidationError(f"No operation matches {request.method} {_raw_path(request)[:200]}.")

    def _body_op(
        self, op: Callable[[Caller, dict[str, Any]], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            caller = await self._caller(request)
            body = await json_body(request)
            return await run_in_threadpool(op, caller, body)

        return endpoint

    def routes(self) -> list[Route]:
        return [
            Route("/model-invocation-job", self.create, methods=["POST"]),
            Route("/model-invocation-jobs", self.list_jobs, methods=["GET"]),
            _any_characters(
                Route("/model-invocation-job/{rest:path}", self.job, methods=["GET", "POST"])
            ),
            Route("/tagResource", self._body_op(self.api.TagResource), methods=["POST"]),
            Route("/untagResource", self._body_op(self.api.UntagResource), methods=["POST"]),
            Route(
                "/listTagsForResource",
                self._body_op(self.api.ListTagsForResource),
                methods=["POST"],
            ),
        ]


def _any_characters(route: Route) -> Route:
    """Let the route's `path` parameter match any character: a percent-encoded newline (%0A) in
    a job identifier is then a ValidationException from the operation, not an unknown route."""
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return wire_error("UnknownOperationException", 404, "No operation matches this path.")
    if exc.status_code == 405:
        return wire_error(
            "UnknownOperationException", 405, "This method is not allowed on this path."
        )
    return wire_error(
        "ValidationException", exc.status_code if exc.status_code < 500 else 400, str(exc.detail)
    )


def signed(
    verifier: SigV4Verifier, handler: Callable[[str, Request], Response], stream: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """A SigV4-authenticated endpoint outside the Bedrock operations; the handler gets the account."""

    async def endpoint(request: Request) -> Response:
        caller = await authenticate(verifier, request)
        if stream:  # builds a streaming response; the generator runs on the loop
            return handler(caller.account_id, request)
        return await run_in_threadpool(handler, caller.account_id, request)

    return endpoint


def event_routes(verifier: SigV4Verifier, events: EventRoutes) -> list[Route]:
    return [
        Route("/events", signed(verifier, events.list_events), methods=["GET"]),
        Route("/events/stream", signed(verifier, events.stream, stream=True), methods=["GET"]),
        Route("/event-deliveries", signed(verifier, events.list_deliveries), methods=["GET"]),
    ]


def create_app(
    api: BedrockApi,
    verifier: SigV4Verifier,
    metrics: Metrics,
    readiness: ReadinessCheck,
    extra_routes: list[Any] | None = None,
    rate_limiter: RateLimiter | None = None,
    max_body_bytes: int = 1024 * 1024,
    max_header_bytes: int = 16 * 1024,
) -> ASGIApp:
    """Build the API. The request-id wrapper sits outermost so even a 500 carries the id."""
    routes: list[Any] = ops_routes(metrics, readiness)
    routes += openapi_routes()  # unauthenticated, like botocore's published service model
    routes += BedrockRoutes(api, verifier).routes()
    routes += extra_routes or []
    app = Starlette(
        routes=routes,
        exception_handlers={
            OutcropError: handle_outcrop_error,
            HTTPException: _http_error,
        },
        # Inside Starlette's own catch-all (which answers a bare 500 and re-raises): anything
        # the handlers let through becomes a typed 500 here, and the connection stays usable.
        middleware=[Middleware(SafetyNetMiddleware)],
    )
    app.state.rate_limiter = rate_limiter
    limited = HeaderLimitMiddleware(BodyLimitMiddleware(app, max_body_bytes), max_header_bytes)
    return RequestIdMiddleware(LatencyMiddleware(limited, metrics))
