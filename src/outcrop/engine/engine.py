"""The engine loop: claims work from the store and drives jobs through Bedrock's statuses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from outcrop.domain.jobs import Job, JobStatus
from outcrop.engine.finalize import delete_parts
from outcrop.engine.job_runner import JobRunner, RunnerSettings
from outcrop.engine.layout import JobLayout
from outcrop.engine.models import ModelCatalog
from outcrop.engine.validate import Limits, validate_input
from outcrop.errors import ConflictError, ValidationError
from outcrop.logs import job_id_var
from outcrop.metrics import Metrics
from outcrop.storage.base import ObjectStore, StorageError
from outcrop.store.work import WorkStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    max_jobs_in_progress: int
    max_jobs_per_model: int
    shard_records: int
    limits: Limits
    runner: RunnerSettings
    poll_interval_s: float
    lease_seconds: float
    exclusive: bool  # the only engine on this database: take over leases at start
    max_validations: int = 2


class Engine:
    """Runs in its own thread with its own asyncio loop; the API only talks to the store."""

    def __init__(
        self,
        work: WorkStore,
        storage: ObjectStore,
        models: ModelCatalog,
        settings: EngineSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.work = work
        self.storage = storage
        self.models = models
        self.settings = settings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._runners: dict[str, JobRunner] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.running = threading.Event()

    @staticmethod
    def new_owner() -> str:
        return f"engine-{uuid.uuid4().hex[:12]}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._thread_main, name="outcrop-engine", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Ask the loop to look for work now (called from API threads after a change)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.settings.exclusive:
            await asyncio.to_thread(self.work.release_all_leases)
        self.running.set()
        try:
            while not self._stopping.is_set():
                try:
                    await self._tick()
                except Exception:  # the loop must survive anything one tick hits
                    log.exception("engine tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
                self._wake.clear()
        finally:
            self.running.clear()
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            await self.models.aclose()

    def _spawn(self, job_id: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks[job_id] = task

        def done(_t: asyncio.Task[None]) -> None:
            self._tasks.pop(job_id, None)
            self._runners.pop(job_id, None)
            if self._wake is not None:
                self._wake.set()

        task.add_done_callback(done)

    # -- one pass ------------------------------------------------------------------------

    async def _tick(self) -> None:
        work = self.work
        await asyncio.to_thread(work.renew, list(self._tasks))
        for job_id in await asyncio.to_thread(work.expired_waiting_jobs):
            if job_id not in self._tasks:
                await self._try(work.store.transition, job_id, JobStatus.EXPIRED, None,
                                expected=frozenset({JobStatus.SUBMITTED, JobStatus.VALIDATING, JobStatus.SCHEDULED}))  # fmt: skip
        validations = len(self._tasks) - len(self._runners)
        if validations < self.settings.max_validations:
            for job in await asyncio.to_thread(
                work.claim_jobs, [JobStatus.SUBMITTED], self.settings.max_validations - validations
            ):
                self._spawn_once(job.job_id, self._validate(job))
        for job in await asyncio.to_thread(
            work.claim_jobs, [JobStatus.STOPPING, JobStatus.IN_PROGRESS, JobStatus.VALIDATING], 50
        ):
            if job.job_id in self._tasks:
                continue
            if job.status == JobStatus.VALIDATING:  # a dead engine was validating it: start over
                self._spawn_once(job.job_id, self._validate(job, restart=True))
            elif job.status == JobStatus.STOPPING and not await asyncio.to_thread(
                self._ever_ran, job
            ):
                self._spawn_once(job.job_id, self._stop_unstarted(job))
            else:
                self._spawn_run(job)
        await self._schedule()
        for job in await asyncio.to_thread(work.jobs_with_parts_pending):
            if job.job_id not in self._tasks:
                layout = JobLayout.of(job.job_id, job.spec.input_s3_uri, job.spec.output_s3_uri)
                await self._try(delete_parts, self.storage, layout)
                await self._try(work.set_parts_pending, job.job_id, False)

    def _spawn_once(self, job_id: str, coro: Coroutine[Any, Any, None]) -> None:
        if job_id in self._tasks:
            coro.close()
            return
        self._spawn(job_id, coro)

    def _spawn_run(self, job: Job) -> None:
        runner = JobRunner(
            job, self.work, self.storage, self.models, self.settings.runner, self.metrics
        )
        self._runners[job.job_id] = runner
        self._spawn(job.job_id, runner.run())

    async def _try(self, fn: object, *args: object, **kwargs: object) -> object:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)  # type: ignore[arg-type]
        except (ConflictError, StorageError) as exc:
            log.info("engine step skipped: %s", exc)
            return None

    async def _schedule(self) -> None:
        total, per_model = await asyncio.to_thread(self.work.in_progress_counts)
        free = self.settings.max_jobs_in_progress - total
        if free <= 0:
            return
        for job in await asyncio.to_thread(self.work.scheduled_jobs, 200):
            if free <= 0:
                break
            if per_model.get(job.spec.model_id, 0) >= self.settings.max_jobs_per_model:
                continue  # later jobs of other models may still start (per-model limit)
            started = await self._try(self.work.start_job, job.job_id)
            if started is None:
                continue
            assert isinstance(started, Job)
            free -= 1
            per_model[job.spec.model_id] = per_model.get(job.spec.model_id, 0) + 1
            self._spawn_run(started)

    # -- validation ------------------------------------------------------------------------

    async def _validate(self, job: Job, restart: bool = False) -> None:
        job_id = job.job_id
        job_id_var.set(job_id)
        try:
            if not restart:
                await asyncio.to_thread(self.work.store.transition, job_id, JobStatus.VALIDATING, None,
                                        expected=frozenset({JobStatus.SUBMITTED}))  # fmt: skip
            problem = self._precheck(job)
            if problem is not None:
                await asyncio.to_thread(self.work.finish, job_id, JobStatus.FAILED, None, problem)
                return
            layout = JobLayout.of(job_id, job.spec.input_s3_uri, job.spec.output_s3_uri)
            try:
                outcome = await asyncio.to_thread(
                    validate_input,
                    self.storage,
                    layout,
                    self.settings.limits,
                    self.settings.shard_records,
                )
            except (StorageError, ValidationError) as exc:
                await asyncio.to_thread(
                    self.work.finish, job_id, JobStatus.FAILED, None, f"Validation failed: {exc}"
                )
                return
            if outcome.errors:
                await asyncio.to_thread(
                    self.work.finish, job_id, JobStatus.FAILED, None, outcome.message
                )
                return
            await asyncio.to_thread(self.work.save_plan, job_id, outcome.files, outcome.shards)
            log.info("job validated: %d records in %d files, %d shards",
                     sum(f.record_count for f in outcome.files), len(outcome.files), len(outcome.shards))  # fmt: skip
            await asyncio.to_thread(self.work.release, job_id)
        except ConflictError as exc:  # stopped or expired meanwhile; the next tick handles it
            log.info("validation of %s interrupted: %s", job_id, exc)
            await asyncio.to_thread(self.work.release, job_id)

    def _precheck(self, job: Job) -> str | None:
        """Checks that need no reading of records: the model, the buckets and their owners."""
        if self.models.entry(job.spec.model_id) is None:
            return f"Validation failed: model {job.spec.model_id} is not in this server's model catalog"
        layout = JobLayout.of(job.job_id, job.spec.input_s3_uri, job.spec.output_s3_uri)
        checks = (
            (layout.input_bucket, job.spec.input_bucket_owner, "input"),
            (layout.output_bucket, job.spec.output_bucket_owner, "output"),
        )
        try:
            for bucket, expected_owner, role in checks:
                if not self.storage.bucket_exists(bucket):
                    return f"Validation failed: the {role} bucket {bucket} does not exist"
                if expected_owner is not None:
                    owner = self.storage.bucket_owner(bucket)
                    if owner != expected_owner:
                        return (
                            f"Validation failed: the {role} bucket {bucket} is owned by account "
                            f"{owner}, not {expected_owner} (s3BucketOwner)"
                        )
        except StorageError as exc:
            return f"Validation failed: {exc}"
        return None

    def _ever_ran(self, job: Job) -> bool:
        return any(
            t.status == JobStatus.IN_PROGRESS for t in self.work.store.transitions(job.job_id)
        )

    async def _stop_unstarted(self, job: Job) -> None:
        """Stop a job that never reached InProgress: nothing was processed, nothing is written."""
        await self._try(self.work.finish, job.job_id, JobStatus.STOPPED, None)
