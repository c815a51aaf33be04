"""An adaptive (AIMD) concurrency limiter for asyncio: halve on throttling, grow by one when healthy."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal

Outcome = Literal["ok", "throttled", "error"]


class Slot:
    """One admitted call; the holder reports how it went (default: "error", which is neutral)."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome: Outcome = "error"


class AIMDLimiter:
    """Admits at most `limit` concurrent holders; `limit` moves between 1 and `max_limit`.

    - "throttled" halves the limit (floor 1), at most once per `decrease_interval_s`: a burst of
      429s from requests that were all in flight together is one signal, not many.
    - "ok" counts towards growth: after `limit` successes the limit grows by one, up to max_limit.
    - "error" (timeouts, connection failures, bad answers) leaves the limit alone: they say nothing
      reliable about the server's capacity.

    Holders admitted before a decrease keep their slots, so right after a decrease `in_flight`
    may exceed `limit` (never `max_limit`); nobody new is admitted until it drops below `limit`.
    Waiters are admitted in arrival order. Not thread-safe: use it from one event loop.
    """

    def __init__(
        self,
        max_limit: int,
        *,
        decrease_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_limit < 1:
            raise ValueError("max_limit must be >= 1")
        self.max_limit = max_limit
        self.decrease_interval_s = decrease_interval_s
        self._clock = clock
        self._limit = max_limit
        self._in_flight = 0
        self._successes = 0
        self._last_decrease = -float("inf")
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.decreases = 0
        self.increases = 0
        self.max_in_flight_seen = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self) -> None:
        """Wait for a slot. Every successful acquire must be paired with one `release`."""
        if self._in_flight < self._limit and not self._waiters:
            self._take()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as we were cancelled: pass it on.
                self._in_flight -= 1
                self._admit()
            elif waiter in self._waiters:  # `_admit` may already have dropped it
                self._waiters.remove(waiter)
            raise

    def release(self, outcome: Outcome) -> None:
        """Give a slot back and adjust the limit by how the call went."""
        self._in_flight -= 1
        if outcome == "ok":
            self._successes += 1
            if self._successes >= self._limit:
                self._successes = 0
                if self._limit < self.max_limit:
                    self._limit += 1
                    self.increases += 1
        elif outcome == "throttled":
            now = self._clock()
            if now - self._last_decrease >= self.decrease_interval_s:
                self._last_decrease = now
                self._successes = 0
                new_limit = max(1, self._limit // 2)
                if new_limit < self._limit:
                    self._limit = new_limit
                    self.decreases += 1
        self._admit()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """`async with limiter.slot() as s: ...; s.outcome = "ok"` — released even on errors."""
        await self.acquire()
        held = Slot()
        try:
            yield held
        finally:
            self.release(held.outcome)

    def _take(self) -> None:
        self._in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)

    def _admit(self) -> None:
        # Hand slots straight to waiters so a newcomer cannot slip in between wake-up and resume.
        while self._waiters and self._in_flight < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)
