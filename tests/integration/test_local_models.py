"""Local model backends against real models: bundled all-MiniLM-L6-v2 and a tiny random Llama."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from tests.tiny_model import build_tiny_llama

from outcrop.backends._model_cache import MODEL_CACHE, ModelCache
from outcrop.backends.base import BackendUnavailable, CatalogError
from outcrop.backends.sentence_transformers import SentenceTransformersBackend
from outcrop.backends.transformers_local import TransformersBackend
from outcrop.formats.base import ChatMessage, InferenceRequest, InferenceResponse, RecordError

pytestmark = pytest.mark.models

Result = InferenceResponse | RecordError


def embed(text: str, **fields: object) -> InferenceRequest:
    return replace(InferenceRequest(kind="embedding", input_text=text), **fields)  # type: ignore[arg-type]


def complete(prompt: str, max_tokens: int, **fields: object) -> InferenceRequest:
    request = InferenceRequest(kind="completion", prompt=prompt, max_tokens=max_tokens)
    return replace(request, **fields)  # type: ignore[arg-type]


def chat(text: str, max_tokens: int, system: str | None = None) -> InferenceRequest:
    return InferenceRequest(
        kind="chat", messages=(ChatMessage("user", text),), system=system, max_tokens=max_tokens
    )


def run(
    backend: SentenceTransformersBackend | TransformersBackend, requests: Sequence[InferenceRequest]
) -> list[Result]:
    return asyncio.run(backend.invoke(requests))


def responses(results: list[Result]) -> list[InferenceResponse]:
    assert all(isinstance(r, InferenceResponse) for r in results), results
    return [r for r in results if isinstance(r, InferenceResponse)]


def without_latency(results: list[Result]) -> list[Result]:
    return [replace(r, latency_ms=0) if isinstance(r, InferenceResponse) else r for r in results]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.hypot(*a) * math.hypot(*b))


# --- the process-wide model cache -------------------------------------------------------------


def test_model_cache_loads_each_key_once_under_concurrency() -> None:
    cache = ModelCache()
    calls = 0
    start = threading.Barrier(8)

    def loader() -> object:
        nonlocal calls
        calls += 1
        return object()

    def get(_: int) -> object:
        start.wait()
        return cache.get("k", loader)

    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = list(pool.map(get, range(8)))
    assert calls == 1
    assert cache.load_count("k") == 1
    assert all(model is loaded[0] for model in loaded)


def test_model_cache_does_not_cache_a_failed_load() -> None:
    cache = ModelCache()

    def broken() -> object:
        raise OSError("no such model")

    with pytest.raises(OSError):
        cache.get("k", broken)
    assert cache.peek("k") is None
    assert cache.get("k", lambda: "model") == "model"


# --- sentence-transformers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformersBackend:
    return SentenceTransformersBackend.from_options({"batch_size": 16})


def test_embeddings_have_384_unit_dimensions_and_token_counts(
    embedder: SentenceTransformersBackend,
) -> None:
    texts = [f"Sentence number {n} about {topic}." for n, topic in enumerate(["cats", "tax"] * 12)]
    results = responses(run(embedder, [embed(t) for t in texts]))
    assert len(results) == len(texts)
    assert embedder.dimension == 384
    for result in results:
        assert result.embedding is not None
        assert len(result.embedding) == 384
        assert math.isclose(math.hypot(*result.embedding), 1.0, abs_tol=1e-5)
        assert result.input_tokens > 0
    # Longer text, more tokens: the count is the tokenizer's, not a constant.
    short, long = responses(run(embedder, [embed("cat"), embed("a cat sat on the mat " * 5)]))
    assert short.input_tokens < long.input_tokens


def test_similar_sentences_are_closer(embedder: SentenceTransformersBackend) -> None:
    cat, kitten, revenue = responses(
        run(
            embedder,
            [
                embed("A cat sits on the mat."),
                embed("A kitten is sitting on a rug."),
                embed("Quarterly revenue rose by 5 percent."),
            ],
        )
    )
    assert cat.embedding and kitten.embedding and revenue.embedding
    assert cosine(cat.embedding, kitten.embedding) > cosine(cat.embedding, revenue.embedding)


def test_normalize_false_keeps_direction_not_length(embedder: SentenceTransformersBackend) -> None:
    text = "A cat sits on the mat."
    unit, raw = responses(run(embedder, [embed(text), embed(text, normalize=False)]))
    assert unit.embedding and raw.embedding
    assert not math.isclose(math.hypot(*raw.embedding), 1.0, abs_tol=1e-3)
    assert math.isclose(cosine(unit.embedding, raw.embedding), 1.0, abs_tol=1e-5)


def test_bad_records_fail_alone(embedder: SentenceTransformersBackend) -> None:
    results = run(
        embedder,
        [
            embed("fine"),
            embed("wrong size", dimensions=1024),
            chat("hi", 5),
            embed("ok", dimensions=384),
        ],
    )
    assert isinstance(results[0], InferenceResponse)
    assert results[1] == RecordError(400, "dimensions: this model supports 384 only")
    assert isinstance(results[2], RecordError) and results[2].error_code == 400
    assert "only embeds text" in results[2].message
    assert isinstance(results[3], InferenceResponse)


def test_model_is_loaded_once_per_process(embedder: SentenceTransformersBackend) -> None:
    other = SentenceTransformersBackend.from_options({"model": "all-minilm-l6-v2"})
    run(embedder, [embed("one")])
    run(other, [embed("two")])
    run(embedder, [embed("three")])
    assert other.cache_key == embedder.cache_key
    assert other.model is embedder.model
    assert MODEL_CACHE.load_count(embedder.cache_key) == 1

    # Two backends racing to load a model nobody loaded yet still load it once.
    first, second = (
        SentenceTransformersBackend.from_options({"max_seq_length": 64}) for _ in range(2)
    )

    async def both() -> None:
        await asyncio.gather(first.invoke([embed("a")]), second.invoke([embed("b")]))

    asyncio.run(both())
    assert MODEL_CACHE.load_count(first.cache_key) == 1
    assert first.model.max_seq_length == 64


def test_forward_batches_spread_over_worker_threads_keep_record_order() -> None:
    # Lengths vary so that sorting by length reorders them, and 40 texts make 3 batches of 16.
    texts = [("word " * (n * 7 % 23)) + f"text {n}" for n in range(40)]
    requests = [embed(t) for t in texts]
    requests[5] = embed(texts[5], normalize=False)
    requests[11] = embed(texts[11], dimensions=1024)  # fails alone, in its place
    two = SentenceTransformersBackend.from_options({"batch_size": 16, "workers": 2})
    spread = run(two, requests)
    # The reference: encode() on the texts in their own order, and the tokenizer's own counts.
    raw = two.model.encode(texts, batch_size=16, convert_to_numpy=True)
    counts = [len(ids) for ids in two.model.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    for n, result in enumerate(spread):
        if n == 11:
            assert result == RecordError(400, "dimensions: this model supports 384 only")
            continue
        assert isinstance(result, InferenceResponse) and result.embedding
        expected = raw[n] if n == 5 else raw[n] / math.hypot(*raw[n])
        assert max(abs(x - y) for x, y in zip(result.embedding, expected, strict=True)) < 1e-5
        assert result.input_tokens == counts[n]
    assert len({r.input_tokens for r in spread if isinstance(r, InferenceResponse)}) > 5


def test_worker_replicas_share_weights_but_not_tokenizers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "6")  # read at load: 6 CPU threads shared by 3
    backend = SentenceTransformersBackend.from_options({"workers": 3})
    run(backend, [embed("load it")])
    loaded = backend._loaded

    async def intra_op_threads() -> list[int]:
        return await asyncio.gather(*(loaded.threads.run(torch.get_num_threads) for _ in range(3)))

    assert asyncio.run(intra_op_threads()) == [2, 2, 2]
    assert len(loaded.replicas) == loaded.threads.count == 3
    first, *others = (replica.model for replica in loaded.replicas)
    for other in others:
        assert other is not first
        assert other.tokenizer is not first.tokenizer
        pairs = zip(first.parameters(), other.parameters(), strict=True)
        assert all(a.data_ptr() == b.data_ptr() for a, b in pairs)


def test_a_model_that_cannot_be_copied_runs_on_one_thread(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(_: object) -> object:
        raise TypeError("cannot pickle 'Handle' object")

    monkeypatch.setattr("outcrop.backends.sentence_transformers._replica_of", refuse)
    backend = SentenceTransformersBackend.from_options({"workers": 5})
    texts = [f"sentence {n}" for n in range(40)]
    results = responses(run(backend, [embed(t) for t in texts]))
    assert len(results) == 40
    assert backend._loaded.threads.count == 1
    assert "cannot copy the model for 5 threads" in caplog.text


def test_token_counts_are_for_the_whole_text_beyond_the_model_limit(
    embedder: SentenceTransformersBackend,
) -> None:
    (result,) = responses(run(embedder, [embed("cat " * 600)]))
    assert embedder.model.max_seq_length == 256
    assert result.input_tokens == 600


def test_workers_default_to_one_per_cpu_thread_up_to_four_and_one_off_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert SentenceTransformersBackend.from_options({}).workers == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # past the cap, CPUs become intra-op threads
    assert SentenceTransformersBackend.from_options({}).workers == 4
    assert SentenceTransformersBackend.from_options({"workers": 16}).workers == 16
    assert SentenceTransformersBackend.from_options({"device": "cuda"}).workers == 1
    assert SentenceTransformersBackend.from_options({"device": "cuda", "workers": 2}).workers == 2


def test_invoke_size_defaults_to_eight_forward_batches_and_can_be_set() -> None:
    assert SentenceTransformersBackend.from_options({"batch_size": 16}).max_batch_size == 128
    chosen = SentenceTransformersBackend.from_options({"batch_size": 16, "max_batch_size": 16})
    assert (chosen.batch_size, chosen.max_batch_size) == (16, 16)


@pytest.mark.parametrize(
    "options",
    [
        {"colour": "blue"},
        {"model": "other-model"},
        {"batch_size": 0},
        {"max_batch_size": "many"},
        {"workers": 0},
        {"workers": True},
        {"path": "/nonexistent"},
    ],
)
def test_embedding_catalog_errors(options: dict[str, object]) -> None:
    with pytest.raises(CatalogError):
        SentenceTransformersBackend.from_options(options)


# --- transformers (tiny random Llama) ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), seed=0)


@pytest.fixture(scope="module")
def generator(tiny_llama: Path) -> TransformersBackend:
    return TransformersBackend.from_options({"path": str(tiny_llama), "batch_size": 8, "seed": 0})


PROMPTS = ["the cat sees", "a robot builds some code", "our team reads", "the river moves"]


def test_chat_and_completion_return_text_within_max_tokens(generator: TransformersBackend) -> None:
    requests = [complete(p, 3) for p in PROMPTS] + [chat("hello there", 3, system="Be terse.")]
    results = responses(run(generator, requests))
    for result in results:
        assert result.input_tokens > 0
        assert result.output_tokens <= 3
        # A random model may emit EOS early; otherwise the limit is what stopped it, exactly.
        if result.stop_reason == "max_tokens":
            assert result.output_tokens == 3
        else:
            assert result.stop_reason == "end_turn"
    assert any(r.text for r in results)


def test_greedy_generation_is_deterministic(generator: TransformersBackend) -> None:
    requests = [complete(p, 12) for p in PROMPTS] + [chat("hi", 12)]
    assert without_latency(run(generator, requests)) == without_latency(run(generator, requests))


def test_seeded_sampling_is_deterministic(generator: TransformersBackend) -> None:
    requests = [complete(p, 12, temperature=0.9, top_k=50) for p in PROMPTS]
    first = responses(run(generator, requests))
    assert without_latency(list(first)) == without_latency(run(generator, requests))


def test_stop_sequence_cuts_text_and_counts(generator: TransformersBackend) -> None:
    originals = responses(run(generator, [complete(p, 24) for p in PROMPTS]))
    # Pick a word from the middle of some greedy output; greedy makes the rerun reach it again.
    prompt, original, stop = next(
        (p, r, words[len(words) // 2])
        for p, r in zip(PROMPTS, originals, strict=True)
        if len(words := [w for w in r.text.split() if "\ufffd" not in w]) >= 3
    )
    (cut,) = responses(run(generator, [complete(prompt, 24, stop_sequences=("NEVER", stop))]))
    assert cut.stop_reason == "stop_sequence"
    assert cut.stop_sequence == stop
    assert cut.text == original.text[: original.text.find(stop)]
    assert 1 <= cut.output_tokens <= original.output_tokens
    assert cut.input_tokens == original.input_tokens


def test_mixed_batch_keeps_order_and_per_record_limits(generator: TransformersBackend) -> None:
    requests = [
        complete("the cat sees", 2),
        embed("not for a generator"),
        chat("hello", 9, system="Be terse."),
        complete("a dog likes", 5, temperature=0.8),
        InferenceRequest(kind="completion", prompt="our team", max_tokens=None),
    ]
    results = run(generator, requests)
    assert len(results) == len(requests)
    assert isinstance(results[1], RecordError) and results[1].error_code == 400
    for index, limit in [(0, 2), (2, 9), (3, 5), (4, 256)]:
        result = results[index]
        assert isinstance(result, InferenceResponse)
        assert result.output_tokens <= limit
        if result.stop_reason == "max_tokens":
            assert result.output_tokens == limit


@pytest.mark.parametrize(
    "options",
    [{}, {"path": "/nonexistent"}, {"path": ".", "seed": "1"}, {"path": ".", "temperature": 1}],
)
def test_generator_catalog_errors(options: dict[str, object]) -> None:
    with pytest.raises(CatalogError):
        TransformersBackend.from_options(options)


def test_a_model_that_cannot_load_makes_the_backend_unavailable(tmp_path: Path) -> None:
    backend = TransformersBackend.from_options({"path": str(tmp_path)})
    with pytest.raises(BackendUnavailable, match="cannot load"):
        run(backend, [complete("x", 2)])
