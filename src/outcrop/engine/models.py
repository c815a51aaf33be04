"""Resolve a job's modelId to its catalog entry, body format and (shared) backend instance."""

from __future__ import annotations

import threading

from outcrop.backends.base import Backend, CatalogError
from outcrop.backends.registry import create_backend
from outcrop.domain.catalog import Catalog, CatalogEntry
from outcrop.formats.base import BodyFormat
from outcrop.formats.registry import UnknownFormat, get_format


class ModelCatalog:
    """The catalog plus one backend instance per entry, created on first use and shared by jobs."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def check(self) -> None:
        """Validate every entry at start: known backend and format, options accepted."""
        problems = []
        for entry in self.catalog.entries():
            try:
                get_format(entry.format)
            except UnknownFormat as exc:
                problems.append(f"{entry.model_id}: {exc}")
                continue
            try:
                self.backend(entry)
            except CatalogError as exc:
                problems.append(f"{entry.model_id}: {exc}")
        if problems:
            raise CatalogError("invalid model catalog: " + "; ".join(problems))

    def entry(self, model_id: str) -> CatalogEntry | None:
        return self.catalog.get(model_id)

    def body_format(self, entry: CatalogEntry, invocation_type: str) -> BodyFormat:
        return get_format(entry.format_for(invocation_type))

    def backend(self, entry: CatalogEntry) -> Backend:
        with self._lock:
            backend = self._backends.get(entry.model_id)
            if backend is None:
                backend = create_backend(entry.backend, entry.options)
                self._backends[entry.model_id] = backend
            return backend

    async def aclose(self) -> None:
        for backend in list(self._backends.values()):
            await backend.aclose()
        self._backends.clear()
