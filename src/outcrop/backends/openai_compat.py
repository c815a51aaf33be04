"""The `openai` backend: any OpenAI-compatible HTTP server (vLLM, llama.cpp server, Ollama, TGI)."""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson

from outcrop.backends._aimd import AIMDLimiter
from outcrop.backends._http import ShardedTransport
from outcrop.backends._openai_wire import (
    Malformed,
    chat_payload,
    completion_payload,
    embeddings_payload,
    parse_embeddings,
    split_tokens,
    text_response,
    unit,
    upstream_detail,
    words,
)
from outcrop.backends.base import CatalogError, int_options, require_option, timeout_option
from outcrop.formats.base import InferenceRequest, InferenceResponse, RecordError
from outcrop.netguard import ForbiddenAddress, check_url

NAME = "openai"
Endpoint = Literal["chat", "completions", "embeddings"]
_PATHS = {"chat": "chat/completions", "completions": "completions", "embeddings": "embeddings"}
_DEFAULT_ENDPOINT: dict[str, Endpoint] = {
    "chat": "chat",
    "completion": "completions",
    "embedding": "embeddings",
}
_INT_OPTIONS = {"max_concurrency": (16, 1), "max_retries": (5, 0)}  # name: (default, minimum)
_OPTIONS = frozenset(
    {"base_url", "model", "api_key_env", "max_concurrency", "timeout_s", "max_retries", "endpoint"}
)
# Injected by the model catalog from OUTCROP_ALLOW_PRIVATE_TARGETS, never written in a catalog.
ALLOW_PRIVATE_OPTION = "_allow_private"
EMBEDDING_BATCH = 32  # inputs per /v1/embeddings call; servers differ, 32 is accepted everywhere
RETRY_AFTER_CAP_S = 60.0
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_THROTTLE_STATUSES = frozenset({429, 503})
_JSON_HEADERS = {"content-type": "application/json"}

T = TypeVar("T")


@dataclass
class BackendStats:
    """Counters for metrics: HTTP attempts, retries, throttling answers (429/503), latency."""

    requests: int = 0
    retries: int = 0
    throttles: int = 0
    latency_sum_s: float = 0.0
    latency_count: int = 0

    @property
    def mean_latency_s(self) -> float:
        return self.latency_sum_s / self.latency_count if self.latency_count else 0.0


@dataclass(frozen=True)
class _Failure:
    """One failed attempt that may be retried."""

    status: int
    detail: str
    retry_after_s: float | None = None


class OpenAIBackend:
    """Sends InferenceRequests to an OpenAI-compatible server's /v1 API.

    Chat and completion requests are one HTTP call per record, run concurrently under an AIMD
    limiter (at most `max_concurrency` in flight, fewer while the server throttles); embedding
    requests are batched, up to 32 inputs per call. Failed attempts (429, 5xx, timeouts, dropped
    connections, malformed answers) are retried with jittered exponential backoff, honouring
    Retry-After; a record that runs out of retries becomes a RecordError with the upstream status.

    An unreachable server is a per-record error too (503), never BackendUnavailable: the backend
    cannot tell a restarting server from a dead one. `consecutive_connect_failures` counts
    connection attempts that failed in a row (reset by any HTTP answer) so the engine can decide
    when to give up on the whole job.

    The httpx client is created on first use inside the running event loop and bound to it;
    `aclose()` closes it (after which another loop may use the backend).
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        endpoint: Endpoint | None = None,
        backoff_base_s: float = 0.1,
        backoff_cap_s: float = 10.0,
        decrease_interval_s: float = 0.1,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.endpoint = endpoint
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        # Only embeddings are batched; a backend pinned to chat or completions takes one at a time.
        self.max_batch_size = 1 if endpoint in ("chat", "completions") else EMBEDDING_BATCH
        self.limiter = AIMDLimiter(max_concurrency, decrease_interval_s=decrease_interval_s)
        self.stats = BackendStats()
        self.consecutive_connect_failures = 0
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> OpenAIBackend:
        """Build from a catalog entry's options; raises CatalogError for anything invalid."""
        allow_private = options.pop(ALLOW_PRIVATE_OPTION, True)
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise CatalogError(f"backend '{NAME}' has unknown option(s): {', '.join(unknown)}")
        base_url = require_option(options, "base_url", str, NAME)
        try:
            # Like webhook URLs at load: literal addresses and localhost, no DNS lookup at start.
            check_url(base_url, allow_private=bool(allow_private), resolve=False)
        except ForbiddenAddress as exc:
            raise CatalogError(f"backend '{NAME}' option 'base_url': {exc}") from None
        model = require_option(options, "model", str, NAME)
        if not model:
            raise CatalogError(f"backend '{NAME}' option 'model' must not be empty")
        api_key = None
        if "api_key_env" in options:
            variable = require_option(options, "api_key_env", str, NAME)
            api_key = os.environ.get(variable)
            if not api_key:
                raise CatalogError(
                    f"backend '{NAME}' option 'api_key_env': environment variable {variable} is not set"
                )
        endpoint = options.get("endpoint")
        if endpoint is not None and endpoint not in _PATHS:
            raise CatalogError(
                f"backend '{NAME}' option 'endpoint' must be one of {sorted(_PATHS)}"
            )
        counts = int_options(options, _INT_OPTIONS, NAME)
        timeout_s = timeout_option(options, NAME)
        return cls(
            base_url=base_url,
            model=model,
            api_key=api_key,
            timeout_s=float(timeout_s),
            endpoint=endpoint,
            **counts,
        )

    async def invoke(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]:
        results: list[InferenceResponse | RecordError | None] = [None] * len(requests)
        calls: list[Coroutine[Any, Any, None]] = []
        embedding_groups: dict[int | None, list[int]] = {}
        for i, request in enumerate(requests):
            endpoint = self._endpoint_for(request)
            if isinstance(endpoint, RecordError):
                results[i] = endpoint
            elif endpoint == "embeddings":
                # `dimensions` is per call, so only requests that agree on it share a call.
                embedding_groups.setdefault(request.dimensions, []).append(i)
            else:
                calls.append(self._generate(i, request, endpoint, results))
        for indices in embedding_groups.values():
            for start in range(0, len(indices), EMBEDDING_BATCH):
                calls.append(
                    self._embed(indices[start : start + EMBEDDING_BATCH], requests, results)
                )
        if len(calls) == 1:
            await calls[0]
        elif calls:
            async with asyncio.TaskGroup() as group:
                for call in calls:
                    group.create_task(call)
        done = [result for result in results if result is not None]
        assert len(done) == len(requests), "every request gets a result"
        return done

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None
        self._loop = None

    def _endpoint_for(self, request: InferenceRequest) -> Endpoint | RecordError:
        natural = _DEFAULT_ENDPOINT[request.kind]
        # A prompt can go to a chat-only server as the user's turn; nothing else crosses over.
        if self.endpoint in (None, natural) or (natural, self.endpoint) == ("completions", "chat"):
            return self.endpoint or natural
        return RecordError(
            400,
            f"this model serves /v1/{_PATHS[self.endpoint]}, which cannot take a {request.kind} request",
        )

    async def _generate(
        self,
        index: int,
        request: InferenceRequest,
        endpoint: Endpoint,
        results: list[InferenceResponse | RecordError | None],
    ) -> None:
        chat = endpoint == "chat"
        payload = (chat_payload if chat else completion_payload)(self.model, request)
        outcome = await self._call(
            endpoint, payload, lambda body: text_response(request, chat, body)
        )
        if isinstance(outcome, RecordError):
            results[index] = outcome
        else:
            response, latency_s = outcome
            results[index] = replace(response, latency_ms=round(latency_s * 1000))

    async def _embed(
        self,
        indices: list[int],
        requests: Sequence[InferenceRequest],
        results: list[InferenceResponse | RecordError | None],
    ) -> None:
        batch = [requests[i] for i in indices]
        payload = embeddings_payload(self.model, batch)
        dimensions = batch[0].dimensions
        outcome = await self._call(
            "embeddings", payload, lambda body: parse_embeddings(len(batch), body)
        )
        if isinstance(outcome, RecordError):
            for i in indices:
                results[i] = outcome
            return
        (vectors, total_tokens), latency_s = outcome
        tokens = split_tokens(total_tokens, [words(r.input_text) for r in batch])
        for i, request, vector, count in zip(indices, batch, vectors, tokens, strict=True):
            if dimensions is not None and len(vector) != dimensions:
                results[i] = RecordError(
                    400, f"dimensions: requested {dimensions}, the model returned {len(vector)}"
                )
                continue
            if request.normalize:
                vector = unit(vector)
            results[i] = InferenceResponse(
                embedding=vector, input_tokens=count, latency_ms=round(latency_s * 1000)
            )

    def _client_here(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None:
            # The pools hold exactly the connections the limiter can use, so requests never queue
            # for a connection (which would count against their timeout).
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout_s),
                transport=ShardedTransport(self.max_concurrency),
            )
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "OpenAIBackend is bound to another event loop; aclose() it there first"
            )
        return self._client

    async def _call(
        self, endpoint: Endpoint, payload: dict[str, Any], parse: Callable[[Any], T]
    ) -> tuple[T, float] | RecordError:
        """POST with retries; returns the parsed answer and its latency, or the final error."""
        client = self._client_here()
        path = _PATHS[endpoint]
        body = orjson.dumps(payload)
        attempt = 0
        while True:
            outcome = await self._attempt(client, path, body, parse)
            if not isinstance(outcome, _Failure):
                return outcome
            if attempt >= self.max_retries:
                return RecordError(
                    outcome.status, f"{outcome.detail} (after {attempt + 1} attempts)"
                )
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(self._backoff_s(attempt, outcome.retry_after_s))

    async def _attempt(
        self, client: httpx.AsyncClient, path: str, body: bytes, parse: Callable[[Any], T]
    ) -> tuple[T, float] | RecordError | _Failure:
        async with self.limiter.slot() as slot:
            self.stats.requests += 1
            started = time.monotonic()
            try:
                response = await client.post(path, content=body, headers=_JSON_HEADERS)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                self.consecutive_connect_failures += 1
                return _Failure(503, f"cannot connect to {self.base_url}: {_describe(exc)}")
            except httpx.TimeoutException as exc:
                return _Failure(504, f"no answer within {self.timeout_s} s: {_describe(exc)}")
            except httpx.TransportError as exc:
                return _Failure(502, f"connection failed: {_describe(exc)}")
            latency_s = time.monotonic() - started
            self.consecutive_connect_failures = 0
            self.stats.latency_sum_s += latency_s
            self.stats.latency_count += 1
            status = response.status_code
            if 200 <= status < 300:
                try:
                    parsed = parse(orjson.loads(response.content))
                except (ValueError, LookupError, TypeError, AttributeError, Malformed) as exc:
                    return _Failure(502, f"upstream answered {status} with a malformed body: {exc}")
                slot.outcome = "ok"
                return parsed, latency_s
            detail = f"upstream {status}: {upstream_detail(response)}"
            if status in _THROTTLE_STATUSES:
                slot.outcome = "throttled"
                self.stats.throttles += 1
            if status in _RETRY_STATUSES:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                return _Failure(status, detail, retry_after)
            return RecordError(status if status >= 400 else 502, detail)

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        # Full jitter spreads the retries of records that failed together.
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(attempt - 1, 60))
        jittered = random.uniform(0.0, ceiling)
        return jittered if retry_after_s is None else max(retry_after_s, jittered)


def normalize_base_url(url: str) -> str:
    """'http://h:p' or 'http://h:p/v1' (trailing slash or not) -> 'http://h:p/v1'."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CatalogError(
            f"backend '{NAME}' option 'base_url' must be an http(s) URL, got {url!r}"
        )
    if parts.query or parts.fragment:
        raise CatalogError(f"backend '{NAME}' option 'base_url' must not have a query or fragment")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or HTTP-date), clamped to [0, 60]; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = [
    "BackendStats",
    "OpenAIBackend",
    "ShardedTransport",
    "normalize_base_url",
    "parse_retry_after",
]
