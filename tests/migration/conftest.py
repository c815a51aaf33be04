"""Migration fixtures: an empty SQLite file or PostgreSQL schema per test (tests/integration/db.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.db import BACKENDS, empty_database, postgres_database


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database created for this run and dropped at its end (skips if unreachable)."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database per test: a SQLite file, or a fresh schema in the run's PostgreSQL db."""
    with empty_database(
        request.param, tmp_path, lambda: request.getfixturevalue("pg_database")
    ) as url:
        yield url
