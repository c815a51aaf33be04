"""Every control-plane operation through the AWS CLI (`aws bedrock ... --endpoint-url`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.raw import create_body
from tests.server import OutcropServer

AWS = str(Path(sys.executable).parent / "aws")


def aws(server: OutcropServer, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [AWS, "bedrock", *args, "--endpoint-url", server.endpoint, "--output", "json"],
        env={**server.cli_env(), "AWS_CONFIG_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def aws_json(server: OutcropServer, *args: str) -> Any:
    out = aws(server, *args).stdout
    return json.loads(out) if out.strip() else {}


@pytest.fixture(scope="module")
def cli_job(quiet_server: OutcropServer) -> str:
    request = create_body(
        jobName="cli-job",
        timeoutDurationInHours=48,
        tags=[{"key": "via", "value": "cli"}],
    )
    request.pop("jobName")
    created = aws_json(
        quiet_server,
        "create-model-invocation-job",
        "--job-name",
        "cli-job",
        "--cli-input-json",
        json.dumps(request),
    )
    arn: str = created["jobArn"]
    return arn


def test_create_and_get_by_id_and_arn(quiet_server: OutcropServer, cli_job: str):
    by_arn = aws_json(quiet_server, "get-model-invocation-job", "--job-identifier", cli_job)
    by_id = aws_json(
        quiet_server, "get-model-invocation-job", "--job-identifier", cli_job.rsplit("/", 1)[1]
    )
    assert by_arn == by_id
    assert by_arn["jobArn"] == cli_job
    assert by_arn["jobName"] == "cli-job"
    assert by_arn["status"] == "Submitted"
    assert by_arn["timeoutDurationInHours"] == 48
    assert by_arn["inputDataConfig"] == {"s3InputDataConfig": {"s3Uri": "s3://input-bucket/in/"}}
    # The CLI prints timestamps as the server sent them: ISO-8601 strings.
    assert by_arn["submitTime"].endswith("Z") or "+00:00" in by_arn["submitTime"]


def test_list_paginates_automatically(quiet_server: OutcropServer, quiet_bedrock: Any):
    arns = [
        quiet_bedrock.create_model_invocation_job(**create_body(jobName=f"clilist-{i}"))["jobArn"]
        for i in range(5)
    ]
    listed = aws_json(
        quiet_server,
        "list-model-invocation-jobs",
        "--name-contains",
        "clilist",
        "--sort-order",
        "Ascending",
        "--page-size",
        "2",
    )
    assert [s["jobArn"] for s in listed["invocationJobSummaries"]] == arns
    assert "nextToken" not in listed


def test_tag_untag_list_tags_and_stop(quiet_server: OutcropServer, cli_job: str):
    aws(
        quiet_server,
        "tag-resource",
        "--resource-arn",
        cli_job,
        "--tags",
        "key=team,value=ml",
        "key=env,value=dev",
    )
    tags = aws_json(quiet_server, "list-tags-for-resource", "--resource-arn", cli_job)["tags"]
    assert {t["key"]: t["value"] for t in tags} == {"via": "cli", "team": "ml", "env": "dev"}
    aws(quiet_server, "untag-resource", "--resource-arn", cli_job, "--tag-keys", "env", "via")
    tags = aws_json(quiet_server, "list-tags-for-resource", "--resource-arn", cli_job)["tags"]
    assert tags == [{"key": "team", "value": "ml"}]

    aws(quiet_server, "stop-model-invocation-job", "--job-identifier", cli_job)
    aws(quiet_server, "stop-model-invocation-job", "--job-identifier", cli_job)
    job = aws_json(quiet_server, "get-model-invocation-job", "--job-identifier", cli_job)
    assert job["status"] == "Stopping"


def test_errors_reach_the_cli_typed(quiet_server: OutcropServer):
    done = aws(quiet_server, "list-model-invocation-jobs", "--max-results", "1001", ok=False)
    assert done.returncode != 0
    assert "ValidationException" in done.stderr and "maxResults" in done.stderr
    done = aws(
        quiet_server, "get-model-invocation-job", "--job-identifier", "zzzzzzzzzzzz", ok=False
    )
    assert done.returncode != 0
    assert "ResourceNotFoundException" in done.stderr


def test_wrong_secret_is_refused_for_the_cli(quiet_server: OutcropServer):
    env = {**quiet_server.cli_env(), "AWS_SECRET_ACCESS_KEY": "wrong", "AWS_MAX_ATTEMPTS": "1"}
    done = subprocess.run(
        [AWS, "bedrock", "list-model-invocation-jobs", "--endpoint-url", quiet_server.endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "InvalidSignatureException" in done.stderr
