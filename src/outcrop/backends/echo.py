"""The echo backend: answers with the request's own text, deterministically, for tests and benchmarks.

A token is a whitespace-separated word (no tokenizer). Chat requests echo the last user turn,
completions echo the prompt; the answer is cut at the earliest stop sequence, then to max_tokens
words. Embeddings are unit vectors derived from a hash of the text, so equal texts embed equally.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import time
from collections.abc import Sequence
from typing import Any

from outcrop.backends.base import CatalogError
from outcrop.formats.base import InferenceRequest, InferenceResponse, RecordError, StopReason

DEFAULT_DIMENSIONS = 1024
ALLOWED_DIMENSIONS = (256, 384, 512, 1024)
_INT16_SCALE = 1.0 / 32768.0


class EchoBackend:
    max_batch_size = 64

    def __init__(self, latency_ms: int = 0, batch_size: int = 64) -> None:
        self.latency_ms = latency_ms
        # How many records one call answers; with latency_ms it models a remote server that
        # takes micro-batches (or, with 1, one request per record).
        self.max_batch_size = batch_size

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> EchoBackend:
        unknown = sorted(set(options) - {"latency_ms", "batch_size"})
        if unknown:
            raise CatalogError(f"backend 'echo' has no option '{unknown[0]}'")
        latency_ms = options.get("latency_ms", 0)
        if not isinstance(latency_ms, int) or isinstance(latency_ms, bool) or latency_ms < 0:
            raise CatalogError("backend 'echo' option 'latency_ms' must be an integer >= 0")
        batch_size = options.get("batch_size", 64)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise CatalogError("backend 'echo' option 'batch_size' must be an integer >= 1")
        return cls(latency_ms=latency_ms, batch_size=batch_size)

    async def invoke(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]:
        started = time.perf_counter()
        if self.latency_ms:
            # One simulated round trip per call, as a batched remote backend would cost.
            await asyncio.sleep(self.latency_ms / 1000)
        latency_ms = int((time.perf_counter() - started) * 1000)
        return [answer(request, latency_ms) for request in requests]

    async def aclose(self) -> None:
        return None


def answer(request: InferenceRequest, latency_ms: int = 0) -> InferenceResponse | RecordError:
    """The echo backend's answer to one request."""
    if request.kind == "embedding":
        return _embed(request, latency_ms)
    words: list[str] | None = None
    if request.kind == "chat":
        messages = request.messages
        text = ""
        for message in reversed(messages):
            if message.role == "user":
                text = message.text
                break
        if len(messages) == 1:  # the common single turn: split its text once for both counts
            words = text.split()
            input_tokens = len(words)
        else:
            input_tokens = sum(len(m.text.split()) for m in messages)
        if request.system:
            input_tokens += len(request.system.split())
    else:
        text = request.prompt or ""
        words = text.split()
        input_tokens = len(words)

    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    if request.stop_sequences:
        cut = len(text)
        for candidate in request.stop_sequences:
            index = text.find(candidate) if candidate else -1
            if 0 <= index < cut:
                cut, stop_sequence = index, candidate
        if stop_sequence is not None:
            text, stop_reason, words = text[:cut], "stop_sequence", None

    if words is None:
        words = text.split()
    limit = request.max_tokens
    if limit is not None and len(words) > limit:
        words = words[:limit]
        text, stop_reason, stop_sequence = " ".join(words), "max_tokens", None
    return InferenceResponse(
        text=text,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=input_tokens,
        output_tokens=len(words),
        latency_ms=latency_ms,
    )


def _embed(request: InferenceRequest, latency_ms: int) -> InferenceResponse | RecordError:
    dimensions = request.dimensions or DEFAULT_DIMENSIONS
    if dimensions not in ALLOWED_DIMENSIONS:
        allowed = ", ".join(map(str, ALLOWED_DIMENSIONS))
        return RecordError(400, f"dimensions: must be one of {allowed} for the echo backend")
    text = request.input_text or ""
    # SHAKE-256 is an extendable-output hash: any number of deterministic bytes in one C call.
    raw = hashlib.shake_256(text.encode()).digest(2 * dimensions)
    values = struct.unpack(f"<{dimensions}h", raw)
    if request.normalize:
        norm = math.hypot(*values) or 1.0
        vector = tuple(v / norm for v in values)
    else:
        vector = tuple(v * _INT16_SCALE for v in values)
    return InferenceResponse(
        input_tokens=len(text.split()),
        embedding=vector,
        latency_ms=latency_ms,
    )
