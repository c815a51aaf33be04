"""Builds the process's parts from Settings once: database, store, identity, API app, engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from starlette.types import ASGIApp

from outcrop.api.app import create_app
from outcrop.api.auth import SigV4Verifier
from outcrop.api.bedrock import BedrockApi, new_secret
from outcrop.api.pagination import CursorCodec
from outcrop.config import Settings
from outcrop.identity import Identity, ensure_root_identity
from outcrop.store.database import create_db_engine, migrate
from outcrop.store.sql import SqlJobStore


@dataclass
class Runtime:
    settings: Settings
    db: Engine
    store: SqlJobStore
    identity: Identity
    ready: bool = field(default=False)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = create_db_engine(settings.effective_database_url)
        migrate(db)
        store = SqlJobStore(db)
        identity = ensure_root_identity(settings, store)
        return cls(settings=settings, db=db, store=store, identity=identity)

    def asgi(self) -> ASGIApp:
        secret = self.store.meta_value("cursor_secret", new_secret)
        api = BedrockApi(
            store=self.store,
            region=self.settings.region,
            hour_seconds=self.settings.hour_seconds,
            cursors=CursorCodec(bytes.fromhex(secret)),
            max_active_jobs_per_account=self.settings.max_active_jobs_per_account,
            default_max_results=self.settings.default_max_results,
        )
        verifier = SigV4Verifier(self.store.find_access_key, self.settings.clock_skew_seconds)
        self.ready = True
        return create_app(api, verifier, ready=lambda: self.ready)

    def close(self) -> None:
        self.db.dispose()
