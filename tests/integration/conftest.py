"""Integration fixtures: a moto S3 server on localhost for the storage tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

MOTO_ACCESS_KEY_ID = "testing"
MOTO_SECRET_ACCESS_KEY = "testing"
MOTO_REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server in this process, on a free localhost port; yields its endpoint URL."""
    with pytest.MonkeyPatch.context() as env:
        # Any client that forgets explicit credentials still cannot reach real AWS.
        env.setenv("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY_ID)
        env.setenv("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_ACCESS_KEY)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture(scope="session")
def moto_s3_client(moto_server: str) -> Iterator[Any]:
    """A plain boto3 client for arranging and inspecting what the tests' stores did."""
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        aws_access_key_id=MOTO_ACCESS_KEY_ID,
        aws_secret_access_key=MOTO_SECRET_ACCESS_KEY,
        region_name=MOTO_REGION,
    )
    yield client
    client.close()


@pytest.fixture
def moto_s3_bucket(moto_s3_client: Any) -> str:
    """A fresh, empty bucket per test, so tests never see each other's objects."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    moto_s3_client.create_bucket(Bucket=name)
    return name


# -- databases for the store contract (see tests/integration/db.py) ---------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database created for this run and dropped at its end (skips if unreachable)."""
    from tests.integration.db import postgres_database

    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database per test: a SQLite file, or a fresh schema in the run's PostgreSQL db."""
    from tests.integration.db import empty_database

    directory = tmp_path_factory.mktemp("db")
    with empty_database(
        request.param, directory, lambda: request.getfixturevalue("pg_database")
    ) as url:
        yield url
