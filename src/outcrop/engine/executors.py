"""Where shards run: in the engine's own process, or on the actors of a Ray cluster.

Either way the engine keeps the job's state: it claims the shard, writes the part object and
marks the shard done. An executor only turns a shard into output lines.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Protocol

from outcrop.engine.active import ActiveJob
from outcrop.engine.shard import ShardContext, run_shard
from outcrop.store.work import InputFile, Shard, ShardResult

log = logging.getLogger(__name__)


class ShardLost(Exception):
    """The shard's work was lost (a Ray node died past its retries, or Stop cancelled it remotely):
    the engine gives the shard back instead of failing the job."""


class ShardExecutor(Protocol):
    async def run(self, active: ActiveJob, shard: Shard) -> tuple[list[bytes], ShardResult]: ...

    async def aclose(self) -> None: ...


class LocalExecutor:
    """Runs shards on this engine's event loop, with live per-record progress."""

    async def run(self, active: ActiveJob, shard: Shard) -> tuple[list[bytes], ShardResult]:
        return await run_shard(active.ctx, shard, active.stop, active.in_flight[shard.shard_index])

    async def aclose(self) -> None:
        return None


class _ShardActorImpl:
    """A Ray actor that keeps the catalog's models loaded between shards (one process per actor)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from outcrop.config import Settings
        from outcrop.domain.catalog import Catalog
        from outcrop.engine.models import ModelCatalog
        from outcrop.storage.factory import open_object_store

        self.settings = Settings(**settings)
        self.storage = open_object_store(self.settings)
        self.models = ModelCatalog(Catalog.load(self.settings.catalog))

    async def process(
        self,
        job: dict[str, Any],
        file: dict[str, Any],
        shard: dict[str, Any],
        record_concurrency: int,
    ) -> tuple[bytes, tuple[int, int, int, int, int]]:
        from outcrop.engine.layout import JobLayout
        from outcrop.engine.progress import Tally

        entry = self.models.entry(job["model_id"])
        if entry is None:
            raise RuntimeError(f"model {job['model_id']} is not in this Ray worker's catalog")
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
        )
        lines, result = await run_shard(ctx, Shard(**shard), asyncio.Event(), Tally())
        body = b"\n".join(lines) + b"\n" if lines else b""
        return body, (
            result.success,
            result.errors,
            result.unprocessed,
            result.input_tokens,
            result.output_tokens,
        )


class RayExecutor:
    """Runs shards on a pool of Ray actors placed by Ray's scheduler.

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
        actor_class: Any = ray.remote(_ShardActorImpl).options(
            num_cpus=actor_cpus,
            max_restarts=-1,
            max_task_retries=3,
            scheduling_strategy="SPREAD",
        )
        self._actors: list[Any] = [actor_class.remote(settings) for _ in range(actors)]
        self._next = itertools.cycle(self._actors)
        self._record_concurrency = record_concurrency

    async def run(self, active: ActiveJob, shard: Shard) -> tuple[list[bytes], ShardResult]:
        job = active.job
        file = active.ctx.files[shard.file_index]
        ref = next(self._next).process.remote(
            {
                "job_id": job.job_id,
                "model_id": job.spec.model_id,
                "invocation_type": job.spec.invocation_type,
                "input_uri": job.spec.input_s3_uri,
                "output_uri": job.spec.output_s3_uri,
            },
            file.__dict__,
            shard.__dict__,
            self._record_concurrency,
        )
        stopper = asyncio.ensure_future(active.stop.wait())
        remote = asyncio.ensure_future(ref)
        try:
            done, _ = await asyncio.wait({remote, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if remote not in done:
                self._ray.cancel(ref)
                raise ShardLost("stopped while running on Ray")
            body, figures = remote.result()
        except self._ray.exceptions.RayError as exc:
            raise ShardLost(f"Ray could not run shard {shard.shard_index}: {exc}") from None
        finally:
            stopper.cancel()
        success, errors, unprocessed, in_tokens, out_tokens = figures
        active.in_flight[shard.shard_index].add(success, errors, in_tokens, out_tokens)
        lines = body.split(b"\n")[:-1] if body else []
        return lines, ShardResult(success, errors, unprocessed, in_tokens, out_tokens)

    async def aclose(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
