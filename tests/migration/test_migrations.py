"""Alembic migrations on SQLite and PostgreSQL: every path up and down, data kept, schema == models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text

from outcrop.domain.jobs import JobStatus, Tag
from outcrop.store.database import alembic_config, create_db_engine, downgrade, migrate
from outcrop.store.sql import SqlJobStore
from outcrop.store.tables import jobs, metadata

SCRIPT = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPT.get_current_head()
# Oldest first: base -> ... -> head.
REVISIONS = [r.revision for r in reversed(list(SCRIPT.walk_revisions()))]
FIRST = REVISIONS[0]

JOB_ID = "oldjob000001"
ACCOUNT = "111122223333"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, metadata))


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def insert_first_revision_rows(engine: Engine) -> None:
    """Rows written by a server on the first revision, with only the columns it knew."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO accounts (account_id, name, created_us) VALUES (:a, 'old', 1)"),
            {"a": ACCOUNT},
        )
        conn.execute(
            text(
                "INSERT INTO access_keys (access_key_id, secret_access_key, account_id, created_us)"
                " VALUES ('AKIDOLD', 'old-secret', :a, 2)"
            ),
            {"a": ACCOUNT},
        )
        conn.execute(text("INSERT INTO outcrop_meta (key, value) VALUES ('secret', 'kept')"))
        conn.execute(
            text(
                "INSERT INTO jobs (job_id, account_id, region, job_name, model_id, role_arn,"
                " client_request_token, request_hash, status, message, submit_us,"
                " last_modified_us, expiration_us, timeout_hours, invocation_type,"
                " input_s3_uri, output_s3_uri, total_records)"
                " VALUES (:id, :a, 'us-east-1', 'old-job', 'model-x', 'arn:aws:iam::1:role/r',"
                " 'tok', :h, 'Validating', 'half way', 1000000, 2000000, 3000000, 24,"
                " 'InvokeModel', 's3://in/', 's3://out/', 42)"
            ),
            {"id": JOB_ID, "a": ACCOUNT, "h": "0" * 64},
        )
        conn.execute(
            text("INSERT INTO job_tags (job_id, key, value) VALUES (:id, 'team', 'ml')"),
            {"id": JOB_ID},
        )
        conn.execute(
            text(
                "INSERT INTO job_transitions (job_id, status, at_us, message) VALUES"
                " (:id, 'Submitted', 1000000, NULL), (:id, 'Validating', 2000000, 'half way')"
            ),
            {"id": JOB_ID},
        )


def assert_first_revision_rows_survived(engine: Engine) -> None:
    store = SqlJobStore(engine)
    job = store.get_job(JOB_ID)
    assert job is not None
    assert (job.account_id, job.spec.job_name, job.status) == (ACCOUNT, "old-job", "Validating")
    assert (job.message, job.counts.total, job.spec.client_request_token) == ("half way", 42, "tok")
    assert job.spec.tags == (Tag("team", "ml"),)
    assert [(t.status, t.message) for t in store.transitions(JOB_ID)] == [
        (JobStatus.SUBMITTED, None),
        (JobStatus.VALIDATING, "half way"),
    ]
    assert store.find_access_key("AKIDOLD") == ("old-secret", ACCOUNT)
    assert store.meta_value("secret", lambda: "new") == "kept"


def test_upgrade_from_empty_to_head(engine: Engine) -> None:
    assert current_revision(engine) is None
    migrate(engine)
    assert current_revision(engine) == HEAD
    assert tables(engine) == set(metadata.tables)
    migrate(engine)  # a second run is a no-op
    assert current_revision(engine) == HEAD


def test_each_revision_upgrades_one_step_at_a_time(engine: Engine) -> None:
    for revision in REVISIONS:
        migrate(engine, revision)
        assert current_revision(engine) == revision
    assert schema_diff(engine) == []


@pytest.mark.parametrize("start", REVISIONS[:-1])
def test_upgrade_from_every_earlier_revision_keeps_data(engine: Engine, start: str) -> None:
    migrate(engine, FIRST)
    insert_first_revision_rows(engine)
    migrate(engine, start)
    migrate(engine)
    assert current_revision(engine) == HEAD
    assert_first_revision_rows_survived(engine)
    with engine.connect() as conn:
        engine_columns = select(jobs.c.lease_owner, jobs.c.lease_expires_us, jobs.c.parts_pending)
        assert tuple(conn.execute(engine_columns).one()) == (None, None, 0)
    assert schema_diff(engine) == []


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    migrate(engine)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert tables(engine) == set()
    migrate(engine)
    assert current_revision(engine) == HEAD
    assert schema_diff(engine) == []


@pytest.mark.parametrize("target", REVISIONS[:-1])
def test_downgrade_keeps_the_data_of_the_older_schema(engine: Engine, target: str) -> None:
    # Undoing 0002 recreates `jobs` on SQLite (batch mode); its child rows must survive that.
    migrate(engine, FIRST)
    insert_first_revision_rows(engine)
    migrate(engine)
    downgrade(engine, target)
    assert current_revision(engine) == target
    migrate(engine)
    assert_first_revision_rows_survived(engine)


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    migrate(engine)
    assert schema_diff(engine) == []


def test_migrated_schema_matches_the_models_including_server_defaults(engine: Engine) -> None:
    migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_server_default": True, "compare_type": True}
        )
        assert compare_metadata(context, metadata) == []
