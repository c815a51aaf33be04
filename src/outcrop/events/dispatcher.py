"""Delivers routed events at least once, in order per job and target, with backoff and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from dataclasses import dataclass
from typing import Any

from outcrop.domain.clock import to_us, utcnow
from outcrop.events.rules import RuleSet
from outcrop.events.targets import DeliveryError
from outcrop.metrics import Metrics
from outcrop.polling import PollInterval
from outcrop.store.outbox import Delivery, OutboxStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatcherSettings:
    retry_window_s: float
    retry_base_s: float
    retry_max_s: float
    lease_seconds: float
    poll_interval_s: float
    concurrency: int
    idle_poll_interval_s: float | None = None  # None: never slower than poll_interval_s


class Dispatcher:
    """Own thread, own loop. Routing and claiming go through the store, so several processes can
    run dispatchers against one database without delivering a delivery twice."""

    def __init__(
        self,
        outbox: OutboxStore,
        rules: RuleSet,
        settings: DispatcherSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.outbox = outbox
        self.rules = rules
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.stats = {"delivered": 0, "failed": 0, "dead": 0}

    def start(self) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name="outcrop-events", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            settings = self.settings
            polls = PollInterval(
                settings.poll_interval_s, settings.idle_poll_interval_s or settings.poll_interval_s
            )
            while not self._stop.is_set():
                busy = False
                try:
                    busy = await self._pass()
                except Exception:
                    log.exception("event dispatch pass failed")
                wait = polls.after(busy)
                if not busy:
                    # New events of this process wake it; only retries coming due and other
                    # processes' events wait for the poll.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    self._wake.clear()
        finally:
            await self.rules.aclose()

    async def _pass(self) -> bool:
        routed = await asyncio.to_thread(self.outbox.route, self.rules.targets_for)
        # Claim no more than can start at once, so every claimed delivery is attempted well
        # within its lease (and no other dispatcher can take it meanwhile).
        due = await asyncio.to_thread(
            self.outbox.claim_due, self.settings.concurrency, self.settings.lease_seconds
        )
        if not due:
            return routed > 0
        # Deliveries of one (job, target) are claimed one at a time (the store only offers the
        # earliest pending one), so running the claimed batch concurrently keeps per-job order.
        outcomes = await asyncio.gather(*(self._deliver(d, e) for d, e in due))
        delivered = [d for d, ok in zip(due, outcomes, strict=True) if ok]
        await asyncio.to_thread(self.outbox.mark_delivered, [d.id for d, _ in delivered])
        for delivery, _event in delivered:
            self._count(delivery.target, "delivered")
        return True

    async def _deliver(self, delivery: Delivery, event: dict[str, Any]) -> bool:
        """One attempt; True if delivered (recorded by the caller), failures recorded here."""
        target = self.rules.target(delivery.target)
        try:
            if target is None:
                raise DeliveryError(f"target {delivery.target} is no longer configured")
            await target.deliver(event)
        except DeliveryError as exc:
            await asyncio.to_thread(self._failed, delivery, str(exc))
            return False
        except Exception as exc:  # a bug in a target must not stop the dispatcher
            log.exception("target %s raised", delivery.target)
            await asyncio.to_thread(self._failed, delivery, f"{type(exc).__name__}: {exc}")
            return False
        return True

    def _count(self, target: str, result: str) -> None:
        self.stats[result] += 1
        if self.metrics is not None:
            self.metrics.event_deliveries.labels(target, result).inc()

    def _failed(self, delivery: Delivery, error: str) -> None:
        now = to_us(utcnow())
        s = self.settings
        backoff = min(s.retry_max_s, s.retry_base_s * 2 ** min(delivery.attempts, 30))
        backoff *= random.uniform(0.5, 1.0)  # jitter spreads retries of many deliveries
        next_attempt = now + int(backoff * 1_000_000)
        dead = next_attempt - delivery.created_us > s.retry_window_s * 1_000_000
        self.outbox.mark_failed(delivery.id, error, next_attempt, dead)
        self._count(delivery.target, "dead" if dead else "failed")
        log.info(
            "delivery %s to %s failed (%s)%s",
            delivery.id,
            delivery.target,
            error,
            "; dead-lettered" if dead else "",
        )
