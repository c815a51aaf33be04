"""The echo backend: word-token semantics, stop sequences, embeddings, options and latency."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

import pytest

from outcrop.backends.base import Backend, CatalogError
from outcrop.backends.echo import EchoBackend, answer
from outcrop.formats.anthropic import AnthropicMessages
from outcrop.formats.base import (
    ChatMessage,
    InferenceRequest,
    InferenceResponse,
    RecordError,
)


def invoke(
    requests: Sequence[InferenceRequest], backend: Backend | None = None
) -> list[InferenceResponse | RecordError]:
    return asyncio.run((backend or EchoBackend()).invoke(requests))


def ok(result: InferenceResponse | RecordError) -> InferenceResponse:
    assert isinstance(result, InferenceResponse), result
    return result


def completion(prompt: str, max_tokens: int | None = None, *stops: str) -> InferenceRequest:
    return InferenceRequest(
        kind="completion", prompt=prompt, max_tokens=max_tokens, stop_sequences=stops
    )


def embedding(text: str, dimensions: int | None = None, normalize: bool = True) -> InferenceRequest:
    return InferenceRequest(
        kind="embedding", input_text=text, dimensions=dimensions, normalize=normalize
    )


def test_chat_echoes_last_user_turn_and_counts_every_word() -> None:
    request = InferenceRequest(
        kind="chat",
        system="You are terse.",
        messages=(
            ChatMessage("user", "first question"),
            ChatMessage("assistant", "an answer here"),
            ChatMessage("user", "second\nquestion now"),
            ChatMessage("assistant", "prefill"),
        ),
    )
    response = ok(answer(request))
    assert response.text == "second\nquestion now"
    assert response.stop_reason == "end_turn"
    assert response.stop_sequence is None
    assert response.input_tokens == 3 + 2 + 3 + 3 + 1
    assert response.output_tokens == 3


def test_completion_echoes_prompt_unchanged_when_not_cut() -> None:
    response = ok(answer(completion("  spaced   out\ttext ", 3)))
    assert response.text == "  spaced   out\ttext "
    assert (response.input_tokens, response.output_tokens) == (3, 3)
    assert response.stop_reason == "end_turn"


def test_max_tokens_cuts_to_words_joined_by_single_spaces() -> None:
    response = ok(answer(completion("one  two\nthree four five", 3)))
    assert response.text == "one two three"
    assert response.stop_reason == "max_tokens"
    assert response.stop_sequence is None
    assert (response.input_tokens, response.output_tokens) == (5, 3)


def test_earliest_stop_sequence_wins() -> None:
    response = ok(answer(completion("alpha beta END gamma STOP delta", None, "STOP", "END")))
    assert response.text == "alpha beta "
    assert response.stop_reason == "stop_sequence"
    assert response.stop_sequence == "END"
    assert response.output_tokens == 2
    assert response.input_tokens == 6


def test_absent_stop_sequence_changes_nothing() -> None:
    response = ok(answer(completion("alpha beta", 10, "ZZZ")))
    assert (response.text, response.stop_reason, response.stop_sequence) == (
        "alpha beta",
        "end_turn",
        None,
    )


def test_stop_sequence_applies_before_word_limit() -> None:
    stopped = ok(answer(completion("a b c | d e f g", 3, "|")))
    assert (stopped.text, stopped.stop_reason, stopped.stop_sequence) == (
        "a b c ",
        "stop_sequence",
        "|",
    )
    cut = ok(answer(completion("a b c d | e", 2, "|")))
    assert (cut.text, cut.stop_reason, cut.stop_sequence) == ("a b", "max_tokens", None)
    assert cut.output_tokens == 2


def test_echo_through_anthropic_format() -> None:
    fmt = AnthropicMessages()
    request = fmt.parse(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 2,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Summarize this long text"}],
        }
    )
    out = fmt.render(request, ok(answer(request)), "anthropic.claude")
    assert out["content"] == [{"type": "text", "text": "Summarize this"}]
    assert out["stop_reason"] == "max_tokens"
    assert out["usage"] == {"input_tokens": 6, "output_tokens": 2}


@pytest.mark.parametrize("dimensions", [None, 256, 384, 512, 1024])
def test_embedding_is_a_deterministic_unit_vector(dimensions: int | None) -> None:
    first = ok(answer(embedding("hello world", dimensions)))
    again = ok(answer(embedding("hello world", dimensions)))
    assert first.embedding is not None
    assert first.embedding == again.embedding
    assert len(first.embedding) == (dimensions or 1024)
    assert math.isclose(math.hypot(*first.embedding), 1.0, rel_tol=1e-9)
    assert first.input_tokens == 2
    assert first.output_tokens == 0


def test_embeddings_differ_between_texts() -> None:
    one = ok(answer(embedding("hello world"))).embedding
    two = ok(answer(embedding("hello world!"))).embedding
    assert one is not None and two is not None
    assert sum(a * b for a, b in zip(one, two, strict=True)) < 0.5


def test_embedding_without_normalize_is_not_unit_length() -> None:
    raw = ok(answer(embedding("hello", 256, normalize=False))).embedding
    unit = ok(answer(embedding("hello", 256))).embedding
    assert raw is not None and unit is not None
    assert all(-1.0 <= v < 1.0 for v in raw)
    assert not math.isclose(math.hypot(*raw), 1.0, rel_tol=1e-3)
    norm = math.hypot(*raw)
    assert all(math.isclose(r / norm, u) for r, u in zip(raw, unit, strict=True))


@pytest.mark.parametrize("dimensions", [1, 128, 768, 1536])
def test_unsupported_dimensions_are_a_record_error(dimensions: int) -> None:
    result = answer(embedding("hello", dimensions))
    assert isinstance(result, RecordError)
    assert result.error_code == 400
    assert result.message.startswith("dimensions: ")


def test_invoke_answers_in_order_with_per_record_errors() -> None:
    results = invoke([completion("a"), embedding("x", 3), completion("b c")])
    assert ok(results[0]).text == "a"
    assert isinstance(results[1], RecordError)
    assert ok(results[2]).text == "b c"


def test_latency_is_simulated_once_per_call_and_measured() -> None:
    backend = EchoBackend(latency_ms=40)
    started = time.perf_counter()
    results = invoke([completion(str(i)) for i in range(20)], backend)
    elapsed = time.perf_counter() - started
    assert 0.04 <= elapsed < 0.4  # one sleep, not twenty
    assert all(ok(r).latency_ms >= 40 for r in results)
    assert ok(invoke([completion("x")])[0]).latency_ms == 0


def test_backend_contract_attributes() -> None:
    backend: Backend = EchoBackend()
    assert backend.max_batch_size == 64
    assert asyncio.run(backend.aclose()) is None


def test_from_options() -> None:
    assert EchoBackend.from_options({}).latency_ms == 0
    assert EchoBackend.from_options({"latency_ms": 15}).latency_ms == 15


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": True}, "latency_ms"),
        ({"latency_ms": "5"}, "latency_ms"),
        ({"latency_ms": 1.5}, "latency_ms"),
        ({"url": "http://x"}, "no option 'url'"),
    ],
)
def test_from_options_rejects(options: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        EchoBackend.from_options(options)
