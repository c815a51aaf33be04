"""Shard leases: any number of engines share one job's shards, and whoever is free finalises it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.engine import Connection

from outcrop.domain.clock import to_us
from outcrop.domain.jobs import JobStatus
from outcrop.store.sql import SqlJobStore
from outcrop.store.tables import jobs, shards
from outcrop.store.work import Shard, ShardResult, job_lease_free

RUNNING = (JobStatus.IN_PROGRESS.value, JobStatus.STOPPING.value)
COUNTERS = ("success_records", "error_records", "input_tokens", "output_tokens")


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
            voided = [sum(getattr(r, name) for r in rows) for name in COUNTERS]
            self._move_job_counters(conn, job_id, [-v for v in voided])
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
        """Record in-flight progress of this engine's shards and move the job's counters."""
        total = [0, 0, 0, 0]
        with self.store.writing() as conn:
            for index, p in partials.items():
                figures = (p.success, p.errors, p.input_tokens, p.output_tokens)
                deltas = self._set_shard_counters(conn, job_id, index, figures)
                total = [t + d for t, d in zip(total, deltas or (0, 0, 0, 0), strict=True)]
            # The job row is locked last, once: shard rows before job rows in every transaction.
            self._move_job_counters(conn, job_id, total)

    def complete(self, job_id: str, shard_index: int, result: ShardResult) -> bool:
        """Mark a shard durably done with this engine's part (already written) as its output.

        False if the shard is no longer this engine's (its lease ran out and another engine took
        it over): this engine's part is then simply never used.
        """
        figures = (result.success, result.errors, result.input_tokens, result.output_tokens)
        with self.store.writing() as conn:
            deltas = self._set_shard_counters(
                conn,
                job_id,
                shard_index,
                figures,
                done=1,
                part_owner=self.owner,
                unprocessed_records=result.unprocessed,
                lease_owner=None,
                lease_expires_us=None,
            )
            if deltas is None:
                return False
            self._move_job_counters(conn, job_id, deltas)
            return True

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

    # The job's counters are the sum of its shards' (live partials while a shard is leased, final
    # figures once done). Every change to a shard's counters moves the job's by the difference,
    # in the same transaction: constant work per change (a recount summed every shard of the
    # job), and with PostgreSQL's row locks two engines' changes add up instead of racing.

    def _set_shard_counters(
        self,
        conn: Connection,
        job_id: str,
        shard_index: int,
        figures: tuple[int, int, int, int],
        **changes: object,
    ) -> list[int] | None:
        """Set the counters of one of this engine's unfinished shards and return how much they
        moved (for the job's counters); None if the shard is not ours."""
        mine = and_(
            shards.c.job_id == job_id,
            shards.c.shard_index == shard_index,
            shards.c.done == 0,
            shards.c.lease_owner == self.owner,
        )
        stmt = select(*(shards.c[name] for name in COUNTERS)).where(mine)
        if not self.store._sqlite:
            stmt = stmt.with_for_update()
        before = conn.execute(stmt).first()
        if before is None:
            return None
        conn.execute(
            update(shards)
            .where(mine)
            .values(**dict(zip(COUNTERS, figures, strict=True)), **changes)
        )
        return [new - old for new, old in zip(figures, before, strict=True)]

    @staticmethod
    def _move_job_counters(conn: Connection, job_id: str, deltas: Sequence[int]) -> None:
        success, errors, in_tokens, out_tokens = deltas
        if not any(deltas):
            return
        conn.execute(
            update(jobs)
            .where(jobs.c.job_id == job_id, jobs.c.status.in_(RUNNING))
            .values(
                processed_records=jobs.c.processed_records + success + errors,
                success_records=jobs.c.success_records + success,
                error_records=jobs.c.error_records + errors,
                input_tokens=jobs.c.input_tokens + in_tokens,
                output_tokens=jobs.c.output_tokens + out_tokens,
            )
        )
