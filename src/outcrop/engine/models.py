"""Resolve a job's modelId to its catalog entry, body format and (shared) backend instance."""

from __future__ import annotations

import threading

from outcrop.backends.base import Backend, CatalogError
from outcrop.backends.registry import create_backend
from outcrop.domain.catalog import BUILTIN_ENTRIES, Catalog, CatalogEntry
from outcrop.formats.base import BodyFormat
from outcrop.formats.registry import UnknownFormat, get_format

# Backends that call a URL from their options, and take the private-address policy with them.
_NETWORK_BACKENDS = {"openai": "_allow_private"}


class ModelCatalog:
    """The catalog plus one backend instance per entry, created on first use and shared by jobs.

    `allow_private` (OUTCROP_ALLOW_PRIVATE_TARGETS) is handed to backends that call a configured
    URL, so a model server at a private or loopback address is refused like a webhook target.
    """

    def __init__(self, catalog: Catalog, allow_private: bool = True) -> None:
        self.catalog = catalog
        self.allow_private = allow_private
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
                options = dict(entry.options)
                if entry.backend in _NETWORK_BACKENDS:
                    options[_NETWORK_BACKENDS[entry.backend]] = self.allow_private
                backend = create_backend(entry.backend, options)
                self._backends[entry.model_id] = backend
            return backend

    def backends(self) -> dict[str, Backend]:
        with self._lock:
            return dict(self._backends)

    async def aclose(self) -> None:
        for backend in list(self._backends.values()):
            await backend.aclose()
        self._backends.clear()
