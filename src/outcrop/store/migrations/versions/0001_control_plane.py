"""control plane: accounts, jobs, tags, transitions

Revision ID: 0001
Revises:
Create Date: 2026-12-04 16:00:24.004665
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(length=12), nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=20), nullable=False),
        sa.Column("job_name", sa.String(length=63), nullable=False),
        sa.Column("model_id", sa.String(length=2048), nullable=False),
        sa.Column("role_arn", sa.String(length=2048), nullable=False),
        sa.Column("client_request_token", sa.String(length=256), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("submit_us", sa.BigInteger(), nullable=False),
        sa.Column("last_modified_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=True),
        sa.Column("expiration_us", sa.BigInteger(), nullable=False),
        sa.Column("timeout_hours", sa.Integer(), nullable=False),
        sa.Column("invocation_type", sa.String(length=16), nullable=False),
        sa.Column("input_s3_uri", sa.String(length=1024), nullable=False),
        sa.Column("input_format", sa.String(length=16), nullable=True),
        sa.Column("input_bucket_owner", sa.String(length=12), nullable=True),
        sa.Column("output_s3_uri", sa.String(length=1024), nullable=False),
        sa.Column("output_kms_key_id", sa.String(length=2048), nullable=True),
        sa.Column("output_bucket_owner", sa.String(length=12), nullable=True),
        sa.Column("vpc_config", sa.Text(), nullable=True),
        sa.Column("total_records", sa.BigInteger(), nullable=True),
        sa.Column("processed_records", sa.BigInteger(), nullable=True),
        sa.Column("success_records", sa.BigInteger(), nullable=True),
        sa.Column("error_records", sa.BigInteger(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
        sa.UniqueConstraint("account_id", "client_request_token", name="uq_jobs_account_token"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_account_status_submit",
            ["account_id", "status", "submit_us", "job_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_jobs_account_submit", ["account_id", "submit_us", "job_id"], unique=False
        )
        batch_op.create_index("ix_jobs_status_submit", ["status", "submit_us"], unique=False)

    op.create_table(
        "outcrop_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(length=128), nullable=False),
        sa.Column("secret_access_key", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
        ),
        sa.PrimaryKeyConstraint("access_key_id"),
    )
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(length=12), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "key"),
    )
    op.create_table(
        "job_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job_transitions", schema=None) as batch_op:
        batch_op.create_index("ix_job_transitions_job", ["job_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_transitions", schema=None) as batch_op:
        batch_op.drop_index("ix_job_transitions_job")

    op.drop_table("job_transitions")
    op.drop_table("job_tags")
    op.drop_table("access_keys")
    op.drop_table("outcrop_meta")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_submit")
        batch_op.drop_index("ix_jobs_account_submit")
        batch_op.drop_index("ix_jobs_account_status_submit")

    op.drop_table("jobs")
    op.drop_table("accounts")
