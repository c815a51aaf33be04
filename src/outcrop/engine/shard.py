"""Run one shard: read its records, call the backend in micro-batches, write its part object."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

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
from outcrop.storage.base import ObjectStore
from outcrop.store.work import InputFile, Shard, ShardResult


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


def read_shard_records(
    storage: ObjectStore, layout: JobLayout, file: InputFile, shard: Shard
) -> list[InputRecord]:
    """Read exactly the shard's records, starting at its byte offset (no rescan of the file)."""
    records: list[InputRecord] = []
    with storage.open_read(layout.input_bucket, file.input_key, shard.start_offset) as stream:
        for line_number, line in enumerate(stream, start=shard.first_line):
            if line_number == 1 and line.startswith(BOM):
                line = line[len(BOM) :]
            if is_blank(line):
                continue
            records.append(to_record(orjson.loads(line), file.file_index, line_number))
            if len(records) == shard.record_count:
                break
    return records


def unprocessed_lines(records: list[InputRecord], message: str) -> list[bytes]:
    return [error_line(r, 408, message) for r in records]


async def run_shard(
    ctx: ShardContext, shard: Shard, stop: asyncio.Event, tally: Tally
) -> tuple[list[bytes], ShardResult]:
    """Process a shard; when `stop` is set, in-flight calls are cancelled and unfinished records
    become 408 error records, so that everything finished so far is kept."""
    file = ctx.files[shard.file_index]
    records = await asyncio.to_thread(read_shard_records, ctx.storage, ctx.layout, file, shard)
    lines: list[bytes | None] = [None] * len(records)
    success = errors = in_tokens = out_tokens = 0
    pending: list[tuple[int, InferenceRequest]] = []
    for i, record in enumerate(records):
        try:
            pending.append((i, ctx.body_format.parse(record.model_input)))
        except FormatError as exc:
            lines[i] = error_line(record, 400, str(exc))
            errors += 1
    tally.add(0, errors, 0, 0)
    if ctx.metrics is not None:
        ctx.metrics.record_batch(ctx.model_id, 0, errors, 0, 0)

    async def run_batch(batch: list[tuple[int, InferenceRequest]]) -> None:
        nonlocal success, errors, in_tokens, out_tokens
        async with ctx.inflight:
            started = time.perf_counter()
            results = await ctx.backend.invoke([request for _, request in batch])
            if ctx.metrics is not None:
                ctx.metrics.backend_latency.labels(ctx.model_id).observe(
                    time.perf_counter() - started
                )
        ok = bad = tin = tout = 0
        for (i, request), result in zip(batch, results, strict=True):
            record = records[i]
            if isinstance(result, InferenceResponse):
                lines[i] = output_line(
                    record, ctx.body_format.render(request, result, ctx.model_id)
                )
                ok += 1
                tin += result.input_tokens
                tout += result.output_tokens
            else:
                assert isinstance(result, RecordError)
                lines[i] = error_line(record, result.error_code, result.message)
                bad += 1
        success += ok
        errors += bad
        in_tokens += tin
        out_tokens += tout
        tally.add(ok, bad, tin, tout)
        if ctx.metrics is not None:
            ctx.metrics.record_batch(ctx.model_id, ok, bad, tin, tout)

    size = max(1, ctx.backend.max_batch_size)
    tasks = {
        asyncio.create_task(run_batch(pending[i : i + size])) for i in range(0, len(pending), size)
    }
    stopper = asyncio.create_task(stop.wait())
    try:
        while tasks:
            done, _ = await asyncio.wait(tasks | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopper}:
                tasks.discard(task)
                task.result()  # a backend-wide failure propagates and fails the job
            if stopper in done:
                break
    finally:
        stopper.cancel()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    unprocessed = 0
    message = ctx.unprocessed_message()
    out: list[bytes] = []
    for i, line in enumerate(lines):
        if line is None:
            line = error_line(records[i], 408, message)
            unprocessed += 1
        out.append(line)
    return out, ShardResult(success, errors, unprocessed, in_tokens, out_tokens)
