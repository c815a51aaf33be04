"""The events outbox: reading events, routing them to deliveries, and tracking each delivery."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.orm import aliased

from outcrop.domain.clock import to_us
from outcrop.store.sql import SqlJobStore
from outcrop.store.tables import event_deliveries, events, meta

ROUTE_CURSOR_KEY = "event_route_cursor"


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    job_id: str
    account_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    id: int
    event_seq: int
    job_id: str
    target: str
    status: str
    attempts: int
    created_us: int
    last_error: str | None = None
    delivered_us: int | None = None


class OutboxStore:
    def __init__(self, store: SqlJobStore, owner: str = "reader") -> None:
        self.store = store
        self.owner = owner
        self._cursor_ready = False

    def _now_us(self) -> int:
        return to_us(self.store.clock())

    # -- reading events -----------------------------------------------------------------

    def list_events(
        self, account_id: str, job_id: str | None = None, after_seq: int = 0, limit: int = 100
    ) -> list[StoredEvent]:
        stmt = select(events).where(events.c.account_id == account_id, events.c.seq > after_seq)
        if job_id is not None:
            stmt = stmt.where(events.c.job_id == job_id)
        with self.store.reading() as conn:
            rows = conn.execute(stmt.order_by(events.c.seq).limit(limit))
            return [StoredEvent(r.seq, r.job_id, r.account_id, json.loads(r.payload)) for r in rows]

    def deliveries_of(self, event_seqs: Sequence[int]) -> dict[int, list[Delivery]]:
        if not event_seqs:
            return {}
        with self.store.reading() as conn:
            rows = conn.execute(
                select(event_deliveries)
                .where(event_deliveries.c.event_seq.in_(list(event_seqs)))
                .order_by(event_deliveries.c.id)
            )
            found: dict[int, list[Delivery]] = {}
            for r in rows:
                found.setdefault(r.event_seq, []).append(_delivery(r))
            return found

    def list_deliveries(
        self, account_id: str, status: str | None, after_id: int, limit: int
    ) -> list[tuple[Delivery, dict[str, Any]]]:
        stmt = (
            select(event_deliveries, events.c.payload)
            .join(events, events.c.seq == event_deliveries.c.event_seq)
            .where(events.c.account_id == account_id, event_deliveries.c.id > after_id)
        )
        if status is not None:
            stmt = stmt.where(event_deliveries.c.status == status)
        with self.store.reading() as conn:
            rows = conn.execute(stmt.order_by(event_deliveries.c.id).limit(limit))
            return [(_delivery(r), json.loads(r.payload)) for r in rows]

    # -- routing --------------------------------------------------------------------------

    def route(self, targets_for: Callable[[dict[str, Any]], list[str]], batch: int = 500) -> int:
        """Turn new events into pending deliveries, advancing the routing cursor in the same
        transaction (so no event is routed twice or skipped, whichever process does it)."""
        if not self._cursor_ready:  # create it outside the routing transaction, race-free
            self.store.meta_value(ROUTE_CURSOR_KEY, lambda: "0")
            self._cursor_ready = True
        with self.store.reading() as conn:  # nothing new: no need for the write lock
            cursor_now = int(
                conn.scalar(select(meta.c.value).where(meta.c.key == ROUTE_CURSOR_KEY)) or 0
            )
            if conn.scalar(select(events.c.seq).where(events.c.seq > cursor_now).limit(1)) is None:
                return 0
        now = self._now_us()
        with self.store.writing() as conn:
            stmt = select(meta.c.value).where(meta.c.key == ROUTE_CURSOR_KEY)
            if not self.store._sqlite:
                # A sequence hands out seq values before their transactions commit, and they
                # commit in any order: without this, the cursor could pass a seq whose event
                # is not yet visible, and that event would never be routed. SHARE mode waits
                # for every transaction inserting events to end and holds new ones off until
                # this one commits (SQLite's single writer already gives that order).
                conn.exec_driver_sql("LOCK TABLE events IN SHARE MODE")
                stmt = stmt.with_for_update()
            cursor_value = conn.scalar(stmt)
            if cursor_value is None:
                conn.execute(insert(meta).values(key=ROUTE_CURSOR_KEY, value="0"))
                cursor = 0
            else:
                cursor = int(cursor_value)
            rows = conn.execute(
                select(events).where(events.c.seq > cursor).order_by(events.c.seq).limit(batch)
            ).all()
            if not rows:
                return 0
            new = []
            for r in rows:
                for target in targets_for(json.loads(r.payload)):
                    new.append(
                        {
                            "event_seq": r.seq,
                            "job_id": r.job_id,
                            "target": target,
                            "status": "pending",
                            "created_us": now,
                            "next_attempt_us": now,
                        }
                    )
            if new:
                conn.execute(insert(event_deliveries), new)
            conn.execute(
                update(meta).where(meta.c.key == ROUTE_CURSOR_KEY).values(value=str(rows[-1].seq))
            )
            return len(rows)

    # -- delivering -----------------------------------------------------------------------

    def claim_due(self, limit: int, lease_seconds: float) -> list[tuple[Delivery, dict[str, Any]]]:
        """Lease due deliveries, only the first pending one per (job, target): in order per job."""
        now = self._now_us()
        earlier = aliased(event_deliveries)
        blocked = exists().where(
            and_(
                earlier.c.job_id == event_deliveries.c.job_id,
                earlier.c.target == event_deliveries.c.target,
                earlier.c.status == "pending",
                earlier.c.event_seq < event_deliveries.c.event_seq,
            )
        )
        free = or_(
            event_deliveries.c.lease_owner.is_(None), event_deliveries.c.lease_expires_us < now
        )
        with self.store.reading() as conn:  # most passes find nothing: skip the write lock then
            due = select(event_deliveries.c.id).where(
                event_deliveries.c.status == "pending",
                event_deliveries.c.next_attempt_us <= now,
                free,
            )
            if conn.scalar(due.limit(1)) is None:
                return []
        with self.store.writing() as conn:
            stmt = (
                select(event_deliveries.c.id)
                .where(
                    event_deliveries.c.status == "pending",
                    event_deliveries.c.next_attempt_us <= now,
                    free,
                    ~blocked,
                )
                .order_by(event_deliveries.c.event_seq)
                .limit(limit)
            )
            if not self.store._sqlite:
                stmt = stmt.with_for_update(skip_locked=True, of=event_deliveries)
            ids = list(conn.scalars(stmt))
            if not ids:
                return []
            conn.execute(
                update(event_deliveries)
                .where(event_deliveries.c.id.in_(ids))
                .values(
                    lease_owner=self.owner, lease_expires_us=now + int(lease_seconds * 1_000_000)
                )
            )
            rows = conn.execute(
                select(event_deliveries, events.c.payload)
                .join(events, events.c.seq == event_deliveries.c.event_seq)
                .where(event_deliveries.c.id.in_(ids))
                .order_by(event_deliveries.c.event_seq)
            )
            return [(_delivery(r), json.loads(r.payload)) for r in rows]

    def mark_delivered(self, delivery_ids: Sequence[int]) -> None:
        """Record successful deliveries, all in one transaction."""
        if not delivery_ids:
            return
        with self.store.writing() as conn:
            conn.execute(
                update(event_deliveries)
                .where(event_deliveries.c.id.in_(list(delivery_ids)))
                .values(
                    status="delivered",
                    delivered_us=self._now_us(),
                    attempts=event_deliveries.c.attempts + 1,
                    lease_owner=None,
                    lease_expires_us=None,
                    last_error=None,
                )
            )

    def mark_failed(self, delivery_id: int, error: str, next_attempt_us: int, dead: bool) -> None:
        with self.store.writing() as conn:
            conn.execute(
                update(event_deliveries)
                .where(event_deliveries.c.id == delivery_id)
                .values(
                    status="dead" if dead else "pending",
                    attempts=event_deliveries.c.attempts + 1,
                    next_attempt_us=next_attempt_us,
                    last_error=error[:2000],
                    lease_owner=None,
                    lease_expires_us=None,
                )
            )


def _delivery(r: Any) -> Delivery:
    return Delivery(
        id=r.id,
        event_seq=r.event_seq,
        job_id=r.job_id,
        target=r.target,
        status=r.status,
        attempts=r.attempts,
        created_us=r.created_us,
        last_error=r.last_error,
        delivered_us=r.delivered_us,
    )
