"""Read-only queries the console needs beyond the store's API: a cheap "has anything changed"."""

from __future__ import annotations

from sqlalchemy import func, select

from outcrop.store.sql import SqlJobStore
from outcrop.store.tables import events, jobs

Fingerprint = tuple[int, int, int, int]


def account_fingerprint(store: SqlJobStore, account_id: str) -> Fingerprint:
    """Changes whenever the account's jobs or events do: a new job or event (status changes
    write one), a tag edit (bumps lastModified), or a progress update (moves the counters)."""
    with store.reading() as conn:
        job_row = conn.execute(
            select(
                func.count(),
                func.coalesce(func.max(jobs.c.last_modified_us), 0),
                func.coalesce(func.sum(jobs.c.processed_records), 0),
            ).where(jobs.c.account_id == account_id)
        ).one()
        last_event = conn.scalar(
            select(func.coalesce(func.max(events.c.seq), 0)).where(
                events.c.account_id == account_id
            )
        )
    return int(job_row[0]), int(job_row[1]), int(job_row[2]), int(last_event or 0)


def encode_fingerprint(fingerprint: Fingerprint) -> str:
    return "-".join(str(n) for n in fingerprint)


def decode_fingerprint(text: str | None) -> Fingerprint | None:
    parts = (text or "").split("-")
    if len(parts) != 4 or not all(p.isdigit() and len(p) < 20 for p in parts):
        return None
    a, b, c, d = (int(p) for p in parts)
    return a, b, c, d
