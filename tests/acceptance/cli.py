"""`Cli`: runs the real `outcrop` command line in a subprocess against one test server."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from tests.server import OutcropServer


@dataclass
class Cli:
    """Runs `python -m outcrop ...` next to one server, as a user on that machine would."""

    server: OutcropServer
    storage_args: list[str] = field(default_factory=list)

    def run(
        self,
        *args: str,
        storage: bool = False,
        check: bool = True,
        endpoint: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        flags = ["--endpoint-url", endpoint or self.server.endpoint]
        flags += ["--data-dir", str(self.server.data_dir)]
        env = {
            **self.server.cli_env(),
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "COLUMNS": "200",
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "outcrop",
                *args,
                *flags,
                *(self.storage_args if storage else []),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert "Traceback" not in done.stderr, done.stderr
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str, storage: bool = False) -> Any:
        return json.loads(self.run(*args, "--output", "json", storage=storage).stdout)

    def lines(self, *args: str, storage: bool = False) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.run(*args, storage=storage).stdout.splitlines()]

    def error(self, *args: str, endpoint: str | None = None) -> str:
        """Run a command that must fail: exit code 1 and exactly one line on stderr."""
        done = self.run(*args, check=False, endpoint=endpoint)
        assert done.returncode == 1, (done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]
