"""Riding out storage outages: a job's shards and finalisation retry with backoff for a while."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Streak:
    since: float
    failures: int = 0
    next_at: float = 0.0


class StorageRetry:
    """Per job: since when storage has kept failing, and when to try it again.

    An unreachable S3 endpoint or a briefly full disk usually recovers, and failing a long job
    for it would throw away hours of work. So a StorageError while a shard or the finalisation
    of a job touches storage is retried with jittered exponential backoff; the job fails only
    once storage has failed for `budget_s` seconds without one success in between.
    """

    def __init__(
        self,
        budget_s: float,
        base_s: float = 0.2,
        cap_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget_s = budget_s
        self.base_s = base_s
        self.cap_s = cap_s
        self._clock = clock
        self._streaks: dict[str, _Streak] = {}

    def failed(self, job_id: str) -> float | None:
        """Note a failure: the seconds to wait before trying again, or None once the budget is
        spent (the job should fail)."""
        now = self._clock()
        streak = self._streaks.setdefault(job_id, _Streak(since=now))
        left = streak.since + self.budget_s - now
        if left <= 0:
            self._streaks.pop(job_id, None)
            return None
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(streak.failures, 30))
        streak.failures += 1
        # Half fixed, half jitter: shards that failed together do not retry together. The last
        # try lands at the budget's end, so a recovery just before it still saves the job.
        delay = min(ceiling / 2 + random.uniform(0, ceiling / 2), left)
        streak.next_at = now + delay
        return delay

    def succeeded(self, job_id: str) -> None:
        self._streaks.pop(job_id, None)

    def ready(self, job_id: str) -> bool:
        """False while the job is waiting out a backoff (no new storage work should start)."""
        streak = self._streaks.get(job_id)
        return streak is None or self._clock() >= streak.next_at

    def message(self, exc: Exception) -> str:
        if self.budget_s <= 0:
            return str(exc)
        return f"{exc} (storage kept failing for {self.budget_s:g} s of retries)"
