"""`outcrop config show`: the effective settings, where each value came from, secrets masked."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.table import Table

from outcrop.cli.common import DataDir, OutputOpt, app, build_settings, fail, out
from outcrop.config import BEDROCK_LIMITS, Settings

config_app = typer.Typer(no_args_is_help=True, help="Inspect Outcrop's configuration.")
app.add_typer(config_app, name="config")

MASK = "********"
_SECRET_WORDS = ("secret", "password")


def _file_keys(path: str | None) -> set[str]:
    if not path:
        return set()
    try:
        with open(path, "rb") as handle:
            return set(tomllib.load(handle))
    except FileNotFoundError:
        return set()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        fail(f"cannot read config file {path}: {exc}")


def source_of(name: str, flags: dict[str, Any], file_keys: set[str], settings: Settings) -> str:
    """Mirrors Settings' precedence: flag, then environment, then file, then default."""
    if flags.get(name) is not None:
        return "flag"
    env_name = f"OUTCROP_{name.upper()}"
    if any(key.upper() == env_name for key in os.environ):  # pydantic-settings ignores case
        return "env"
    if name in file_keys:
        return "file"
    if settings.limits_profile == "bedrock" and name in BEDROCK_LIMITS:
        return "limits_profile"
    return "default"


def masked(name: str, value: Any) -> Any:
    """Secret fields hidden whole; a password inside any URL (database_url...) hidden."""
    if value is None:
        return None
    if isinstance(value, Path):
        return str(value)
    if any(word in name for word in _SECRET_WORDS):
        return MASK
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            netloc = f"{parts.username or ''}:{MASK}@{host}"
            return urlunsplit(parts._replace(netloc=netloc))
    return value


@config_app.command("show")
def show(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="[env: OUTCROP_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="[env: OUTCROP_PORT]")] = None,
    output: OutputOpt = "table",
) -> None:
    """Each setting's effective value and its source: flag, env, file (OUTCROP_CONFIG) or default."""
    if output not in ("table", "json"):
        fail(f"--output must be 'table' or 'json', not {output!r}")
    flags: dict[str, Any] = {"data_dir": data_dir, "host": host, "port": port}
    settings = build_settings(**flags)
    config_file = os.environ.get("OUTCROP_CONFIG") or None
    file_keys = _file_keys(config_file)
    rows = {
        name: {
            "value": masked(name, getattr(settings, name)),
            "source": source_of(name, flags, file_keys, settings),
        }
        for name in Settings.model_fields
    }
    if output == "json":
        print(json.dumps({"config_file": config_file, "settings": rows}, indent=2))
        return
    title = f"config file: {config_file}" if config_file else "no config file (OUTCROP_CONFIG)"
    table = Table("setting", "value", "source", title=title)
    for name, row in rows.items():
        value = row["value"]
        table.add_row(name, "" if value is None else str(value), row["source"])
    out.print(table)
