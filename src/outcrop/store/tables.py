"""The job store's schema (SQLAlchemy Core). Alembic migrations must produce exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Times are stored as integer microseconds since the epoch (UTC): portable across SQLite and
# PostgreSQL, exact for keyset pagination, and cheap to compare.

meta = Table(
    "outcrop_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    # Kept in clear because SigV4 verification recomputes the signature with the secret.
    Column("secret_access_key", String(128), nullable=False),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(12), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(20), nullable=False),
    Column("job_name", String(63), nullable=False),
    Column("model_id", String(2048), nullable=False),
    Column("role_arn", String(2048), nullable=False),
    Column("client_request_token", String(256)),
    Column("request_hash", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("message", Text),
    Column("submit_us", BigInteger, nullable=False),
    Column("last_modified_us", BigInteger, nullable=False),
    Column("end_us", BigInteger),
    Column("expiration_us", BigInteger, nullable=False),
    Column("timeout_hours", Integer, nullable=False),
    Column("invocation_type", String(16), nullable=False),
    Column("input_s3_uri", String(1024), nullable=False),
    Column("input_format", String(16)),
    Column("input_bucket_owner", String(12)),
    Column("output_s3_uri", String(1024), nullable=False),
    Column("output_kms_key_id", String(2048)),
    Column("output_bucket_owner", String(12)),
    Column("vpc_config", Text),
    Column("total_records", BigInteger),
    Column("processed_records", BigInteger),
    Column("success_records", BigInteger),
    Column("error_records", BigInteger),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    # Engine bookkeeping (revision 0002): which engine owns the job, until when.
    Column("lease_owner", String(64)),
    Column("lease_expires_us", BigInteger),
    Column("parts_pending", Integer, nullable=False, server_default="0"),
    UniqueConstraint("account_id", "client_request_token", name="uq_jobs_account_token"),
    Index("ix_jobs_account_submit", "account_id", "submit_us", "job_id"),
    Index("ix_jobs_account_status_submit", "account_id", "status", "submit_us", "job_id"),
    Index("ix_jobs_status_submit", "status", "submit_us"),
)

job_tags = Table(
    "job_tags",
    metadata,
    Column("job_id", String(12), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

job_transitions = Table(
    "job_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(12), ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("message", Text),
    Index("ix_job_transitions_job", "job_id", "id"),
)

# -- engine (added by revision 0002) ---------------------------------------------------------

# The input files a job validated, in order; output keys are derived from them.
job_files = Table(
    "job_files",
    metadata,
    Column("job_id", String(12), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("file_index", Integer, primary_key=True),
    Column("input_key", String(1024), nullable=False),
    Column("output_key", String(1100), nullable=False),
    Column("record_count", BigInteger, nullable=False),
    Column("byte_size", BigInteger, nullable=False),
)

# A shard is a run of consecutive records of one file; it is the unit of durable progress.
shards = Table(
    "shards",
    metadata,
    Column("job_id", String(12), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("shard_index", Integer, primary_key=True),
    Column("file_index", Integer, nullable=False),
    Column("first_line", BigInteger, nullable=False),  # 1-based line number of its first record
    Column("start_offset", BigInteger, nullable=False),  # byte offset of that line
    Column("record_count", Integer, nullable=False),
    Column("done", Integer, nullable=False, server_default="0"),
    Column("success_records", Integer, nullable=False, server_default="0"),
    Column("error_records", Integer, nullable=False, server_default="0"),
    Column("unprocessed_records", Integer, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("lease_owner", String(64)),
    Column("lease_expires_us", BigInteger),
    # The engine whose part object is the shard's output (revision 0004): an engine that lost
    # its lease may still write a part, but under its own name, and it is never used.
    Column("part_owner", String(64)),
    Index("ix_shards_job_done", "job_id", "done", "shard_index"),
)

# -- events (added by revision 0003) ---------------------------------------------------------

# The outbox: one row per status change, written in the transaction that made the change.
events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("account_id", String(12), nullable=False),
    Column("job_id", String(12), nullable=False),
    Column("status", String(32), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),  # the EventBridge envelope, as JSON
    Index("ix_events_account_seq", "account_id", "seq"),
    Index("ix_events_job_seq", "job_id", "seq"),
)

# One row per (event, matching rule target): the unit of at-least-once delivery.
event_deliveries = Table(
    "event_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_seq", Integer, ForeignKey("events.seq", ondelete="CASCADE"), nullable=False),
    Column("job_id", String(12), nullable=False),
    Column("target", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_us", BigInteger, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("delivered_us", BigInteger),
    Column("last_error", Text),
    Column("lease_owner", String(64)),
    Column("lease_expires_us", BigInteger),
    Index("ix_deliveries_status_due", "status", "next_attempt_us"),
    Index("ix_deliveries_order", "job_id", "target", "event_seq"),
    Index("ix_deliveries_event", "event_seq"),
)
