"""Jobs end to end through boto3: outputs, per-record errors, Converse, validation failures.

Every test runs twice, on local-folder buckets and on a moto S3 server (see buckets.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.acceptance.conftest import (
    Deployment,
    Deployments,
    anthropic_body,
    assert_anthropic_output,
    assert_status_order,
    create_job,
    expected_converse,
    job_id_of,
    job_keys,
    jsonl,
    read_manifest,
    read_output,
    wait_terminal,
)

SHARD_RECORDS = 4
MAX_RECORDS_PER_FILE = 30
MAX_RECORDS_PER_JOB = 60


@pytest.fixture(scope="module")
def deployment(deployments: Deployments) -> Deployment:
    return deployments.start(
        OUTCROP_SHARD_RECORDS=str(SHARD_RECORDS),  # several shards per file
        OUTCROP_MAX_SHARD_RECORDS=str(SHARD_RECORDS),
        OUTCROP_MAX_RECORDS_PER_FILE=str(MAX_RECORDS_PER_FILE),
        OUTCROP_MAX_RECORDS_PER_JOB=str(MAX_RECORDS_PER_JOB),
        OUTCROP_PROGRESS_INTERVAL_S="0.1",
    )


@pytest.fixture(scope="module")
def buckets_in_out(deployment: Deployment) -> tuple[str, str]:
    return deployment.buckets.create("in"), deployment.buckets.create("out")


@dataclass
class InputFile:
    """A file of input lines (None is a blank line) and the (recordId, modelInput) it should give."""

    file_index: int
    lines: list[dict[str, Any] | None]
    bom: bool = False
    crlf: bool = False
    expected: list[tuple[str, dict[str, Any]]] = field(init=False)

    def __post_init__(self) -> None:
        self.expected = [
            (line.get("recordId") or f"L{self.file_index:03d}{number:07d}", line["modelInput"])
            for number, line in enumerate(self.lines, start=1)
            if line is not None
        ]

    def data(self) -> bytes:
        end = b"\r\n" if self.crlf else b"\n"
        body = b"".join(
            (b"" if line is None else json.dumps(line).encode()) + end for line in self.lines
        )
        return (b"\xef\xbb\xbf" if self.bom else b"") + body


def rec(record_id: str | None, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"modelInput": body, **extra}
    if record_id is not None:
        line["recordId"] = record_id
    return line


def nested_input() -> dict[str, InputFile]:
    """in/a.jsonl, in/sub-x.jsonl, in/sub/b.jsonl, in/sub/deeper/c.jsonl; file indexes follow
    S3's key order, where "sub-x.jsonl" comes before "sub/" ('-' sorts before '/')."""
    a = InputFile(
        0,
        [
            rec("a-1", anthropic_body("hello there general kenobi", max_tokens=2)),
            rec("a-2", anthropic_body("short answer", system="Be terse and exact.")),
            rec(
                "a-3",
                {
                    "anthropic_version": "bedrock-2023-05-31",
                    "max_tokens": 50,
                    "messages": [
                        {"role": "user", "content": "first turn words"},
                        {"role": "assistant", "content": [{"type": "text", "text": "ok then"}]},
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "second turn"},
                                {"type": "text", "text": "in two blocks"},
                            ],
                        },
                    ],
                },
            ),
            rec(None, anthropic_body("no record id here")),
            rec("a-5", anthropic_body("stop before END of it", stop_sequences=["END"])),
            rec("a-6", anthropic_body("extra keys are ignored"), note="ignored", n=1),
        ],
    )
    sub_x = InputFile(1, [rec(None, anthropic_body("sorted before the sub folder"))])
    b = InputFile(
        2,
        [
            rec(None, anthropic_body("first line after a byte order mark")),
            None,
            rec("b-3", anthropic_body("after a blank line", max_tokens=1)),
            rec(None, anthropic_body("crlf endings everywhere")),
            None,
        ],
        bom=True,
        crlf=True,
    )
    c = InputFile(
        3,
        [
            rec(None if i % 3 == 0 else f"c-{i}", anthropic_body(f"deep record number {i} of nine"))
            for i in range(1, 10)
        ],
    )
    return {"a.jsonl": a, "sub-x.jsonl": sub_x, "sub/b.jsonl": b, "sub/deeper/c.jsonl": c}


def test_nested_prefix_job_runs_through_every_status_and_writes_echo_output(
    deployment: Deployment, buckets_in_out: tuple[str, str]
) -> None:
    buckets = deployment.buckets
    bucket_in, bucket_out = buckets_in_out
    files = nested_input()
    for relative, input_file in files.items():
        buckets.put(bucket_in, f"nested/{relative}", input_file.data())
    buckets.put(bucket_in, "nested/notes.txt", b"not json, and not a .jsonl file\n")

    arn = create_job(deployment.bedrock, f"s3://{bucket_in}/nested/", f"s3://{bucket_out}/res/")
    job, watch = wait_terminal(deployment.bedrock, arn)

    assert_status_order(watch.statuses, "Completed")
    assert job["endTime"] >= job["submitTime"]
    assert job["jobExpirationTime"] - job["submitTime"] == timedelta(hours=24)
    job_id = job_id_of(arn)
    outputs = sorted(f"{relative}.out" for relative in files)
    assert job_keys(buckets, bucket_out, "res/", job_id) == sorted([*outputs, "manifest.json.out"])

    input_tokens = output_tokens = 0
    for relative, input_file in files.items():
        records = read_output(buckets, bucket_out, f"res/{job_id}/{relative}.out")
        assert [(r["recordId"], r["modelInput"]) for r in records] == input_file.expected
        for record in records:
            assert_anthropic_output(record)
            input_tokens += record["modelOutput"]["usage"]["input_tokens"]
            output_tokens += record["modelOutput"]["usage"]["output_tokens"]
    total = sum(len(f.expected) for f in files.values())
    assert read_manifest(buckets, bucket_out, "res/", job_id) == {
        "totalRecordCount": total,
        "processedRecordCount": total,
        "successRecordCount": total,
        "errorRecordCount": 0,
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
    }
    assert (job["totalRecordCount"], job["processedRecordCount"]) == (total, total)
    assert (job["successRecordCount"], job["errorRecordCount"]) == (total, 0)


def test_single_file_uri_writes_its_basename_out(
    deployment: Deployment, buckets_in_out: tuple[str, str]
) -> None:
    buckets = deployment.buckets
    bucket_in, bucket_out = buckets_in_out
    only = InputFile(0, [rec(None, anthropic_body(f"one file record {i}")) for i in range(5)])
    buckets.put(bucket_in, "single/deep/only.jsonl", only.data())
    buckets.put(bucket_in, "single/deep/other.jsonl", only.data())

    uri = f"s3://{bucket_in}/single/deep/only.jsonl"
    arn = create_job(deployment.bedrock, uri, f"s3://{bucket_out}/single")
    job, _ = wait_terminal(deployment.bedrock, arn)

    assert job["status"] == "Completed"
    job_id = job_id_of(arn)
    assert job_keys(buckets, bucket_out, "single/", job_id) == [
        "manifest.json.out",
        "only.jsonl.out",
    ]
    records = read_output(buckets, bucket_out, f"single/{job_id}/only.jsonl.out")
    assert [(r["recordId"], r["modelInput"]) for r in records] == only.expected


# Bodies that do not fit anthropic-messages, and the field each error must name.
BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "anthropic_version"),
    (anthropic_body("x", anthropic_version="2020-01-01"), "anthropic_version"),
    (anthropic_body("x", max_tokens=0), "max_tokens"),
    ({**anthropic_body("x"), "messages": "not a list"}, "messages"),
    ({**anthropic_body("x"), "messages": []}, "messages"),
    ({**anthropic_body("x"), "messages": [{"role": "assistant", "content": "x"}]}, "messages.0.role"),
    ({**anthropic_body("x"), "messages": [{"role": "user", "content": [{"type": "image"}]}]}, "messages.0.content.0.type"),
    (anthropic_body("x", temperature=2), "temperature"),
]  # fmt: skip


def test_bodies_that_do_not_fit_the_model_are_per_record_400_errors(
    deployment: Deployment, buckets_in_out: tuple[str, str]
) -> None:
    buckets = deployment.buckets
    bucket_in, bucket_out = buckets_in_out
    lines: list[dict[str, Any]] = []
    bad_fields: dict[str, str] = {}
    for i, (body, field_name) in enumerate(BAD_BODIES):
        lines.append(rec(f"good-{i}", anthropic_body(f"a fine request number {i}", max_tokens=3)))
        lines.append(rec(f"bad-{i}", body))
        bad_fields[f"bad-{i}"] = field_name
    buckets.put(bucket_in, "mixed/records.jsonl", jsonl(lines))

    arn = create_job(deployment.bedrock, f"s3://{bucket_in}/mixed/", f"s3://{bucket_out}/mixed/")
    job, _ = wait_terminal(deployment.bedrock, arn)

    assert job["status"] == "Completed"
    job_id = job_id_of(arn)
    records = read_output(buckets, bucket_out, f"mixed/{job_id}/records.jsonl.out")
    assert [(r["recordId"], r["modelInput"]) for r in records] == [
        (line["recordId"], line["modelInput"]) for line in lines
    ]
    input_tokens = output_tokens = 0
    for record in records:
        if record["recordId"] in bad_fields:
            assert "modelOutput" not in record
            assert record["error"]["errorCode"] == 400
            assert record["error"]["errorMessage"].startswith(
                bad_fields[record["recordId"]] + ":"
            ), record
        else:
            assert_anthropic_output(record)
            input_tokens += record["modelOutput"]["usage"]["input_tokens"]
            output_tokens += record["modelOutput"]["usage"]["output_tokens"]
    n = len(BAD_BODIES)
    assert read_manifest(buckets, bucket_out, "mixed/", job_id) == {
        "totalRecordCount": 2 * n,
        "processedRecordCount": 2 * n,
        "successRecordCount": n,
        "errorRecordCount": n,
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
    }
    assert (job["successRecordCount"], job["errorRecordCount"]) == (n, n)


def converse_body(*turns: str, system: str | None = None, **config: Any) -> dict[str, Any]:
    roles = ["user", "assistant"]
    body: dict[str, Any] = {
        "messages": [
            {"role": roles[i % 2], "content": [{"text": text}]} for i, text in enumerate(turns)
        ]
    }
    if system is not None:
        body["system"] = [{"text": system}]
    if config:
        body["inferenceConfig"] = config
    return body


def test_converse_job_writes_converse_responses(
    deployment: Deployment, buckets_in_out: tuple[str, str]
) -> None:
    buckets = deployment.buckets
    bucket_in, bucket_out = buckets_in_out
    bodies = [
        converse_body("plain converse request"),
        converse_body("cut this answer short please", maxTokens=2),
        converse_body("hi", "hello", "the last user turn wins", system="You echo."),
        converse_body("stop at the STOP word", stopSequences=["STOP"], temperature=0.5),
        {
            "messages": [{"role": "user", "content": [{"text": "two"}, {"text": "blocks here"}]}],
            "additionalModelRequestFields": {"top_k": 5},
        },
    ]
    lines = [rec(f"conv-{i}", body) for i, body in enumerate(bodies)]
    lines.append(rec("conv-bad", anthropic_body("an InvokeModel body in a Converse job")))
    buckets.put(bucket_in, "converse/in.jsonl", jsonl(lines))

    arn = create_job(
        deployment.bedrock,
        f"s3://{bucket_in}/converse/",
        f"s3://{bucket_out}/converse/",
        modelInvocationType="Converse",
    )
    job, _ = wait_terminal(deployment.bedrock, arn)

    assert job["status"] == "Completed"
    assert job["modelInvocationType"] == "Converse"
    job_id = job_id_of(arn)
    records = read_output(buckets, bucket_out, f"converse/{job_id}/in.jsonl.out")
    assert [r["recordId"] for r in records] == [line["recordId"] for line in lines]
    tokens = [0, 0]
    for record, body in zip(records[:-1], bodies, strict=True):
        output = dict(record["modelOutput"])
        metrics = output.pop("metrics")
        assert set(metrics) == {"latencyMs"} and isinstance(metrics["latencyMs"], int)
        assert metrics["latencyMs"] >= 0
        assert output == expected_converse(body)
        tokens[0] += output["usage"]["inputTokens"]
        tokens[1] += output["usage"]["outputTokens"]
    bad = records[-1]
    assert bad["error"]["errorCode"] == 400
    assert bad["error"]["errorMessage"].startswith("messages.0.content:"), bad
    assert read_manifest(buckets, bucket_out, "converse/", job_id) == {
        "totalRecordCount": len(lines),
        "processedRecordCount": len(lines),
        "successRecordCount": len(bodies),
        "errorRecordCount": 1,
        "inputTokenCount": tokens[0],
        "outputTokenCount": tokens[1],
    }


# -- validation failures ------------------------------------------------------------------

GOOD = json.dumps(rec("ok", anthropic_body("fine"))).encode()


def lines_of(*lines: bytes, end: bytes = b"\n") -> bytes:
    return b"".join(line + end for line in lines)


@dataclass(frozen=True)
class Invalid:
    files: dict[str, bytes]
    message: str  # "{bucket}" stands for the input bucket
    prefix: str = "in/"


def many(n: int) -> bytes:
    return jsonl([rec(f"r{i}", anthropic_body(f"record {i}")) for i in range(n)])


INVALID = {
    "malformed-json": Invalid(
        {"a.jsonl": lines_of(GOOD, b'{"recordId": "x", "modelInput": {', GOOD)},
        "a.jsonl line 2: not valid JSON",
    ),
    "not-an-object": Invalid(
        {"a.jsonl": lines_of(GOOD, b"[1, 2]", b'"text"', b"42", GOOD)},
        "a.jsonl line 2: not a JSON object; a.jsonl line 3: not a JSON object; "
        "a.jsonl line 4: not a JSON object",
    ),
    "missing-model-input": Invalid(
        {"a.jsonl": lines_of(GOOD, GOOD, b'{"recordId": "r3"}')},
        "a.jsonl line 3: missing modelInput",
    ),
    "model-input-not-object": Invalid(
        {"a.jsonl": lines_of(b'{"recordId": "r1", "modelInput": "hello"}')},
        "a.jsonl line 1: modelInput is not a JSON object",
    ),
    "record-id-not-string": Invalid(
        {"a.jsonl": lines_of(GOOD, b'{"recordId": 7, "modelInput": {}}')},
        "a.jsonl line 2: recordId is not a string",
    ),
    "invalid-utf8": Invalid(
        {"a.jsonl": lines_of(GOOD, b'{"modelInput": {"text": "caf\xe9"}}')},
        "a.jsonl line 2: not valid UTF-8",
    ),
    "errors-in-nested-files-count-every-line": Invalid(
        {
            "a.jsonl": b"\xef\xbb\xbf" + lines_of(GOOD, b"", b"{oops", GOOD, end=b"\r\n"),
            "notes.txt": b"{this is not checked",
            "sub/deeper/b.jsonl": lines_of(b"", b"   ", GOOD, b'{"recordId": "r4"}'),
        },
        "a.jsonl line 3: not valid JSON; sub/deeper/b.jsonl line 4: missing modelInput",
    ),
    "empty-input": Invalid(
        {"a.jsonl": b"", "sub/b.jsonl": b"\n  \n\r\n", "c.txt": GOOD + b"\n"},
        "the input contains no records",
    ),
    "missing-prefix": Invalid(
        {"a.jsonl": GOOD + b"\n"},
        "no .jsonl file found at s3://{bucket}/{root}/missing/",
        "missing/",
    ),
    "no-jsonl-under-prefix": Invalid(
        {"a.json": GOOD + b"\n", "b.jsonl.txt": GOOD + b"\n"},
        "no .jsonl file found at s3://{bucket}/{root}/in/",
    ),
    "too-many-records-in-a-file": Invalid(
        {"a.jsonl": many(MAX_RECORDS_PER_FILE + 1)},
        f"a.jsonl: more than {MAX_RECORDS_PER_FILE} records, the per-file limit",
    ),
    "too-many-records-in-the-job": Invalid(
        {f"{name}.jsonl": many(MAX_RECORDS_PER_FILE) for name in "abc"},
        f"input has more than {MAX_RECORDS_PER_JOB} records, the per-job limit",
    ),
}


@pytest.mark.parametrize("case", INVALID.values(), ids=INVALID.keys())
def test_invalid_input_fails_validation_naming_file_and_line(
    deployment: Deployment, buckets_in_out: tuple[str, str], case: Invalid, request: Any
) -> None:
    buckets = deployment.buckets
    bucket_in, bucket_out = buckets_in_out
    root = request.node.callspec.id
    for relative, data in case.files.items():
        buckets.put(bucket_in, f"{root}/in/{relative}", data)

    input_uri = f"s3://{bucket_in}/{root}/{case.prefix}"
    arn = create_job(deployment.bedrock, input_uri, f"s3://{bucket_out}/{root}/")
    job, watch = wait_terminal(deployment.bedrock, arn)

    assert_status_order(watch.statuses, "Failed")
    message = case.message.format(bucket=bucket_in, root=root)
    assert job["message"] == f"Validation failed: {message}"
    assert "endTime" in job
    assert job_keys(buckets, bucket_out, f"{root}/", job_id_of(arn)) == []


def test_missing_input_bucket_fails_validation(
    deployment: Deployment, buckets_in_out: tuple[str, str]
) -> None:
    _, bucket_out = buckets_in_out
    arn = create_job(
        deployment.bedrock, "s3://no-such-bucket-e2e/in/", f"s3://{bucket_out}/nobucket/"
    )
    job, _ = wait_terminal(deployment.bedrock, arn)
    assert job["status"] == "Failed"
    assert job["message"] == "Validation failed: the input bucket no-such-bucket-e2e does not exist"


@pytest.mark.parametrize(
    ("input_key", "output_key", "field_name"),
    [
        ("../x/", "out/", "inputDataConfig"),
        ("in/../../x/", "out/", "inputDataConfig"),
        ("in/%2e%2e/x/", "out/", "inputDataConfig"),
        ("in/", "out/../../elsewhere/", "outputDataConfig"),
        ("in/", "out/%252E%252E/x/", "outputDataConfig"),
    ],
)
def test_path_traversal_is_refused_at_create(
    deployment: Deployment,
    buckets_in_out: tuple[str, str],
    input_key: str,
    output_key: str,
    field_name: str,
) -> None:
    bucket_in, bucket_out = buckets_in_out
    bedrock = deployment.bedrock
    name = f"traversal-{uuid.uuid4().hex[:12]}"
    with pytest.raises(ClientError) as caught:
        create_job(
            bedrock,
            f"s3://{bucket_in}/{input_key}",
            f"s3://{bucket_out}/{output_key}",
            name=name,
        )
    error = caught.value.response["Error"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Code"] == "ValidationException"
    assert field_name in error["Message"], error  # the shape's URI pattern or the key check
    assert bedrock.list_model_invocation_jobs(nameContains=name)["invocationJobSummaries"] == []
