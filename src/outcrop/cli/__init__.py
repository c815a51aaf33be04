"""The `outcrop` command line (Typer + Rich)."""

from __future__ import annotations

from outcrop.cli import config_cmd as _config_cmd  # noqa: F401  (registers commands)
from outcrop.cli import events as _events  # noqa: F401
from outcrop.cli import jobs as _jobs  # noqa: F401
from outcrop.cli import server as _server  # noqa: F401
from outcrop.cli.common import app


def main() -> None:
    app()
