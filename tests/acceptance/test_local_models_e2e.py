"""Real local models through real jobs: the built-in all-MiniLM-L6-v2 and a tiny random Llama
mapped to Bedrock model ids in a catalog, driven with boto3 like any other job."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.jobs import create_job, read_jsonl, wait_for_terminal, write_jsonl
from tests.server import OutcropServer, running_server
from tests.tiny_model import build_tiny_llama

pytestmark = pytest.mark.models

EMBEDDER = "sentence-transformers.all-minilm-l6-v2"
LLAMA = "meta.llama3-8b-instruct-v1:0"  # a real Bedrock id, answered by the tiny local model
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcropServer]:
    root = tmp_path_factory.mktemp("local-models")
    model = build_tiny_llama(root / "tiny-llama")
    catalog = root / "catalog.toml"
    catalog.write_text(
        "".join(
            f'[[models]]\nmodel_id = "{model_id}"\nbackend = "transformers"\nformat = "{fmt}"\n'
            f'options = {{ path = "{model}", batch_size = 4, seed = 0 }}\n\n'
            for model_id, fmt in ((LLAMA, "llama"), (CLAUDE, "anthropic-messages"))
        )
    )
    with running_server(root / "data", OUTCROP_CATALOG=str(catalog)) as srv:
        yield srv


def _run(
    server: OutcropServer, name: str, model_id: str, bodies: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    buckets = server.data_dir / "buckets"
    write_jsonl(
        buckets / "local" / name / "in.jsonl",
        ({"recordId": f"r{i}", "modelInput": b} for i, b in enumerate(bodies)),
    )
    bedrock = server.client()
    arn = create_job(
        bedrock, name, model_id, f"s3://local/{name}/in.jsonl", f"s3://local/{name}-out/"
    )
    job = wait_for_terminal(bedrock, arn, timeout=300)
    job_id = arn.rsplit("/", 1)[-1]
    out = read_jsonl(buckets / "local" / f"{name}-out" / job_id / "in.jsonl.out")
    return job, sorted(out, key=lambda r: int(r["recordId"][1:]))


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_real_embeddings_job(server: OutcropServer) -> None:
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Revenue rose 5 percent."]
    bodies: list[dict[str, Any]] = [{"inputText": t} for t in texts]
    bodies.append({"inputText": texts[0], "dimensions": 1024})  # this model has 384 only
    job, out = _run(server, "embed", EMBEDDER, bodies)
    assert job["status"] == "Completed"  # a record's error is in its line, not the status
    cat, kitten, revenue = (r["modelOutput"]["embedding"] for r in out[:3])
    for record in out[:3]:
        vector = record["modelOutput"]["embedding"]
        assert len(vector) == 384
        assert math.isclose(math.hypot(*vector), 1.0, abs_tol=1e-4)
        assert record["modelOutput"]["inputTextTokenCount"] > 0
    assert _cosine(cat, kitten) > _cosine(cat, revenue)
    assert out[3]["error"]["errorCode"] == 400
    assert "dimensions" in out[3]["error"]["errorMessage"]


def test_tiny_generator_answers_llama_bodies(server: OutcropServer) -> None:
    bodies: list[dict[str, Any]] = [
        {"prompt": "the cat sees the mat", "max_gen_len": 5},
        {"prompt": "a robot builds some code today.", "max_gen_len": 3},
        {"max_gen_len": 5},  # no prompt: this record alone fails
    ]
    job, out = _run(server, "llama", LLAMA, bodies)
    assert job["status"] == "Completed"
    for record, body in zip(out[:2], bodies[:2], strict=True):
        answer = record["modelOutput"]
        assert isinstance(answer["generation"], str)
        assert 1 <= answer["generation_token_count"] <= body["max_gen_len"]
        assert answer["prompt_token_count"] > 0
        assert answer["stop_reason"] in ("stop", "length")
    assert out[2]["error"]["errorCode"] == 400
    assert out[2]["error"]["errorMessage"].startswith("prompt")


def test_tiny_generator_behind_a_claude_model_id(server: OutcropServer) -> None:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "my friend reads a book"}],
    }
    job, out = _run(server, "claude", CLAUDE, [body, body])
    assert job["status"] == "Completed"
    for record in out:
        answer = record["modelOutput"]
        assert answer["model"] == CLAUDE
        assert answer["content"][0]["type"] == "text"
        assert 1 <= answer["usage"]["output_tokens"] <= 4
        assert answer["usage"]["input_tokens"] > 0
    # Seeded and batched together: the same request gets the same answer.
    assert out[0]["modelOutput"]["content"] == out[1]["modelOutput"]["content"]
