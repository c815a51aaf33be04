"""`outcrop jobs`: create, list, inspect, watch and read batch jobs through the public Bedrock API."""

from __future__ import annotations

from outcrop.cli.common import app
from outcrop.cli.jobs import create as _create  # noqa: F401  (registers commands, in help order)
from outcrop.cli.jobs import manage as _manage  # noqa: F401
from outcrop.cli.jobs import output as _output  # noqa: F401
from outcrop.cli.jobs import watch as _watch  # noqa: F401
from outcrop.cli.jobs.common import jobs_app

app.add_typer(jobs_app, name="jobs")
