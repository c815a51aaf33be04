"""`outcrop jobs create`: create a job, uploading local input files first when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from outcrop.cli.common import DataDir, EndpointOpt, OutputOpt, ProfileOpt, RegionOpt, err, fail
from outcrop.cli.jobs.common import S3EndpointOpt, Session, emit_json, jobs_app, parse_tags, session

COPY_CHUNK = 1024**2


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
            request["tags"] = parse_tags(tag)
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
