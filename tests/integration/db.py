"""Real databases for the store tests: SQLite files and fresh PostgreSQL databases and schemas."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import pytest

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
BACKENDS = ["sqlite", "postgresql"]


def _admin_connect(dbname: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True, connect_timeout=5
    )


def _unavailable(reason: str) -> NoReturn:
    # In CI a missing PostgreSQL is a broken environment, not an optional backend.
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a database with a random name; yield its SQLAlchemy URL; drop it afterwards.

    Skips (fails when CI=true) if psycopg is missing or the server cannot be reached.
    """
    try:
        import psycopg
    except ImportError as exc:
        _unavailable(f"psycopg is not installed ({exc})")
    name = f"outcrop_test_{uuid.uuid4().hex[:16]}"
    try:
        with _admin_connect("postgres") as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable(str(exc).strip())
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _admin_connect("postgres") as admin:
            # FORCE: a test that leaked a connection must not leave the database behind.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_schema(database_url: str) -> Iterator[str]:
    """A fresh, empty schema in `database_url`; yields a URL whose search_path is that schema.

    Each test gets its own schema, so tests never see each other's rows, while the (slower)
    CREATE DATABASE happens once per run.
    """
    dbname = database_url.rsplit("/", 1)[1]
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with _admin_connect(dbname) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{database_url}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with _admin_connect(dbname) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'outcrop.db'}"


@contextmanager
def empty_database(backend: str, tmp_path: Path, pg_database: Callable[[], str]) -> Iterator[str]:
    """The URL of an empty database of the given backend; `pg_database` gives the run's PG db."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path)
    elif backend == "postgresql":
        with postgres_schema(pg_database()) as url:
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}")


class FakeClock:
    """A settable clock for SqlJobStore(engine, clock=...): time moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now
