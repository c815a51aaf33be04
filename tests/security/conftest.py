"""Security test fixtures: servers started with the settings under test, and start-up outcomes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.server import OutcropServer, free_port


@dataclass
class Servers:
    """Starts `outcrop serve` processes with chosen settings; all are stopped at teardown."""

    tmp: pytest.TempPathFactory
    started: list[OutcropServer] = field(default_factory=list)

    def start(self, name: str = "outcrop", **env: str) -> OutcropServer:
        server = OutcropServer(data_dir=self.tmp.mktemp(name) / "data", env=env)
        self.started.append(server)
        return server.start()

    def close(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    factory = Servers(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    factory = Servers(tmp_path_factory)
    yield factory
    factory.close()


@dataclass(frozen=True)
class StartOutcome:
    """How an `outcrop serve` start ended: exit code (None: it came up healthy) and its output."""

    returncode: int | None
    stdout: str
    stderr: str


def serve_outcome(data_dir: Path, env: dict[str, str], timeout: float = 60.0) -> StartOutcome:
    """Start `outcrop serve` and wait until it either exits or answers /healthz (then stop it).

    The environment is the test's minus any OUTCROP_* variables, plus `env`.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("OUTCROP_")}
    port = free_port()
    cmd = [
        sys.executable, "-m", "outcrop", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
    ]  # fmt: skip
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = data_dir.parent / "serve.out", data_dir.parent / "serve.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(cmd, env={**base, **env}, stdout=out, stderr=err)
    healthy = False
    try:
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    healthy = True
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a separate process for readiness or exit
        if not healthy and process.poll() is None:
            raise AssertionError(f"outcrop serve neither exited nor became healthy in {timeout}s")
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)
    return StartOutcome(
        None if healthy else process.returncode,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
    )
