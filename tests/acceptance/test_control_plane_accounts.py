"""Cross-account isolation, and state (jobs, tags, credentials, tokens) surviving a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.raw import Account, create_account, create_body
from tests.server import REGION, OutcropServer, running_server


def _job_id(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def other(quiet_server: OutcropServer) -> Account:
    return create_account(quiet_server, "other-team")


@pytest.fixture(scope="module")
def other_bedrock(quiet_server: OutcropServer, other: Account) -> Any:
    return quiet_server.client(
        aws_access_key_id=other.access_key_id, aws_secret_access_key=other.secret_access_key
    )


def test_accounts_create_prints_a_distinct_account(quiet_server: OutcropServer, other: Account):
    assert other.account_id.isdigit() and len(other.account_id) == 12
    assert other.account_id != quiet_server.credentials()["account_id"]
    assert other.access_key_id != quiet_server.credentials()["access_key_id"]


def test_other_accounts_jobs_are_invisible_in_list(quiet_bedrock: Any, other_bedrock: Any):
    mine = {
        quiet_bedrock.create_model_invocation_job(**create_body(jobName=f"iso-{i}"))["jobArn"]
        for i in range(3)
    }
    theirs = {
        other_bedrock.create_model_invocation_job(**create_body(jobName=f"iso-{i}"))["jobArn"]
        for i in range(4)
    }
    seen_by_me = {
        s["jobArn"]
        for page in quiet_bedrock.get_paginator("list_model_invocation_jobs").paginate()
        for s in page["invocationJobSummaries"]
    }
    seen_by_them = {
        s["jobArn"]
        for page in other_bedrock.get_paginator("list_model_invocation_jobs").paginate()
        for s in page["invocationJobSummaries"]
    }
    assert mine <= seen_by_me and not (theirs & seen_by_me)
    assert seen_by_them == theirs


def test_same_client_request_token_in_two_accounts_makes_two_jobs(
    quiet_bedrock: Any, other_bedrock: Any
):
    body = create_body(jobName="shared-token", clientRequestToken="shared-token-1")
    assert (
        quiet_bedrock.create_model_invocation_job(**body)["jobArn"]
        != other_bedrock.create_model_invocation_job(**body)["jobArn"]
    )


def test_foreign_arn_is_access_denied_and_foreign_id_is_not_found(
    quiet_bedrock: Any, other_bedrock: Any
):
    theirs = other_bedrock.create_model_invocation_job(
        **create_body(jobName="foreign", tags=[{"key": "owner", "value": "other"}])
    )["jobArn"]
    denied = quiet_bedrock.exceptions.AccessDeniedException
    calls = {
        "get": lambda i: quiet_bedrock.get_model_invocation_job(jobIdentifier=i),
        "stop": lambda i: quiet_bedrock.stop_model_invocation_job(jobIdentifier=i),
        "tag": lambda i: quiet_bedrock.tag_resource(
            resourceARN=i, tags=[{"key": "x", "value": "y"}]
        ),
        "untag": lambda i: quiet_bedrock.untag_resource(resourceARN=i, tagKeys=["owner"]),
        "list-tags": lambda i: quiet_bedrock.list_tags_for_resource(resourceARN=i),
    }
    for name, call in calls.items():
        with pytest.raises(denied) as caught:
            call(theirs)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, name
        assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == (
            "AccessDeniedException"
        )
    for name in ("get", "stop"):
        with pytest.raises(quiet_bedrock.exceptions.ResourceNotFoundException) as caught:
            calls[name](_job_id(theirs))
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404, name
    # An ARN naming the foreign job under my own account id is simply not found.
    mine = theirs.replace(theirs.split(":")[4], quiet_bedrock_account(quiet_bedrock))
    with pytest.raises(quiet_bedrock.exceptions.ResourceNotFoundException):
        quiet_bedrock.get_model_invocation_job(jobIdentifier=mine)
    # Nothing the first account tried changed the job.
    job = other_bedrock.get_model_invocation_job(jobIdentifier=theirs)
    assert job["status"] == "Submitted"
    assert other_bedrock.list_tags_for_resource(resourceARN=theirs)["tags"] == [
        {"key": "owner", "value": "other"}
    ]


def quiet_bedrock_account(client: Any) -> str:
    arn: str = client.create_model_invocation_job(**create_body(jobName="whoami"))["jobArn"]
    return arn.split(":")[4]


# -- restart -------------------------------------------------------------------------------


def _snapshot(client: Any, arns: list[str]) -> dict[str, Any]:
    jobs = {}
    for arn in arns:
        job = client.get_model_invocation_job(jobIdentifier=arn)
        job.pop("ResponseMetadata")
        jobs[arn] = (job, client.list_tags_for_resource(resourceARN=arn)["tags"])
    listed = [
        s
        for page in client.get_paginator("list_model_invocation_jobs").paginate()
        for s in page["invocationJobSummaries"]
    ]
    return {"jobs": jobs, "list": listed}


def test_state_survives_restarts(data_dir: Path):
    with running_server(data_dir, OUTCROP_ENGINE="false") as first:
        credentials = first.credentials()
        other = create_account(first, "restart-other")
        client = first.client()
        arns = [
            client.create_model_invocation_job(
                **create_body(
                    jobName=f"durable-{i}",
                    clientRequestToken=f"durable-{i}",
                    tags=[{"key": "i", "value": str(i)}],
                )
            )["jobArn"]
            for i in range(5)
        ]
        client.stop_model_invocation_job(jobIdentifier=arns[0])
        client.tag_resource(resourceARN=arns[1], tags=[{"key": "late", "value": "yes"}])
        client.untag_resource(resourceARN=arns[2], tagKeys=["i"])
        before = _snapshot(client, arns)
        token = client.list_model_invocation_jobs(maxResults=2)["nextToken"]
        second_page = client.list_model_invocation_jobs(maxResults=2, nextToken=token)
        second_page.pop("ResponseMetadata")
        port = first.port

    assert first.process is not None and first.process.returncode is not None

    # A graceful restart on the same data dir (and, to be sure, the same port).
    restarted = OutcropServer(data_dir=data_dir, env={"OUTCROP_ENGINE": "false"}, port=port)
    restarted.start()
    try:
        assert restarted.credentials() == credentials
        client = restarted.client()
        assert _snapshot(client, arns) == before
        # A cursor issued before the restart still works: its secret is stored, not per process.
        again = client.list_model_invocation_jobs(maxResults=2, nextToken=token)
        again.pop("ResponseMetadata")
        assert again == second_page
        # Idempotency tokens are durable too.
        assert (
            client.create_model_invocation_job(
                **create_body(
                    jobName="durable-3",
                    clientRequestToken="durable-3",
                    tags=[{"key": "i", "value": "3"}],
                )
            )["jobArn"]
            == arns[3]
        )
        # The second account's key still works and still sees nothing of the first.
        other_client = restarted.client(
            aws_access_key_id=other.access_key_id, aws_secret_access_key=other.secret_access_key
        )
        assert other_client.list_model_invocation_jobs()["invocationJobSummaries"] == []
        late = client.create_model_invocation_job(**create_body(jobName="after-restart"))["jobArn"]
    finally:
        restarted.kill()  # no shutdown hooks: what was committed must still be there

    with running_server(data_dir, OUTCROP_ENGINE="false") as third:
        client = third.client()
        assert client.get_model_invocation_job(jobIdentifier=late)["jobName"] == "after-restart"
        after = _snapshot(client, arns)
        assert after["jobs"] == before["jobs"]
        assert [s["jobArn"] for s in after["list"]] == [late] + [
            s["jobArn"] for s in before["list"]
        ]
        assert late.split(":")[3:5] == [REGION, credentials["account_id"]]
