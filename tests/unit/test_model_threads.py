"""The threads local models run on: slots, per-thread setup, concurrency, and the CPU budget."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from outcrop.backends._model_cache import ModelThreads, cpu_threads


def test_calls_run_count_at_a_time_each_thread_in_its_own_slot() -> None:
    threads = ModelThreads("test-model", count=3)
    # Three parties: the barrier only opens if three calls are running at the same moment.
    together = threading.Barrier(3, timeout=30)

    def call() -> tuple[int, int]:
        together.wait()
        return threads.slot(), threading.get_ident()

    async def main() -> list[tuple[int, int]]:
        return await asyncio.gather(*(threads.run(call) for _ in range(3)))

    seen = asyncio.run(main())
    assert sorted(slot for slot, _ in seen) == [0, 1, 2]
    assert len({ident for _, ident in seen}) == 3


def test_setup_runs_once_in_each_thread_before_its_first_call() -> None:
    ready: list[int] = []
    state = threading.local()

    def setup() -> None:
        state.ready = True
        ready.append(threading.get_ident())

    threads = ModelThreads("test-model", count=2, setup=setup)
    together = threading.Barrier(2, timeout=30)

    def call() -> int:
        together.wait()  # both threads exist, so each of the later calls reuses one of them
        assert state.ready
        return threading.get_ident()

    async def main() -> list[int]:
        first = await asyncio.gather(threads.run(call), threads.run(call))
        together.reset()
        return [*first, *await asyncio.gather(threads.run(call), threads.run(call))]

    idents = asyncio.run(main())
    assert sorted(ready) == sorted(set(idents))
    assert len(ready) == 2


def test_one_thread_runs_calls_in_order() -> None:
    threads = ModelThreads("test-model")
    order: list[int] = []

    async def main() -> None:
        await asyncio.gather(*(threads.run(order.append, n) for n in range(20)))

    asyncio.run(main())
    assert order == list(range(20))


@pytest.mark.parametrize(("value", "expected"), [("3", 3), ("1", 1)])
def test_cpu_threads_follows_omp_num_threads(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert cpu_threads() == expected


@pytest.mark.parametrize("value", ["", "0", "-2", "many"])
def test_cpu_threads_without_a_usable_omp_num_threads_is_the_cpus_we_may_use(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert cpu_threads() == len(os.sched_getaffinity(0))


def test_token_counts_fall_back_to_a_tokenizer_without_a_rust_core() -> None:
    from outcrop.backends.sentence_transformers import _token_counter

    class WordTokenizer:  # a "slow" tokenizer: callable, no backend_tokenizer
        def __call__(
            self, texts: list[str], add_special_tokens: bool, return_attention_mask: bool
        ) -> dict[str, list[list[int]]]:
            assert not add_special_tokens and not return_attention_mask
            return {"input_ids": [list(range(len(t.split()))) for t in texts]}

    class Model:
        tokenizer = WordTokenizer()

    count = _token_counter(Model())  # type: ignore[arg-type]
    assert count(["one", "two words", "and three words"]) == [1, 2, 3]
