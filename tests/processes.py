"""Start the real `outcrop worker` and `outcrop migrate` in subprocesses (scale-out tests, benches).

A worker runs the engine and the event dispatcher and serves no HTTP, so readiness is the line
it prints once both are started; its JSON logs go to `<data_dir>/../<name>.log`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

READY_LINE = b"Outcrop worker running"


def outcrop_env(env: dict[str, str], inherit_outcrop: bool = True) -> dict[str, str]:
    """The child's environment: ours (optionally without OUTCROP_*), then `env`."""
    base = {k: v for k, v in os.environ.items() if inherit_outcrop or not k.startswith("OUTCROP_")}
    return {**base, **env}


def migrate(data_dir: Path, env: dict[str, str], timeout: float = 120.0) -> None:
    """Run `outcrop migrate` once, before processes start together on a fresh database
    (concurrent first starts would race on CREATE TABLE)."""
    cmd = [sys.executable, "-m", "outcrop", "migrate", "--data-dir", str(data_dir)]
    result = subprocess.run(
        cmd, env=outcrop_env(env), capture_output=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise RuntimeError(f"outcrop migrate failed ({result.returncode}):\n{output}")


@dataclass
class OutcropWorker:
    """A running `outcrop worker` process."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    name: str = "worker"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def spawn(self) -> OutcropWorker:
        """Start the process without waiting for it (see wait_ready)."""
        self.log_path = self.data_dir.parent / f"{self.name}.log"
        env = outcrop_env(self.env)
        env.setdefault("OUTCROP_POLL_INTERVAL_S", "0.05")
        env.setdefault("OUTCROP_IDLE_POLL_INTERVAL_S", "0.2")
        cmd = [sys.executable, "-m", "outcrop", "worker", "--data-dir", str(self.data_dir)]
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 90.0) -> OutcropWorker:
        assert self.process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"outcrop worker {self.name} exited early:\n{self.log()}")
            if READY_LINE in self.log_bytes():
                return self
            time.sleep(0.05)  # polling a separate process's log for its ready line
        raise RuntimeError(f"outcrop worker {self.name} did not become ready:\n{self.log()}")

    def start(self, timeout: float = 90.0) -> OutcropWorker:
        return self.spawn().wait_ready(timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_bytes(self) -> bytes:
        if self.log_path is None or not self.log_path.exists():
            return b""
        return self.log_path.read_bytes()

    def log(self) -> str:
        return self.log_bytes().decode(errors="replace")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: the worker gives its shard leases back and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """kill -9: no shutdown hooks run, its leases stay until they expire."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
