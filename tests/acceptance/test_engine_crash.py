"""Crash resume: kill -9 the server at seeded random moments; after restarts the job completes
with every record exactly once and exact counts. Five trials on local buckets, one on moto S3.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest

from tests.acceptance.conftest import (
    TERMINAL,
    Deployment,
    Deployments,
    Watch,
    anthropic_body,
    assert_anthropic_output,
    assert_status_order,
    create_job,
    expected_anthropic,
    job_id_of,
    job_keys,
    jsonl,
    read_manifest,
    read_output,
    wait_for,
    wait_terminal,
    write_catalog,
)

pytestmark = pytest.mark.slow

# Fixed so that failures reproduce; OUTCROP_TEST_SEED explores other kill moments.
SEED = int(os.environ.get("OUTCROP_TEST_SEED", "20240917"))
CRASH_MODEL = "acme.crash-echo-v1"
LATENCY_MS = 60  # with the settings below a job runs for about two seconds
FILES = {"part-1.jsonl": 1800, "nested/part-2.jsonl": 1200}
BAD_EVERY = 101  # a body without max_tokens: a per-record 400 that must survive restarts
NO_ID_EVERY = 7  # records without recordId get L<file><line>, stable across restarts


def input_files() -> dict[str, list[dict[str, Any]]]:
    """Input lines by path, in S3 key order (which is the order of the job's file indexes)."""
    files: dict[str, list[dict[str, Any]]] = {}
    for file_index, (relative, count) in enumerate(sorted(FILES.items())):
        lines = []
        for i in range(count):
            body = anthropic_body(f"file {file_index} record {i} " + "word " * (i % 9), 5)
            if i % BAD_EVERY == BAD_EVERY - 1:
                del body["max_tokens"]
            line: dict[str, Any] = {"modelInput": body}
            if i % NO_ID_EVERY:
                line["recordId"] = f"f{file_index}-{i:05d}"
            lines.append(line)
        files[relative] = lines
    return files


def expected_ids(file_index: int, lines: list[dict[str, Any]]) -> list[str]:
    return [
        line.get("recordId", f"L{file_index:03d}{number:07d}")
        for number, line in enumerate(lines, start=1)
    ]


def start_server(kind: str, deployments: Deployments, tmp: pytest.TempPathFactory) -> Deployment:
    catalog = write_catalog(tmp.mktemp("catalog") / "catalog.toml", {CRASH_MODEL: LATENCY_MS})
    return deployments.start(
        OUTCROP_CATALOG=str(catalog),
        OUTCROP_SHARD_RECORDS="100",
        OUTCROP_MAX_SHARD_RECORDS="100",
        OUTCROP_SHARD_CONCURRENCY="2",
        OUTCROP_RECORD_CONCURRENCY="2",
        OUTCROP_PROGRESS_INTERVAL_S="0.1",
        OUTCROP_MANIFEST_INTERVAL_S="0.3",
    )


def kill_after(deployment: Deployment, arn: str, delay: float, kills: list[str]) -> None:
    """kill -9 the server `delay` seconds from now (the random moment is the point of the test)."""
    time.sleep(delay)
    status = deployment.bedrock.get_model_invocation_job(jobIdentifier=arn)["status"]
    deployment.kill()
    kills.append(f"{status}+{delay:.2f}s")


@pytest.mark.parametrize(
    ("kind", "trial"),
    [*(("local", t) for t in range(5)), pytest.param("s3", 5, marks=pytest.mark.s3)],
)
def test_job_survives_kill_9_at_random_moments(
    kind: str, trial: int, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rng = random.Random(SEED + trial)
    deployments = Deployments(
        kind, tmp_path_factory, lambda: str(request.getfixturevalue("moto_endpoint"))
    )
    try:
        deployment = start_server(kind, deployments, tmp_path_factory)
        buckets = deployment.buckets
        bucket_in, bucket_out = buckets.create("in"), buckets.create("out")
        files = input_files()
        for relative, lines in files.items():
            buckets.put(bucket_in, f"crash/{relative}", jsonl(lines))
        arn = create_job(
            deployment.bedrock,
            f"s3://{bucket_in}/crash/",
            f"s3://{bucket_out}/o/",
            model_id=CRASH_MODEL,
        )

        kills: list[str] = []
        if rng.random() < 0.4:  # anywhere from Submitted through Validating to early InProgress
            kill_after(deployment, arn, rng.uniform(0.0, 0.3), kills)
        else:
            watch = Watch()
            wait_for(
                lambda: watch.poll(deployment.bedrock, arn)["status"] == "InProgress",
                30,
                "InProgress",
            )
            kill_after(deployment, arn, rng.uniform(0.0, 2.0), kills)
        for _ in range(rng.choice([0, 1, 2])):  # more kills, during recovery or finalising
            deployment.start()
            status = deployment.bedrock.get_model_invocation_job(jobIdentifier=arn)["status"]
            if status in TERMINAL:
                break
            kill_after(deployment, arn, rng.uniform(0.0, 1.5), kills)
        if deployment.server is None:
            deployment.start()
        job, watch = wait_terminal(deployment.bedrock, arn, timeout=90)

        context = f"seed {SEED + trial}, kills at {kills}"
        assert job["status"] == "Completed", (context, job.get("message"), deployment.log()[-3000:])
        assert_status_order(watch.statuses, "Completed")
        job_id = job_id_of(arn)
        outputs = sorted(f"{relative}.out" for relative in files)
        assert job_keys(buckets, bucket_out, "o/", job_id) == sorted(
            [*outputs, "manifest.json.out"]
        ), context

        success = errors = input_tokens = output_tokens = 0
        for file_index, (relative, lines) in enumerate(files.items()):
            records = read_output(buckets, bucket_out, f"o/{job_id}/{relative}.out")
            assert [r["recordId"] for r in records] == expected_ids(file_index, lines), context
            for record, line in zip(records, lines, strict=True):
                assert record["modelInput"] == line["modelInput"]
                if "max_tokens" in line["modelInput"]:
                    assert_anthropic_output(record, CRASH_MODEL)
                    usage = expected_anthropic(line["modelInput"], CRASH_MODEL)["usage"]
                    success += 1
                    input_tokens += usage["input_tokens"]
                    output_tokens += usage["output_tokens"]
                else:
                    assert record["error"]["errorCode"] == 400, (context, record)
                    errors += 1
        total = sum(FILES.values())
        assert success + errors == total
        expected_manifest = {
            "totalRecordCount": total,
            "processedRecordCount": total,
            "successRecordCount": success,
            "errorRecordCount": errors,
            "inputTokenCount": input_tokens,
            "outputTokenCount": output_tokens,
        }
        assert read_manifest(buckets, bucket_out, "o/", job_id) == expected_manifest, context
        counts = {k: job[k] for k in expected_manifest if k in job}
        assert counts == {k: v for k, v in expected_manifest.items() if "Token" not in k}
    finally:
        deployments.close()
