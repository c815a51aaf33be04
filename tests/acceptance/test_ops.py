"""Operations: Prometheus metrics checked against a job just run, health and readiness, JSON logs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.jobs import create_job, read_jsonl, wait_for, wait_for_terminal, write_jsonl
from tests.server import OutcropServer, running_server

MODEL = "outcrop.echo-v1"


def body(words: int) -> dict[str, object]:
    text = " ".join(f"w{i}" for i in range(words))
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 3,
        "messages": [{"role": "user", "content": text}],
    }


def samples(server: OutcropServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{server.endpoint}/metrics", timeout=10).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcropServer]:
    with running_server(tmp_path_factory.mktemp("ops") / "data") as srv:
        yield srv


def test_metrics_match_a_job_just_run(server: OutcropServer) -> None:
    records = [{"recordId": f"r{i}", "modelInput": body(2 + i % 5)} for i in range(40)]
    records.append({"recordId": "bad", "modelInput": {"anthropic_version": "bedrock-2023-05-31"}})
    write_jsonl(server.data_dir / "buckets" / "ops-in" / "job.jsonl", records)
    (server.data_dir / "buckets" / "ops-out").mkdir(parents=True)
    before = samples(server)
    bedrock = server.client()
    arn = create_job(bedrock, "metrics-job", MODEL, "s3://ops-in/job.jsonl", "s3://ops-out/")
    job = wait_for_terminal(bedrock, arn)
    assert job["status"] == "Completed"
    output = read_jsonl(
        server.data_dir / "buckets" / "ops-out" / arn.rsplit("/", 1)[-1] / "job.jsonl.out"
    )
    input_tokens = sum(
        r["modelOutput"]["usage"]["input_tokens"] for r in output if "modelOutput" in r
    )
    output_tokens = sum(
        r["modelOutput"]["usage"]["output_tokens"] for r in output if "modelOutput" in r
    )

    after = samples(server)
    label = (("model_id", MODEL),)

    def grew(name: str) -> float:
        return after.get((name, label), 0.0) - before.get((name, label), 0.0)

    assert grew("outcrop_records_processed_total") == 41
    assert grew("outcrop_records_failed_total") == 1
    assert grew("outcrop_input_tokens_total") == input_tokens > 0
    assert grew("outcrop_output_tokens_total") == output_tokens > 0
    assert after[("outcrop_jobs", (("status", "Completed"),))] >= 1
    assert after.get(("outcrop_records_pending", label), 0.0) == 0
    assert after[("outcrop_backend_request_seconds_count", label)] >= 1
    create_calls = (("operation", "CreateModelInvocationJob"), ("status", "200"))
    assert after[("outcrop_http_request_seconds_count", create_calls)] >= 1
    # every family is Outcrop's own (the registry is per process, with no default collectors)
    assert {name.split("_", 1)[0] for name, _ in after} == {"outcrop"}


def test_healthz_and_readyz(server: OutcropServer) -> None:
    assert httpx.get(f"{server.endpoint}/healthz", timeout=5).status_code == 200
    ready = httpx.get(f"{server.endpoint}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_logs_are_json_lines_with_job_ids(server: OutcropServer) -> None:
    lines = [line for line in server.log().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e.get("jobId") and "finished" in e["message"] for e in entries)


def test_readyz_fails_when_the_data_dir_becomes_unwritable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data) as srv:
        assert httpx.get(f"{srv.endpoint}/readyz", timeout=5).status_code == 200
        # chattr +i refuses writes even to root (chmod does not), the way a read-only or full
        # volume would.
        locked = subprocess.run(["chattr", "+i", str(data)], capture_output=True)
        if locked.returncode != 0:
            pytest.skip(f"chattr is not available here: {locked.stderr.decode().strip()}")
        try:
            answer = wait_for(
                lambda: (
                    (r := httpx.get(f"{srv.endpoint}/readyz", timeout=5)).status_code == 503 and r
                ),
                15,
            )
            problems = answer.json()["problems"]
            assert any("not writable" in p for p in problems)
            assert httpx.get(f"{srv.endpoint}/healthz", timeout=5).status_code == 200
        finally:
            subprocess.run(["chattr", "-i", str(data)], check=True)
        assert wait_for(
            lambda: httpx.get(f"{srv.endpoint}/readyz", timeout=5).status_code == 200, 15
        )
