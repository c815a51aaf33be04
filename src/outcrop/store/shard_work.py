"""Shard leases: any number of engines share one job's shards, and whoever is free finalises it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.engine import Connection

from outcrop.domain.clock import to_us
from outcrop.domain.jobs import JobStatus
from outcrop.store.sql import SqlJobStore
from outcrop.store.tables import jobs, shards
from outcrop.store.work import Shard, ShardResult, job_lease_free

RUNNING = (JobStatus.IN_PROGRESS.value, JobStatus.STOPPING.value)


@dataclass(frozen=True)
class Partial:
    success: int
    errors: int
    input_tokens: int
    output_tokens: int


class ShardWork:
    """While a shard is leased its row's counters hold the live partial progress of the engine
    working on it; once done they hold its final figures. Job counters are their sum."""

    def __init__(self, store: SqlJobStore, owner: str, lease_seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_us = int(lease_seconds * 1_000_000)

    def _now_us(self) -> int:
        return to_us(self.store.clock())

    def _free(self, now: int) -> object:
        return or_(shards.c.lease_owner.is_(None), shards.c.lease_expires_us < now)

    def release_all(self) -> None:
        """For the only engine on a database: a dead predecessor's shard leases end now."""
        with self.store.writing() as conn:
            conn.execute(
                update(shards)
                .where(shards.c.lease_owner.is_not(None))
                .values(lease_owner=None, lease_expires_us=None)
            )

    def runnable_jobs(self, limit: int) -> list[str]:
        """InProgress jobs, not past their deadline, that still have shards nobody is working on."""
        now = self._now_us()
        with self.store.reading() as conn:
            pending = exists().where(
                and_(shards.c.job_id == jobs.c.job_id, shards.c.done == 0, self._free(now))  # type: ignore[arg-type]
            )
            stmt = (
                select(jobs.c.job_id)
                .where(
                    jobs.c.status == JobStatus.IN_PROGRESS.value,
                    jobs.c.expiration_us > now,
                    pending,
                )
                .order_by(jobs.c.submit_us, jobs.c.job_id)
                .limit(limit)
            )
            return list(conn.scalars(stmt))

    def claim(self, job_id: str, limit: int) -> list[Shard]:
        """Lease up to `limit` pending shards of one job, lowest index first."""
        if limit <= 0:
            return []
        now = self._now_us()
        with self.store.writing() as conn:
            stmt = (
                select(shards)
                .where(shards.c.job_id == job_id, shards.c.done == 0, self._free(now))  # type: ignore[arg-type]
                .order_by(shards.c.shard_index)
                .limit(limit)
            )
            if not self.store._sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = conn.execute(stmt).all()
            if not rows:
                return []
            indexes = [r.shard_index for r in rows]
            conn.execute(
                update(shards)
                .where(shards.c.job_id == job_id, shards.c.shard_index.in_(indexes))
                .values(
                    lease_owner=self.owner,
                    lease_expires_us=now + self.lease_us,
                    # a previous holder's partial progress is void: the shard starts over
                    success_records=0,
                    error_records=0,
                    input_tokens=0,
                    output_tokens=0,
                )
            )
            self._recount(conn, job_id)
        return [
            Shard(r.shard_index, r.file_index, r.first_line, r.start_offset, r.record_count)
            for r in rows
        ]

    def renew(self, keys: Sequence[tuple[str, int]]) -> None:
        if not keys:
            return
        until = self._now_us() + self.lease_us
        with self.store.writing() as conn:
            for job_id in {k[0] for k in keys}:
                indexes = [k[1] for k in keys if k[0] == job_id]
                conn.execute(
                    update(shards)
                    .where(
                        shards.c.job_id == job_id,
                        shards.c.shard_index.in_(indexes),
                        shards.c.lease_owner == self.owner,
                    )
                    .values(lease_expires_us=until)
                )

    def publish(self, job_id: str, partials: dict[int, Partial]) -> None:
        """Record in-flight progress of this engine's shards and refresh the job's counters."""
        with self.store.writing() as conn:
            for index, p in partials.items():
                conn.execute(
                    update(shards)
                    .where(
                        shards.c.job_id == job_id,
                        shards.c.shard_index == index,
                        shards.c.done == 0,
                        shards.c.lease_owner == self.owner,
                    )
                    .values(
                        success_records=p.success,
                        error_records=p.errors,
                        input_tokens=p.input_tokens,
                        output_tokens=p.output_tokens,
                    )
                )
            self._recount(conn, job_id)

    def complete(self, job_id: str, shard_index: int, result: ShardResult) -> bool:
        """Mark a shard durably done with this engine's part (already written) as its output.

        False if the shard is no longer this engine's (its lease ran out and another engine took
        it over): this engine's part is then simply never used.
        """
        with self.store.writing() as conn:
            changed = conn.execute(
                update(shards)
                .where(
                    shards.c.job_id == job_id,
                    shards.c.shard_index == shard_index,
                    shards.c.done == 0,
                    shards.c.lease_owner == self.owner,
                )
                .values(
                    done=1,
                    part_owner=self.owner,
                    success_records=result.success,
                    error_records=result.errors,
                    unprocessed_records=result.unprocessed,
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                    lease_owner=None,
                    lease_expires_us=None,
                )
            ).rowcount
            self._recount(conn, job_id)
        return bool(changed)

    def release(self, job_id: str, shard_index: int) -> None:
        """Give an unfinished shard back (this engine is shutting down)."""
        with self.store.writing() as conn:
            conn.execute(
                update(shards)
                .where(
                    shards.c.job_id == job_id,
                    shards.c.shard_index == shard_index,
                    shards.c.lease_owner == self.owner,
                )
                .values(lease_owner=None, lease_expires_us=None)
            )

    def finalizable_jobs(self, limit: int) -> list[str]:
        """Running jobs with no shard being worked on, and either nothing left to do or no more
        reason to do it (Stop was asked, or the deadline passed)."""
        now = self._now_us()
        active = exists().where(
            and_(
                shards.c.job_id == jobs.c.job_id,
                shards.c.done == 0,
                shards.c.lease_expires_us >= now,
            )
        )
        pending = exists().where(and_(shards.c.job_id == jobs.c.job_id, shards.c.done == 0))
        lease_free = job_lease_free(self.owner, now)
        with self.store.reading() as conn:
            stmt = (
                select(jobs.c.job_id)
                .where(
                    jobs.c.status.in_(RUNNING),
                    jobs.c.total_records.is_not(None),
                    lease_free,
                    ~active,
                    or_(
                        ~pending,
                        jobs.c.status == JobStatus.STOPPING.value,
                        jobs.c.expiration_us <= now,
                    ),
                )
                .order_by(jobs.c.submit_us)
                .limit(limit)
            )
            return list(conn.scalars(stmt))

    def claim_job(self, job_id: str) -> bool:
        """Take the job's own lease (to finalise it); False if another engine holds it."""
        now = self._now_us()
        with self.store.writing() as conn:
            changed = conn.execute(
                update(jobs)
                .where(
                    jobs.c.job_id == job_id,
                    job_lease_free(self.owner, now),
                )
                .values(lease_owner=self.owner, lease_expires_us=now + self.lease_us)
            ).rowcount
        return bool(changed)

    @staticmethod
    def _recount(conn: Connection, job_id: str) -> None:
        sums = conn.execute(
            select(
                func.coalesce(func.sum(shards.c.success_records), 0),
                func.coalesce(func.sum(shards.c.error_records), 0),
                func.coalesce(func.sum(shards.c.input_tokens), 0),
                func.coalesce(func.sum(shards.c.output_tokens), 0),
            ).where(shards.c.job_id == job_id)
        ).one()
        success, errors, in_tok, out_tok = (int(v) for v in sums)
        conn.execute(
            update(jobs)
            .where(jobs.c.job_id == job_id, jobs.c.status.in_(RUNNING))
            .values(
                processed_records=success + errors,
                success_records=success,
                error_records=errors,
                input_tokens=in_tok,
                output_tokens=out_tok,
            )
        )
