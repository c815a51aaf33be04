"""`outcrop jobs results/manifest`: read a finished job's output files."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from outcrop.cli.common import DataDir, EndpointOpt, OutputOpt, ProfileOpt, RegionOpt, fail, out
from outcrop.cli.jobs.common import (
    MANIFEST_FIELDS,
    MANIFEST_LIMIT,
    JobArg,
    S3EndpointOpt,
    emit_json,
    job_id_of,
    job_layout,
    jobs_app,
    session,
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
        layout = job_layout(found)
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
        layout = job_layout(found)
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
