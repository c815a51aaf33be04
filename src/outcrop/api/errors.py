"""The one place where Outcrop's typed errors become AWS restJson1 wire errors."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

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


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    # Never leak internals: log the traceback with the request id, answer a typed 500.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(InternalServerError("An internal error occurred; see the server log."))
