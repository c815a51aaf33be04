"""The backend seam: something that answers InferenceRequests (a local model, an HTTP server...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from outcrop.formats.base import InferenceRequest, InferenceResponse, RecordError


class CatalogError(Exception):
    """A catalog entry is invalid: unknown backend or format, missing or bad option."""


class Backend(Protocol):
    """A model backend. Implementations are created once per process per catalog entry.

    `invoke` receives at most `max_batch_size` requests (1 for backends that take one request per
    call) and returns one result per request, in order: a response, or a RecordError for that
    record alone. It raises only for faults that concern the whole backend (BackendUnavailable).
    """

    max_batch_size: int

    async def invoke(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]: ...

    async def aclose(self) -> None: ...


class BackendUnavailable(Exception):
    """The backend cannot be reached at all after its retry budget: a job-level failure."""


def require_option(options: dict[str, Any], name: str, kind: type, backend: str) -> Any:
    """Fetch a required catalog option, with a clear CatalogError when missing or mistyped."""
    if name not in options:
        raise CatalogError(f"backend '{backend}' needs option '{name}'")
    value = options[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CatalogError(f"backend '{backend}' option '{name}' must be {kind.__name__}")
    return value
