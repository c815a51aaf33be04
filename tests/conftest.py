"""Shared fixtures: a real Outcrop server per test module, and boto3 clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import OutcropServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcropServer]:
    with running_server(tmp_path_factory.mktemp("outcrop") / "data") as srv:
        yield srv


@pytest.fixture(scope="module")
def bedrock(server: OutcropServer) -> Any:
    return server.client()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcropServer]:
    """A server without the engine: jobs stay where the API puts them (Submitted, Stopping)."""
    data = tmp_path_factory.mktemp("outcrop-quiet") / "data"
    with running_server(data, OUTCROP_ENGINE="false") as srv:
        yield srv


@pytest.fixture(scope="module")
def quiet_bedrock(quiet_server: OutcropServer) -> Any:
    return quiet_server.client()


@pytest.fixture(scope="module")
def raw(quiet_server: OutcropServer) -> Iterator[Any]:
    """Signed raw HTTP client for the quiet server (see tests/acceptance/raw.py)."""
    from tests.acceptance.raw import RawClient

    client = RawClient.for_server(quiet_server)
    yield client
    client.close()
