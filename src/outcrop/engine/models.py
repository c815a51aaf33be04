"""Resolve a job's modelId to its catalog entry, body format and (shared) backend instance."""

from __future__ import annotations

import threading

from outcrop.backends.base import Backend, CatalogError
from outcrop.backends.registry import create_backend
from outcrop.domain.catalog import BUILTIN_ENTRIES, Catalog, CatalogEntry
from outcrop.formats.base import BodyFormat
from outcrop.formats.registry import UnknownFormat, get_format


class ModelCatalog:
    """The catalog plus one backend instance per entry, created on first use and shared by jobs."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def check(self) -> list[str]:
        """Validate every entry at start: known backend and format, options accepted.

        A built-in entry whose optional dependencies are not installed is dropped (and named in
        the returned notes); a problem with a configured entry stops the start.
        """
        problems = []
        notes = []
        for entry in self.catalog.entries():
            if entry in BUILTIN_ENTRIES:
                try:
                    self.backend(entry)
                except CatalogError as exc:
                    self.catalog.remove(entry.model_id)
                    notes.append(f"built-in model {entry.model_id} is unavailable: {exc}")
                continue
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
        return notes

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

    def backends(self) -> dict[str, Backend]:
        with self._lock:
            return dict(self._backends)

    async def aclose(self) -> None:
        for backend in list(self._backends.values()):
            await backend.aclose()
        self._backends.clear()
