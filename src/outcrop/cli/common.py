"""Shared pieces of the CLI: the Typer apps, consoles, settings from flags, runtime helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError as SettingsError
from rich.console import Console

from outcrop.config import Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Outcrop: Bedrock-style batch inference."
)
accounts_app = typer.Typer(no_args_is_help=True, help="Manage accounts and their access keys.")
app.add_typer(accounts_app, name="accounts")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory [env: OUTCROP_DATA_DIR]", show_default=False),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit code; never a traceback."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


# The three options every client command takes (they reach the API like any AWS client).
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        envvar="OUTCROP_ENDPOINT_URL",
        help="Outcrop API endpoint [default: local server]",
    ),
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="AWS profile for credentials")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="Region [env: OUTCROP_REGION]")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table or json")]


def connect(endpoint_url: str | None, profile: str | None, region: str | None) -> Any:
    """A Connection to the API: flags, then AWS's credential chain, then the local server's keys."""
    from outcrop.client import ClientSetupError, Connection

    settings = build_settings()
    try:
        return Connection.resolve(
            endpoint_url, profile, region or settings.region, settings.data_dir, settings.port
        )
    except ClientSetupError as exc:
        fail(str(exc))


def build_settings(**flags: Any) -> Settings:
    """Flags override environment variables, which override the config file."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except SettingsError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        err.print(f"[red]error:[/red] invalid configuration: {problems}")
        raise typer.Exit(2) from None


def _runtime(settings: Settings) -> Any:
    from outcrop.runtime import Runtime

    return Runtime.build(settings)


def _start_engine(runtime: Any) -> Any:
    """Start the engine, turning a bad catalog into one clear line and exit code 2."""
    from outcrop.backends.base import CatalogError
    from outcrop.domain.catalog import CatalogFileError
    from outcrop.events.rules import RulesError

    try:
        engine = runtime.start_engine()
        runtime.start_dispatcher()
        return engine
    except (CatalogError, CatalogFileError, RulesError) as exc:
        runtime.close()
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
