"""The shard runner streams: input order kept whatever order batches finish in, Stop keeps what
finished, bounded work in flight, and a failing backend commits no part object."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path

import orjson
import pytest

from outcrop.backends.base import BackendUnavailable
from outcrop.backends.echo import answer
from outcrop.engine import shard as shard_module
from outcrop.engine.layout import JobLayout
from outcrop.engine.progress import Tally
from outcrop.engine.shard import ShardContext, run_shard
from outcrop.formats.anthropic import AnthropicMessages
from outcrop.formats.base import InferenceRequest, InferenceResponse, RecordError
from outcrop.storage.local import LocalObjectStore
from outcrop.store.work import InputFile, Shard

BATCH = 10


def run_async(test: Callable[..., Coroutine[None, None, None]]) -> Callable[..., None]:
    """Run an async test body in its own event loop (the suite has no async test plugin)."""

    @functools.wraps(test)
    def wrapper(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def _record(i: int) -> dict[str, object]:
    return {
        "recordId": f"r{i:04d}",
        "modelInput": {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": f"record {i}"}],
        },
    }


class GatedBackend:
    """Echo answers, but each call waits for its gate; records every call's first record."""

    max_batch_size = BATCH

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gates: list[asyncio.Event] = []
        self.called = asyncio.Condition()
        self.in_flight = 0
        self.max_in_flight = 0
        self.finished = 0

    async def invoke(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]:
        gate = asyncio.Event()
        async with self.called:
            self.calls.append(requests[0].messages[0].text)
            self.gates.append(gate)
            self.called.notify_all()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await gate.wait()
        finally:
            self.in_flight -= 1
        async with self.called:
            self.finished += 1
            self.called.notify_all()
        # No await from here on: the batch's segment completes in this same step.
        return [answer(request) for request in requests]

    async def wait_for_calls(self, count: int) -> None:
        async with self.called:
            await self.called.wait_for(lambda: len(self.calls) >= count)

    async def wait_for_finished(self, count: int) -> None:
        async with self.called:
            await self.called.wait_for(lambda: self.finished >= count)

    async def aclose(self) -> None:
        return None


def _setup(
    tmp_path: Path, records: int, backend: object, concurrency: int = 64
) -> tuple[ShardContext, Shard, LocalObjectStore]:
    storage = LocalObjectStore(tmp_path, "123456789012")
    path = tmp_path / "in-bucket" / "input.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(orjson.dumps(_record(i)) + b"\n" for i in range(records)))
    (tmp_path / "out-bucket").mkdir()
    layout = JobLayout.of("job000000001", "s3://in-bucket/", "s3://out-bucket/")
    file = InputFile(0, "input.jsonl", "input.jsonl.out", records, path.stat().st_size)
    ctx = ShardContext(
        job_id="job000000001",
        model_id="outcrop.echo-v1",
        layout=layout,
        files={0: file},
        storage=storage,
        body_format=AnthropicMessages(),
        backend=backend,  # type: ignore[arg-type]
        inflight=asyncio.Semaphore(concurrency),
        unprocessed_message=lambda: "stopped",
        owner="engine-test",
    )
    return ctx, Shard(0, 0, 1, 0, records), storage


def _part(tmp_path: Path, ctx: ShardContext) -> list[dict[str, object]]:
    key = ctx.layout.part_key(0, ctx.owner)
    return [
        orjson.loads(line) for line in (tmp_path / "out-bucket" / key).read_bytes().splitlines()
    ]


@run_async
async def test_output_keeps_input_order_when_batches_finish_in_reverse(tmp_path: Path) -> None:
    backend = GatedBackend()
    ctx, shard, _ = _setup(tmp_path, 300, backend)
    tally = Tally()
    running = asyncio.create_task(run_shard(ctx, shard, asyncio.Event(), tally))
    await backend.wait_for_calls(30)  # all 30 batches are in flight at once (WINDOW >= 30)
    for index in reversed(range(30)):  # the last batch finishes first
        backend.gates[index].set()
        await backend.wait_for_finished(30 - index)
    result = await running

    lines = _part(tmp_path, ctx)
    assert [line["recordId"] for line in lines] == [f"r{i:04d}" for i in range(300)]
    assert all(line["modelOutput"]["content"][0]["text"] == f"record {i}"  # type: ignore[index]
               for i, line in enumerate(lines))  # fmt: skip
    assert (result.success, result.errors, result.unprocessed) == (300, 0, 0)
    assert (tally.success, tally.errors) == (300, 0)


@run_async
async def test_stop_keeps_finished_batches_and_marks_the_rest_unprocessed(
    tmp_path: Path,
) -> None:
    backend = GatedBackend()
    ctx, shard, _ = _setup(tmp_path, 2500, backend)  # more than one read block
    stop = asyncio.Event()
    running = asyncio.create_task(run_shard(ctx, shard, stop, Tally()))
    await backend.wait_for_calls(shard_module.WINDOW)
    # The first and third batches finish; the second never does; then Stop.
    backend.gates[0].set()
    backend.gates[2].set()
    await backend.wait_for_finished(2)
    stop.set()
    result = await running

    lines = _part(tmp_path, ctx)
    assert [line["recordId"] for line in lines] == [f"r{i:04d}" for i in range(2500)]
    answered = [i for i, line in enumerate(lines) if "modelOutput" in line]
    assert answered == [*range(0, 10), *range(20, 30)]
    unanswered = [line for line in lines if "modelOutput" not in line]
    assert all(
        line["error"] == {"errorCode": 408, "errorMessage": "stopped"} for line in unanswered
    )
    assert (result.success, result.errors, result.unprocessed) == (20, 0, 2480)
    # Never more than the window's batches were started, though the shard has 250.
    assert len(backend.calls) == shard_module.WINDOW


@run_async
async def test_backend_calls_in_flight_respect_the_jobs_concurrency(tmp_path: Path) -> None:
    backend = GatedBackend()
    ctx, shard, _ = _setup(tmp_path, 200, backend, concurrency=3)
    running = asyncio.create_task(run_shard(ctx, shard, asyncio.Event(), Tally()))
    released = 0
    while released < 20:
        await backend.wait_for_calls(released + 1)
        backend.gates[released].set()
        released += 1
    result = await running
    assert result.success == 200
    assert backend.max_in_flight == 3


class FailingBackend(GatedBackend):
    async def invoke(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]:
        raise BackendUnavailable("the model server is gone")


@run_async
async def test_a_backend_failure_commits_no_part(tmp_path: Path) -> None:
    ctx, shard, _ = _setup(tmp_path, 50, FailingBackend())
    with pytest.raises(BackendUnavailable):
        await run_shard(ctx, shard, asyncio.Event(), Tally())
    assert list((tmp_path / "out-bucket").rglob("*.jsonl")) == []
    assert not [p for p in (tmp_path / "out-bucket").rglob("*") if p.is_file()]
