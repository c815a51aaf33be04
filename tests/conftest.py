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
