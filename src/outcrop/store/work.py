"""The engine's side of the job store: leases, validated files and shards, progress, finalisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update

from outcrop.domain.clock import to_us
from outcrop.domain.jobs import Job, JobStatus, RecordCounts
from outcrop.store.sql import SqlJobStore
from outcrop.store.tables import job_files, jobs, shards


@dataclass(frozen=True)
class InputFile:
    file_index: int
    input_key: str
    output_key: str
    record_count: int
    byte_size: int


@dataclass(frozen=True)
class Shard:
    shard_index: int
    file_index: int
    first_line: int
    start_offset: int
    record_count: int
    done: bool = False
    part_owner: str | None = None


@dataclass(frozen=True)
class ShardResult:
    success: int
    errors: int
    unprocessed: int
    input_tokens: int
    output_tokens: int


def job_lease_free(owner: str, now_us: int) -> ColumnElement[bool]:
    """A job's own lease is free for `owner`: nobody holds it, it ran out, or it is owner's."""
    return or_(
        jobs.c.lease_owner.is_(None), jobs.c.lease_expires_us < now_us, jobs.c.lease_owner == owner
    )


class WorkStore:
    """Operations the engine performs on jobs; every write is one short transaction."""

    def __init__(self, store: SqlJobStore, owner: str, lease_seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_us = int(lease_seconds * 1_000_000)

    def _now_us(self) -> int:
        return to_us(self.store.clock())

    # -- leases -------------------------------------------------------------------------

    def release_all_leases(self) -> None:
        """For an engine that is the only one on its database: forget a dead predecessor's leases."""
        with self.store.writing() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.lease_owner.is_not(None))
                .values(lease_owner=None, lease_expires_us=None)
            )

    def claim_jobs(self, statuses: Sequence[JobStatus], limit: int) -> list[Job]:
        """Lease up to `limit` jobs in the given statuses that nobody (alive) owns, oldest first."""
        now = self._now_us()
        claimable = job_lease_free(self.owner, now)
        stmt = (
            select(jobs.c.job_id)
            .where(jobs.c.status.in_([s.value for s in statuses]), claimable)
            .order_by(jobs.c.submit_us, jobs.c.job_id)
            .limit(limit)
        )
        # Engines ask every tick; look before taking the write lock, which is usually needless.
        with self.store.reading() as conn:
            if conn.scalar(stmt) is None:
                return []
        with self.store.writing() as conn:
            if not self.store._sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            ids = list(conn.scalars(stmt))
            if ids:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.job_id.in_(ids))
                    .values(lease_owner=self.owner, lease_expires_us=now + self.lease_us)
                )
        return [job for job_id in ids if (job := self.store.get_job(job_id)) is not None]

    def renew(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        with self.store.writing() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.job_id.in_(list(job_ids)), jobs.c.lease_owner == self.owner)
                .values(lease_expires_us=self._now_us() + self.lease_us)
            )

    def release(self, job_id: str) -> None:
        with self.store.writing() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_us=None)
            )

    # -- scheduling ---------------------------------------------------------------------

    def in_progress_counts(self) -> tuple[int, dict[str, int]]:
        """InProgress jobs overall and per modelId."""
        with self.store.reading() as conn:
            rows = conn.execute(
                select(jobs.c.model_id, func.count())
                .where(jobs.c.status == JobStatus.IN_PROGRESS.value)
                .group_by(jobs.c.model_id)
            ).all()
        per_model = {str(r[0]): int(r[1]) for r in rows}
        return sum(per_model.values()), per_model

    def scheduled_jobs(self, limit: int) -> list[Job]:
        with self.store.reading() as conn:
            ids = list(
                conn.scalars(
                    select(jobs.c.job_id)
                    .where(jobs.c.status == JobStatus.SCHEDULED.value)
                    .order_by(jobs.c.submit_us, jobs.c.job_id)
                    .limit(limit)
                )
            )
        return [job for job_id in ids if (job := self.store.get_job(job_id)) is not None]

    def expired_waiting_jobs(self, limit: int = 100) -> list[str]:
        """Jobs not yet InProgress whose jobExpirationTime has passed."""
        waiting = [JobStatus.SUBMITTED.value, JobStatus.VALIDATING.value, JobStatus.SCHEDULED.value]
        with self.store.reading() as conn:
            return list(
                conn.scalars(
                    select(jobs.c.job_id)
                    .where(jobs.c.status.in_(waiting), jobs.c.expiration_us <= self._now_us())
                    .limit(limit)
                )
            )

    def start_job(self, job_id: str) -> Job:
        """Scheduled -> InProgress; its shards are then claimed by whichever engines are free."""
        # parts_pending: part objects may exist from now until the job's parts are cleaned up
        return self.store.transition(
            job_id,
            JobStatus.IN_PROGRESS,
            None,
            expected=frozenset({JobStatus.SCHEDULED}),
            values={"parts_pending": 1},
        )

    def status_of(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        with self.store.reading() as conn:
            rows = conn.execute(
                select(jobs.c.job_id, jobs.c.status).where(jobs.c.job_id.in_(list(job_ids)))
            )
            return {r.job_id: JobStatus(r.status) for r in rows}

    # -- validation results -------------------------------------------------------------

    def save_plan(self, job_id: str, files: Sequence[InputFile], plan: Sequence[Shard]) -> Job:
        """Store the validated files and shards and move the job to Scheduled, atomically."""
        total = sum(f.record_count for f in files)
        with self.store.writing() as conn:
            if files:
                conn.execute(
                    insert(job_files),
                    [{"job_id": job_id, **f.__dict__} for f in files],
                )
            for start in range(0, len(plan), 5000):
                conn.execute(
                    insert(shards),
                    [
                        {
                            "job_id": job_id,
                            "shard_index": s.shard_index,
                            "file_index": s.file_index,
                            "first_line": s.first_line,
                            "start_offset": s.start_offset,
                            "record_count": s.record_count,
                        }
                        for s in plan[start : start + 5000]
                    ],
                )
            row = self.store._locked_row(conn, job_id)
            assert row is not None
            values = {
                "total_records": total,
                "processed_records": 0,
                "success_records": 0,
                "error_records": 0,
                "input_tokens": 0,
                "output_tokens": 0,
            }
            return self.store._transition(conn, row, JobStatus.SCHEDULED, None, values)

    def files(self, job_id: str) -> list[InputFile]:
        with self.store.reading() as conn:
            rows = conn.execute(
                select(job_files)
                .where(job_files.c.job_id == job_id)
                .order_by(job_files.c.file_index)
            )
            return [
                InputFile(r.file_index, r.input_key, r.output_key, r.record_count, r.byte_size)
                for r in rows
            ]

    def shards(self, job_id: str, pending_only: bool = False) -> list[Shard]:
        stmt = select(shards).where(shards.c.job_id == job_id).order_by(shards.c.shard_index)
        if pending_only:
            stmt = stmt.where(shards.c.done == 0)
        with self.store.reading() as conn:
            return [
                Shard(
                    r.shard_index,
                    r.file_index,
                    r.first_line,
                    r.start_offset,
                    r.record_count,
                    bool(r.done),
                    r.part_owner,
                )
                for r in conn.execute(stmt)
            ]

    # -- progress -----------------------------------------------------------------------

    def durable_counts(self, job_id: str) -> RecordCounts:
        """Counts summed over done shards: the exact, crash-proof figures."""
        with self.store.reading() as conn:
            row = conn.execute(
                select(
                    func.coalesce(func.sum(shards.c.success_records), 0),
                    func.coalesce(func.sum(shards.c.error_records), 0),
                    func.coalesce(func.sum(shards.c.input_tokens), 0),
                    func.coalesce(func.sum(shards.c.output_tokens), 0),
                ).where(shards.c.job_id == job_id, shards.c.done == 1)
            ).one()
        success, errors, in_tok, out_tok = (int(v) for v in row)
        return RecordCounts(
            processed=success + errors,
            success=success,
            error=errors,
            input_tokens=in_tok,
            output_tokens=out_tok,
        )

    # parts_pending: 0 no parts, 1 parts may exist, 2 parts may exist but the outputs are
    # already assembled from them (finalisation resumed after a crash skips the assembly).
    def outputs_assembled(self, job_id: str) -> bool:
        with self.store.reading() as conn:
            return conn.scalar(select(jobs.c.parts_pending).where(jobs.c.job_id == job_id)) == 2

    def mark_outputs_assembled(self, job_id: str) -> None:
        with self.store.writing() as conn:
            conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(parts_pending=2))

    def set_parts_pending(self, job_id: str, pending: bool) -> None:
        with self.store.writing() as conn:
            conn.execute(
                update(jobs).where(jobs.c.job_id == job_id).values(parts_pending=int(pending))
            )

    def jobs_with_parts_pending(self, limit: int = 20) -> list[Job]:
        terminal = [
            JobStatus.COMPLETED,
            JobStatus.PARTIALLY_COMPLETED,
            JobStatus.FAILED,
            JobStatus.STOPPED,
        ]
        with self.store.reading() as conn:
            ids = list(
                conn.scalars(
                    select(jobs.c.job_id)
                    .where(
                        and_(
                            jobs.c.parts_pending != 0,
                            jobs.c.status.in_([s.value for s in terminal]),
                        )
                    )
                    .limit(limit)
                )
            )
        return [job for job_id in ids if (job := self.store.get_job(job_id)) is not None]

    def finish(
        self,
        job_id: str,
        target: JobStatus,
        counts: RecordCounts | None,
        message: str | None = None,
    ) -> Job:
        """Move the job to a terminal status with its final counts, and drop the lease."""
        values: dict[str, Any] = {"lease_owner": None, "lease_expires_us": None}
        if counts is not None:
            values |= {
                "processed_records": counts.processed,
                "success_records": counts.success,
                "error_records": counts.error,
                "input_tokens": counts.input_tokens,
                "output_tokens": counts.output_tokens,
            }
        return self.store.transition(job_id, target, message, values=values)
