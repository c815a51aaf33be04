"""engine: job files, shards, job leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 16:05:54.767214
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_files",
        sa.Column("job_id", sa.String(length=12), nullable=False),
        sa.Column("file_index", sa.Integer(), nullable=False),
        sa.Column("input_key", sa.String(length=1024), nullable=False),
        sa.Column("output_key", sa.String(length=1100), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "file_index"),
    )
    op.create_table(
        "shards",
        sa.Column("job_id", sa.String(length=12), nullable=False),
        sa.Column("shard_index", sa.Integer(), nullable=False),
        sa.Column("file_index", sa.Integer(), nullable=False),
        sa.Column("first_line", sa.BigInteger(), nullable=False),
        sa.Column("start_offset", sa.BigInteger(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("success_records", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_records", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unprocessed_records", sa.Integer(), server_default="0", nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "shard_index"),
    )
    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.create_index("ix_shards_job_done", ["job_id", "done", "shard_index"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_us", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("parts_pending", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("parts_pending")
        batch_op.drop_column("lease_expires_us")
        batch_op.drop_column("lease_owner")

    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.drop_index("ix_shards_job_done")

    op.drop_table("shards")
    op.drop_table("job_files")
