"""The engine loop: claims work from the store and drives jobs through Bedrock's statuses.

Several engines (processes) may share one database: validation, finalisation and each shard are
claimed with leases, so work is spread over every engine and a dead engine's work is taken over
once its leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from outcrop.backends.base import BackendUnavailable
from outcrop.domain.jobs import Job, JobStatus
from outcrop.engine.active import ActiveJob, unprocessed_message
from outcrop.engine.executors import LocalExecutor, ShardExecutor, ShardLost
from outcrop.engine.finalize import delete_parts, finalize_job, manifest_of, write_manifest
from outcrop.engine.layout import JobLayout
from outcrop.engine.models import ModelCatalog
from outcrop.engine.progress import Tally
from outcrop.engine.retry import StorageRetry
from outcrop.engine.shard import ShardContext
from outcrop.engine.validate import Limits, validate_input
from outcrop.errors import ConflictError, ValidationError
from outcrop.logs import job_id_var
from outcrop.metrics import Metrics
from outcrop.polling import PollInterval
from outcrop.storage.base import ObjectStore, StorageError
from outcrop.store.shard_work import ShardWork
from outcrop.store.work import Shard, WorkStore

log = logging.getLogger(__name__)

RUNNING = frozenset({JobStatus.IN_PROGRESS, JobStatus.STOPPING})


@dataclass(frozen=True)
class EngineSettings:
    max_jobs_in_progress: int
    max_jobs_per_model: int
    shard_records: int
    shard_concurrency: int  # shards of one job in flight in this engine
    record_concurrency: int  # backend calls in flight per job in this engine
    limits: Limits
    poll_interval_s: float
    progress_interval_s: float
    manifest_interval_s: float
    lease_seconds: float
    exclusive: bool  # the only engine on this database: take over leases at start
    max_shard_records: int | None = None  # None: every shard has shard_records records
    max_validations: int = 2
    storage_retry_s: float = 120.0  # how long a job rides out failing storage
    idle_poll_interval_s: float | None = None  # None: never slower than poll_interval_s

    @property
    def shard_slots(self) -> int:
        return self.shard_concurrency * self.max_jobs_in_progress


class Engine:
    """Runs in its own thread with its own asyncio loop; the API only talks to the store."""

    def __init__(
        self,
        work: WorkStore,
        storage: ObjectStore,
        models: ModelCatalog,
        settings: EngineSettings,
        metrics: Metrics | None = None,
        executor: ShardExecutor | None = None,
    ) -> None:
        self.executor: ShardExecutor = executor or LocalExecutor()
        self.work = work
        self.shard_work = ShardWork(work.store, work.owner, settings.lease_seconds)
        self.storage = storage
        self.models = models
        self.settings = settings
        self.metrics = metrics
        self.storage_retry = StorageRetry(settings.storage_retry_s)
        self._tasks: dict[str, asyncio.Task[None]] = {}  # validations, stops, finalisations
        self._active: dict[str, ActiveJob] = {}
        self._shard_tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._manifest_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        # Set with _wake when the next pass must be a full tick; a shard that finishes only
        # asks for a refill (claim more shards, finalise a finished job), which is far cheaper.
        self._full_tick = True
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
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._request_tick)

    def _request_tick(self) -> None:
        self._full_tick = True
        if self._wake is not None:
            self._wake.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.settings.exclusive:
            await asyncio.to_thread(self.work.release_all_leases)
            await asyncio.to_thread(self.shard_work.release_all)
        monitor = asyncio.create_task(self._monitor())
        self.running.set()
        try:
            loop, next_tick = self._loop, 0.0
            settings = self.settings
            polls = PollInterval(
                settings.poll_interval_s, settings.idle_poll_interval_s or settings.poll_interval_s
            )
            while not self._stopping.is_set():
                full = self._full_tick or loop.time() >= next_tick
                try:
                    if full:
                        self._full_tick = False
                        next_tick = loop.time() + settings.poll_interval_s  # if the pass fails
                        next_tick = loop.time() + polls.after(await self._tick())
                    else:
                        await self._refill()
                except Exception:  # the loop must survive anything one pass hits
                    log.exception("engine tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_tick - loop.time()))
                self._wake.clear()
        finally:
            self.running.clear()
            monitor.cancel()
            pending = [*self._tasks.values(), *self._shard_tasks.values(), monitor]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for job_id, index in list(self._shard_tasks):
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.shard_work.release, job_id, index)
            await self.executor.aclose()
            await self.models.aclose()

    def _spawn(self, job_id: str, coro: Coroutine[Any, Any, None]) -> None:
        if job_id in self._tasks:
            coro.close()
            return
        task = asyncio.create_task(coro)
        self._tasks[job_id] = task

        def done(_t: asyncio.Task[None]) -> None:
            self._tasks.pop(job_id, None)
            self._request_tick()

        task.add_done_callback(done)

    async def _try(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (ConflictError, StorageError) as exc:
            log.info("engine step skipped: %s", exc)
            return None

    # -- one pass ------------------------------------------------------------------------

    async def _tick(self) -> bool:
        """One pass over everything the engine polls for; True if it found anything to do.

        What this engine finishes wakes it (a shard refills, a task's end asks for a pass), so a
        pass that starts nothing only looked for other processes' work: the poll backs off.
        """
        work = self.work
        started = (set(self._tasks), set(self._shard_tasks))
        found = False
        await asyncio.to_thread(work.renew, [key.split(":", 1)[1] for key in self._tasks])
        waiting = frozenset({JobStatus.SUBMITTED, JobStatus.VALIDATING, JobStatus.SCHEDULED})
        for job_id in await asyncio.to_thread(work.expired_waiting_jobs):
            if job_id not in self._tasks:
                found = True
                await self._try(
                    work.store.transition, job_id, JobStatus.EXPIRED, None, expected=waiting
                )
        validations = sum(1 for t in self._tasks if t.startswith("v:"))
        if validations < self.settings.max_validations:
            free = self.settings.max_validations - validations
            for job in await asyncio.to_thread(
                work.claim_jobs, [JobStatus.SUBMITTED, JobStatus.VALIDATING], free
            ):
                self._spawn(
                    f"v:{job.job_id}",
                    self._validate(job, restart=job.status == JobStatus.VALIDATING),
                )
        for job in await asyncio.to_thread(work.claim_jobs, [JobStatus.STOPPING], 20):
            found = True
            if not await asyncio.to_thread(self._ever_ran, job):
                self._spawn(f"s:{job.job_id}", self._stop_unstarted(job))
            else:
                await asyncio.to_thread(work.release, job.job_id)  # finalisation handles it
        found = await self._schedule() or found
        await self._claim_shards()
        await self._finalize_ready()
        for job in await asyncio.to_thread(work.jobs_with_parts_pending):
            if f"f:{job.job_id}" not in self._tasks:
                found = True
                layout = JobLayout.of(job.job_id, job.spec.input_s3_uri, job.spec.output_s3_uri)
                await self._try(delete_parts, self.storage, layout)
                await self._try(work.set_parts_pending, job.job_id, False)
        return (
            found or not set(self._tasks) <= started[0] or not set(self._shard_tasks) <= started[1]
        )

    async def _refill(self) -> None:
        """After a shard finished: take more shards, and finalise a job with none left here."""
        await self._claim_shards()
        if any(not active.in_flight for active in self._active.values()):
            await self._finalize_ready()

    async def _schedule(self) -> bool:
        """Start scheduled jobs while there is room; True if any started."""
        total, per_model = await asyncio.to_thread(self.work.in_progress_counts)
        free = self.settings.max_jobs_in_progress - total
        if free <= 0:
            return False
        started = False
        for job in await asyncio.to_thread(self.work.scheduled_jobs, 200):
            if free <= 0:
                break
            if per_model.get(job.spec.model_id, 0) >= self.settings.max_jobs_per_model:
                continue  # later jobs of other models may still start (per-model limit)
            if await self._try(self.work.start_job, job.job_id) is None:
                continue
            started, free = True, free - 1
            per_model[job.spec.model_id] = per_model.get(job.spec.model_id, 0) + 1
        return started

    # -- shards ----------------------------------------------------------------------------

    async def _activate(self, job_id: str) -> ActiveJob | None:
        job = await asyncio.to_thread(self.work.store.get_job, job_id)
        if job is None or job.status != JobStatus.IN_PROGRESS:
            return None
        entry = self.models.entry(job.spec.model_id)
        if entry is None:
            await self._try(self.work.finish, job_id, JobStatus.FAILED, None,
                            f"model {job.spec.model_id} is no longer in the catalog")  # fmt: skip
            return None
        files = await asyncio.to_thread(self.work.files, job_id)
        active = ActiveJob(
            job=job,
            ctx=ShardContext(
                job_id=job_id,
                model_id=job.spec.model_id,
                layout=JobLayout.of(job_id, job.spec.input_s3_uri, job.spec.output_s3_uri),
                files={f.file_index: f for f in files},
                storage=self.storage,
                body_format=self.models.body_format(entry, job.spec.invocation_type),
                backend=self.models.backend(entry),
                inflight=asyncio.Semaphore(self.settings.record_concurrency),
                unprocessed_message=lambda: unprocessed_message(active.stop_reason),
                owner=self.work.owner,
                metrics=self.metrics,
            ),
        )
        self._active[job_id] = active
        return active

    async def _claim_shards(self) -> None:
        free = self.settings.shard_slots - len(self._shard_tasks)
        if free <= 0:
            return
        for job_id in await asyncio.to_thread(self.shard_work.runnable_jobs, 10):
            if not self.storage_retry.ready(job_id):
                continue  # storage is failing for this job: its shards wait out the backoff
            active = self._active.get(job_id) or await self._activate(job_id)
            if active is None or active.stop.is_set():
                continue
            want = min(free, self.settings.shard_concurrency - len(active.in_flight))
            claimed = await asyncio.to_thread(self.shard_work.claim, job_id, want)
            # The monitor drops idle jobs from _active meanwhile; keep this one while it works.
            active = self._active.setdefault(job_id, active)
            for shard in claimed:
                key = (job_id, shard.shard_index)
                if key in self._shard_tasks:
                    continue  # our own lease lapsed (the monitor was held up) and is ours again
                active.in_flight[shard.shard_index] = Tally()
                task = asyncio.create_task(self._run_shard(active, shard))
                self._shard_tasks[key] = task
                task.add_done_callback(functools.partial(self._shard_done, key))
                free -= 1
            if free <= 0:
                return

    def _shard_done(self, key: tuple[str, int], _task: asyncio.Task[None]) -> None:
        self._shard_tasks.pop(key, None)
        active = self._active.get(key[0])
        if active is not None:
            active.in_flight.pop(key[1], None)
        if self._wake is not None:
            self._wake.set()

    async def _run_shard(self, active: ActiveJob, shard: Shard) -> None:
        job_id = active.job.job_id
        job_id_var.set(job_id)
        while True:
            try:
                result = await self.executor.run(active, shard)
                await asyncio.to_thread(self.shard_work.complete, job_id, shard.shard_index, result)
                self.storage_retry.succeeded(job_id)
                return
            except ShardLost as exc:
                log.warning("%s; the shard will be claimed again", exc)
                await self._try(self.shard_work.release, job_id, shard.shard_index)
                return
            except BackendUnavailable as exc:
                await self._fail(active, str(exc))
                return
            except StorageError as exc:
                delay = self.storage_retry.failed(job_id)
                if delay is None:
                    await self._fail(active, self.storage_retry.message(exc))
                    return
                log.warning("shard %d: %s; retrying in %.1f s", shard.shard_index, exc, delay)
                # Keep the lease (the monitor renews it) and run the shard again after the
                # backoff; its records are re-sent only if its part could not be written.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(active.stop.wait(), delay)
            except Exception:  # e.g. the database briefly unreachable: never lose the shard
                log.exception(
                    "shard %d failed unexpectedly; it will be claimed again", shard.shard_index
                )
                await self._try(self.shard_work.release, job_id, shard.shard_index)
                return
            if active.stop.is_set():  # finalisation fills in the shard's records as unprocessed
                await self._try(self.shard_work.release, job_id, shard.shard_index)
                return
            active.in_flight[shard.shard_index] = Tally()  # live progress starts over with it

    async def _fail(self, active: ActiveJob, message: str) -> None:
        job_id = active.job.job_id
        log.warning("job failed: %s", message)
        active.request_stop(JobStatus.FAILED)
        counts = await asyncio.to_thread(self.work.durable_counts, job_id)
        await self._try(self.work.finish, job_id, JobStatus.FAILED, counts, message)

    async def _monitor(self) -> None:
        """Publish live counters, notice Stop and deadlines, renew shard leases, rewrite manifests."""
        while True:
            await asyncio.sleep(self.settings.progress_interval_s)
            try:
                await self._monitor_once()
            except Exception:
                log.exception("engine monitor pass failed")

    async def _monitor_once(self) -> None:
        if not self._active and not self._shard_tasks:
            return  # nothing to publish or renew: no database round trips while idle
        statuses = await asyncio.to_thread(self.work.status_of, list(self._active))
        keys = list(self._shard_tasks)
        await asyncio.to_thread(self.shard_work.renew, keys)
        for job_id, active in list(self._active.items()):
            status = statuses.get(job_id)
            if status is not None and status not in RUNNING:  # None: activated after the read
                active.request_stop(JobStatus.STOPPED)  # failed or finished elsewhere
            else:
                active.check(status)
            partials = {index: tally.partial() for index, tally in active.in_flight.items()}
            if partials:
                await asyncio.to_thread(self.shard_work.publish, job_id, partials)
            due = time.monotonic() - active.last_manifest >= self.settings.manifest_interval_s
            # Only while this engine has shards of the job running (then the job cannot be
            # finalising), and never at the same time as a finalisation here: a progress
            # manifest must not land on top of the final one.
            if due and active.in_flight and status in RUNNING:
                active.last_manifest = time.monotonic()
                async with self._manifest_locks[job_id]:
                    job = await asyncio.to_thread(self.work.store.get_job, job_id)
                    if job is not None and job.status in RUNNING:
                        manifest = manifest_of(job.counts.total or 0, job.counts)
                        await self._try(write_manifest, self.storage, active.ctx.layout, manifest)
            if not active.in_flight:
                self._active.pop(job_id, None)
                self._manifest_locks.pop(job_id, None)

    async def _finalize_ready(self) -> None:
        for job_id in await asyncio.to_thread(self.shard_work.finalizable_jobs, 5):
            active = self._active.get(job_id)
            if f"f:{job_id}" in self._tasks or (active is not None and active.in_flight):
                continue
            if not self.storage_retry.ready(job_id):
                continue
            if await asyncio.to_thread(self.shard_work.claim_job, job_id):
                self._spawn(f"f:{job_id}", self._finalize(job_id))

    async def _finalize(self, job_id: str) -> None:
        job_id_var.set(job_id)
        job = await asyncio.to_thread(self.work.store.get_job, job_id)
        if job is None or job.status not in RUNNING:
            return
        try:
            async with self._manifest_locks[job_id]:
                finished = await asyncio.to_thread(finalize_job, self.work, self.storage, job)
            self.storage_retry.succeeded(job_id)
            log.info("job finished: %s, %s of %s records processed",
                     finished.status.value, finished.counts.processed, finished.counts.total)  # fmt: skip
        except StorageError as exc:
            delay = self.storage_retry.failed(job_id)
            if delay is not None:  # finalising is idempotent: a later tick runs it again
                log.warning("finalising failed: %s; retrying in %.1f s", exc, delay)
                await self._try(self.work.release, job_id)
                return
            message = self.storage_retry.message(exc)
            log.warning("job failed while finalising: %s", message)
            counts = await asyncio.to_thread(self.work.durable_counts, job_id)
            await self._try(self.work.finish, job_id, JobStatus.FAILED, counts, message)
        except ConflictError as exc:
            log.info("finalisation skipped: %s", exc)

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
                    self.settings.max_shard_records,
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
