"""SQLAlchemy implementation of the job store (SQLite and PostgreSQL, portable SQL only)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from outcrop.domain.clock import from_us, to_us, utcnow
from outcrop.domain.jobs import (
    ACTIVE_STATUSES,
    Job,
    JobSpec,
    JobStatus,
    ListQuery,
    RecordCounts,
    Tag,
    Transition,
    check_transition,
    new_job_id,
)
from outcrop.errors import (
    ConflictError,
    InternalServerError,
    ResourceNotFoundError,
    ServiceQuotaExceededError,
    TooManyTagsError,
)
from outcrop.events.envelope import state_change_event
from outcrop.store.tables import (
    access_keys,
    accounts,
    events,
    job_tags,
    job_transitions,
    jobs,
    meta,
)

MAX_TAGS_PER_JOB = 50


def request_hash(spec: JobSpec) -> str:
    """Fingerprint of a create request, without its token, to tell a retry from a different ask."""
    body = asdict(replace(spec, client_request_token=None))
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class SqlJobStore:
    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._sqlite = engine.dialect.name == "sqlite"
        # Called (without arguments) after a transaction that wrote events commits, so an
        # in-process dispatcher can deliver at once instead of at its next poll.
        self.event_listeners: list[Callable[[], None]] = []

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self._sqlite:
                conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn
            if conn.info.pop("emitted", False):
                for listener in self.event_listeners:
                    listener()  # after commit: the events are visible to whoever wakes up

    # -- meta, accounts, keys ----------------------------------------------------------

    def meta_value(self, key: str, default_factory: Callable[[], str]) -> str:
        """Return a stored server-wide value, creating it once (all processes agree on it)."""
        with self.reading() as conn:
            value = conn.scalar(select(meta.c.value).where(meta.c.key == key))
        if value is not None:
            return str(value)
        try:
            with self.writing() as conn:
                value = conn.scalar(select(meta.c.value).where(meta.c.key == key))
                if value is None:
                    value = default_factory()
                    conn.execute(insert(meta).values(key=key, value=value))
        except IntegrityError:  # another process created it first
            with self.reading() as conn:
                value = conn.scalar(select(meta.c.value).where(meta.c.key == key))
        return str(value)

    def ensure_account(self, account_id: str, name: str) -> None:
        with self.writing() as conn:
            exists = conn.scalar(
                select(accounts.c.account_id).where(accounts.c.account_id == account_id)
            )
            if exists is None:
                conn.execute(
                    insert(accounts).values(
                        account_id=account_id, name=name, created_us=to_us(self.clock())
                    )
                )

    def list_accounts(self) -> list[tuple[str, str]]:
        with self.reading() as conn:
            rows = conn.execute(
                select(accounts.c.account_id, accounts.c.name).order_by(accounts.c.created_us)
            )
            return [(r.account_id, r.name) for r in rows]

    def put_access_key(self, access_key_id: str, secret: str, account_id: str) -> None:
        with self.writing() as conn:
            current = conn.execute(
                select(access_keys).where(access_keys.c.access_key_id == access_key_id)
            ).first()
            if current is None:
                conn.execute(
                    insert(access_keys).values(
                        access_key_id=access_key_id,
                        secret_access_key=secret,
                        account_id=account_id,
                        created_us=to_us(self.clock()),
                    )
                )
            elif current.secret_access_key != secret or current.account_id != account_id:
                conn.execute(
                    update(access_keys)
                    .where(access_keys.c.access_key_id == access_key_id)
                    .values(secret_access_key=secret, account_id=account_id)
                )

    def find_access_key(self, access_key_id: str) -> tuple[str, str] | None:
        """Return (secret, account_id) for a key id, or None."""
        with self.reading() as conn:
            row = conn.execute(
                select(access_keys.c.secret_access_key, access_keys.c.account_id).where(
                    access_keys.c.access_key_id == access_key_id
                )
            ).first()
        return None if row is None else (row.secret_access_key, row.account_id)

    def access_keys_of(self, account_id: str) -> list[tuple[str, str]]:
        with self.reading() as conn:
            rows = conn.execute(
                select(access_keys.c.access_key_id, access_keys.c.secret_access_key)
                .where(access_keys.c.account_id == account_id)
                .order_by(access_keys.c.created_us)
            )
            return [(r.access_key_id, r.secret_access_key) for r in rows]

    # -- jobs ---------------------------------------------------------------------------

    def create_job(
        self,
        account_id: str,
        region: str,
        spec: JobSpec,
        hour_seconds: float,
        max_active: int | None = None,
    ) -> tuple[Job, bool]:
        """Insert a Submitted job; with a known clientRequestToken return the original instead.

        Returns (job, created). The same token with a different request is a ConflictError; a
        new job beyond `max_active` submitted-to-stopping jobs is a ServiceQuotaExceededError
        (checked in the inserting transaction, so concurrent creates cannot overshoot).
        """
        fingerprint = request_hash(spec)
        failure: IntegrityError | None = None
        for _attempt in range(3):
            try:
                with self.writing() as conn:
                    if not self._sqlite:  # serialise this account's creates (SQLite already does)
                        conn.execute(
                            select(accounts.c.account_id)
                            .where(accounts.c.account_id == account_id)
                            .with_for_update()
                        )
                    if spec.client_request_token is not None:
                        existing = self._by_token(conn, account_id, spec.client_request_token)
                        if existing is not None:
                            if existing.request_hash != fingerprint:
                                raise ConflictError(
                                    "The clientRequestToken was already used with a different "
                                    "request in this account."
                                )
                            return self._job(conn, existing), False
                    if max_active is not None:
                        active = self._count_active(conn, account_id)
                        if active >= max_active:
                            raise ServiceQuotaExceededError(
                                f"This account already has {active} submitted or in-progress jobs; "
                                f"the quota is {max_active}."
                            )
                    now = self.clock()
                    now_us = to_us(now)
                    expiration = now + timedelta(seconds=spec.timeout_hours * hour_seconds)
                    job_id = new_job_id()
                    conn.execute(
                        insert(jobs).values(
                            job_id=job_id,
                            account_id=account_id,
                            region=region,
                            job_name=spec.job_name,
                            model_id=spec.model_id,
                            role_arn=spec.role_arn,
                            client_request_token=spec.client_request_token,
                            request_hash=fingerprint,
                            status=JobStatus.SUBMITTED.value,
                            submit_us=now_us,
                            last_modified_us=now_us,
                            expiration_us=to_us(expiration),
                            timeout_hours=spec.timeout_hours,
                            invocation_type=spec.invocation_type,
                            input_s3_uri=spec.input_s3_uri,
                            input_format=spec.input_format,
                            input_bucket_owner=spec.input_bucket_owner,
                            output_s3_uri=spec.output_s3_uri,
                            output_kms_key_id=spec.output_kms_key_id,
                            output_bucket_owner=spec.output_bucket_owner,
                            vpc_config=json.dumps(spec.vpc_config) if spec.vpc_config else None,
                        )
                    )
                    if spec.tags:
                        conn.execute(
                            insert(job_tags),
                            [{"job_id": job_id, "key": t.key, "value": t.value} for t in spec.tags],
                        )
                    self._record_transition(conn, job_id, JobStatus.SUBMITTED, now_us, None)
                    row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).one()
                    job = self._job(conn, row)
                    self._emit(conn, job, now_us)
                    return job, True
            except IntegrityError as exc:
                # A concurrent create won the race for this token (or, astronomically rarely,
                # the random job id collided): the next attempt reads the token back.
                failure = exc
                continue
        raise InternalServerError(f"Could not store the job: {type(failure).__name__}")

    def job_id_for_token(self, account_id: str, token: str) -> str | None:
        with self.reading() as conn:
            row = self._by_token(conn, account_id, token)
        return None if row is None else str(row.job_id)

    def get_job(self, job_id: str) -> Job | None:
        with self.reading() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
            return None if row is None else self._job(conn, row)

    def require_job(self, account_id: str, job_id: str) -> Job:
        job = self.get_job(job_id)
        if job is None or job.account_id != account_id:
            raise ResourceNotFoundError(f"Job {job_id} was not found.")
        return job

    def list_jobs(self, account_id: str, query: ListQuery) -> list[Job]:
        key = tuple_(jobs.c.submit_us, jobs.c.job_id)
        stmt = select(jobs).where(jobs.c.account_id == account_id)
        if query.status is not None:
            stmt = stmt.where(jobs.c.status == query.status.value)
        if query.name_contains:
            escaped = (
                query.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            )
            # Case-insensitive on every database (SQLite's LIKE already is; PostgreSQL's is not).
            stmt = stmt.where(jobs.c.job_name.ilike(f"%{escaped}%", escape="\\"))
        if query.submitted_after is not None:
            stmt = stmt.where(jobs.c.submit_us > to_us(query.submitted_after))
        if query.submitted_before is not None:
            stmt = stmt.where(jobs.c.submit_us < to_us(query.submitted_before))
        if query.after is not None:
            stmt = stmt.where(
                key > tuple_(*query.after) if query.ascending else key < tuple_(*query.after)
            )
        if query.ascending:
            stmt = stmt.order_by(jobs.c.submit_us.asc(), jobs.c.job_id.asc())
        else:
            stmt = stmt.order_by(jobs.c.submit_us.desc(), jobs.c.job_id.desc())
        with self.reading() as conn:
            rows = conn.execute(stmt.limit(query.limit)).all()
            return [self._job(conn, row, with_tags=False) for row in rows]

    def count_active_jobs(self, account_id: str) -> int:
        with self.reading() as conn:
            return self._count_active(conn, account_id)

    @staticmethod
    def _count_active(conn: Connection, account_id: str) -> int:
        return int(
            conn.scalar(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.account_id == account_id)
                .where(jobs.c.status.in_([s.value for s in ACTIVE_STATUSES]))
            )
            or 0
        )

    def request_stop(self, account_id: str, job_id: str) -> Job:
        """StopModelInvocationJob: idempotent on Stopping/Stopped, Conflict on other terminal states."""
        with self.writing() as conn:
            row = self._locked_row(conn, job_id)
            if row is None or row.account_id != account_id:
                raise ResourceNotFoundError(f"Job {job_id} was not found.")
            status = JobStatus(row.status)
            if status in (JobStatus.STOPPING, JobStatus.STOPPED):
                return self._job(conn, row)
            if status not in ACTIVE_STATUSES:
                raise ConflictError(f"The job is already {status} and cannot be stopped.")
            return self._transition(conn, row, JobStatus.STOPPING, None)

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        message: str | None = None,
        *,
        expected: frozenset[JobStatus] | None = None,
        values: dict[str, Any] | None = None,
    ) -> Job:
        """Move a job to `target` (checked against the status machine) and record the transition."""
        with self.writing() as conn:
            row = self._locked_row(conn, job_id)
            if row is None:
                raise ResourceNotFoundError(f"Job {job_id} was not found.")
            if expected is not None and JobStatus(row.status) not in expected:
                raise ConflictError(f"Job {job_id} is {row.status}, not one of {sorted(expected)}.")
            return self._transition(conn, row, target, message, values)

    def transitions(self, job_id: str) -> list[Transition]:
        with self.reading() as conn:
            rows = conn.execute(
                select(job_transitions)
                .where(job_transitions.c.job_id == job_id)
                .order_by(job_transitions.c.id)
            )
            return [Transition(JobStatus(r.status), from_us(r.at_us), r.message) for r in rows]

    # -- tags ---------------------------------------------------------------------------

    def list_tags(self, job_id: str) -> list[Tag]:
        with self.reading() as conn:
            return self._tags(conn, job_id)

    def tag_job(self, job_id: str, tags: list[Tag], resource_name: str) -> None:
        with self.writing() as conn:
            current = {t.key: t.value for t in self._tags(conn, job_id)}
            merged = current | {t.key: t.value for t in tags}
            if len(merged) > MAX_TAGS_PER_JOB:
                raise TooManyTagsError(
                    f"A job can have at most {MAX_TAGS_PER_JOB} tags; this request would leave "
                    f"{len(merged)}.",
                    resource_name,
                )
            for tag in tags:
                if tag.key in current:
                    conn.execute(
                        update(job_tags)
                        .where(job_tags.c.job_id == job_id, job_tags.c.key == tag.key)
                        .values(value=tag.value)
                    )
                else:
                    conn.execute(
                        insert(job_tags).values(job_id=job_id, key=tag.key, value=tag.value)
                    )
                current[tag.key] = tag.value
            self._touch(conn, job_id)

    def untag_job(self, job_id: str, keys: list[str]) -> None:
        with self.writing() as conn:
            if keys:
                conn.execute(
                    delete(job_tags).where(job_tags.c.job_id == job_id, job_tags.c.key.in_(keys))
                )
            self._touch(conn, job_id)

    # -- internals ----------------------------------------------------------------------

    def _touch(self, conn: Connection, job_id: str) -> None:
        conn.execute(
            update(jobs).where(jobs.c.job_id == job_id).values(last_modified_us=to_us(self.clock()))
        )

    def _locked_row(self, conn: Connection, job_id: str) -> Row[Any] | None:
        stmt = select(jobs).where(jobs.c.job_id == job_id)
        if not self._sqlite:  # SQLite's IMMEDIATE transaction already serialises writers
            stmt = stmt.with_for_update()
        return conn.execute(stmt).first()

    def _transition(
        self,
        conn: Connection,
        row: Row[Any],
        target: JobStatus,
        message: str | None,
        values: dict[str, Any] | None = None,
    ) -> Job:
        check_transition(JobStatus(row.status), target)
        now_us = to_us(self.clock())
        changes: dict[str, Any] = {
            "status": target.value,
            "last_modified_us": now_us,
            **(values or {}),
        }
        if message is not None:
            changes["message"] = message[:2048]
        if target.value not in {s.value for s in ACTIVE_STATUSES}:
            changes["end_us"] = now_us
        conn.execute(update(jobs).where(jobs.c.job_id == row.job_id).values(**changes))
        self._record_transition(
            conn, row.job_id, target, now_us, message[:2048] if message else None
        )
        updated = conn.execute(select(jobs).where(jobs.c.job_id == row.job_id)).one()
        job = self._job(conn, updated)
        self._emit(conn, job, now_us)
        return job

    @staticmethod
    def _emit(conn: Connection, job: Job, at_us: int) -> None:
        """Write the state-change event into the outbox, in the caller's transaction: a status
        change and its event commit together or not at all."""
        conn.info["emitted"] = True
        event = state_change_event(job, from_us(at_us))
        conn.execute(
            insert(events).values(
                event_id=event["id"],
                account_id=job.account_id,
                job_id=job.job_id,
                status=job.status.value,
                time_us=at_us,
                payload=json.dumps(event),
            )
        )

    @staticmethod
    def _record_transition(
        conn: Connection, job_id: str, status: JobStatus, at_us: int, message: str | None
    ) -> None:
        conn.execute(
            insert(job_transitions).values(
                job_id=job_id, status=status.value, at_us=at_us, message=message
            )
        )

    @staticmethod
    def _by_token(conn: Connection, account_id: str, token: str) -> Row[Any] | None:
        return conn.execute(
            select(jobs).where(
                jobs.c.account_id == account_id, jobs.c.client_request_token == token
            )
        ).first()

    @staticmethod
    def _tags(conn: Connection, job_id: str) -> list[Tag]:
        rows = conn.execute(
            select(job_tags.c.key, job_tags.c.value)
            .where(job_tags.c.job_id == job_id)
            .order_by(job_tags.c.key)
        )
        return [Tag(r.key, r.value) for r in rows]

    def _job(self, conn: Connection, row: Row[Any], with_tags: bool = True) -> Job:
        tags = tuple(self._tags(conn, row.job_id)) if with_tags else ()
        spec = JobSpec(
            job_name=row.job_name,
            model_id=row.model_id,
            role_arn=row.role_arn,
            input_s3_uri=row.input_s3_uri,
            output_s3_uri=row.output_s3_uri,
            timeout_hours=row.timeout_hours,
            invocation_type=row.invocation_type,
            client_request_token=row.client_request_token,
            input_format=row.input_format,
            input_bucket_owner=row.input_bucket_owner,
            output_kms_key_id=row.output_kms_key_id,
            output_bucket_owner=row.output_bucket_owner,
            vpc_config=json.loads(row.vpc_config) if row.vpc_config else None,
            tags=tags,
        )
        return Job(
            job_id=row.job_id,
            account_id=row.account_id,
            region=row.region,
            spec=spec,
            status=JobStatus(row.status),
            submit_time=from_us(row.submit_us),
            last_modified_time=from_us(row.last_modified_us),
            job_expiration_time=from_us(row.expiration_us),
            message=row.message,
            end_time=from_us(row.end_us) if row.end_us is not None else None,
            counts=RecordCounts(
                total=row.total_records,
                processed=row.processed_records,
                success=row.success_records,
                error=row.error_records,
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
            ),
        )
