"""Run one InProgress job to its end: shards in parallel, live progress, stop and timeout, finalise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from outcrop.backends.base import BackendUnavailable
from outcrop.domain.clock import utcnow
from outcrop.domain.jobs import Job, JobStatus
from outcrop.engine.finalize import assemble_outputs, delete_parts, manifest_of, write_manifest
from outcrop.engine.layout import JobLayout
from outcrop.engine.models import ModelCatalog
from outcrop.engine.progress import JobProgress
from outcrop.engine.shard import ShardContext, run_shard
from outcrop.errors import ConflictError
from outcrop.logs import job_id_var
from outcrop.metrics import Metrics
from outcrop.storage.base import ObjectStore, StorageError
from outcrop.store.work import InputFile, Shard, WorkStore

log = logging.getLogger(__name__)

STOPPED_MESSAGE = "The job was stopped before this record was processed."
TIMED_OUT_MESSAGE = "The job's time ran out before this record was processed."


@dataclass(frozen=True)
class RunnerSettings:
    shard_concurrency: int
    record_concurrency: int
    progress_interval_s: float
    manifest_interval_s: float


class JobRunner:
    def __init__(
        self,
        job: Job,
        work: WorkStore,
        storage: ObjectStore,
        models: ModelCatalog,
        settings: RunnerSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.job = job
        self.work = work
        self.storage = storage
        self.models = models
        self.settings = settings
        self.layout = JobLayout.of(job.job_id, job.spec.input_s3_uri, job.spec.output_s3_uri)
        self.stop = asyncio.Event()
        self.stop_reason: JobStatus | None = None  # STOPPED or PARTIALLY_COMPLETED

    def _unprocessed_message(self) -> str:
        return (
            TIMED_OUT_MESSAGE
            if self.stop_reason == JobStatus.PARTIALLY_COMPLETED
            else STOPPED_MESSAGE
        )

    def request_stop(self, reason: JobStatus) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()

    async def run(self) -> None:
        job_id = self.job.job_id
        job_id_var.set(job_id)  # this task's own context: every log line of the job carries it
        try:
            await self._run()
        except (StorageError, BackendUnavailable) as exc:
            log.warning("job %s failed: %s", job_id, exc)
            await self._fail(str(exc))
        except ConflictError as exc:  # someone else moved the job on (e.g. another worker)
            log.info("job %s: %s", job_id, exc)

    async def _fail(self, message: str) -> None:
        counts = await asyncio.to_thread(self.work.durable_counts, self.job.job_id)
        with contextlib.suppress(ConflictError):
            await asyncio.to_thread(
                self.work.finish, self.job.job_id, JobStatus.FAILED, counts, message
            )

    async def _run(self) -> None:
        job = self.job
        entry = self.models.entry(job.spec.model_id)
        if entry is None:
            raise StorageError(f"model {job.spec.model_id} is no longer in the catalog")
        files = await asyncio.to_thread(self.work.files, job.job_id)
        shards = await asyncio.to_thread(self.work.shards, job.job_id, True)
        base = await asyncio.to_thread(self.work.durable_counts, job.job_id)
        progress = JobProgress(base=base)
        await asyncio.to_thread(self.work.set_parts_pending, job.job_id, True)
        ctx = ShardContext(
            job_id=job.job_id,
            model_id=job.spec.model_id,
            layout=self.layout,
            files={f.file_index: f for f in files},
            storage=self.storage,
            body_format=self.models.body_format(entry, job.spec.invocation_type),
            backend=self.models.backend(entry),
            inflight=asyncio.Semaphore(self.settings.record_concurrency),
            progress=progress,
            unprocessed_message=self._unprocessed_message,
            metrics=self.metrics,
        )
        if job.status == JobStatus.STOPPING:  # resumed after a crash while stopping
            self.request_stop(JobStatus.STOPPED)
        queue: asyncio.Queue[Shard] = asyncio.Queue()
        for shard in shards:
            queue.put_nowait(shard)
        monitor = asyncio.create_task(self._monitor(progress))
        workers = [
            asyncio.create_task(self._shard_worker(ctx, queue))
            for _ in range(self.settings.shard_concurrency)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            monitor.cancel()
            await asyncio.gather(monitor, *workers, return_exceptions=True)
        await self._finalize(files)

    async def _shard_worker(self, ctx: ShardContext, queue: asyncio.Queue[Shard]) -> None:
        while not self.stop.is_set():
            try:
                shard = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            lines, result = await run_shard(ctx, shard, self.stop)
            body = b"\n".join(lines) + b"\n" if lines else b""
            await asyncio.to_thread(
                self.storage.put_bytes,
                self.layout.output_bucket,
                self.layout.part_key(shard.shard_index),
                body,
            )
            await asyncio.to_thread(self.work.complete_shard, ctx.job_id, shard.shard_index, result)

    async def _monitor(self, progress: JobProgress) -> None:
        """Publish counters, rewrite the manifest, and notice Stop and the job's deadline."""
        last_manifest = time.monotonic()
        total = self.job.counts.total or 0
        while True:
            await asyncio.sleep(self.settings.progress_interval_s)
            snapshot = progress.snapshot()
            await asyncio.to_thread(self.work.publish_progress, self.job.job_id, snapshot)
            status = (await asyncio.to_thread(self.work.status_of, [self.job.job_id])).get(
                self.job.job_id
            )
            if status == JobStatus.STOPPING:
                self.request_stop(JobStatus.STOPPED)
            elif utcnow() >= self.job.job_expiration_time:
                self.request_stop(JobStatus.PARTIALLY_COMPLETED)
            if time.monotonic() - last_manifest >= self.settings.manifest_interval_s:
                last_manifest = time.monotonic()
                manifest = manifest_of(total, snapshot)
                await asyncio.to_thread(write_manifest, self.storage, self.layout, manifest)

    async def _finalize(self, files: list[InputFile]) -> None:
        job_id = self.job.job_id
        current = (await asyncio.to_thread(self.work.status_of, [job_id])).get(job_id)
        if current == JobStatus.STOPPING:
            self.request_stop(JobStatus.STOPPED)
        elif self.stop_reason is None and utcnow() >= self.job.job_expiration_time:
            self.request_stop(JobStatus.PARTIALLY_COMPLETED)
        shards = await asyncio.to_thread(self.work.shards, job_id)
        unprocessed = await asyncio.to_thread(
            assemble_outputs, self.storage, self.layout, files, shards, self._unprocessed_message()
        )
        counts = await asyncio.to_thread(self.work.durable_counts, job_id)
        await asyncio.to_thread(
            write_manifest,
            self.storage,
            self.layout,
            manifest_of(self.job.counts.total or 0, counts),
        )
        if self.stop_reason == JobStatus.STOPPED:
            target = JobStatus.STOPPED
        elif unprocessed and self.stop_reason == JobStatus.PARTIALLY_COMPLETED:
            target = JobStatus.PARTIALLY_COMPLETED
        else:
            target = JobStatus.COMPLETED
        await asyncio.to_thread(self.work.finish, job_id, target, counts)
        log.info(
            "job finished: %s, %s of %s records processed",
            target.value,
            counts.processed,
            self.job.counts.total,
        )
        await asyncio.to_thread(delete_parts, self.storage, self.layout)
        await asyncio.to_thread(self.work.set_parts_pending, job_id, False)
