"""The backend seam: something that answers InferenceRequests (a local model, an HTTP server...)."""

from __future__ import annotations

import math
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


def int_options(
    options: dict[str, Any], spec: dict[str, tuple[int, int]], backend: str
) -> dict[str, int]:
    """Integer options with their defaults, each checked against its minimum: {name: (default, min)}."""
    values = {name: options.get(name, default) for name, (default, _) in spec.items()}
    for name, value in values.items():
        if type(value) is not int or value < spec[name][1]:
            raise CatalogError(
                f"backend '{backend}' option '{name}' must be an int >= {spec[name][1]}"
            )
    return values


def timeout_option(options: dict[str, Any], backend: str, default: float = 60.0) -> float:
    timeout_s = options.get("timeout_s", default)
    if type(timeout_s) not in (int, float) or not 0 < timeout_s < math.inf:
        raise CatalogError(f"backend '{backend}' option 'timeout_s' must be a number > 0")
    return float(timeout_s)
