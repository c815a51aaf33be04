"""Every validation error of the control plane: HTTP 400, ValidationException, the field named.

Cases boto3 lets through (maximums, enums, patterns) are sent with unmodified boto3; the ones it
refuses locally (minimums, missing members, wrong types) are sent as signed raw requests.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.acceptance.raw import RawClient, create_body, error_of

S3_IN = "inputDataConfig.s3InputDataConfig"
S3_OUT = "outputDataConfig.s3OutputDataConfig"


def _in(**fields: Any) -> dict[str, Any]:
    return {"s3InputDataConfig": {"s3Uri": "s3://input-bucket/in/", **fields}}


def _out(**fields: Any) -> dict[str, Any]:
    return {"s3OutputDataConfig": {"s3Uri": "s3://output-bucket/out/", **fields}}


def _tags(n: int) -> list[dict[str, str]]:
    return [{"key": f"k{i}", "value": "v"} for i in range(n)]


# (id, body overrides, text the message must contain). boto3 sends all of these as they are.
CREATE_CASES_BOTO3_SENDS: list[tuple[str, dict[str, Any], str]] = [
    ("jobName-underscore", {"jobName": "my_job"}, "jobName"),
    ("jobName-space", {"jobName": "my job"}, "jobName"),
    ("jobName-leading-dash", {"jobName": "-job"}, "jobName"),
    ("jobName-64-chars", {"jobName": "a" * 64}, "jobName"),
    ("roleArn-pattern", {"roleArn": "arn:aws:iam::123456789012:user/Bob"}, "roleArn"),
    ("roleArn-not-arn", {"roleArn": "BatchRole"}, "roleArn"),
    ("roleArn-2049", {"roleArn": "arn:aws:iam::123456789012:role/" + "r" * 2030}, "roleArn"),
    ("modelId-2049", {"modelId": "a" * 2049}, "modelId"),
    ("modelId-pattern", {"modelId": "anthropic claude"}, "modelId"),
    ("s3Uri-equals", {"inputDataConfig": _in(s3Uri="s3://input-bucket/dt=2024-01-01/")}, S3_IN),
    ("s3Uri-space", {"outputDataConfig": _out(s3Uri="s3://output-bucket/my out/")}, S3_OUT),
    ("s3Uri-upper-bucket", {"inputDataConfig": _in(s3Uri="s3://Input-Bucket/in/")}, S3_IN),
    ("s3Uri-not-s3", {"inputDataConfig": _in(s3Uri="https://bucket/in/")}, S3_IN),
    ("s3Uri-1025", {"inputDataConfig": _in(s3Uri="s3://input-bucket/" + "k" * 1010)}, S3_IN),
    ("s3InputFormat-bogus", {"inputDataConfig": _in(s3InputFormat="CSV")}, "s3InputFormat"),
    ("s3BucketOwner-pattern", {"inputDataConfig": _in(s3BucketOwner="12345")}, "s3BucketOwner"),
    ("kms-pattern", {"outputDataConfig": _out(s3EncryptionKeyId="not a key")}, "s3EncryptionKeyId"),
    ("timeout-169", {"timeoutDurationInHours": 169}, "timeoutDurationInHours"),
    ("tags-201", {"tags": _tags(201)}, "tags"),
    ("tag-key-pattern", {"tags": [{"key": "bad!key", "value": "v"}]}, "tags.1.member.key"),
    ("tag-key-129", {"tags": [{"key": "k" * 129, "value": "v"}]}, "tags.1.member.key"),
    ("tag-value-257", {"tags": [{"key": "k", "value": "v" * 257}]}, "tags.1.member.value"),
    ("tag-value-pattern", {"tags": [{"key": "k", "value": "a*b"}]}, "tags.1.member.value"),
    (
        "vpc-17-subnets",
        {
            "vpcConfig": {
                "subnetIds": [f"subnet-{i}" for i in range(17)],
                "securityGroupIds": ["sg-1"],
            }
        },
        "vpcConfig.subnetIds",
    ),
    (
        "vpc-6-groups",
        {
            "vpcConfig": {
                "subnetIds": ["subnet-1"],
                "securityGroupIds": [f"sg-{i}" for i in range(6)],
            }
        },
        "vpcConfig.securityGroupIds",
    ),
    (
        "vpc-subnet-pattern",
        {"vpcConfig": {"subnetIds": ["subnet_1"], "securityGroupIds": ["sg-1"]}},
        "vpcConfig.subnetIds.1.member",
    ),
    ("invocationType-bogus", {"modelInvocationType": "Chat"}, "modelInvocationType"),
    ("token-pattern", {"clientRequestToken": "tok_en"}, "clientRequestToken"),
    ("token-257", {"clientRequestToken": "t" * 257}, "clientRequestToken"),
    ("too-many-distinct-tags", {"tags": _tags(51)}, "50 tags"),
]

# Requests boto3 refuses to build; sent raw.
CREATE_CASES_RAW_ONLY: list[tuple[str, dict[str, Any], str]] = [
    ("timeout-23", {"timeoutDurationInHours": 23}, "timeoutDurationInHours"),
    ("timeout-string", {"timeoutDurationInHours": "24"}, "timeoutDurationInHours"),
    ("timeout-bool", {"timeoutDurationInHours": True}, "timeoutDurationInHours"),
    ("jobName-missing", {"jobName": None}, "jobName"),
    ("jobName-empty", {"jobName": ""}, "jobName"),
    ("jobName-number", {"jobName": 7}, "jobName"),
    ("roleArn-missing", {"roleArn": None}, "roleArn"),
    ("modelId-missing", {"modelId": None}, "modelId"),
    ("input-missing", {"inputDataConfig": None}, "inputDataConfig"),
    ("output-missing", {"outputDataConfig": None}, "outputDataConfig"),
    ("input-empty-union", {"inputDataConfig": {}}, "inputDataConfig"),
    ("output-not-object", {"outputDataConfig": "s3://b/o/"}, "outputDataConfig"),
    ("s3Uri-missing", {"inputDataConfig": {"s3InputDataConfig": {}}}, f"{S3_IN}.s3Uri"),
    ("tags-not-list", {"tags": {"k": "v"}}, "tags"),
    ("tag-key-empty", {"tags": [{"key": "", "value": "v"}]}, "tags.1.member.key"),
    ("tag-value-missing", {"tags": [{"key": "k"}]}, "tags.1.member.value"),
    (
        "vpc-no-subnets",
        {"vpcConfig": {"subnetIds": [], "securityGroupIds": ["sg-1"]}},
        "vpcConfig.subnetIds",
    ),
    ("token-empty", {"clientRequestToken": ""}, "clientRequestToken"),
]


def assert_validation(response: Any, field: str) -> None:
    status, code, message = error_of(response)
    assert (status, code) == (400, "ValidationException"), (status, code, message)
    assert field in message, message
    assert response.headers.get("x-amzn-RequestId")


def assert_client_validation(exc: ClientError, field: str) -> None:
    meta = exc.response["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 400
    assert meta["HTTPHeaders"]["x-amzn-errortype"] == "ValidationException"
    assert exc.response["Error"]["Code"] == "ValidationException"
    assert field in exc.response["Error"]["Message"], exc.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [pytest.param(o, f, id=i) for i, o, f in CREATE_CASES_BOTO3_SENDS],
)
def test_create_validation_with_boto3(quiet_bedrock: Any, overrides: dict[str, Any], field: str):
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.create_model_invocation_job(**create_body(**overrides))
    assert_client_validation(caught.value, field)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [pytest.param(o, f, id=i) for i, o, f in CREATE_CASES_BOTO3_SENDS + CREATE_CASES_RAW_ONLY],
)
def test_create_validation_raw(raw: RawClient, overrides: dict[str, Any], field: str):
    body = create_body(**overrides)
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
    assert_validation(raw.create(body), field)


def test_create_refuses_bodies_that_are_not_json_objects(raw: RawClient):
    assert_validation(raw.create(b"{not json"), "JSON")
    assert_validation(raw.create(b"[1, 2]"), "JSON object")
    assert_validation(raw.create(b""), "jobName")


@pytest.mark.parametrize(
    ("uri", "which"),
    [
        ("s3://input-bucket/in/../other/", "in"),
        ("s3://input-bucket/..", "in"),
        ("s3://output-bucket/out/../../etc/", "out"),
        ("s3://output-bucket/./out/", "out"),
    ],
)
def test_path_traversal_in_s3_uri_is_refused(quiet_bedrock: Any, uri: str, which: str):
    overrides = (
        {"inputDataConfig": _in(s3Uri=uri)}
        if which == "in"
        else {"outputDataConfig": _out(s3Uri=uri)}
    )
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.create_model_invocation_job(**create_body(**overrides))
    field = "inputDataConfig" if which == "in" else "outputDataConfig"
    assert_client_validation(caught.value, field)


def test_path_traversal_refused_before_anything_is_stored(quiet_bedrock: Any):
    before = quiet_bedrock.list_model_invocation_jobs(nameContains="traversal")
    with pytest.raises(ClientError):
        quiet_bedrock.create_model_invocation_job(
            **create_body(jobName="traversal", inputDataConfig=_in(s3Uri="s3://b0/a/../b/"))
        )
    after = quiet_bedrock.list_model_invocation_jobs(nameContains="traversal")
    assert before["invocationJobSummaries"] == after["invocationJobSummaries"] == []


LIST_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("maxResults-1001", {"maxResults": 1001}, "maxResults"),
    ("statusEquals-bogus", {"statusEquals": "Bogus"}, "statusEquals"),
    ("sortBy-other", {"sortBy": "Other"}, "sortBy"),
    ("sortOrder-sideways", {"sortOrder": "Sideways"}, "sortOrder"),
    ("nameContains-space", {"nameContains": "my job"}, "nameContains"),
    ("nameContains-underscore", {"nameContains": "my_job"}, "nameContains"),
    ("nameContains-64", {"nameContains": "a" * 64}, "nameContains"),
    ("nextToken-garbage", {"nextToken": "not-a-token"}, "nextToken"),
    ("nextToken-2049", {"nextToken": "a" * 2049}, "nextToken"),
]


@pytest.mark.parametrize(("params", "field"), [pytest.param(p, f, id=i) for i, p, f in LIST_CASES])
def test_list_validation_with_boto3(quiet_bedrock: Any, params: dict[str, Any], field: str):
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.list_model_invocation_jobs(**params)
    assert_client_validation(caught.value, field)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("maxResults=0", "maxResults"),
        ("maxResults=-5", "maxResults"),
        ("maxResults=ten", "maxResults"),
        ("maxResults=1001", "maxResults"),
        ("statusEquals=submitted", "statusEquals"),
        ("submitTimeAfter=yesterday", "submitTimeAfter"),
        ("submitTimeBefore=2024-13-45T00%3A00%3A00Z", "submitTimeBefore"),
        ("nameContains=", "nameContains"),
        ("nextToken=", "nextToken"),
        ("nextToken=a%20b", "nextToken"),
        ("maxResults=5&maxResults=6", "maxResults"),
    ],
)
def test_list_validation_raw(raw: RawClient, query: str, field: str):
    assert_validation(raw.list(query), field)


def test_list_ignores_unknown_query_parameters(raw: RawClient):
    response = raw.list("maxResults=1&colour=blue&foo")
    assert response.status_code == 200, response.text


def test_next_token_used_with_different_filters_is_refused(quiet_bedrock: Any):
    for i in range(3):
        quiet_bedrock.create_model_invocation_job(**create_body(jobName=f"tokenbind-{i}"))
    page = quiet_bedrock.list_model_invocation_jobs(nameContains="tokenbind", maxResults=1)
    token = page["nextToken"]
    # The same filters accept it.
    quiet_bedrock.list_model_invocation_jobs(
        nameContains="tokenbind", maxResults=1, nextToken=token
    )
    # A different page size is not a different filter.
    quiet_bedrock.list_model_invocation_jobs(
        nameContains="tokenbind", maxResults=2, nextToken=token
    )
    for other in (
        {"nameContains": "tokenbin"},
        {"nameContains": "tokenbind", "statusEquals": "Submitted"},
        {"nameContains": "tokenbind", "sortOrder": "Ascending"},
        {"nameContains": "tokenbind", "submitTimeAfter": "2020-01-01T00:00:00Z"},
        {},
    ):
        with pytest.raises(ClientError) as caught:
            quiet_bedrock.list_model_invocation_jobs(maxResults=1, nextToken=token, **other)
        assert_client_validation(caught.value, "nextToken")


def test_tampered_next_token_is_refused(quiet_bedrock: Any):
    for i in range(2):
        quiet_bedrock.create_model_invocation_job(**create_body(jobName=f"tamper-{i}"))
    token = quiet_bedrock.list_model_invocation_jobs(nameContains="tamper", maxResults=1)[
        "nextToken"
    ]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.list_model_invocation_jobs(
            nameContains="tamper", maxResults=1, nextToken=flipped
        )
    assert_client_validation(caught.value, "nextToken")


@pytest.mark.parametrize(
    ("identifier", "field"),
    [
        pytest.param("job-1", "jobIdentifier", id="a-job-name"),
        pytest.param("", "jobIdentifier", id="empty"),
        pytest.param("ABCDEFGHIJKL", "jobIdentifier", id="upper-case-id"),
        pytest.param("abcdefghijk", "jobIdentifier", id="11-chars"),
        pytest.param("abcdefghijklm", "jobIdentifier", id="13-chars"),
        pytest.param(
            "arn:aws:bedrock:us-east-1:123:model-invocation-job/abcdefghijkl",
            "jobIdentifier",
            id="arn-short-account",
        ),
        pytest.param(
            "arn:aws:bedrock:us-east-1:123456789012:custom-model/abcdefghijkl",
            "jobIdentifier",
            id="arn-other-resource",
        ),
        pytest.param("a" * 1012, "jobIdentifier", id="1012-chars"),
    ],
)
def test_job_identifier_validation(quiet_bedrock: Any, identifier: str, field: str):
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.get_model_invocation_job(jobIdentifier=identifier)
    assert_client_validation(caught.value, field)
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.stop_model_invocation_job(jobIdentifier=identifier)
    assert_client_validation(caught.value, field)


def test_a_job_name_is_not_an_identifier_even_when_the_job_exists(quiet_bedrock: Any):
    quiet_bedrock.create_model_invocation_job(**create_body(jobName="named-job"))
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.get_model_invocation_job(jobIdentifier="named-job")
    assert_client_validation(caught.value, "jobIdentifier")


@pytest.fixture(scope="module")
def job_arn(quiet_bedrock: Any) -> str:
    arn: str = quiet_bedrock.create_model_invocation_job(**create_body(jobName="tag-target"))[
        "jobArn"
    ]
    return arn


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        pytest.param(_tags(201), "tags", id="201-tags"),
        pytest.param([{"key": "bad!", "value": "v"}], "tags.1.member.key", id="key-pattern"),
        pytest.param([{"key": "k" * 129, "value": "v"}], "tags.1.member.key", id="key-129"),
        pytest.param([{"key": "k", "value": "v" * 257}], "tags.1.member.value", id="value-257"),
        pytest.param([{"key": "k", "value": "a&b"}], "tags.1.member.value", id="value-pattern"),
    ],
)
def test_tag_resource_validation(
    quiet_bedrock: Any, job_arn: str, tags: list[dict[str, str]], field: str
):
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.tag_resource(resourceARN=job_arn, tags=tags)
    assert_client_validation(caught.value, field)


def test_untag_resource_validation(quiet_bedrock: Any, job_arn: str):
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.untag_resource(resourceARN=job_arn, tagKeys=[f"k{i}" for i in range(201)])
    assert_client_validation(caught.value, "tagKeys")
    with pytest.raises(ClientError) as caught:
        quiet_bedrock.untag_resource(resourceARN=job_arn, tagKeys=["k" * 129])
    assert_client_validation(caught.value, "tagKeys.1.member")


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("tag", {"tags": []}, "resourceARN"),
        ("tag", {"resourceARN": "JOB_ARN"}, "tags"),
        ("tag", {"resourceARN": "short", "tags": []}, "resourceARN"),
        ("tag", {"resourceARN": "JOB_ARN", "tags": [{"key": "k"}]}, "tags.1.member.value"),
        ("untag", {"resourceARN": "JOB_ARN"}, "tagKeys"),
        ("untag", {"resourceARN": "JOB_ARN", "tagKeys": "k"}, "tagKeys"),
        ("list_tags", {}, "resourceARN"),
        ("list_tags", {"resourceARN": 5}, "resourceARN"),
        ("list_tags", {"resourceARN": "a" * 1012}, "resourceARN"),
    ],
)
def test_tag_routes_validation_raw(
    raw: RawClient, job_arn: str, route: str, body: dict[str, Any], field: str
):
    body = {k: (job_arn if v == "JOB_ARN" else v) for k, v in body.items()}
    assert_validation(getattr(raw, route)(body), field)
