"""`outcrop jobs` through the real CLI in subprocesses: options, lifecycle commands, errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.cli import Cli
from tests.acceptance.conftest import ECHO_MODEL, anthropic_body, job_id_of, jsonl
from tests.jobs import create_job
from tests.server import OutcropServer, free_port


@pytest.fixture(scope="module")
def cli(server: OutcropServer) -> Cli:
    return Cli(server)


@pytest.fixture(scope="module")
def quiet_cli(quiet_server: OutcropServer) -> Cli:
    """Against a server without the engine: jobs stay Submitted (or Stopping) for inspection."""
    return Cli(quiet_server)


def unique(hint: str) -> str:
    return f"{hint}-{uuid.uuid4().hex[:8]}"


# -- against a server that runs jobs ------------------------------------------------------


def test_create_from_a_file_into_a_new_local_bucket_then_watch_and_list(
    cli: Cli, server: OutcropServer, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    records = [{"recordId": f"r{i}", "modelInput": anthropic_body(f"hi {i}", 3)} for i in range(2)]
    source.write_bytes(jsonl(records))
    bucket, name = unique("cli-new"), unique("cli-one")
    arn = cli.run(
        "jobs", "create", "--name", name, "--model", ECHO_MODEL, "--input-file", str(source),
        "--bucket", bucket, "--output-uri", f"s3://{bucket}/out/",
    ).stdout.strip()  # fmt: skip
    # Without --prefix the file goes under the job's name, in a bucket folder made for it.
    assert (server.data_dir / "buckets" / bucket / name / "in.jsonl").read_bytes() == jsonl(records)

    watched = cli.run("jobs", "watch", arn)
    assert "Completed" in watched.stdout and "2 of 2 processed" in watched.stdout
    listed = cli.json("jobs", "list", "--name-contains", name)
    assert [(j["jobArn"], j["status"], j["processedRecordCount"]) for j in listed] == [
        (arn, "Completed", 2)
    ]
    table = cli.run("jobs", "list", "--name-contains", name).stdout
    assert name in table and job_id_of(arn) in table and "2/2 (100%)" in table


def test_a_job_whose_input_prefix_is_missing_fails_and_watch_exits_1(
    cli: Cli, server: OutcropServer
) -> None:
    bucket = unique("cli-empty")
    (server.data_dir / "buckets" / bucket).mkdir(parents=True)
    arn = cli.json(
        "jobs", "create", "--name", unique("cli-missing"), "--model", ECHO_MODEL,
        "--input", f"s3://{bucket}/nothing-here/", "--output-uri", f"s3://{bucket}/out/",
    )["jobArn"]  # fmt: skip

    watched = cli.run("jobs", "watch", arn, "--output", "json", check=False)
    assert watched.returncode == 1, watched.stderr
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert lines[-1]["status"] == "Failed" and "nothing-here" in lines[-1]["message"]
    table = cli.run("jobs", "watch", arn, check=False)
    assert table.returncode == 1 and "Failed" in table.stdout
    assert "no output" in cli.error("jobs", "results", arn)


# -- against a server without the engine --------------------------------------------------


def test_create_options_reach_the_job(quiet_cli: Cli, quiet_server: OutcropServer) -> None:
    name, token = unique("cli-opts"), unique("token")
    args = [
        "jobs", "create", "--name", name, "--model", ECHO_MODEL,
        "--input", "s3://input-bucket/in/", "--output-uri", "s3://output-bucket/out/",
        "--converse", "--timeout-hours", "48", "--client-token", token,
        "--tag", "team=ml", "--tag", "cost=7",
    ]  # fmt: skip
    arn = quiet_cli.json(*args)["jobArn"]
    job = quiet_cli.json("jobs", "get", job_id_of(arn))
    account = quiet_server.credentials()["account_id"]
    assert job["jobArn"] == arn and job["jobName"] == name and job["status"] == "Submitted"
    assert job["modelInvocationType"] == "Converse"
    assert job["timeoutDurationInHours"] == 48
    assert job["clientRequestToken"] == token
    assert job["roleArn"] == f"arn:aws:iam::{account}:role/outcrop"
    assert job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"] == "s3://input-bucket/in/"
    assert isinstance(job["submitTime"], str)
    assert quiet_cli.json(*args)["jobArn"] == arn  # the client token makes create idempotent
    assert quiet_cli.json("jobs", "tags", arn) == {"team": "ml", "cost": "7"}
    table = quiet_cli.run("jobs", "get", arn).stdout
    assert name in table and "Converse" in table and "Submitted" in table


def test_tag_untag_and_stop(quiet_cli: Cli, quiet_bedrock: Any) -> None:
    arn = create_job(
        quiet_bedrock, unique("cli-tags"), ECHO_MODEL, "s3://in-bucket/x/", "s3://out-bucket/x/",
        tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}],
    )  # fmt: skip
    job_id = job_id_of(arn)
    assert quiet_cli.json("jobs", "tag", job_id, "c=3", "a=one")["tagged"] == {"c": "3", "a": "one"}
    quiet_cli.run("jobs", "untag", arn, "b", "c")
    assert quiet_cli.json("jobs", "tags", job_id) == {"a": "one"}
    assert "a" in quiet_cli.run("jobs", "tags", job_id).stdout

    assert quiet_cli.json("jobs", "stop", job_id) == {"jobArn": arn, "status": "Stopping"}
    assert quiet_bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopping"


def test_list_filters_sorts_and_follows_pages(quiet_cli: Cli, quiet_bedrock: Any) -> None:
    prefix = unique("cli-page")
    arns = [
        create_job(
            quiet_bedrock, f"{prefix}-{i}", ECHO_MODEL, "s3://in-bucket/x/", "s3://out-bucket/x/"
        )
        for i in range(3)
    ]

    def names(*args: str) -> list[str]:
        return [
            j["jobArn"] for j in quiet_cli.json("jobs", "list", "--name-contains", prefix, *args)
        ]

    assert names("--max", "2") == arns[::-1][:2]  # newest first
    assert names("--ascending", "--max", "1") == arns[:1]
    assert names("--all", "--max", "1") == arns[::-1]
    assert names("--status", "Submitted", "--before", "2999-01-01T00:00:00Z") == arns[::-1]
    assert names("--after", "2999-01-01T00:00:00+00:00") == []


CREATE = f"jobs create --name n --model {ECHO_MODEL} --output-uri s3://out-bucket/x/"
ERRORS = [
    ("jobs get a1b2c3d4e5f6", "ResourceNotFoundException: "),
    ("jobs watch a1b2c3d4e5f6", "ResourceNotFoundException: "),
    ("jobs list --output yaml", "--output must be 'table' or 'json'"),
    ("jobs tag a1b2c3d4e5f6 novalue", "must be written key=value"),
    (f"{CREATE} --input not-an-uri", "ValidationException: "),
    (f"{CREATE} --input s3://in-bucket/in/ --input-file x.jsonl --bucket b", "either --input"),
    (f"{CREATE} --input-file absent.jsonl --bucket b", "absent.jsonl: no such file"),
    (f"{CREATE} --input-file x.jsonl", "--input-file needs --bucket"),
]


@pytest.mark.parametrize(("command", "message"), ERRORS)
def test_errors_are_one_line_without_a_traceback(
    quiet_cli: Cli, command: str, message: str
) -> None:
    assert message in quiet_cli.error(*command.split())


def test_input_files_must_be_jsonl(quiet_cli: Cli, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("{}\n")
    line = quiet_cli.error(
        "jobs", "create", "--name", "n", "--model", ECHO_MODEL, "--input-file", str(notes),
        "--bucket", "b", "--output-uri", "s3://out-bucket/x/",
    )  # fmt: skip
    assert "must end in .jsonl" in line


def test_an_unreachable_endpoint_is_one_clear_line(quiet_cli: Cli) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    line = quiet_cli.error("jobs", "list", endpoint=endpoint)
    assert f"cannot reach {endpoint}: is the server running?" in line
