"""Engine acceptance fixtures: servers on local or moto S3 buckets, and helpers to drive jobs.

The helpers here are plain functions (imported by the test_engine* modules) because they are
shared by several modules: polling with a deadline, creating and watching jobs, reading a job's
output, and a reference echo model that computes expected outputs without the code under test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from tests.acceptance.buckets import Buckets, open_buckets
from tests.jobs import wait_for
from tests.server import OutcropServer

ECHO_MODEL = "outcrop.echo-v1"
ENGINE_ROLE_ARN = "arn:aws:iam::123456789012:role/BatchRole"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
STATUS_ORDER = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")
PARTS_DIR = "_outcrop_parts/"
MESSAGE_ID = re.compile(r"msg_[0-9a-f]{24}")


# -- servers and buckets ------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server in this process on a free localhost port; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_kind(request: pytest.FixtureRequest) -> str:
    """Every module that uses it runs once on local buckets and once on moto S3."""
    kind: str = request.param
    return kind


@dataclass
class Deployment:
    """One data dir, its buckets, and the `outcrop serve` currently running on it (if any)."""

    data_dir: Path
    buckets: Buckets
    env: dict[str, str] = field(default_factory=dict)
    server: OutcropServer | None = None
    _bedrock: Any = None

    def start(self) -> Deployment:
        env = {**self.buckets.server_env(), **self.env}
        self.server = OutcropServer(data_dir=self.data_dir, env=env).start()
        self._bedrock = self.server.client()
        return self

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.server = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def bedrock(self) -> Any:
        assert self.server is not None, "the server is not running"
        return self._bedrock

    def log(self) -> str:
        log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        return log_path.read_text(errors="replace") if log_path.exists() else ""


@dataclass
class Deployments:
    """Starts deployments for one storage kind and stops them all at teardown."""

    kind: str
    tmp: pytest.TempPathFactory
    moto: Callable[[], str]
    started: list[Deployment] = field(default_factory=list)

    def start(self, **env: str) -> Deployment:
        data_dir = self.tmp.mktemp(f"engine-{self.kind}") / "data"
        endpoint = self.moto() if self.kind == "s3" else None
        buckets = open_buckets(self.kind, data_dir, endpoint)
        deployment = Deployment(data_dir, buckets, env)
        self.started.append(deployment)
        return deployment.start()

    def close(self) -> None:
        for deployment in self.started:
            deployment.stop()
            deployment.buckets.close()


@pytest.fixture(scope="module")
def deployments(
    storage_kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployments]:
    factory = Deployments(
        storage_kind, tmp_path_factory, lambda: str(request.getfixturevalue("moto_endpoint"))
    )
    yield factory
    factory.close()


def write_catalog(path: Path, models: dict[str, int]) -> Path:
    """A catalog TOML with one slow echo model per entry (model id -> latency in ms)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            f'[[models]]\nmodel_id = "{model_id}"\nbackend = "echo"\n'
            f'format = "anthropic-messages"\noptions = {{ latency_ms = {latency} }}\n\n'
            for model_id, latency in models.items()
        )
    )
    return path


# -- polling ------------------------------------------------------------------------------


# -- jobs ---------------------------------------------------------------------------------


def create_job(
    bedrock: Any,
    input_uri: str,
    output_uri: str,
    *,
    model_id: str = ECHO_MODEL,
    name: str = "engine-job",
    **extra: Any,
) -> str:
    """CreateModelInvocationJob through boto3; returns the job ARN."""
    response = bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=ENGINE_ROLE_ARN,
        modelId=model_id,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}},
        **extra,
    )
    arn: str = response["jobArn"]
    return arn


def job_id_of(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


@dataclass
class Watch:
    """What polling one job saw: its distinct statuses in order, and every response."""

    statuses: list[str] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def poll(self, bedrock: Any, arn: str) -> dict[str, Any]:
        job: dict[str, Any] = bedrock.get_model_invocation_job(jobIdentifier=arn)
        self.seen.append(job)
        if not self.statuses or self.statuses[-1] != job["status"]:
            self.statuses.append(job["status"])
        return job


def wait_terminal(
    bedrock: Any, arn: str, timeout: float = 60.0, watch: Watch | None = None
) -> tuple[dict[str, Any], Watch]:
    watch = watch or Watch()

    def done() -> dict[str, Any] | None:
        job = watch.poll(bedrock, arn)
        return job if job["status"] in TERMINAL else None

    try:
        job = wait_for(done, timeout, f"job {job_id_of(arn)} to end")
    except AssertionError as exc:
        last = watch.seen[-1] if watch.seen else {}
        raise AssertionError(f"{exc}; statuses seen {watch.statuses}, last {last}") from None
    return job, watch


def assert_status_order(statuses: list[str], final: str) -> None:
    """Observed statuses never go back in Bedrock's order and end in `final`, seen once."""
    assert statuses[-1] == final, statuses
    ranks = [STATUS_ORDER.index(s) for s in statuses[:-1]]
    assert ranks == sorted(set(ranks)), f"statuses out of order or repeated: {statuses}"


# -- inputs and outputs -------------------------------------------------------------------


def jsonl(records: list[Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def anthropic_body(text: str, max_tokens: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    """Output lines: one JSON object per line, newline-terminated, no blank lines."""
    assert data.endswith(b"\n"), "output must end with a newline"
    lines = data[:-1].split(b"\n")
    assert all(lines), "output has blank lines"
    return [json.loads(line) for line in lines]


def job_keys(buckets: Buckets, bucket: str, prefix: str, job_id: str) -> list[str]:
    """Keys under `<prefix><jobId>/`, relative to that folder, once the temporary parts are gone.

    The engine marks a job terminal and then deletes its `_outcrop_parts/`, so a client that
    lists right after seeing the terminal status can still catch parts for a moment (reported as
    a bug); this waits a few seconds for them to go and fails if they stay.
    """
    root = f"{prefix}{job_id}/"

    def without_parts() -> tuple[list[str]] | None:  # a tuple, so that [] counts as found
        keys = [k[len(root) :] for k in buckets.keys(bucket, root)]
        return None if any(k.startswith(PARTS_DIR) for k in keys) else (keys,)

    return wait_for(without_parts, 5.0, f"the parts of job {job_id} to be deleted")[0]


def read_output(buckets: Buckets, bucket: str, key: str) -> list[dict[str, Any]]:
    return parse_jsonl(buckets.get(bucket, key))


def read_manifest(buckets: Buckets, bucket: str, prefix: str, job_id: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(
        buckets.get(bucket, f"{prefix}{job_id}/manifest.json.out")
    )
    return manifest


# -- reference echo model (independent of outcrop's code) ---------------------------------


def _anthropic_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(block["text"] for block in content)


def _echo(last_user: str, max_tokens: int | None, stops: list[str]) -> tuple[str, str, str | None]:
    """(answer, stop reason, stop sequence) of the echo model."""
    text, reason, sequence = last_user, "end_turn", None
    hits = [(text.find(s), i, s) for i, s in enumerate(stops) if s and s in text]
    if hits:
        index, _, sequence = min(hits)
        text, reason = text[:index], "stop_sequence"
    words = text.split()
    if max_tokens is not None and len(words) > max_tokens:
        text, reason, sequence = " ".join(words[:max_tokens]), "max_tokens", None
    return text, reason, sequence


def expected_anthropic(body: dict[str, Any], model_id: str) -> dict[str, Any]:
    """The echo model's anthropic-messages response, less the random `id`."""
    texts = [(m["role"], _anthropic_text(m["content"])) for m in body["messages"]]
    last_user = next(text for role, text in reversed(texts) if role == "user")
    system = _anthropic_text(body["system"]) if "system" in body else ""
    input_tokens = sum(len(text.split()) for _, text in texts) + len(system.split())
    text, reason, sequence = _echo(last_user, body["max_tokens"], body.get("stop_sequences", []))
    return {
        "type": "message",
        "role": "assistant",
        "model": model_id,
        "content": [{"type": "text", "text": text}],
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": {"input_tokens": input_tokens, "output_tokens": len(text.split())},
    }


def expected_converse(body: dict[str, Any]) -> dict[str, Any]:
    """The echo model's Converse response, less `metrics` (its latency varies)."""
    texts = [(m["role"], "\n".join(b["text"] for b in m["content"])) for m in body["messages"]]
    last_user = next(text for role, text in reversed(texts) if role == "user")
    system = "\n".join(b["text"] for b in body.get("system", []))
    input_tokens = sum(len(text.split()) for _, text in texts) + len(system.split())
    config = body.get("inferenceConfig", {})
    text, reason, _ = _echo(last_user, config.get("maxTokens"), config.get("stopSequences", []))
    output_tokens = len(text.split())
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": reason,
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
    }


def assert_anthropic_output(record: dict[str, Any], model_id: str = ECHO_MODEL) -> None:
    """A successful record's modelOutput is exactly the echo answer to its modelInput."""
    assert "error" not in record, record
    output = dict(record["modelOutput"])
    assert MESSAGE_ID.fullmatch(output.pop("id")), record
    assert output == expected_anthropic(record["modelInput"], model_id)
