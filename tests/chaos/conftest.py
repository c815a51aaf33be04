"""Chaos fixtures: real servers, moto S3 in its own process, FakeOpenAI, and mixed-model jobs
checked for exactly-once output and exact counts.

Randomness is seeded (OUTCROP_CHAOS_SEED explores other schedules); every wait polls real state
with a deadline. Helpers are plain functions because several modules share them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.acceptance.buckets import Buckets
from tests.integration.fake_openai import FakeOpenAI
from tests.jobs import ROLE, TERMINAL, wait_for
from tests.server import OutcropServer, free_port

SEED = int(os.environ.get("OUTCROP_CHAOS_SEED", "20261204"))
CI = os.environ.get("CI", "").lower() == "true"
PARTS_DIR = "_outcrop_parts/"
MOTO_SERVER = Path(sys.executable).with_name("moto_server")


# -- processes ----------------------------------------------------------------------------


class MotoProcess:
    """moto's standalone S3 server as a child process (`moto_server -H 127.0.0.1 -p PORT`)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoProcess:
        cmd = [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()}")
            try:
                return httpx.get(self.endpoint, timeout=1).status_code < 500
            except httpx.TransportError:
                return False

        wait_for(ready, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProcess]:
    server = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(latency_s=0.005, slow_s=3.0) as fake:
        yield fake


@pytest.fixture
def servers() -> Iterator[list[OutcropServer]]:
    """Servers a test starts are appended here and stopped (or already killed) at its end."""
    started: list[OutcropServer] = []
    yield started
    for server in started:
        server.stop()


def api_client(server: OutcropServer) -> Any:
    """A boto3 client that never retries (total_max_attempts=1: `server.client()`'s legacy
    max_attempts=1 still retries once, which would hide a failed request)."""
    creds = server.credentials()
    return boto3.client(
        "bedrock",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=120),
    )


def start_server(
    started: list[OutcropServer], data_dir: Path, env: dict[str, str]
) -> OutcropServer:
    server = OutcropServer(data_dir=data_dir, env=env).start()
    started.append(server)
    return server


# -- models -------------------------------------------------------------------------------

ECHO = "chaos.echo-anthropic"
ECHO_SLOW = "chaos.echo-latency"
CONVERSE = "chaos.echo-converse"
EMBED = "chaos.titan-embed-echo"
OPENAI = "chaos.openai-fake"
BAD_BODY = {"bogus": True}  # no format accepts it: a per-record 400 that must survive faults


@dataclass(frozen=True)
class Model:
    model_id: str
    invocation_type: str = "InvokeModel"

    def body(self, text: str) -> dict[str, Any]:
        if self.model_id == EMBED:
            return {"inputText": text}
        if self.invocation_type == "Converse":
            return {"messages": [{"role": "user", "content": [{"text": text}]}]}
        return {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 1000,
            "messages": [{"role": "user", "content": text}],
        }

    def check(self, record: dict[str, Any]) -> None:
        """A successful record's output answers exactly its own input."""
        assert "error" not in record, record
        out, body = record["modelOutput"], record["modelInput"]
        if self.model_id == EMBED:
            assert len(out["embedding"]) == 1024 and out["inputTextTokenCount"] > 0, record
        elif self.invocation_type == "Converse":
            text = body["messages"][0]["content"][0]["text"]
            assert out["output"]["message"]["content"][0]["text"] == text, record
        else:
            text = body["messages"][0]["content"]
            answer = f"echo: {text}" if self.model_id == OPENAI else text
            assert out["content"][0]["text"] == answer, record


MODELS = (
    Model(ECHO),
    Model(ECHO_SLOW),
    Model(CONVERSE, "Converse"),
    Model(EMBED),
    Model(OPENAI),
)


def write_catalog(path: Path, openai_base_url: str | None = None, **openai: Any) -> Path:
    entries = [
        (ECHO, "echo", "anthropic-messages", {"latency_ms": 5, "batch_size": 4}),
        (ECHO_SLOW, "echo", "anthropic-messages", {"latency_ms": 50, "batch_size": 2}),
        (CONVERSE, "echo", "anthropic-messages", {"latency_ms": 20, "batch_size": 4}),
        (EMBED, "echo", "titan-embed", {"latency_ms": 20, "batch_size": 8}),
    ]
    if openai_base_url is not None:
        options = {"base_url": openai_base_url, "model": "fake", "max_concurrency": 4}
        options |= {"timeout_s": 2.0, "max_retries": 3, **openai}
        entries.append((OPENAI, "openai", "anthropic-messages", options))
    text = ""
    for model_id, backend, fmt, options in entries:
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
        text += f'[[models]]\nmodel_id = "{model_id}"\nbackend = "{backend}"\n'
        text += f'format = "{fmt}"\noptions = {{ {inline} }}\n\n'
    path.write_text(text)
    return path


# -- jobs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    record_id: str
    model_input: dict[str, Any]
    error_code: int | None = None  # None: the record succeeds


@dataclass
class ChaosJob:
    """A job's inputs and what its output must be, whatever happens while it runs."""

    name: str
    model: Model
    files: dict[str, list[Expected]]  # path relative to the input prefix -> its records
    in_bucket: str
    out_bucket: str
    arn: str = ""

    @property
    def job_id(self) -> str:
        return self.arn.rsplit("/", 1)[1]

    @property
    def records(self) -> list[Expected]:
        return [r for _, records in sorted(self.files.items()) for r in records]


def plain_job(
    name: str,
    model: Model,
    sizes: list[int],
    in_bucket: str,
    out_bucket: str,
    bad_every: int = 97,
) -> ChaosJob:
    """Records with unique texts (so FakeOpenAI's per-prompt counters are per record); every
    `bad_every`-th body is malformed and must end as a 400 error record."""
    files: dict[str, list[Expected]] = {}
    for f, size in enumerate(sizes):
        records = []
        for i in range(size):
            rid = f"{name}-{f}-{i:05d}"
            if bad_every and i % bad_every == bad_every - 1:
                records.append(Expected(rid, BAD_BODY, 400))
            else:
                records.append(Expected(rid, model.body(f"{name} file {f} record {i} words")))
        files[f"f{f}.jsonl" if f % 2 == 0 else f"sub/f{f}.jsonl"] = records
    return ChaosJob(name, model, files, in_bucket, out_bucket)


def jsonl(records: list[Expected]) -> bytes:
    return b"".join(
        json.dumps({"recordId": r.record_id, "modelInput": r.model_input}).encode() + b"\n"
        for r in records
    )


def submit(bedrock: Any, buckets: Buckets, job: ChaosJob) -> ChaosJob:
    for relative, records in job.files.items():
        buckets.put(job.in_bucket, f"{job.name}/{relative}", jsonl(records))
    extra = {"modelInvocationType": "Converse"} if job.model.invocation_type == "Converse" else {}
    job.arn = bedrock.create_model_invocation_job(
        jobName=job.name,
        roleArn=ROLE,
        modelId=job.model.model_id,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{job.in_bucket}/{job.name}/"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{job.out_bucket}/out/"}},
        **extra,
    )["jobArn"]
    return job


def status_of(bedrock: Any, job: ChaosJob) -> dict[str, Any]:
    got: dict[str, Any] = bedrock.get_model_invocation_job(jobIdentifier=job.arn)
    return got


def wait_all_terminal(
    bedrock: Any, jobs: list[ChaosJob], timeout: float
) -> dict[str, dict[str, Any]]:
    final: dict[str, dict[str, Any]] = {}

    def done() -> bool:
        for job in jobs:
            if job.name not in final:
                got = status_of(bedrock, job)
                if got["status"] in TERMINAL:
                    final[job.name] = got
        return len(final) == len(jobs)

    try:
        wait_for(done, timeout, interval=0.2)
    except AssertionError:
        waiting = {j.name: status_of(bedrock, j)["status"] for j in jobs if j.name not in final}
        raise AssertionError(f"jobs not terminal within {timeout} s: {waiting}") from None
    return final


def output_keys(buckets: Buckets, job: ChaosJob) -> list[str]:
    """The job's objects, relative to `out/<jobId>/`, once its temporary parts are gone."""
    root = f"out/{job.job_id}/"

    def settled() -> tuple[list[str]] | None:
        keys = [k[len(root) :] for k in buckets.keys(job.out_bucket, root)]
        return None if any(k.startswith(PARTS_DIR) for k in keys) else (keys,)

    return list(wait_for(settled, 15)[0])


def parse_lines(data: bytes, where: str) -> list[dict[str, Any]]:
    assert data.endswith(b"\n"), f"{where} does not end with a newline"
    lines = data[:-1].split(b"\n")
    assert all(lines), f"{where} has blank lines"
    return [json.loads(line) for line in lines]


def verify_exactly_once(buckets: Buckets, job: ChaosJob, got: dict[str, Any]) -> None:
    """Completed; one `.out` per input with every record once, in input order, each answering its
    own input; the manifest and the API's counters equal the expected figures exactly."""
    context = f"job {job.name} ({job.job_id})"
    assert got["status"] == "Completed", (context, got.get("message"))
    expected_keys = sorted([f"{rel}.out" for rel in job.files] + ["manifest.json.out"])
    assert sorted(output_keys(buckets, job)) == expected_keys, context
    success = errors = 0
    for relative, records in sorted(job.files.items()):
        key = f"out/{job.job_id}/{relative}.out"
        lines = parse_lines(buckets.get(job.out_bucket, key), key)
        assert [r["recordId"] for r in lines] == [r.record_id for r in records], context
        for line, want in zip(lines, records, strict=True):
            assert line["modelInput"] == want.model_input, (context, line)
            if want.error_code is None:
                job.model.check(line)
                success += 1
            else:
                assert line["error"]["errorCode"] == want.error_code, (context, line)
                errors += 1
    total = len(job.records)
    manifest = json.loads(buckets.get(job.out_bucket, f"out/{job.job_id}/manifest.json.out"))
    figures = {
        "totalRecordCount": total,
        "processedRecordCount": total,
        "successRecordCount": success,
        "errorRecordCount": errors,
    }
    assert {k: manifest[k] for k in figures} == figures, (context, manifest)
    assert {k: got.get(k) for k in figures} == figures, (context, got)


# -- the database -------------------------------------------------------------------------


def transition_times(data_dir: Path, job_id: str) -> dict[str, float]:
    """When the job entered each status (seconds), read from the server's own SQLite database."""
    with sqlite3.connect(data_dir / "outcrop.db", timeout=30) as conn:
        rows = conn.execute(
            "SELECT status, at_us FROM job_transitions WHERE job_id = ? ORDER BY id", (job_id,)
        ).fetchall()
    return {status: at_us / 1e6 for status, at_us in rows}


# -- misc ---------------------------------------------------------------------------------


def rng_for(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


@dataclass
class Timer:
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def server_env(catalog: Path, **extra: str) -> dict[str, str]:
    return {
        "OUTCROP_CATALOG": str(catalog),
        "OUTCROP_SHARD_RECORDS": "50",
        "OUTCROP_MAX_SHARD_RECORDS": "50",
        "OUTCROP_SHARD_CONCURRENCY": "2",
        "OUTCROP_RECORD_CONCURRENCY": "2",
        "OUTCROP_PROGRESS_INTERVAL_S": "0.1",
        "OUTCROP_MANIFEST_INTERVAL_S": "0.3",
        "OUTCROP_MAX_JOBS_IN_PROGRESS": "8",
        "OUTCROP_MAX_JOBS_PER_MODEL": "4",
        "OUTCROP_RATE_LIMIT_RPS": "0",
        **extra,
    }
