"""`outcrop jobs`: create, list, inspect, watch and read batch jobs through the public Bedrock API."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from outcrop.cli.common import (
    DataDir,
    EndpointOpt,
    OutputOpt,
    ProfileOpt,
    RegionOpt,
    app,
    build_settings,
    err,
    fail,
    out,
)
from outcrop.config import Settings

jobs_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Batch inference jobs through the Bedrock API: create, list, get, stop, watch, results, "
        "manifest; tags with `tags JOB`, `tag JOB k=v ...`, `untag JOB k ...`."
    ),
)
app.add_typer(jobs_app, name="jobs")

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
COPY_CHUNK = 1024**2
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


def _tags(pairs: list[str]) -> list[dict[str, str]]:
    tags = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"tag {pair!r} must be written key=value")
        tags.append({"key": key, "value": value})
    return tags


# -- create -------------------------------------------------------------------------------


@jobs_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Job name", show_default=False)],
    model: Annotated[str, typer.Option("--model", help="Model id", show_default=False)],
    output_uri: Annotated[
        str, typer.Option("--output-uri", help="s3:// prefix for the output", show_default=False)
    ],
    input_uri: Annotated[
        str | None, typer.Option("--input", help="s3:// input prefix or .jsonl object")
    ] = None,
    input_files: Annotated[
        list[Path] | None,
        typer.Option("--input-file", help="Local .jsonl file to upload first (repeatable)"),
    ] = None,
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="Bucket for --input-file uploads")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Key prefix for uploads [default: job name]")
    ] = None,
    role_arn: Annotated[
        str | None,
        typer.Option("--role-arn", help="[default: arn:aws:iam::<account>:role/outcrop]"),
    ] = None,
    timeout_hours: Annotated[
        int | None, typer.Option("--timeout-hours", min=24, max=168, help="Job timeout")
    ] = None,
    converse: Annotated[
        bool, typer.Option("--converse", help="Records are Converse requests")
    ] = False,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="key=value (repeatable)")] = None,
    client_token: Annotated[
        str | None, typer.Option("--client-token", help="Idempotency token")
    ] = None,
    s3_endpoint_url: S3EndpointOpt = None,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Create a job; with --input-file, upload the files to s3://BUCKET/PREFIX/ first."""
    if (input_uri is None) == (not input_files):
        fail("give either --input s3://... or one or more --input-file with --bucket")
    if input_files and not bucket:
        fail("--input-file needs --bucket (where to upload the files)")
    from outcrop.storage import parse_s3_uri

    with session(
        endpoint_url, profile, region, output, data_dir=data_dir, s3_endpoint_url=s3_endpoint_url
    ) as s:
        if input_files:
            assert bucket is not None
            parse_s3_uri(output_uri)  # fail before uploading when the output URI is wrong
            input_uri = upload_inputs(s, input_files, bucket, prefix or name)
        request: dict[str, Any] = {
            "jobName": name,
            "modelId": model,
            "roleArn": role_arn or f"arn:aws:iam::{s.account_id()}:role/outcrop",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": input_uri}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_uri}},
        }
        if timeout_hours is not None:
            request["timeoutDurationInHours"] = timeout_hours
        if converse:
            request["modelInvocationType"] = "Converse"
        if tag:
            request["tags"] = _tags(tag)
        if client_token:
            request["clientRequestToken"] = client_token
        arn = s.bedrock.create_model_invocation_job(**request)["jobArn"]
    if output == "json":
        emit_json({"jobArn": arn})
    else:
        print(arn)


def upload_inputs(s: Session, files: list[Path], bucket: str, prefix: str) -> str:
    """Stream each file to s3://bucket/prefix/<basename>; returns the prefix's URI."""
    from outcrop.storage import check_key, parse_s3_uri

    names = [f.name for f in files]
    for path in files:
        if not path.is_file():
            fail(f"{path}: no such file")
        if not path.name.endswith(".jsonl"):
            fail(f"{path}: input files must end in .jsonl (the job reads only those)")
    if len(set(names)) != len(names):
        fail("input files must have distinct names (each is uploaded under its basename)")
    # Refuse a bad bucket or prefix before uploading anything the job could then not read.
    folder = parse_s3_uri(f"s3://{bucket}/{prefix.strip('/')}/")
    check_key(folder.key)
    store = s.store()
    try:
        _ensure_local_bucket(store, bucket)
        others = [
            info.key
            for info in store.list_objects(bucket, folder.key)
            if info.key.endswith(".jsonl") and info.key[len(folder.key) :] not in names
        ]
        if others:
            err.print(
                f"[yellow]note:[/yellow] {folder.uri} also holds {len(others)} other .jsonl "
                "file(s); the job reads them too"
            )
        for path in files:
            target = folder.child(path.name)
            with open(path, "rb") as source, store.open_write(bucket, target.key) as writer:
                while chunk := source.read(COPY_CHUNK):
                    writer.write(chunk)
            err.print(f"uploaded {path} to {target.uri}")
    finally:
        store.close()
    return folder.uri


def _ensure_local_bucket(store: Any, bucket: str) -> None:
    """A local bucket is just a folder; create it as `aws s3 mb` would. S3 buckets must exist."""
    from outcrop.storage.local import LocalObjectStore

    if isinstance(store, LocalObjectStore) and not store.bucket_exists(bucket):
        (store.root / bucket).mkdir(parents=True, exist_ok=True)


# -- list, get, stop, tags ----------------------------------------------------------------


@jobs_app.command("list")
def list_jobs(
    status: Annotated[str | None, typer.Option("--status", help="Only this status")] = None,
    name_contains: Annotated[
        str | None, typer.Option("--name-contains", help="Name substring")
    ] = None,
    after: Annotated[
        datetime | None, typer.Option("--after", help="Submitted after (ISO 8601)")
    ] = None,
    before: Annotated[
        datetime | None, typer.Option("--before", help="Submitted before (ISO 8601)")
    ] = None,
    ascending: Annotated[bool, typer.Option("--ascending", help="Oldest first")] = False,
    max_jobs: Annotated[int, typer.Option("--max", min=1, help="At most this many jobs")] = 50,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every job (ignores --max)")] = False,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """List jobs, newest first, following pagination."""
    params: dict[str, Any] = {"sortOrder": "Ascending" if ascending else "Descending"}
    for key, value in (
        ("statusEquals", status),
        ("nameContains", name_contains),
        ("submitTimeAfter", after),
        ("submitTimeBefore", before),
    ):
        if value is not None:
            params[key] = value
    jobs: list[dict[str, Any]] = []
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        while True:
            want = 1000 if all_jobs else min(1000, max_jobs - len(jobs))
            page = s.bedrock.list_model_invocation_jobs(maxResults=want, **params)
            jobs += page.get("invocationJobSummaries", [])
            params["nextToken"] = page.get("nextToken")
            if not params["nextToken"] or (not all_jobs and len(jobs) >= max_jobs):
                break
    if output == "json":
        emit_json(jobs)
        return
    table = Table("name", "id", "status", "progress", "model", "age")
    now = datetime.now(UTC)
    for job in jobs:
        table.add_row(
            job["jobName"],
            job_id_of(job["jobArn"]),
            job["status"],
            progress_text(job),
            job["modelId"],
            age(job.get("submitTime"), now),
        )
    out.print(table)


@jobs_app.command("get")
def get(
    job: JobArg,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Show one job."""
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        found = s.get(job)
    if output == "json":
        emit_json(found)
        return
    inputs = found["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
    outputs = found["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
    rows = [
        ("name", found["jobName"]),
        ("arn", found["jobArn"]),
        ("status", found["status"]),
        ("message", found.get("message")),
        ("model", found["modelId"]),
        ("invocation type", found.get("modelInvocationType")),
        ("input", inputs),
        ("output", f"{outputs.rstrip('/')}/{job_id_of(found['jobArn'])}/"),
        ("progress", progress_text(found)),
        ("succeeded", found.get("successRecordCount")),
        ("failed", found.get("errorRecordCount")),
        ("submitted", found.get("submitTime")),
        ("last modified", found.get("lastModifiedTime")),
        ("ended", found.get("endTime")),
        ("expires", found.get("jobExpirationTime")),
        ("timeout (hours)", found.get("timeoutDurationInHours")),
        ("role", found.get("roleArn")),
    ]
    table = Table("field", "value", show_header=False)
    for label, value in rows:
        if value is not None:
            table.add_row(label, value.isoformat() if isinstance(value, datetime) else str(value))
    out.print(table)


@jobs_app.command("stop")
def stop(
    job: JobArg,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Ask a job to stop; prints its status afterwards."""
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        s.bedrock.stop_model_invocation_job(jobIdentifier=job)
        found = s.get(job)
    if output == "json":
        emit_json({"jobArn": found["jobArn"], "status": found["status"]})
    else:
        out.print(f"{found['jobArn']}  {found['status']}")


@jobs_app.command("tags")
def tags(
    job: JobArg,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """List a job's tags."""
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        arn = s.get(job)["jobArn"]
        found = s.bedrock.list_tags_for_resource(resourceARN=arn).get("tags", [])
    if output == "json":
        emit_json({t["key"]: t["value"] for t in found})
        return
    table = Table("key", "value")
    for t in found:
        table.add_row(t["key"], t["value"])
    out.print(table)


@jobs_app.command("tag")
def tag(
    job: JobArg,
    pairs: Annotated[list[str], typer.Argument(help="key=value ...", show_default=False)],
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Add or replace tags on a job."""
    new_tags = _tags(pairs)
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        arn = s.get(job)["jobArn"]
        s.bedrock.tag_resource(resourceARN=arn, tags=new_tags)
    if output == "json":
        emit_json({"jobArn": arn, "tagged": {t["key"]: t["value"] for t in new_tags}})
    else:
        out.print(f"tagged {arn}")


@jobs_app.command("untag")
def untag(
    job: JobArg,
    keys: Annotated[list[str], typer.Argument(help="Tag keys to remove", show_default=False)],
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Remove tags from a job."""
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        arn = s.get(job)["jobArn"]
        s.bedrock.untag_resource(resourceARN=arn, tagKeys=keys)
    if output == "json":
        emit_json({"jobArn": arn, "removed": keys})
    else:
        out.print(f"untagged {arn}")


# -- output files -------------------------------------------------------------------------


def _layout(found: dict[str, Any]) -> Any:
    from outcrop.engine.layout import JobLayout

    return JobLayout.of(
        job_id_of(found["jobArn"]),
        found["inputDataConfig"]["s3InputDataConfig"]["s3Uri"],
        found["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"],
    )


@jobs_app.command("results")
def results(
    job: JobArg,
    errors_only: Annotated[
        bool, typer.Option("--errors-only", help="Only records that failed")
    ] = False,
    join_input: Annotated[
        bool, typer.Option("--join-input", help="Keep each record's modelInput")
    ] = False,
    s3_endpoint_url: S3EndpointOpt = None,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
) -> None:
    """Stream a finished job's records as JSON lines: {"recordId", "modelOutput" | "error"}.

    Files are read in input order, line by line. Always JSON lines (no table form).
    """
    import orjson

    from outcrop.domain.jobs import TERMINAL_STATUSES

    sink = sys.stdout.buffer
    with session(
        endpoint_url, profile, region, data_dir=data_dir, s3_endpoint_url=s3_endpoint_url
    ) as s:
        found = s.get(job)
        if found["status"] not in TERMINAL_STATUSES:
            fail(f"job {job_id_of(found['jobArn'])} is {found['status']}: output comes at the end")
        layout = _layout(found)
        store = s.store()
        try:
            keys = [
                info.key
                for info in store.list_objects(layout.output_bucket, layout.output_root)
                if info.key.endswith(".out") and info.key != layout.manifest_key
            ]
            if not keys:
                fail(
                    f"no output under s3://{layout.output_bucket}/{layout.output_root} "
                    f"(job {found['status']})"
                )
            for key in keys:
                with store.open_read(layout.output_bucket, key) as stream:
                    for number, line in enumerate(stream, 1):
                        if not line.strip():
                            continue
                        try:
                            record = orjson.loads(line)
                        except orjson.JSONDecodeError:
                            fail(f"s3://{layout.output_bucket}/{key} line {number} is not JSON")
                        if errors_only and "error" not in record:
                            continue
                        shown = {"recordId": record.get("recordId")}
                        if join_input:
                            shown["modelInput"] = record.get("modelInput")
                        for field in ("modelOutput", "error"):
                            if field in record:
                                shown[field] = record[field]
                        _write(sink, orjson.dumps(shown) + b"\n")
            _write(sink, b"", flush=True)
        finally:
            store.close()


def _write(sink: Any, data: bytes, flush: bool = False) -> None:
    try:
        sink.write(data)
        if flush:
            sink.flush()
    except BrokenPipeError:
        # The reader (`head`, say) has gone; stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


@jobs_app.command("manifest")
def manifest(
    job: JobArg,
    s3_endpoint_url: S3EndpointOpt = None,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Show the job's manifest.json.out (record and token counts)."""
    from outcrop.storage import ObjectNotFound

    with session(
        endpoint_url, profile, region, output, data_dir=data_dir, s3_endpoint_url=s3_endpoint_url
    ) as s:
        found = s.get(job)
        layout = _layout(found)
        store = s.store()
        try:
            data = store.read_bytes(layout.output_bucket, layout.manifest_key, MANIFEST_LIMIT)
        except ObjectNotFound:
            fail(
                f"no manifest at s3://{layout.output_bucket}/{layout.manifest_key} "
                f"(job {found['status']})"
            )
        finally:
            store.close()
    document = json.loads(data)
    if output == "json":
        emit_json(document)
        return
    table = Table("field", "value", show_header=False)
    for field in MANIFEST_FIELDS:
        table.add_row(field, str(document.get(field, "-")))
    out.print(table)


# -- watch --------------------------------------------------------------------------------


@jobs_app.command("watch")
def watch(
    job: JobArg,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between polls")
    ] = 0.5,
    data_dir: DataDir = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Follow a job to its end: a live progress bar (json: one line per status change).

    Exit code 0 when the job Completed, 1 when it ended any other way.
    """
    with session(endpoint_url, profile, region, output, data_dir=data_dir) as s:
        if output == "json":
            final = _watch_lines(s, job, interval)
        else:
            final = _watch_bar(s, job, interval)
            _summary(final)
    raise typer.Exit(0 if final["status"] == "Completed" else 1)


def _poll(s: Session, job: str, interval: float) -> Iterator[tuple[dict[str, Any], bool]]:
    """Each Get until the job is terminal, with whether its status just changed."""
    from outcrop.domain.jobs import TERMINAL_STATUSES

    last = None
    while True:
        found = s.get(job)
        yield found, found["status"] != last
        last = found["status"]
        if last in TERMINAL_STATUSES:
            return
        time.sleep(interval)  # the API has no long poll; Get is cheap


def _watch_lines(s: Session, job: str, interval: float) -> dict[str, Any]:
    found: dict[str, Any] = {}
    fields = ("jobArn", "jobName", "status", "message", *MANIFEST_FIELDS[:4])
    for found, changed in _poll(s, job, interval):
        if changed:
            line = {k: found[k] for k in fields if k in found}
            emit_json({**line, "observedAt": datetime.now(UTC)}, compact=True)
    return found


def _watch_bar(s: Session, job: str, interval: float) -> dict[str, Any]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    found: dict[str, Any] = {}
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn())
    rate = TextColumn("{task.fields[rate]}")
    with Progress(*columns, rate, TimeRemainingColumn(), console=out, refresh_per_second=2) as bar:
        task = bar.add_task("", total=None, rate="")
        for found, changed in _poll(s, job, interval):
            if changed:
                note = f": {found['message']}" if found.get("message") else ""
                stamp = datetime.now().strftime("%H:%M:%S")
                bar.console.print(f"{stamp}  {found['status']}{note}", highlight=False)
            bar.update(
                task,
                description=found["status"],
                total=found.get("totalRecordCount") or None,
                completed=found.get("processedRecordCount") or 0,
            )
            speed = bar.tasks[0].finished_speed or bar.tasks[0].speed
            bar.update(task, rate=f"{speed:,.1f} rec/s" if speed else "")
    return found


def _summary(found: dict[str, Any]) -> None:
    status = found["status"]
    colour = "green" if status == "Completed" else "red"
    took = ""
    if found.get("endTime") and found.get("submitTime"):
        took = f" in {age(found['submitTime'], found['endTime'])}"
    out.print(
        f"[{colour}]{found['jobName']} {status}[/{colour}]{took}  ({found['jobArn']})",
        highlight=False,
    )
    total = found.get("totalRecordCount")
    if total is not None:
        out.print(
            f"  records: {found.get('processedRecordCount', 0)} of {total} processed, "
            f"{found.get('successRecordCount', 0)} succeeded, "
            f"{found.get('errorRecordCount', 0)} failed"
        )
    if found.get("message"):
        out.print(f"  message: {found['message']}")
    if status != "Failed":
        out.print(f"  output:  s3://{_layout(found).output_bucket}/{_layout(found).output_root}")
