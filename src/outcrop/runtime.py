"""Builds the process's parts from Settings once: database, store, identity, storage, API, engine."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as DbEngine
from starlette.types import ASGIApp

from outcrop.api.app import create_app, event_routes
from outcrop.api.auth import SigV4Verifier
from outcrop.api.bedrock import BedrockApi, new_secret
from outcrop.api.events import EventRoutes
from outcrop.api.limits import RateLimiter
from outcrop.api.pagination import CursorCodec
from outcrop.config import Settings
from outcrop.console import console_routes
from outcrop.domain.catalog import Catalog, CatalogEntry
from outcrop.engine.engine import Engine, EngineSettings
from outcrop.engine.executors import ShardExecutor
from outcrop.engine.models import ModelCatalog
from outcrop.engine.validate import Limits
from outcrop.events.dispatcher import Dispatcher, DispatcherSettings
from outcrop.events.rules import load_rules
from outcrop.identity import Identity, ensure_root_identity
from outcrop.metrics import BackendStatsCollector, Metrics, StoreCollector
from outcrop.storage.base import ObjectStore, StorageError
from outcrop.storage.factory import open_object_store
from outcrop.store.database import create_db_engine, migrate
from outcrop.store.outbox import OutboxStore
from outcrop.store.sql import SqlJobStore
from outcrop.store.work import WorkStore


@dataclass
class Runtime:
    settings: Settings
    db: DbEngine
    store: SqlJobStore
    identity: Identity
    engine: Engine | None = None
    storage: ObjectStore | None = None
    dispatcher: Dispatcher | None = None
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = create_db_engine(settings.effective_database_url)
        migrate(db)
        store = SqlJobStore(db)
        identity = ensure_root_identity(settings, store)
        runtime = cls(settings=settings, db=db, store=store, identity=identity)
        runtime.metrics.add_collector(StoreCollector(store))
        return runtime

    def catalog(self) -> ModelCatalog:
        models = ModelCatalog(
            Catalog.load(self.settings.catalog), allow_private=self.settings.allow_private_targets
        )
        models.check()
        return models

    def start_engine(self) -> Engine:
        """Create and start the engine thread (serve with the engine, or `outcrop worker`)."""
        s = self.settings
        storage = open_object_store(s.model_copy(update={"account_id": self.identity.account_id}))
        self.storage = storage
        work = WorkStore(self.store, Engine.new_owner(), s.lease_seconds)
        engine_settings = EngineSettings(
            max_jobs_in_progress=s.max_jobs_in_progress,
            max_jobs_per_model=s.max_jobs_per_model,
            shard_records=s.shard_records,
            max_shard_records=s.max_shard_records,
            limits=Limits(
                max_records_per_file=s.max_records_per_file,
                max_records_per_job=s.max_records_per_job,
                max_bytes_per_file=s.max_bytes_per_file,
                max_bytes_per_job=s.max_bytes_per_job,
                min_records_per_job=s.min_records_per_job,
                max_line_bytes=s.max_line_bytes,
            ),
            shard_concurrency=s.shard_concurrency,
            record_concurrency=s.record_concurrency,
            progress_interval_s=s.progress_interval_s,
            manifest_interval_s=s.manifest_interval_s,
            poll_interval_s=s.poll_interval_s,
            idle_poll_interval_s=s.idle_poll_interval_s,
            lease_seconds=s.lease_seconds,
            storage_retry_s=s.storage_retry_s,
            exclusive=self.db.dialect.name == "sqlite",
        )
        models = self.catalog()
        self.metrics.add_collector(BackendStatsCollector(models.backends))
        self.engine = Engine(work, storage, models, engine_settings, self.metrics, self._executor())
        self.engine.start()
        return self.engine

    def _executor(self) -> ShardExecutor | None:
        s = self.settings
        if s.executor == "local":
            return None
        from outcrop.engine.executors import ProcessExecutor, RayExecutor

        # Workers rebuild storage and catalog from these settings in their own processes.
        shipped = s.model_copy(update={"account_id": self.identity.account_id}).model_dump(
            mode="json"
        )
        for path_field in ("data_dir", "catalog"):
            if shipped.get(path_field):
                shipped[path_field] = str(Path(shipped[path_field]).resolve())
        if s.executor == "process":
            return ProcessExecutor(shipped, s.process_workers, s.record_concurrency)
        return RayExecutor(
            s.ray_address or "auto", shipped, s.ray_actors, s.ray_actor_cpus, s.record_concurrency
        )

    def asgi(self) -> ASGIApp:
        secret = self.store.meta_value("cursor_secret", new_secret)
        engine = self.engine
        api = BedrockApi(
            store=self.store,
            region=self.settings.region,
            hour_seconds=self.settings.hour_seconds,
            cursors=CursorCodec(bytes.fromhex(secret)),
            max_active_jobs_per_account=self.settings.max_active_jobs_per_account,
            default_max_results=self.settings.default_max_results,
            notify=engine.wake if engine is not None else None,
        )
        verifier = SigV4Verifier(self.store.find_access_key, self.settings.clock_skew_seconds)
        extra: list[Any] = event_routes(verifier, EventRoutes(OutboxStore(self.store)))
        extra += console_routes(
            self.store,
            api,
            storage=self._console_storage,
            catalog=self._console_catalog,
            secret=self.store.meta_value("console_secret", new_secret),
        )
        limiter = RateLimiter(self.settings.rate_limit_rps, self.settings.rate_limit_burst)
        return create_app(
            api,
            verifier,
            self.metrics,
            self.readiness_problems,
            extra_routes=extra,
            rate_limiter=limiter,
            max_body_bytes=self.settings.max_request_bytes,
            max_header_bytes=self.settings.max_header_bytes,
        )

    def _console_storage(self) -> ObjectStore | None:
        """The engine's object store, or (API-only process) one opened for the console."""
        if self.storage is None:
            s = self.settings
            self.storage = open_object_store(
                s.model_copy(update={"account_id": self.identity.account_id})
            )
        return self.storage

    def _console_catalog(self) -> list[CatalogEntry]:
        if self.engine is not None:
            return self.engine.models.catalog.entries()
        return Catalog.load(self.settings.catalog).entries()

    def readiness_problems(self) -> list[str]:
        """What keeps this process from doing its job: database, storage, engine."""
        problems = []
        try:
            with self.db.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:
            problems.append(f"database unreachable: {type(exc).__name__}")
        try:
            # a name of this process's own: processes may share a data dir
            probe = self.settings.data_dir / f".readyz-probe-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            problems.append(f"data dir {self.settings.data_dir} is not writable: {exc.strerror}")
        if self.storage is not None:
            try:
                self.storage.bucket_exists("outcrop-readyz-probe")
            except StorageError as exc:
                problems.append(f"object storage unreachable: {exc}")
        if self.engine is not None and not self.engine.running.is_set():
            problems.append("engine is not running")
        return problems

    def start_dispatcher(self) -> Dispatcher:
        """Deliver events to the configured rules' targets (runs wherever an engine runs)."""
        s = self.settings
        rules = load_rules(
            s.event_rules, s.event_webhook_url, s.event_webhook_secret, s.allow_private_targets
        )
        outbox = OutboxStore(self.store, owner=f"events-{uuid.uuid4().hex[:12]}")
        self.dispatcher = Dispatcher(
            outbox,
            rules,
            DispatcherSettings(
                retry_window_s=s.event_retry_window_s,
                retry_base_s=s.event_retry_base_s,
                retry_max_s=s.event_retry_max_s,
                # long enough for one attempt at the slowest target (webhook timeout 10 s)
                lease_seconds=max(s.lease_seconds, 30.0),
                poll_interval_s=s.poll_interval_s,
                idle_poll_interval_s=s.idle_poll_interval_s,
                concurrency=s.event_concurrency,
            ),
            self.metrics,
        )
        self.dispatcher.start()
        self.store.event_listeners.append(self.dispatcher.wake)
        return self.dispatcher

    def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
        if self.dispatcher is not None:
            self.dispatcher.shutdown()
        if self.storage is not None:
            self.storage.close()
        self.db.dispose()
