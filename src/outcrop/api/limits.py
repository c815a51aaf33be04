"""Abuse limits: request body and header size, and a per-account request rate (token bucket)."""

from __future__ import annotations

import threading
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outcrop.errors import ThrottlingError, ValidationError


class RateLimiter:
    """A token bucket per account: `rate` requests a second on average, bursts up to `burst`.

    Kept in this process's memory: with several API processes each enforces its own share.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # account -> (tokens, last refill)
        self._lock = threading.Lock()

    def check(self, account_id: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(account_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[account_id] = (tokens, now)
                raise ThrottlingError(
                    f"Rate exceeded: this account may make {self.rate:g} requests a second "
                    f"(bursts of {self.burst}); retry with backoff."
                )
            self._buckets[account_id] = (tokens - 1.0, now)


class BodyLimitMiddleware:
    """Refuse request bodies above `max_bytes` before reading them into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # A typed error, so the app's OutcropError handler answers 413 wherever
                    # the body is being read (a bare exception would become a 500 there).
                    raise RequestTooLarge(self._message())
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except RequestTooLarge:  # read outside any handler of the app's
            if not started:
                await self._refuse(send)

    def _message(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"message": self._message()})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-amzn-errortype", b"ValidationException"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class HeaderLimitMiddleware:
    """Refuse requests whose head (target and headers) is over `max_bytes` with a 431.

    uvicorn's h11_max_incomplete_event_size only bounds a head that is still arriving: one that
    comes in a single read (up to 256 KiB) is parsed whole and would pass; this makes the
    documented limit hold for every request.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_bytes:
                body = orjson.dumps(
                    {"message": f"The request headers are larger than {self.max_bytes} bytes."}
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": 431,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-amzn-errortype", b"ValidationException"),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class RequestTooLarge(ValidationError):
    """The body is over OUTCROP_MAX_REQUEST_BYTES: a ValidationException, with HTTP 413."""

    status = 413
