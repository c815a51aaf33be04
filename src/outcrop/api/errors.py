"""The one place where Outcrop's typed errors become AWS restJson1 wire errors."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outcrop.errors import InternalServerError, OutcropError, TooManyTagsError

log = logging.getLogger(__name__)


def error_response(exc: OutcropError) -> Response:
    body: dict[str, str] = {"message": exc.message}
    if isinstance(exc, TooManyTagsError) and exc.resource_name:
        body["resourceName"] = exc.resource_name
    return Response(
        orjson.dumps(body),
        status_code=exc.status,
        media_type="application/json",
        headers={"x-amzn-ErrorType": exc.code},
    )


def wire_error(code: str, status: int, message: str) -> Response:
    """An AWS-shaped error for conditions outside the typed tree (unknown route, bad method)."""
    return Response(
        orjson.dumps({"message": message}),
        status_code=status,
        media_type="application/json",
        headers={"x-amzn-ErrorType": code},
    )


async def handle_outcrop_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OutcropError)
    if exc.status >= 500:
        log.error("request failed: %s", exc.message)
    return error_response(exc)


class SafetyNetMiddleware:
    """Turn any exception that escaped the handlers into a typed 500 (InternalServerException).

    Installed inside Starlette's own catch-all, which would answer a bare 500 (no error type)
    and re-raise, making the server drop the kept-alive connection; answering here gives the
    client a typed, retryable error on a connection that stays usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # the response is half sent; only closing the connection is left
            response = error_response(
                InternalServerError("An internal error occurred; see the server log.")
            )
            await response(scope, receive, send)
