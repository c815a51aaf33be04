"""Every body family through a real job on the echo backend: valid bodies answered, bad ones 400."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.jobs import create_job, read_jsonl, wait_for_terminal, write_jsonl
from tests.server import OutcropServer, running_server

TEXT = "the quick brown fox jumps over the lazy dog"

# (format, model id, a valid body, an invalid body, the field its error must name)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    (
        "anthropic-messages",
        "acme.anthropic-v1",
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": TEXT}],
        },
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 4,
            "messages": [{"role": "assistant", "content": TEXT}],
        },
        "messages.0.role",
    ),
    (
        "nova",
        "amazon.nova-echo-v1",
        {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": TEXT}]}],
            "inferenceConfig": {"max_new_tokens": 4},
        },
        {"schemaVersion": "messages-v1", "messages": []},
        "messages",
    ),
    (
        "llama",
        "meta.llama-echo-v1",
        {"prompt": TEXT, "max_gen_len": 4},
        {"max_gen_len": 4},
        "prompt",
    ),
    ("mistral", "mistral.echo-v1", {"prompt": TEXT, "max_tokens": 4}, {"prompt": 5}, "prompt"),
    (
        "openai-chat",
        "openai.echo-v1",
        {"messages": [{"role": "user", "content": TEXT}], "max_completion_tokens": 4},
        {"messages": "hello"},
        "messages",
    ),
    (
        "titan-text",
        "amazon.titan-text-echo-v1",
        {"inputText": TEXT, "textGenerationConfig": {"maxTokenCount": 4}},
        {"textGenerationConfig": {"maxTokenCount": 4}},
        "inputText",
    ),
    (
        "titan-embed",
        "amazon.titan-embed-echo-v1",
        {"inputText": TEXT, "dimensions": 256},
        {"inputText": TEXT, "dimensions": "many"},
        "dimensions",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcropServer]:
    root = tmp_path_factory.mktemp("formats")
    catalog = root / "catalog.toml"
    catalog.write_text(
        "".join(
            f'[[models]]\nmodel_id = "{model}"\nbackend = "echo"\nformat = "{fmt}"\n\n'
            for fmt, model, *_ in CASES
        )
    )
    with running_server(root / "data", OUTCROP_CATALOG=str(catalog)) as srv:
        yield srv


def _run(
    server: OutcropServer, name: str, model_id: str, bodies: list[dict[str, Any]], **extra: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    buckets = server.data_dir / "buckets"
    write_jsonl(
        buckets / "fmt" / name / "in.jsonl",
        ({"recordId": f"r{i}", "modelInput": b} for i, b in enumerate(bodies)),
    )
    bedrock = server.client()
    arn = create_job(
        bedrock, name, model_id, f"s3://fmt/{name}/in.jsonl", f"s3://fmt/{name}-out/", **extra
    )
    job = wait_for_terminal(bedrock, arn)
    job_id = arn.rsplit("/", 1)[-1]
    return job, read_jsonl(Path(buckets / "fmt" / f"{name}-out" / job_id / "in.jsonl.out"))


@pytest.mark.parametrize(
    ("fmt", "model_id", "good", "bad", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_format_through_a_job(
    server: OutcropServer,
    fmt: str,
    model_id: str,
    good: dict[str, Any],
    bad: dict[str, Any],
    field: str,
) -> None:
    job, records = _run(server, fmt.replace("-", ""), model_id, [good, bad, good])
    assert job["status"] == "Completed"
    assert (job["successRecordCount"], job["errorRecordCount"]) == (2, 1)
    assert [r["recordId"] for r in records] == ["r0", "r1", "r2"]
    error = records[1]["error"]
    assert error["errorCode"] == 400 and error["errorMessage"].startswith(field)
    output = records[0]["modelOutput"]
    if fmt == "titan-embed":
        vector = output["embedding"]
        assert len(vector) == 256 and math.isclose(
            math.fsum(v * v for v in vector), 1.0, rel_tol=1e-9
        )
        assert output["inputTextTokenCount"] == 9
        return
    expected_text = "the quick brown fox"  # cut to the 4-token limit
    texts = {
        "anthropic-messages": lambda o: (
            o["content"][0]["text"],
            o["stop_reason"],
            o["usage"]["output_tokens"],
        ),
        "nova": lambda o: (
            o["output"]["message"]["content"][0]["text"],
            o["stopReason"],
            o["usage"]["outputTokens"],
        ),
        "llama": lambda o: (o["generation"], o["stop_reason"], o["generation_token_count"]),
        "mistral": lambda o: (o["outputs"][0]["text"], o["outputs"][0]["stop_reason"], 4),
        "openai-chat": lambda o: (
            o["choices"][0]["message"]["content"],
            o["choices"][0]["finish_reason"],
            o["usage"]["completion_tokens"],
        ),
        "titan-text": lambda o: (
            o["results"][0]["outputText"],
            o["results"][0]["completionReason"],
            o["results"][0]["tokenCount"],
        ),
    }
    limit_reason = {
        "anthropic-messages": "max_tokens",
        "nova": "max_tokens",
        "llama": "length",
        "mistral": "length",
        "openai-chat": "length",
        "titan-text": "LENGTH",
    }
    assert texts[fmt](output) == (expected_text, limit_reason[fmt], 4)


def test_converse_job(server: OutcropServer) -> None:
    body = {
        "system": [{"text": "be brief"}],
        "messages": [{"role": "user", "content": [{"text": TEXT}]}],
        "inferenceConfig": {"maxTokens": 50},
    }
    job, records = _run(
        server, "converse", "meta.llama-echo-v1", [body], modelInvocationType="Converse"
    )
    assert job["status"] == "Completed" and job["modelInvocationType"] == "Converse"
    output = records[0]["modelOutput"]
    assert output["output"]["message"] == {"role": "assistant", "content": [{"text": TEXT}]}
    assert output["stopReason"] == "end_turn"
    assert output["usage"] == {"inputTokens": 11, "outputTokens": 9, "totalTokens": 20}
