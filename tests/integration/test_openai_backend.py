"""The `openai` backend against a real HTTP server: mapping, retries, faults, concurrency, AIMD."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from fake_openai import DEFAULT_DIMENSIONS, FakeOpenAI, embedding_for

from outcrop.backends._aimd import AIMDLimiter
from outcrop.backends.base import CatalogError
from outcrop.backends.openai_compat import OpenAIBackend, ShardedTransport, parse_retry_after
from outcrop.formats.base import ChatMessage, InferenceRequest, InferenceResponse, RecordError

Result = InferenceResponse | RecordError


SLOW_S = 2.0  # how long FAULT:slow stalls the server
SHORT_TIMEOUT_S = 0.5  # the client's timeout where a test expects FAULT:slow to time out


def timeout_for(text: str) -> float:
    return SHORT_TIMEOUT_S if "FAULT:slow" in text else 10.0


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_s=SLOW_S) as server:
        yield server


def make_backend(base_url: str, **kwargs: Any) -> OpenAIBackend:
    settings: dict[str, Any] = {
        "model": "m",
        "max_retries": 3,
        "timeout_s": 10.0,
        "backoff_base_s": 0.001,
        "backoff_cap_s": 0.01,
    }
    return OpenAIBackend(base_url=base_url, **(settings | kwargs))


def chat(text: str, **kwargs: Any) -> InferenceRequest:
    return InferenceRequest(kind="chat", messages=(ChatMessage("user", text),), **kwargs)


def embed(text: str, **kwargs: Any) -> InferenceRequest:
    return InferenceRequest(kind="embedding", input_text=text, **kwargs)


def one_each(backend: OpenAIBackend, requests: Sequence[InferenceRequest]) -> list[Result]:
    """Invoke one request per call, all concurrently, the way the engine drives a batch."""

    async def main() -> list[Result]:
        try:
            answers = await asyncio.gather(*(backend.invoke([r]) for r in requests))
        finally:
            await backend.aclose()
        return [answer for [answer] in answers]

    return asyncio.run(main())


def together(backend: OpenAIBackend, requests: Sequence[InferenceRequest]) -> list[Result]:
    async def main() -> list[Result]:
        try:
            return await backend.invoke(requests)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def response(result: Result) -> InferenceResponse:
    assert isinstance(result, InferenceResponse), result
    return result


def error(result: Result) -> RecordError:
    assert isinstance(result, RecordError), result
    return result


# --- request and response mapping -------------------------------------------------------------


def test_chat_maps_messages_parameters_and_usage(fake: FakeOpenAI) -> None:
    request = InferenceRequest(
        kind="chat",
        system="be terse",
        messages=(
            ChatMessage("user", "hi"),
            ChatMessage("assistant", "yo"),
            ChatMessage("user", "one two three"),
        ),
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
    )
    [result] = one_each(make_backend(fake.base_url), [request])
    answer = response(result)
    assert answer.text == "echo: one two three"
    assert (answer.stop_reason, answer.stop_sequence) == ("end_turn", None)
    assert (answer.input_tokens, answer.output_tokens) == (7, 4)
    [sent] = fake.calls_to("/v1/chat/completions")
    assert sent == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"},
            {"role": "user", "content": "one two three"},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
    }


def test_top_k_and_stop_are_sent_only_when_given(fake: FakeOpenAI) -> None:
    one_each(make_backend(fake.base_url), [chat("a", top_k=5, stop_sequences=("X", "Y"))])
    [sent] = fake.calls_to("/v1/chat/completions")
    assert sent["top_k"] == 5
    assert sent["stop"] == ["X", "Y"]


def test_length_finish_is_max_tokens(fake: FakeOpenAI) -> None:
    [result] = one_each(make_backend(fake.base_url), [chat("a b c d e f", max_tokens=3)])
    answer = response(result)
    assert (answer.text, answer.stop_reason, answer.output_tokens) == ("echo: a b", "max_tokens", 3)


def test_matched_stop_sequence_is_reported(fake: FakeOpenAI) -> None:
    results = one_each(
        make_backend(fake.base_url),
        [
            chat("alpha END beta", stop_sequences=("END", "NEVER")),
            chat("alpha beta", stop_sequences=("END",)),
        ],
    )
    stopped, natural = map(response, results)
    assert (stopped.text, stopped.stop_reason, stopped.stop_sequence) == (
        "echo: alpha ",
        "stop_sequence",
        "END",
    )
    assert (natural.stop_reason, natural.stop_sequence) == ("end_turn", None)


def test_completion_uses_completions_endpoint(fake: FakeOpenAI) -> None:
    request = InferenceRequest(kind="completion", prompt="tell me", max_tokens=9, top_k=3)
    [result] = one_each(make_backend(fake.base_url), [request])
    assert response(result).text == "echo: tell me"
    assert fake.calls_to("/v1/completions") == [
        {"model": "m", "prompt": "tell me", "max_tokens": 9, "top_k": 3}
    ]


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_with_or_without_v1(fake: FakeOpenAI, suffix: str) -> None:
    [result] = one_each(make_backend(fake.base_url + suffix), [chat("x")])
    assert response(result).text == "echo: x"


def test_api_key_is_sent_as_bearer(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTCROP_TEST_OPENAI_KEY", "sekrit")
    backend = OpenAIBackend.from_options(
        {"base_url": fake.base_url, "model": "m", "api_key_env": "OUTCROP_TEST_OPENAI_KEY"}
    )
    one_each(backend, [chat("x")])
    [(_, _, headers)] = fake.calls
    assert headers["authorization"] == "Bearer sekrit"


def test_pinned_chat_endpoint_takes_prompts_and_rejects_embeddings(fake: FakeOpenAI) -> None:
    backend = make_backend(fake.base_url, endpoint="chat")
    assert backend.max_batch_size == 1
    prompt, vector = together(
        backend, [InferenceRequest(kind="completion", prompt="p q"), embed("e")]
    )
    assert response(prompt).text == "echo: p q"
    assert error(vector).error_code == 400
    assert [path for path, _, _ in fake.calls] == ["/v1/chat/completions"]


def test_pinned_completions_endpoint_rejects_chat(fake: FakeOpenAI) -> None:
    [result] = one_each(make_backend(fake.base_url, endpoint="completions"), [chat("x")])
    assert error(result).error_code == 400
    assert fake.total_requests == 0


# --- embeddings --------------------------------------------------------------------------------


def test_embeddings_are_batched_ordered_and_normalized(fake: FakeOpenAI) -> None:
    backend = make_backend(fake.base_url)
    assert backend.max_batch_size == 32
    texts = [f"text number {i}" + " word" * (i % 4) for i in range(32)]
    results = together(backend, [embed(t, normalize=i % 2 == 0) for i, t in enumerate(texts)])
    [sent] = fake.calls_to("/v1/embeddings")  # one HTTP call for all 32
    assert sent == {"model": "m", "input": texts}
    for i, (text, result) in enumerate(zip(texts, results, strict=True)):
        answer = response(result)
        raw = embedding_for(text, DEFAULT_DIMENSIONS)
        assert answer.input_tokens == len(text.split())
        assert answer.embedding is not None
        if i % 2 == 0:
            norm = math.sqrt(sum(x * x for x in raw))
            assert answer.embedding == pytest.approx([x / norm for x in raw])
            assert math.sqrt(sum(x * x for x in answer.embedding)) == pytest.approx(1.0)
        else:
            assert list(answer.embedding) == raw


def test_embedding_dimensions_are_sent_and_checked(fake: FakeOpenAI) -> None:
    good, bad = together(
        make_backend(fake.base_url), [embed("a", dimensions=4), embed("FAULT:dims b", dimensions=4)]
    )
    assert response(good).embedding is not None and len(response(good).embedding or ()) == 4
    assert error(bad).error_code == 400
    assert error(bad).message.startswith("dimensions:")
    assert all(call["dimensions"] == 4 for call in fake.calls_to("/v1/embeddings"))


def test_embeddings_with_different_dimensions_go_in_separate_calls(fake: FakeOpenAI) -> None:
    results = together(
        make_backend(fake.base_url),
        [embed("a", dimensions=4), embed("b"), embed("c", dimensions=4)],
    )
    assert [len(response(r).embedding or ()) for r in results] == [4, DEFAULT_DIMENSIONS, 4]
    assert sorted(len(call["input"]) for call in fake.calls_to("/v1/embeddings")) == [1, 2]


def test_mixed_batch_is_handled_per_kind_in_order(fake: FakeOpenAI) -> None:
    requests = [
        chat("c1"),
        embed("e1"),
        InferenceRequest(kind="completion", prompt="p1"),
        embed("e2"),
    ]
    results = together(make_backend(fake.base_url), requests)
    assert response(results[0]).text == "echo: c1"
    assert response(results[2]).text == "echo: p1"
    assert response(results[1]).embedding is not None and response(results[3]).embedding is not None
    assert fake.calls_to("/v1/embeddings") == [{"model": "m", "input": ["e1", "e2"]}]


def test_failed_embedding_call_fails_every_record_in_it(fake: FakeOpenAI) -> None:
    results = together(
        make_backend(fake.base_url, max_retries=1), [embed("ok"), embed("FAULT:500")]
    )
    assert [error(r).error_code for r in results] == [500, 500]
    assert fake.requests_per_prompt["ok\nFAULT:500"] == 2


# --- retries and faults ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "attempts"),
    [
        ("FAULT:429x2", 3),
        ("FAULT:500x1", 2),
        ("FAULT:502x1", 2),
        ("FAULT:503x2", 3),
        ("FAULT:504x1", 2),
        ("FAULT:slowx1", 2),
        ("FAULT:dropx1", 2),
        ("FAULT:badjsonx1", 2),
        ("FAULT:shapex1", 2),
    ],
)
def test_transient_faults_are_retried_to_success(
    fake: FakeOpenAI, fault: str, attempts: int
) -> None:
    backend = make_backend(fake.base_url, timeout_s=timeout_for(fault))
    [result] = one_each(backend, [chat(f"hello {fault}")])
    assert response(result).text == f"echo: hello {fault}"
    assert fake.requests_per_prompt[f"hello {fault}"] == attempts
    assert backend.stats.retries == attempts - 1
    assert backend.stats.requests == attempts


@pytest.mark.parametrize(
    ("fault", "status", "detail"),
    [
        ("FAULT:429", 429, "injected 429"),
        ("FAULT:500", 500, "injected 500"),
        ("FAULT:502", 502, "injected 502"),
        ("FAULT:503", 503, "injected 503"),
        ("FAULT:504", 504, "injected 504"),
        ("FAULT:slow", 504, "ReadTimeout"),
        ("FAULT:drop", 502, "RemoteProtocolError"),
        ("FAULT:badjson", 502, "malformed"),
        ("FAULT:shape", 502, "malformed"),
    ],
)
def test_persistent_faults_become_record_errors_after_all_retries(
    fake: FakeOpenAI, fault: str, status: int, detail: str
) -> None:
    backend = make_backend(fake.base_url, max_retries=2, timeout_s=timeout_for(fault))
    [result] = one_each(backend, [chat(fault)])
    assert error(result).error_code == status
    assert detail in error(result).message
    assert fake.requests_per_prompt[fault] == 3  # max_retries + 1


def test_client_errors_are_not_retried(fake: FakeOpenAI) -> None:
    backend = make_backend(fake.base_url, max_retries=5)
    [result] = one_each(backend, [chat("FAULT:400")])
    assert error(result) == RecordError(400, "upstream 400: injected 400 for this prompt")
    assert fake.requests_per_prompt["FAULT:400"] == 1
    assert backend.stats.retries == 0


def test_retry_after_is_honoured(fake: FakeOpenAI) -> None:
    [result] = one_each(make_backend(fake.base_url), [chat("FAULT:429x1:ra=1")])
    assert response(result).text == "echo: FAULT:429x1:ra=1"
    first, second = fake.arrivals["FAULT:429x1:ra=1"]
    assert second - first >= 1.0


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after("  0.5 ", now) == 0.5
    assert parse_retry_after("3600", now) == 60.0
    assert parse_retry_after("-2", now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_unreachable_server_is_a_per_record_503_and_counted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = make_backend(f"http://127.0.0.1:{port}", max_retries=2)
    [result] = one_each(backend, [chat("x")])
    assert error(result).error_code == 503
    assert "cannot connect" in error(result).message
    assert backend.consecutive_connect_failures == 3


def test_connect_failure_counter_resets_on_any_answer(fake: FakeOpenAI) -> None:
    backend = make_backend(fake.base_url)
    backend.consecutive_connect_failures = 4
    one_each(backend, [chat("FAULT:400")])
    assert backend.consecutive_connect_failures == 0


# --- concurrency -------------------------------------------------------------------------------


def test_in_flight_requests_never_exceed_max_concurrency() -> None:
    with FakeOpenAI(latency_s=0.02) as fake:
        backend = make_backend(fake.base_url, max_concurrency=8, timeout_s=5)
        results = one_each(backend, [chat(f"r{i}") for i in range(200)])
    assert [response(r).text for r in results] == [f"echo: r{i}" for i in range(200)]
    assert fake.total_requests == 200
    assert 1 < fake.max_in_flight <= 8
    assert backend.limiter.max_in_flight_seen <= 8
    assert backend.stats.latency_count == 200


def test_sharded_transport_returns_every_connection_even_after_failures() -> None:
    transport = ShardedTransport(6)
    texts = [f"t{i}" for i in range(30)] + [
        "FAULT:drop",
        "FAULT:slow",
        "FAULT:400",
        "FAULT:badjson",
    ]

    async def main(base_url: str) -> list[int | str]:
        async def post(client: httpx.AsyncClient, text: str) -> int | str:
            try:
                answer = await client.post(
                    "/v1/completions", json={"prompt": text}, timeout=timeout_for(text)
                )
            except httpx.TransportError as exc:
                return type(exc).__name__
            return answer.status_code

        async with httpx.AsyncClient(base_url=base_url, transport=transport) as client:
            gate = asyncio.Semaphore(6)

            async def one(text: str) -> int | str:
                async with gate:
                    return await post(client, text)

            return await asyncio.gather(*(one(t) for t in texts))

    with FakeOpenAI(latency_s=0.02, slow_s=SLOW_S) as fake:
        outcomes = asyncio.run(main(fake.base_url))
    assert outcomes[:30] == [200] * 30
    assert outcomes[30:] == ["RemoteProtocolError", "ReadTimeout", 400, 200]
    assert transport.free_connections == 6
    assert 1 < fake.max_in_flight <= 6


def test_aimd_backs_off_under_throttling_and_recovers(fake: FakeOpenAI) -> None:
    backend = make_backend(fake.base_url, max_concurrency=16, max_retries=0)

    async def main() -> tuple[list[list[Result]], int, list[list[Result]]]:
        try:
            fake.throttling = True
            throttled = await asyncio.gather(*(backend.invoke([chat(f"t{i}")]) for i in range(16)))
            limit_after_throttling = backend.limiter.limit
            fake.throttling = False
            healthy = await asyncio.gather(*(backend.invoke([chat(f"h{i}")]) for i in range(200)))
        finally:
            await backend.aclose()
        return throttled, limit_after_throttling, healthy

    throttled, limit_after_throttling, healthy = asyncio.run(main())
    assert all(error(r).error_code == 429 for [r] in throttled)
    assert backend.stats.throttles == 16
    assert limit_after_throttling < 16  # all 16 answered together: one signal, halved once
    assert limit_after_throttling >= 1
    assert all(isinstance(r, InferenceResponse) for [r] in healthy)
    assert backend.limiter.limit == 16  # grew back, one step per limit's worth of successes
    assert backend.limiter.increases >= 16 - limit_after_throttling


def test_limiter_halves_at_most_once_per_window() -> None:
    now = [0.0]
    limiter = AIMDLimiter(16, decrease_interval_s=0.1, clock=lambda: now[0])

    async def main() -> None:
        for _ in range(5):
            await limiter.acquire()
        for _ in range(5):
            limiter.release("throttled")
        assert limiter.limit == 8
        now[0] = 0.2
        await limiter.acquire()
        limiter.release("throttled")
        assert limiter.limit == 4
        for _ in range(10):
            now[0] += 1.0
            await limiter.acquire()
            limiter.release("throttled")
        assert limiter.limit == 1
        for expected in (2, 3):
            for _ in range(expected - 1):
                await limiter.acquire()
                limiter.release("ok")
            assert limiter.limit == expected
        await limiter.acquire()
        limiter.release("error")  # neutral
        assert limiter.limit == 3

    asyncio.run(main())


def test_limiter_admits_waiters_in_order_and_survives_cancellation() -> None:
    async def main() -> None:
        limiter = AIMDLimiter(2)
        order: list[int] = []

        async def worker(n: int, gate: asyncio.Event) -> None:
            async with limiter.slot() as slot:
                order.append(n)
                await gate.wait()
                slot.outcome = "ok"

        gate = asyncio.Event()
        tasks = [asyncio.create_task(worker(n, gate)) for n in range(6)]
        await asyncio.sleep(0)  # let every worker reach the limiter
        assert (limiter.in_flight, order) == (2, [0, 1])
        tasks[3].cancel()
        gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order == [0, 1, 2, 4, 5]
        assert limiter.in_flight == 0
        assert limiter.max_in_flight_seen == 2

    asyncio.run(main())


def test_backend_can_be_reused_on_a_new_loop_after_aclose(fake: FakeOpenAI) -> None:
    backend = make_backend(fake.base_url)
    one_each(backend, [chat("first")])
    [result] = one_each(backend, [chat("second")])
    assert response(result).text == "echo: second"


# --- catalog options ---------------------------------------------------------------------------


def test_from_options_defaults() -> None:
    backend = OpenAIBackend.from_options({"base_url": "https://h:8000", "model": "m"})
    assert backend.base_url == "https://h:8000/v1"
    assert (backend.max_concurrency, backend.timeout_s, backend.max_retries) == (16, 60.0, 5)
    assert backend.endpoint is None
    assert backend.limiter.limit == 16


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"model": "m"}, "base_url"),
        ({"base_url": "http://h"}, "model"),
        ({"base_url": "http://h", "model": ""}, "model"),
        ({"base_url": "ftp://h", "model": "m"}, "base_url"),
        ({"base_url": "h:8000", "model": "m"}, "base_url"),
        ({"base_url": 8000, "model": "m"}, "base_url"),
        ({"base_url": "http://h", "model": "m", "max_concurrency": 0}, "max_concurrency"),
        ({"base_url": "http://h", "model": "m", "max_concurrency": "8"}, "max_concurrency"),
        ({"base_url": "http://h", "model": "m", "max_concurrency": True}, "max_concurrency"),
        ({"base_url": "http://h", "model": "m", "timeout_s": 0}, "timeout_s"),
        ({"base_url": "http://h", "model": "m", "timeout_s": "fast"}, "timeout_s"),
        ({"base_url": "http://h", "model": "m", "max_retries": -1}, "max_retries"),
        ({"base_url": "http://h", "model": "m", "endpoint": "responses"}, "endpoint"),
        (
            {"base_url": "http://h", "model": "m", "api_key_env": "OUTCROP_TEST_UNSET_KEY"},
            "OUTCROP_TEST_UNSET_KEY",
        ),
        ({"base_url": "http://h", "model": "m", "colour": "red", "size": 1}, "colour, size"),
    ],
)
def test_bad_options_are_catalog_errors(
    options: dict[str, Any], complaint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OUTCROP_TEST_UNSET_KEY", raising=False)
    with pytest.raises(CatalogError, match=complaint):
        OpenAIBackend.from_options(options)
