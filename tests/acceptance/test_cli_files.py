"""`outcrop jobs create --input-file`, `watch`, `results`, `manifest` through the real CLI.

Every test runs twice, on local-folder buckets and on a moto S3 server (see buckets.py): the CLI
uploads inputs and reads outputs the same way the server does.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.acceptance.cli import Cli
from tests.acceptance.conftest import (
    ECHO_MODEL,
    Deployment,
    Deployments,
    anthropic_body,
    job_id_of,
    jsonl,
    parse_jsonl,
)

FINAL_FIELDS = {"totalRecordCount": 5, "processedRecordCount": 5, "successRecordCount": 4}


@pytest.fixture(scope="module")
def deployment(deployments: Deployments) -> Deployment:
    return deployments.start(OUTCROP_PROGRESS_INTERVAL_S="0.1")


@pytest.fixture(scope="module")
def cli(deployment: Deployment) -> Cli:
    assert deployment.server is not None
    if deployment.buckets.kind == "s3":
        endpoint = deployment.buckets.server_env()["OUTCROP_S3_ENDPOINT_URL"]
        return Cli(deployment.server, ["--s3-endpoint-url", endpoint])
    return Cli(deployment.server)


def record(record_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"recordId": record_id, "modelInput": body}


INPUTS = {
    "a.jsonl": [record(f"a-{i}", anthropic_body(f"hello from a number {i}", 5)) for i in range(3)],
    "b.jsonl": [
        record("b-0", anthropic_body("hello from b", 5)),
        record("b-bad", {**anthropic_body("x"), "messages": "not a list"}),
    ],
}


@dataclass
class FinishedJob:
    arn: str
    bucket: str
    name: str
    watch_lines: list[dict[str, Any]]


@pytest.fixture(scope="module")
def finished(
    cli: Cli, deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> FinishedJob:
    """Two local files uploaded and run by `jobs create`, then followed by `jobs watch`."""
    folder = tmp_path_factory.mktemp("cli-inputs")
    paths = []
    for name, lines in INPUTS.items():
        (folder / name).write_bytes(jsonl(lines))
        paths += ["--input-file", str(folder / name)]
    bucket = deployment.buckets.create("cli")
    name = f"cli-files-{uuid.uuid4().hex[:8]}"
    created = cli.json(
        "jobs", "create", "--name", name, "--model", ECHO_MODEL, *paths,
        "--bucket", bucket, "--prefix", "batch", "--output-uri", f"s3://{bucket}/out/",
        "--tag", "team=cli", storage=True,
    )  # fmt: skip
    watched = cli.run("jobs", "watch", created["jobArn"], "--output", "json", check=False)
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    return FinishedJob(created["jobArn"], bucket, name, lines)


def test_create_uploads_the_files_under_the_prefix(
    deployment: Deployment, finished: FinishedJob
) -> None:
    for name, lines in INPUTS.items():
        assert deployment.buckets.get(finished.bucket, f"batch/{name}") == jsonl(lines)
    job = deployment.bedrock.get_model_invocation_job(jobIdentifier=finished.arn)
    assert job["inputDataConfig"] == {
        "s3InputDataConfig": {"s3Uri": f"s3://{finished.bucket}/batch/"}
    }
    tags = deployment.bedrock.list_tags_for_resource(resourceARN=finished.arn)["tags"]
    assert tags == [{"key": "team", "value": "cli"}]


def test_watch_json_prints_each_status_change_once(finished: FinishedJob) -> None:
    statuses = [line["status"] for line in finished.watch_lines]
    assert statuses[-1] == "Completed"
    assert len(statuses) == len(set(statuses)), statuses
    assert all(line["jobArn"] == finished.arn for line in finished.watch_lines)
    last = finished.watch_lines[-1]
    assert {k: last[k] for k in FINAL_FIELDS} == FINAL_FIELDS
    assert last["errorRecordCount"] == 1
    datetime.fromisoformat(last["observedAt"])


def test_results_stream_every_record_in_input_order(
    cli: Cli, deployment: Deployment, finished: FinishedJob
) -> None:
    results = cli.lines("jobs", "results", finished.arn, storage=True)
    expected_ids = [r["recordId"] for lines in INPUTS.values() for r in lines]
    assert [r["recordId"] for r in results] == expected_ids
    # Exactly what the server wrote, less modelInput.
    written = []
    for name in INPUTS:
        key = f"out/{job_id_of(finished.arn)}/{name}.out"
        written += parse_jsonl(deployment.buckets.get(finished.bucket, key))
    assert results == [{k: v for k, v in r.items() if k != "modelInput"} for r in written]
    assert set(results[-1]) == {"recordId", "error"}
    assert all(set(r) == {"recordId", "modelOutput"} for r in results[:-1])


def test_results_errors_only_and_join_input(cli: Cli, finished: FinishedJob) -> None:
    errors = cli.lines("jobs", "results", finished.arn, "--errors-only", storage=True)
    assert [r["recordId"] for r in errors] == ["b-bad"]
    assert errors[0]["error"]["errorCode"] == 400
    joined = cli.lines("jobs", "results", finished.arn, "--join-input", storage=True)
    inputs = [r["modelInput"] for lines in INPUTS.values() for r in lines]
    assert [r["modelInput"] for r in joined] == inputs


def test_manifest_matches_the_object_and_the_counts(
    cli: Cli, deployment: Deployment, finished: FinishedJob
) -> None:
    manifest = cli.json("jobs", "manifest", finished.arn, storage=True)
    key = f"out/{job_id_of(finished.arn)}/manifest.json.out"
    assert manifest == json.loads(deployment.buckets.get(finished.bucket, key))
    assert {k: manifest[k] for k in FINAL_FIELDS} == FINAL_FIELDS
    assert manifest["errorRecordCount"] == 1
    table = cli.run("jobs", "manifest", finished.arn, storage=True).stdout
    for name in ("totalRecordCount", "inputTokenCount", "outputTokenCount"):
        assert name in table
