"""Where shards run: in the engine's event loop, in a pool of local processes, or on Ray actors.

Either way the engine keeps the job's state: it claims the shard and marks it done. An executor
turns a shard into its part object and returns the shard's figures.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

from outcrop.engine.active import ActiveJob
from outcrop.engine.progress import Tally
from outcrop.engine.shard import ShardContext, run_shard
from outcrop.gc_tuning import settle as settle_gc
from outcrop.storage.base import ObjectStore
from outcrop.store.work import InputFile, Shard, ShardResult

log = logging.getLogger(__name__)


class ShardLost(Exception):
    """The shard's work was lost (a Ray node died past its retries, or Stop abandoned it):
    the engine gives the shard back instead of failing the job."""


class ShardExecutor(Protocol):
    async def run(self, active: ActiveJob, shard: Shard) -> ShardResult: ...

    async def aclose(self) -> None: ...


class LocalExecutor:
    """Runs shards on this engine's event loop, with live per-record progress."""

    async def run(self, active: ActiveJob, shard: Shard) -> ShardResult:
        return await run_shard(active.ctx, shard, active.stop, active.in_flight[shard.shard_index])

    async def aclose(self) -> None:
        return None


# -- shards outside this process ------------------------------------------------------------


def _job_spec(active: ActiveJob) -> dict[str, Any]:
    job = active.job
    return {
        "job_id": job.job_id,
        "model_id": job.spec.model_id,
        "invocation_type": job.spec.invocation_type,
        "input_uri": job.spec.input_s3_uri,
        "output_uri": job.spec.output_s3_uri,
        "owner": active.ctx.owner,
    }


class _Worker:
    """What a shard needs outside the engine: storage and the catalog, rebuilt from settings,
    with one event loop kept for the worker's life (backends bind their clients to it)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from outcrop.config import Settings
        from outcrop.domain.catalog import Catalog
        from outcrop.engine.models import ModelCatalog
        from outcrop.storage.factory import open_object_store

        self.settings = Settings(**settings)
        self.storage: ObjectStore = open_object_store(self.settings)
        self.models = ModelCatalog(
            Catalog.load(self.settings.catalog), allow_private=self.settings.allow_private_targets
        )

    async def process(
        self,
        job: dict[str, Any],
        file: dict[str, Any],
        shard: dict[str, Any],
        record_concurrency: int,
    ) -> tuple[int, int, int, int, int]:
        from outcrop.engine.layout import JobLayout

        entry = self.models.entry(job["model_id"])
        if entry is None:
            raise RuntimeError(f"model {job['model_id']} is not in this worker's catalog")
        input_file = InputFile(**file)
        ctx = ShardContext(
            job_id=job["job_id"],
            model_id=job["model_id"],
            layout=JobLayout.of(job["job_id"], job["input_uri"], job["output_uri"]),
            files={input_file.file_index: input_file},
            storage=self.storage,
            body_format=self.models.body_format(entry, job["invocation_type"]),
            backend=self.models.backend(entry),
            inflight=asyncio.Semaphore(record_concurrency),
            unprocessed_message=lambda: "unprocessed",
            owner=job["owner"],
        )
        result = await run_shard(ctx, Shard(**shard), asyncio.Event(), Tally())
        return (
            result.success,
            result.errors,
            result.unprocessed,
            result.input_tokens,
            result.output_tokens,
        )


def _result(
    figures: tuple[int, int, int, int, int], active: ActiveJob, shard: Shard
) -> ShardResult:
    success, errors, unprocessed, in_tokens, out_tokens = figures
    active.in_flight[shard.shard_index].add(Tally(success, errors, in_tokens, out_tokens))
    return ShardResult(success, errors, unprocessed, in_tokens, out_tokens)


class _RayWorker(_Worker):
    """A Ray actor's process is its own: settle its collector once the worker is built."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        settle_gc()


_PROCESS_WORKER: tuple[_Worker, asyncio.AbstractEventLoop] | None = None


def _init_process(settings: dict[str, Any], parent: int) -> None:
    global _PROCESS_WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine decides when the pool ends
    # `parent` comes from the engine: by the time this runs the engine may already be gone.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _PROCESS_WORKER = (_Worker(settings), asyncio.new_event_loop())
    settle_gc()


def _exit_with_parent(parent: int) -> None:
    """A pool worker must not outlive its engine: when the engine process is killed outright
    nobody shuts the pool down, and the worker would otherwise wait for work forever."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _ready() -> None:
    """Submitted once per worker at start, so that workers start (and import) before jobs come."""


def _process_shard(
    job: dict[str, Any], file: dict[str, Any], shard: dict[str, Any], record_concurrency: int
) -> tuple[int, int, int, int, int]:
    assert _PROCESS_WORKER is not None
    worker, loop = _PROCESS_WORKER
    return loop.run_until_complete(worker.process(job, file, shard, record_concurrency))


class ProcessExecutor:
    """Runs shards in a pool of local processes: for CPU-bound Python backends, where one event
    loop (and one GIL) would cap the engine at one core. A shard already running finishes on
    Stop (it is short); one still queued is abandoned and written as unprocessed."""

    def __init__(self, settings: dict[str, Any], workers: int, record_concurrency: int) -> None:
        # spawn, not fork: the engine process has threads (server, engine, dispatcher).
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process,
            initargs=(settings, os.getpid()),
        )
        self._record_concurrency = record_concurrency
        # The pool starts a worker per submitted call while none is idle: one call each
        # starts them all now, instead of inside the first job's time.
        for _ in range(workers):
            self._pool.submit(_ready)

    async def run(self, active: ActiveJob, shard: Shard) -> ShardResult:
        loop = asyncio.get_running_loop()
        file = active.ctx.files[shard.file_index]
        future = self._pool.submit(
            _process_shard,
            _job_spec(active),
            file.__dict__,
            shard.__dict__,
            self._record_concurrency,
        )
        stopper: asyncio.Future[Any] = asyncio.ensure_future(active.stop.wait())
        waiting: asyncio.Future[Any] = asyncio.wrap_future(future, loop=loop)
        try:
            done, _ = await asyncio.wait({waiting, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiting not in done and future.cancel():
                raise ShardLost("stopped before it started")
            figures = await waiting
        finally:
            stopper.cancel()
        return _result(figures, active, shard)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor:
    """Runs shards on a pool of Ray actors placed by Ray's scheduler; each keeps its models loaded.

    Actors restart when their node dies and Ray retries the call on the new actor; if that
    still fails, the shard is given back and claimed again. Live progress is per shard (the
    counters move when a shard finishes), and Stop abandons remote shards in flight.
    """

    def __init__(
        self,
        address: str,
        settings: dict[str, Any],
        actors: int,
        actor_cpus: float,
        record_concurrency: int,
    ) -> None:
        import ray

        self._ray = ray
        if not ray.is_initialized():
            ray.init(
                address=address, namespace="outcrop", log_to_driver=False, configure_logging=False
            )
        actor_class: Any = ray.remote(_RayWorker).options(
            num_cpus=actor_cpus,
            max_restarts=-1,
            max_task_retries=3,
            scheduling_strategy="SPREAD",
        )
        self._actors: list[Any] = [actor_class.remote(settings) for _ in range(actors)]
        self._next = itertools.cycle(self._actors)
        self._record_concurrency = record_concurrency

    async def run(self, active: ActiveJob, shard: Shard) -> ShardResult:
        file = active.ctx.files[shard.file_index]
        ref = next(self._next).process.remote(
            _job_spec(active), file.__dict__, shard.__dict__, self._record_concurrency
        )
        stopper = asyncio.ensure_future(active.stop.wait())
        remote = asyncio.ensure_future(ref)
        try:
            done, _ = await asyncio.wait({remote, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if remote not in done:
                self._ray.cancel(ref)
                raise ShardLost("stopped while running on Ray")
            figures = remote.result()
        except self._ray.exceptions.RayError as exc:
            raise ShardLost(f"Ray could not run shard {shard.shard_index}: {exc}") from None
        finally:
            stopper.cancel()
        return _result(figures, active, shard)

    async def aclose(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
