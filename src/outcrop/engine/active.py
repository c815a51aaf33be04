"""A job this engine is working on: its shard context, stop signal, and shards in flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from outcrop.domain.clock import utcnow
from outcrop.domain.jobs import Job, JobStatus
from outcrop.engine.progress import Tally
from outcrop.engine.shard import ShardContext

STOPPED_MESSAGE = "The job was stopped before this record was processed."
TIMED_OUT_MESSAGE = "The job's time ran out before this record was processed."


@dataclass
class ActiveJob:
    job: Job
    ctx: ShardContext
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: JobStatus | None = None  # STOPPED or PARTIALLY_COMPLETED
    in_flight: dict[int, Tally] = field(default_factory=dict)
    last_manifest: float = 0.0

    def request_stop(self, reason: JobStatus) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()

    def check(self, status: JobStatus | None) -> None:
        """React to the job's current status and deadline."""
        if status == JobStatus.STOPPING:
            self.request_stop(JobStatus.STOPPED)
        elif utcnow() >= self.job.job_expiration_time:
            self.request_stop(JobStatus.PARTIALLY_COMPLETED)


def unprocessed_message(reason: JobStatus | None) -> str:
    return TIMED_OUT_MESSAGE if reason == JobStatus.PARTIALLY_COMPLETED else STOPPED_MESSAGE
