"""Server-side commands: serve, worker, migrate, credentials, accounts, models."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from outcrop.cli.common import (
    DataDir,
    _runtime,
    _start_engine,
    accounts_app,
    app,
    build_settings,
    err,
    out,
)
from outcrop.gc_tuning import settle as settle_gc
from outcrop.logs import configure_logging

LogFormat = Annotated[
    str | None, typer.Option("--log-format", help="json or text [env: OUTCROP_LOG_FORMAT]")
]
ExecutorOpt = Annotated[
    str | None, typer.Option(help="Where shards run: local, process or ray [env: OUTCROP_EXECUTOR]")
]
RayAddressOpt = Annotated[
    str | None, typer.Option(help="Ray cluster address [env: OUTCROP_RAY_ADDRESS]")
]
LogLevel = Annotated[str | None, typer.Option("--log-level", help="debug, info, warning, error")]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address [env: OUTCROP_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [env: OUTCROP_PORT]")] = None,
    data_dir: DataDir = None,
    engine: Annotated[
        bool | None, typer.Option("--engine/--no-engine", help="Run the job engine in this process")
    ] = None,
    show_credentials: Annotated[
        bool, typer.Option(help="Print the root secret key and an export line")
    ] = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    log_format: LogFormat = None,
    log_level: LogLevel = None,
) -> None:
    """Run the API (and, by default, the engine) in one process."""
    import uvicorn

    settings = build_settings(
        host=host,
        port=port,
        data_dir=data_dir,
        engine=engine,
        log_format=log_format,
        log_level=log_level,
    )
    configure_logging(settings.log_format, settings.log_level)
    runtime = _runtime(settings)
    if settings.engine:
        _start_engine(runtime)
    ident = runtime.identity
    endpoint = f"http://{settings.host}:{settings.port}"
    out.print(
        f"Outcrop listening on [bold]{endpoint}[/bold]  (account {ident.account_id}, region {settings.region})"
    )
    out.print(f"  console:           {endpoint}/console  (sign in with the key pair below)")
    out.print(f"  access key id:     {ident.access_key_id}")
    if ident.generated or show_credentials:
        out.print(f"  secret access key: {ident.secret_access_key}")
        out.print(
            f"  export AWS_ACCESS_KEY_ID={ident.access_key_id} "
            f"AWS_SECRET_ACCESS_KEY={ident.secret_access_key} "
            f"AWS_DEFAULT_REGION={settings.region} AWS_ENDPOINT_URL_BEDROCK={endpoint}"
        )
    else:
        out.print("  secret access key: (run `outcrop credentials` to show it)")
    sys.stdout.flush()
    config = uvicorn.Config(
        runtime.asgi(),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        # h11, whose limit on an incomplete request head applies (httptools ignores it).
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it is done; with SIGTERM's default
    # action that would end the process before the engine stops its shard workers.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settle_gc()
    try:
        server.run()
    finally:
        runtime.close()


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(128 + signal.SIGTERM)


@app.command()
def worker(
    data_dir: DataDir = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    log_format: LogFormat = None,
    log_level: LogLevel = None,
) -> None:
    """Run the job engine and event dispatcher only (no HTTP), until interrupted."""
    import threading

    settings = build_settings(
        data_dir=data_dir,
        executor=executor,
        ray_address=ray_address,
        log_format=log_format,
        log_level=log_level,
    )
    configure_logging(settings.log_format, settings.log_level)
    runtime = _runtime(settings)
    engine = _start_engine(runtime)
    settle_gc()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    out.print(f"Outcrop worker running (database {settings.effective_database_url.split('@')[-1]})")
    try:
        while not done.wait(1.0):
            if not engine.alive():  # the engine thread died: exit so a supervisor restarts us
                err.print("[red]error:[/red] the engine stopped; see the log")
                raise typer.Exit(1)
    finally:
        runtime.close()


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply database migrations (serve and worker also do this at start)."""
    from outcrop.store.database import create_db_engine
    from outcrop.store.database import migrate as run_migrations

    settings = build_settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = create_db_engine(settings.effective_database_url)
    run_migrations(db)
    db.dispose()
    out.print("database is up to date")


@app.command()
def credentials(data_dir: DataDir = None) -> None:
    """Show the root account's credentials and an export line to paste."""
    settings = build_settings(data_dir=data_dir)
    runtime = _runtime(settings)
    ident = runtime.identity
    runtime.close()
    out.print(f"account id:        {ident.account_id}")
    out.print(f"access key id:     {ident.access_key_id}")
    out.print(f"secret access key: {ident.secret_access_key}")
    out.print(
        f"export AWS_ACCESS_KEY_ID={ident.access_key_id} AWS_SECRET_ACCESS_KEY={ident.secret_access_key} "
        f"AWS_DEFAULT_REGION={settings.region}"
    )


@app.command()
def models(
    data_dir: DataDir = None,
    catalog: Annotated[
        Path | None, typer.Option(help="Catalog TOML [env: OUTCROP_CATALOG]")
    ] = None,
) -> None:
    """List the model catalog: model ids, backends and body formats."""
    from rich.table import Table

    from outcrop.backends.base import CatalogError
    from outcrop.domain.catalog import Catalog, CatalogFileError
    from outcrop.engine.models import ModelCatalog

    settings = build_settings(data_dir=data_dir, catalog=catalog)
    try:
        models = ModelCatalog(
            Catalog.load(settings.catalog), allow_private=settings.allow_private_targets
        )
        notes = models.check()
    except (CatalogError, CatalogFileError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table("model id", "backend", "format (InvokeModel)", "description")
    for entry in models.catalog.entries():
        table.add_row(entry.model_id, entry.backend, entry.format, entry.description)
    out.print(table)
    for note in notes:
        out.print(f"[yellow]note:[/yellow] {note}")


@accounts_app.command("create")
def accounts_create(name: str, data_dir: DataDir = None) -> None:
    """Create an account with its own access key; prints the account id and key pair."""
    from outcrop.identity import create_account

    settings = build_settings(data_dir=data_dir)
    runtime = _runtime(settings)
    ident = create_account(runtime.store, name)
    runtime.close()
    out.print(f"account id:        {ident.account_id}")
    out.print(f"access key id:     {ident.access_key_id}")
    out.print(f"secret access key: {ident.secret_access_key}")


@accounts_app.command("list")
def accounts_list(data_dir: DataDir = None) -> None:
    """List accounts."""
    settings = build_settings(data_dir=data_dir)
    runtime = _runtime(settings)
    for account_id, name in runtime.store.list_accounts():
        out.print(f"{account_id}  {name}")
    runtime.close()
