"""Run one shard: stream its records through the backend in micro-batches into its part object.

A shard is streamed, not loaded: records are read a block at a time, at most WINDOW micro-batches
are in flight or waiting for their turn to be written, and output lines go to the part object in
input order as soon as every line before them is written. Memory per shard is therefore bounded
by the window, not by the shard's size, so shards can be large enough for their bookkeeping (a
lease, a part object, a row update) to cost little next to their records.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType

import orjson

from outcrop.backends.base import Backend
from outcrop.domain.records import BOM, InputRecord, error_line, is_blank, output_line, to_record
from outcrop.engine.layout import JobLayout
from outcrop.engine.progress import Tally
from outcrop.formats.base import (
    BodyFormat,
    FormatError,
    InferenceRequest,
    InferenceResponse,
    RecordError,
)
from outcrop.metrics import Metrics
from outcrop.storage.base import ObjectStore, ObjectWriter
from outcrop.store.work import InputFile, Shard, ShardResult

READ_BLOCK = 1024  # records read per trip to a storage thread
WINDOW = 32  # micro-batches of one shard in flight or waiting to be written
FLUSH_BYTES = 1 << 20  # output lines gathered before one write to the part object


@dataclass
class ShardContext:
    """What every shard of one job needs; built once per job run."""

    job_id: str
    model_id: str
    layout: JobLayout
    files: dict[int, InputFile]
    storage: ObjectStore
    body_format: BodyFormat
    backend: Backend
    inflight: asyncio.Semaphore
    unprocessed_message: Callable[[], str]
    owner: str = "local"  # the engine whose lease covers these shards; names its part objects
    metrics: Metrics | None = None


def shard_records(
    storage: ObjectStore, layout: JobLayout, file: InputFile, shard: Shard
) -> Generator[InputRecord, None, None]:
    """Exactly the shard's records, read from its byte offset on (no rescan of the file).

    A generator holding the object open: exhaust it or close() it."""
    count = 0
    with storage.open_read(layout.input_bucket, file.input_key, shard.start_offset) as stream:
        for line_number, line in enumerate(stream, start=shard.first_line):
            if line_number == 1 and line.startswith(BOM):
                line = line[len(BOM) :]
            if is_blank(line):
                continue
            yield to_record(orjson.loads(line), file.file_index, line_number)
            count += 1
            if count == shard.record_count:
                return


@dataclass
class _Segment:
    """Consecutive records of a shard that go to the backend as one micro-batch."""

    records: list[InputRecord]
    task: asyncio.Task[tuple[list[bytes], Tally]]


class _Reader:
    """Blocks of a shard's records, read in a worker thread (storage calls block)."""

    def __init__(self, records: Generator[InputRecord, None, None]) -> None:
        self._records = records
        self._lock = threading.Lock()  # a cancelled take() may still be running in its thread

    def _take(self, count: int) -> list[InputRecord]:
        with self._lock:
            block = []
            for record in self._records:
                block.append(record)
                if len(block) == count:
                    break
            return block

    async def take(self, count: int) -> list[InputRecord]:
        return await asyncio.to_thread(self._take, count)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                self._records.close()

        await asyncio.to_thread(close)


class _Part:
    """The shard's part object, written through worker threads and committed on a clean exit
    (a failure discards it: the shard is then simply run again)."""

    def __init__(self, opener: AbstractContextManager[ObjectWriter]) -> None:
        self._opener = opener
        self._writer: ObjectWriter | None = None
        self._lock = threading.Lock()  # a cancelled write() may still be running in its thread
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def _locked(self, fn: Callable[..., object], *args: object) -> None:
        with self._lock:
            fn(*args)

    async def __aenter__(self) -> _Part:
        self._writer = await asyncio.to_thread(self._opener.__enter__)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            try:
                await self.flush()
            except BaseException as error:  # the part is discarded, not committed half-written
                await asyncio.to_thread(
                    self._locked, self._opener.__exit__, type(error), error, error.__traceback__
                )
                raise
        await asyncio.to_thread(self._locked, self._opener.__exit__, kind, exc, tb)

    async def add(self, lines: list[bytes]) -> None:
        self._pending.extend(lines)
        self._pending_bytes += sum(map(len, lines))
        if self._pending_bytes >= FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        data = b"\n".join(self._pending) + b"\n"
        self._pending, self._pending_bytes = [], 0
        assert self._writer is not None
        await asyncio.to_thread(self._locked, self._writer.write, data)


async def _run_segment(
    ctx: ShardContext, records: list[InputRecord], tally: Tally
) -> tuple[list[bytes], Tally]:
    """Parse, invoke and render one micro-batch; every record gets its output or error line."""
    lines: list[bytes | None] = [None] * len(records)
    figures = Tally()
    batch: list[tuple[int, InferenceRequest]] = []
    for i, record in enumerate(records):
        try:
            batch.append((i, ctx.body_format.parse(record.model_input)))
        except FormatError as exc:
            lines[i] = error_line(record, 400, str(exc))
            figures.errors += 1
    if batch:
        async with ctx.inflight:
            started = time.perf_counter()
            results = await ctx.backend.invoke([request for _, request in batch])
            if ctx.metrics is not None:
                ctx.metrics.backend_latency.labels(ctx.model_id).observe(
                    time.perf_counter() - started
                )
        for (i, request), result in zip(batch, results, strict=True):
            record = records[i]
            if isinstance(result, InferenceResponse):
                lines[i] = output_line(
                    record, ctx.body_format.render(request, result, ctx.model_id)
                )
                figures.success += 1
                figures.input_tokens += result.input_tokens
                figures.output_tokens += result.output_tokens
            else:
                assert isinstance(result, RecordError)
                lines[i] = error_line(record, result.error_code, result.message)
                figures.errors += 1
    tally.add(figures)
    if ctx.metrics is not None:
        ctx.metrics.record_batch(
            ctx.model_id,
            figures.success,
            figures.errors,
            figures.input_tokens,
            figures.output_tokens,
        )
    return [line for line in lines if line is not None], figures


async def run_shard(
    ctx: ShardContext, shard: Shard, stop: asyncio.Event, tally: Tally
) -> ShardResult:
    """Process a shard into its part object. When `stop` is set, calls in flight are cancelled
    and every record without an answer yet becomes a 408 error record, so that everything
    finished so far is kept and the part still holds each of the shard's records once."""
    file = ctx.files[shard.file_index]
    size = max(1, ctx.backend.max_batch_size)
    reader = _Reader(shard_records(ctx.storage, ctx.layout, file, shard))
    part = _Part(
        ctx.storage.open_write(
            ctx.layout.output_bucket, ctx.layout.part_key(shard.shard_index, ctx.owner)
        )
    )
    segments: deque[_Segment] = deque()
    written = Tally()
    unprocessed = 0
    stopper = asyncio.ensure_future(stop.wait())

    async def write_head() -> bool:
        """Write the first segment once it is done; False if Stop came first."""
        head = segments[0]
        if not head.task.done():
            await asyncio.wait({head.task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not head.task.done():
                return False
        lines, figures = head.task.result()  # a backend-wide failure propagates: job fails
        segments.popleft()
        written.add(figures)
        await part.add(lines)
        return True

    async def write_unprocessed(records: list[InputRecord]) -> None:
        nonlocal unprocessed
        message = ctx.unprocessed_message()
        unprocessed += len(records)
        await part.add([error_line(record, 408, message) for record in records])

    async def write_after_stop(leftover: list[InputRecord]) -> None:
        """In input order: segments that finished before Stop, 408 lines for the rest."""
        for segment in segments:
            segment.task.cancel()
        while segments:
            segment = segments.popleft()
            outcome = (await asyncio.gather(segment.task, return_exceptions=True))[0]
            if isinstance(outcome, tuple):  # it finished before Stop: keep it
                written.add(outcome[1])
                await part.add(outcome[0])
            else:
                await write_unprocessed(segment.records)
        await write_unprocessed(leftover)
        while block := await reader.take(READ_BLOCK):
            await write_unprocessed(block)

    try:
        async with part:
            leftover: list[InputRecord] = []
            stopped = False
            while not stopped:
                block = await reader.take(READ_BLOCK)
                for start in range(0, len(block), size):
                    while len(segments) >= WINDOW and not stopped:
                        stopped = not await write_head()
                    if stopped or stop.is_set():
                        stopped, leftover = True, block[start:]
                        break
                    records = block[start : start + size]
                    task = asyncio.create_task(_run_segment(ctx, records, tally))
                    segments.append(_Segment(records, task))
                if len(block) < READ_BLOCK:
                    break
            while segments and not stopped:
                stopped = not await write_head()
            if stopped:
                await write_after_stop(leftover)
    finally:
        stopper.cancel()
        for segment in segments:
            segment.task.cancel()
        if segments:
            await asyncio.gather(*(s.task for s in segments), return_exceptions=True)
        await reader.close()
    return ShardResult(
        written.success, written.errors, unprocessed, written.input_tokens, written.output_tokens
    )
