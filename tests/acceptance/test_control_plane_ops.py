"""Every control-plane operation through unmodified boto3, and the raw wire shapes behind it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.acceptance.raw import MODEL_ID, ROLE_ARN, RawClient, create_body
from tests.server import REGION, OutcropServer

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TIMESTAMP_FIELDS = ("submitTime", "lastModifiedTime", "endTime", "jobExpirationTime")


def job_arn_re(account_id: str) -> re.Pattern[str]:
    return re.compile(rf"arn:aws:bedrock:{REGION}:{account_id}:model-invocation-job/[a-z0-9]{{12}}")


def job_id(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


def error_code(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def no_nulls(value: Any, path: str = "$") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert v is not None, f"{path}.{k} is null"
            no_nulls(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            no_nulls(v, f"{path}[{i}]")


def assert_wire_job(body: dict[str, Any], summary: bool) -> None:
    """What every Get body and List summary must look like on the wire."""
    required = ["jobArn", "modelId", "roleArn", "submitTime", "inputDataConfig", "outputDataConfig"]
    for name in [*required, *(["jobName"] if summary else [])]:
        assert name in body, name
    no_nulls(body)
    for name in TIMESTAMP_FIELDS:
        if name in body:
            assert isinstance(body[name], str) and ISO_MS.fullmatch(body[name]), (name, body[name])
    assert list(body["inputDataConfig"]) == ["s3InputDataConfig"]
    assert list(body["outputDataConfig"]) == ["s3OutputDataConfig"]


# -- Create / Get --------------------------------------------------------------------------


def test_create_returns_200_and_an_arn_of_the_callers_account(
    quiet_server: OutcropServer, quiet_bedrock: Any
):
    response = quiet_bedrock.create_model_invocation_job(**create_body(jobName="create-200"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    account = quiet_server.credentials()["account_id"]
    assert job_arn_re(account).fullmatch(response["jobArn"])
    assert set(response) == {"jobArn", "ResponseMetadata"}


def test_get_by_id_and_by_arn_returns_the_same_job(quiet_bedrock: Any):
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="get-both"))["jobArn"]
    by_arn = quiet_bedrock.get_model_invocation_job(jobIdentifier=arn)
    by_id = quiet_bedrock.get_model_invocation_job(jobIdentifier=job_id(arn))
    by_arn.pop("ResponseMetadata")
    by_id.pop("ResponseMetadata")
    assert by_arn == by_id
    assert by_arn["jobArn"] == arn
    assert by_arn["jobName"] == "get-both"
    assert by_arn["status"] == "Submitted"


def test_get_echoes_every_create_field(quiet_bedrock: Any):
    vpc = {"subnetIds": ["subnet-1", "subnet-2"], "securityGroupIds": ["sg-1"]}
    kms = "arn:aws:kms:us-east-1:123456789012:key/" + "a" * 8 + "-aaaa-aaaa-aaaa-" + "a" * 12
    request = create_body(
        jobName="echo-all.v2",
        modelId="us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        inputDataConfig={
            "s3InputDataConfig": {
                "s3Uri": "s3://input-bucket/data/records.jsonl",
                "s3InputFormat": "JSONL",
                "s3BucketOwner": "123456789012",
            }
        },
        outputDataConfig={
            "s3OutputDataConfig": {
                "s3Uri": "s3://output-bucket/out/",
                "s3EncryptionKeyId": kms,
                "s3BucketOwner": "210987654321",
            }
        },
        vpcConfig=vpc,
        timeoutDurationInHours=72,
        modelInvocationType="Converse",
        clientRequestToken="echo-all-token-1",
    )
    arn = quiet_bedrock.create_model_invocation_job(**request)["jobArn"]
    job = quiet_bedrock.get_model_invocation_job(jobIdentifier=arn)
    for name in (
        "jobName",
        "modelId",
        "roleArn",
        "inputDataConfig",
        "outputDataConfig",
        "vpcConfig",
        "timeoutDurationInHours",
        "modelInvocationType",
        "clientRequestToken",
    ):
        assert job[name] == request[name], name
    assert job["jobExpirationTime"] - job["submitTime"] == timedelta(hours=72)
    assert job["lastModifiedTime"] == job["submitTime"]


def test_defaults_timeout_24h_expiration_and_invoke_model(quiet_bedrock: Any):
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="defaults"))["jobArn"]
    job = quiet_bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["timeoutDurationInHours"] == 24
    assert job["jobExpirationTime"] - job["submitTime"] == timedelta(hours=24)
    assert job["modelInvocationType"] == "InvokeModel"
    for absent in ("endTime", "message", "vpcConfig", "totalRecordCount", "errorRecordCount"):
        assert absent not in job


def test_raw_get_and_list_json_shapes(quiet_bedrock: Any, raw: RawClient):
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="raw-shape"))["jobArn"]
    response = raw.get(arn)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert_wire_job(body, summary=False)
    # Absent fields are omitted, never null.
    for absent in ("endTime", "message", "vpcConfig", "processedRecordCount"):
        assert absent not in body
    assert body["inputDataConfig"] == {"s3InputDataConfig": {"s3Uri": "s3://input-bucket/in/"}}
    assert body["outputDataConfig"] == {"s3OutputDataConfig": {"s3Uri": "s3://output-bucket/out/"}}

    listed = raw.list({"nameContains": "raw-shape"}).json()
    assert set(listed) == {"invocationJobSummaries"}  # no nextToken on the only page
    assert len(listed["invocationJobSummaries"]) == 1
    summary = listed["invocationJobSummaries"][0]
    assert_wire_job(summary, summary=True)
    assert summary["jobArn"] == arn


def test_a_percent_encoded_arn_in_the_path_works(quiet_bedrock: Any, raw: RawClient):
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="encoded"))["jobArn"]
    encoded = quote(arn, safe="")
    assert "%2F" in encoded and "%3A" in encoded
    assert raw.request("GET", f"/model-invocation-job/{encoded}").json()["jobArn"] == arn
    # Lower-case escapes are the same path.
    assert raw.request("GET", f"/model-invocation-job/{encoded.lower()}").json()["jobArn"] == arn
    stop = raw.request("POST", f"/model-invocation-job/{encoded}/stop")
    assert stop.status_code == 200 and stop.json() == {}


def test_get_of_an_unknown_job_is_resource_not_found(quiet_server: OutcropServer, quiet_bedrock):
    account = quiet_server.credentials()["account_id"]
    for identifier in (
        "zzzzzzzzzzzz",
        f"arn:aws:bedrock:{REGION}:{account}:model-invocation-job/zzzzzzzzzzzz",
    ):
        with pytest.raises(quiet_bedrock.exceptions.ResourceNotFoundException) as caught:
            quiet_bedrock.get_model_invocation_job(jobIdentifier=identifier)
        assert error_code(caught.value) == (404, "ResourceNotFoundException")
        with pytest.raises(quiet_bedrock.exceptions.ResourceNotFoundException):
            quiet_bedrock.stop_model_invocation_job(jobIdentifier=identifier)


def test_an_arn_of_another_region_is_not_found(quiet_server: OutcropServer, quiet_bedrock: Any):
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="region"))["jobArn"]
    elsewhere = arn.replace(f":{REGION}:", ":eu-west-1:")
    with pytest.raises(quiet_bedrock.exceptions.ResourceNotFoundException):
        quiet_bedrock.get_model_invocation_job(jobIdentifier=elsewhere)
    with pytest.raises(quiet_bedrock.exceptions.ResourceNotFoundException):
        quiet_bedrock.list_tags_for_resource(resourceARN=elsewhere)


# -- Stop ----------------------------------------------------------------------------------


def _store(server: OutcropServer) -> Any:
    from outcrop.config import Settings
    from outcrop.store.database import create_db_engine
    from outcrop.store.sql import SqlJobStore

    url = Settings(data_dir=server.data_dir).effective_database_url
    return SqlJobStore(create_db_engine(url))


def test_stop_moves_to_stopping_and_is_idempotent(quiet_bedrock: Any):
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="stop-me"))["jobArn"]
    first = quiet_bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert set(first) == {"ResponseMetadata"}
    job = quiet_bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Stopping"
    assert job["lastModifiedTime"] >= job["submitTime"]
    assert "endTime" not in job  # Stopping is not terminal
    # Stop on Stopping succeeds again and changes nothing.
    quiet_bedrock.stop_model_invocation_job(jobIdentifier=job_id(arn))
    again = quiet_bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert again["status"] == "Stopping"
    assert again["lastModifiedTime"] == job["lastModifiedTime"]


def test_stop_on_stopped_succeeds_and_on_other_terminal_conflicts(
    quiet_server: OutcropServer, quiet_bedrock: Any
):
    from outcrop.domain.jobs import JobStatus

    store = _store(quiet_server)
    try:
        stopped = quiet_bedrock.create_model_invocation_job(**create_body(jobName="stopped"))
        quiet_bedrock.stop_model_invocation_job(jobIdentifier=stopped["jobArn"])
        store.transition(job_id(stopped["jobArn"]), JobStatus.STOPPED)
        quiet_bedrock.stop_model_invocation_job(jobIdentifier=stopped["jobArn"])
        job = quiet_bedrock.get_model_invocation_job(jobIdentifier=stopped["jobArn"])
        assert job["status"] == "Stopped"
        assert "endTime" in job and job["endTime"] >= job["submitTime"]

        failed = quiet_bedrock.create_model_invocation_job(**create_body(jobName="failed"))
        store.transition(job_id(failed["jobArn"]), JobStatus.FAILED, "input bucket is missing")
        with pytest.raises(quiet_bedrock.exceptions.ConflictException) as caught:
            quiet_bedrock.stop_model_invocation_job(jobIdentifier=failed["jobArn"])
        assert error_code(caught.value) == (400, "ConflictException")
        job = quiet_bedrock.get_model_invocation_job(jobIdentifier=failed["jobArn"])
        assert (job["status"], job["message"]) == ("Failed", "input bucket is missing")
    finally:
        store.engine.dispose()


# -- Tags ----------------------------------------------------------------------------------


def _tags(response: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in response["tags"]}


def test_tags_lifecycle(quiet_bedrock: Any):
    arn = quiet_bedrock.create_model_invocation_job(
        **create_body(
            jobName="tagged",
            tags=[{"key": "team", "value": "search"}, {"key": "cost center", "value": ""}],
        )
    )["jobArn"]
    listed = quiet_bedrock.list_tags_for_resource(resourceARN=arn)
    assert listed["tags"] == [
        {"key": "cost center", "value": ""},
        {"key": "team", "value": "search"},
    ]
    assert (
        quiet_bedrock.tag_resource(
            resourceARN=arn, tags=[{"key": "env", "value": "prod"}, {"key": "team", "value": "ads"}]
        )["ResponseMetadata"]["HTTPStatusCode"]
        == 200
    )
    assert _tags(quiet_bedrock.list_tags_for_resource(resourceARN=arn)) == {
        "cost center": "",
        "team": "ads",  # overwritten
        "env": "prod",
    }
    quiet_bedrock.untag_resource(resourceARN=arn, tagKeys=["team", "never-set"])
    assert _tags(quiet_bedrock.list_tags_for_resource(resourceARN=arn)) == {
        "cost center": "",
        "env": "prod",
    }
    quiet_bedrock.untag_resource(resourceARN=arn, tagKeys=[])
    quiet_bedrock.untag_resource(resourceARN=arn, tagKeys=["cost center", "env"])
    assert quiet_bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == []


def test_a_job_holds_at_most_50_tags(quiet_bedrock: Any):
    tags = [{"key": f"k{i:02d}", "value": str(i)} for i in range(45)]
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="many-tags", tags=tags))[
        "jobArn"
    ]
    # Overwriting existing keys does not count twice: 45 + 5 new = 50 is allowed.
    quiet_bedrock.tag_resource(
        resourceARN=arn,
        tags=[{"key": "k00", "value": "new"}] + [{"key": f"n{i}", "value": "x"} for i in range(5)],
    )
    assert len(quiet_bedrock.list_tags_for_resource(resourceARN=arn)["tags"]) == 50
    with pytest.raises(quiet_bedrock.exceptions.TooManyTagsException) as caught:
        quiet_bedrock.tag_resource(resourceARN=arn, tags=[{"key": "one-more", "value": "x"}])
    assert error_code(caught.value) == (400, "TooManyTagsException")
    assert caught.value.response.get("resourceName") == arn
    # Nothing of the refused request was applied.
    current = _tags(quiet_bedrock.list_tags_for_resource(resourceARN=arn))
    assert len(current) == 50 and "one-more" not in current and current["k00"] == "new"
    # 50 tags in one request on a fresh job are fine; 51 distinct are not.
    fresh = quiet_bedrock.create_model_invocation_job(**create_body(jobName="fresh"))["jobArn"]
    with pytest.raises(quiet_bedrock.exceptions.TooManyTagsException):
        quiet_bedrock.tag_resource(
            resourceARN=fresh, tags=[{"key": f"t{i}", "value": "v"} for i in range(51)]
        )
    quiet_bedrock.tag_resource(
        resourceARN=fresh, tags=[{"key": f"t{i}", "value": "v"} for i in range(50)]
    )


def test_tag_routes_on_an_unknown_or_malformed_resource(
    quiet_server: OutcropServer, quiet_bedrock: Any
):
    account = quiet_server.credentials()["account_id"]
    unknown = f"arn:aws:bedrock:{REGION}:{account}:model-invocation-job/zzzzzzzzzzzz"
    calls = [
        lambda arn: quiet_bedrock.tag_resource(resourceARN=arn, tags=[{"key": "k", "value": "v"}]),
        lambda arn: quiet_bedrock.untag_resource(resourceARN=arn, tagKeys=["k"]),
        lambda arn: quiet_bedrock.list_tags_for_resource(resourceARN=arn),
    ]
    for call in calls:
        for arn in (unknown, "zzzzzzzzzzzzzzzzzzzzzzzz"):
            with pytest.raises(quiet_bedrock.exceptions.ResourceNotFoundException):
                call(arn)


# -- Idempotency ---------------------------------------------------------------------------


def test_same_client_request_token_returns_the_same_job(quiet_bedrock: Any):
    body = create_body(jobName="idem", clientRequestToken="idem-token-1")
    first = quiet_bedrock.create_model_invocation_job(**body)["jobArn"]
    second = quiet_bedrock.create_model_invocation_job(**body)["jobArn"]
    assert first == second
    listed = quiet_bedrock.list_model_invocation_jobs(nameContains="idem")
    assert [s["jobArn"] for s in listed["invocationJobSummaries"]] == [first]


def test_same_token_with_a_different_body_conflicts(quiet_bedrock: Any):
    quiet_bedrock.create_model_invocation_job(
        **create_body(jobName="conflict", clientRequestToken="conflict-token")
    )
    for change in (
        {"jobName": "conflict2"},
        {"timeoutDurationInHours": 48},
        {"tags": [{"key": "k", "value": "v"}]},
    ):
        with pytest.raises(quiet_bedrock.exceptions.ConflictException) as caught:
            quiet_bedrock.create_model_invocation_job(
                **create_body(**{"jobName": "conflict", **change}),
                clientRequestToken="conflict-token",
            )
        assert error_code(caught.value) == (400, "ConflictException")
    assert len(quiet_bedrock.list_model_invocation_jobs(nameContains="conflict")[
        "invocationJobSummaries"
    ]) == 1  # fmt: skip


def test_without_a_token_two_creates_make_two_jobs(quiet_bedrock: Any, raw: RawClient):
    # boto3 fills in a fresh uuid4 token on each call.
    a = quiet_bedrock.create_model_invocation_job(**create_body(jobName="twice"))["jobArn"]
    b = quiet_bedrock.create_model_invocation_job(**create_body(jobName="twice"))["jobArn"]
    # A raw request with no token at all.
    c = raw.create(create_body(jobName="twice")).json()["jobArn"]
    d = raw.create(create_body(jobName="twice")).json()["jobArn"]
    assert len({a, b, c, d}) == 4
    got = quiet_bedrock.get_model_invocation_job(jobIdentifier=c)
    assert "clientRequestToken" not in got


# -- Request ids, health, routing ----------------------------------------------------------


def test_every_response_has_a_request_id(quiet_bedrock: Any, raw: RawClient):
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="req-id"))["jobArn"]
    responses = [
        raw.create(create_body(jobName="req-id")),
        raw.create(create_body(jobName="bad_name")),
        raw.get(arn),
        raw.get("zzzzzzzzzzzz"),
        raw.get("not-an-id"),
        raw.stop(arn),
        raw.stop("zzzzzzzzzzzz"),
        raw.list(),
        raw.list("maxResults=0"),
        raw.tag({"resourceARN": arn, "tags": []}),
        raw.tag({"resourceARN": arn}),
        raw.untag({"resourceARN": arn, "tagKeys": []}),
        raw.list_tags({"resourceARN": arn}),
        raw.list_tags({"resourceARN": arn.replace(arn[-12:], "zzzzzzzzzzzz")}),
        raw.request("GET", "/model-invocation-jobs", sign=False),
        raw.request("GET", "/no-such-route"),
        raw.request("DELETE", "/model-invocation-job"),
        raw.request("GET", "/healthz", sign=False),
    ]
    ids = [r.headers.get("x-amzn-RequestId") for r in responses]
    assert all(ids), [
        (r.request.url, r.status_code) for r, i in zip(responses, ids, strict=True) if not i
    ]
    assert len(set(ids)) == len(ids)
    for response in responses:
        if response.status_code >= 400:
            assert response.headers.get("x-amzn-ErrorType"), response.request.url
            assert isinstance(response.json()["message"], str)


def test_healthz(quiet_server: OutcropServer):
    response = httpx.get(f"{quiet_server.endpoint}/healthz")
    assert response.status_code == 200


def test_unknown_route_and_method(raw: RawClient):
    response = raw.request("GET", "/no-such-route")
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    response = raw.request("DELETE", "/model-invocation-job/abcdefghijkl")
    assert response.status_code == 405
    response = raw.request("POST", "/model-invocation-job/abcdefghijkl")
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "ValidationException"


def test_quota_on_active_jobs(tmp_path: Any):
    from tests.server import running_server

    data = tmp_path / "data"
    with running_server(data, OUTCROP_ENGINE="false", OUTCROP_MAX_ACTIVE_JOBS_PER_ACCOUNT="2") as s:
        client = s.client()
        first = client.create_model_invocation_job(
            **create_body(jobName="q1", clientRequestToken="q1")
        )["jobArn"]
        client.create_model_invocation_job(**create_body(jobName="q2"))
        with pytest.raises(client.exceptions.ServiceQuotaExceededException) as caught:
            client.create_model_invocation_job(**create_body(jobName="q3"))
        assert error_code(caught.value) == (400, "ServiceQuotaExceededException")
        # A retry of an accepted create still answers with the original job.
        again = client.create_model_invocation_job(
            **create_body(jobName="q1", clientRequestToken="q1")
        )["jobArn"]
        assert again == first
        # Stopping is still active: the quota counts it.
        client.stop_model_invocation_job(jobIdentifier=first)
        with pytest.raises(client.exceptions.ServiceQuotaExceededException):
            client.create_model_invocation_job(**create_body(jobName="q3"))


def test_role_and_model_are_stored_verbatim(quiet_bedrock: Any):
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="verbatim"))["jobArn"]
    job = quiet_bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert (job["roleArn"], job["modelId"]) == (ROLE_ARN, MODEL_ID)


def test_a_tag_key_given_twice_at_create_keeps_the_last_value(quiet_bedrock: Any):
    tags = [{"key": "a", "value": "1"}, {"key": "b", "value": "x"}, {"key": "a", "value": "2"}]
    arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName="dup-tags", tags=tags))[
        "jobArn"
    ]
    assert _tags(quiet_bedrock.list_tags_for_resource(resourceARN=arn)) == {"a": "2", "b": "x"}
    # TagResource treats a repeated key the same way.
    quiet_bedrock.tag_resource(
        resourceARN=arn, tags=[{"key": "c", "value": "1"}, {"key": "c", "value": "3"}]
    )
    assert _tags(quiet_bedrock.list_tags_for_resource(resourceARN=arn))["c"] == "3"


def test_concurrent_creates_with_one_token_make_one_job(quiet_server: OutcropServer):
    from concurrent.futures import ThreadPoolExecutor

    clients = [quiet_server.client() for _ in range(8)]
    body = create_body(jobName="race", clientRequestToken="race-token-1")
    with ThreadPoolExecutor(len(clients)) as pool:
        arns = list(pool.map(lambda c: c.create_model_invocation_job(**body)["jobArn"], clients))
    assert len(set(arns)) == 1
    listed = clients[0].list_model_invocation_jobs(nameContains="race")
    assert [s["jobArn"] for s in listed["invocationJobSummaries"]] == arns[:1]
