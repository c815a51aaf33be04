"""Shared pieces of `outcrop jobs`: the sub-app, the API session and output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from outcrop.cli.common import build_settings, fail
from outcrop.config import Settings

jobs_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Batch inference jobs through the Bedrock API: create, list, get, stop, watch, results, "
        "manifest; tags with `tags JOB`, `tag JOB k=v ...`, `untag JOB k ...`."
    ),
)

JobArg = Annotated[str, typer.Argument(help="Job id or ARN", show_default=False)]
S3EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--s3-endpoint-url",
        help="S3 endpoint holding the server's buckets; when set, objects go through the S3 API "
        "instead of DATA_DIR/buckets [env: OUTCROP_S3_ENDPOINT_URL]",
        show_default=False,
    ),
]
MANIFEST_LIMIT = 1024**2
MANIFEST_FIELDS = (
    "totalRecordCount",
    "processedRecordCount",
    "successRecordCount",
    "errorRecordCount",
    "inputTokenCount",
    "outputTokenCount",
)
DEFAULT_ACCOUNT_ID = "123456789012"


@dataclass
class Session:
    """What one command needs: settings, the API connection, and (lazily) the object store."""

    settings: Settings
    connection: Any
    bedrock: Any

    def store(self) -> Any:
        from outcrop.storage import open_object_store

        settings = self.settings
        if settings.s3_endpoint_url and settings.storage == "local":
            settings = settings.model_copy(update={"storage": "s3"})
        return open_object_store(settings)

    def get(self, job: str) -> dict[str, Any]:
        response: dict[str, Any] = self.bedrock.get_model_invocation_job(jobIdentifier=job)
        response.pop("ResponseMetadata", None)
        return response

    def account_id(self) -> str:
        """For the default role ARN: configured, else the local server's, else AWS's example."""
        if self.settings.account_id:
            return self.settings.account_id
        from outcrop.config import CREDENTIALS_FILE

        try:
            stored = json.loads((self.settings.data_dir / CREDENTIALS_FILE).read_text())
            return str(stored["account_id"])
        except (OSError, ValueError, KeyError):
            return DEFAULT_ACCOUNT_ID


@contextmanager
def session(
    endpoint_url: str | None,
    profile: str | None,
    region: str | None,
    output: str = "table",
    **flags: Any,
) -> Iterator[Session]:
    """Connect, and turn every client-side failure into one line on stderr and exit code 1."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
    )

    from outcrop.client import ClientSetupError, Connection
    from outcrop.errors import OutcropError
    from outcrop.storage import StorageError

    if output not in ("table", "json"):
        fail(f"--output must be 'table' or 'json', not {output!r}")
    settings = build_settings(**flags)
    endpoint = endpoint_url or f"http://127.0.0.1:{settings.port}"
    try:
        connection = Connection.resolve(
            endpoint_url, profile, region or settings.region, settings.data_dir, settings.port
        )
        yield Session(settings, connection, connection.bedrock())
    except ClientError as exc:
        error = exc.response.get("Error", {})
        fail(f"{error.get('Code') or 'Error'}: {error.get('Message') or exc}")
    except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError):
        fail(f"cannot reach {endpoint}: is the server running?")
    except StorageError as exc:
        fail(exc.message)
    except OutcropError as exc:
        fail(exc.message)
    except (ClientSetupError, BotoCoreError, OSError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


# -- output helpers -----------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def emit_json(document: Any, compact: bool = False) -> None:
    text = json.dumps(document, default=_json_default, indent=None if compact else 2)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def job_id_of(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def progress_text(job: dict[str, Any]) -> str:
    total = job.get("totalRecordCount")
    processed = job.get("processedRecordCount") or 0
    if not total:
        return "-"
    return f"{processed}/{total} ({processed * 100 // total}%)"


def age(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def parse_tags(pairs: list[str]) -> list[dict[str, str]]:
    tags = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"tag {pair!r} must be written key=value")
        tags.append({"key": key, "value": value})
    return tags


def job_layout(found: dict[str, Any]) -> Any:
    from outcrop.engine.layout import JobLayout

    return JobLayout.of(
        job_id_of(found["jobArn"]),
        found["inputDataConfig"]["s3InputDataConfig"]["s3Uri"],
        found["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"],
    )
