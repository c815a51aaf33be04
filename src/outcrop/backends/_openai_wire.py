"""OpenAI wire format: InferenceRequests as /v1 payloads, and /v1 answers as InferenceResponses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import httpx
import orjson

from outcrop.formats.base import InferenceRequest, InferenceResponse, StopReason

_SAMPLING = ("max_tokens", "temperature", "top_p", "top_k")  # sent under the same names
_DETAIL_CHARS = 500

T = TypeVar("T")


class Malformed(Exception):
    """A 2xx answer that is not the shape we expect; retried and finally reported as 502."""


def chat_payload(model: str, request: InferenceRequest) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    if request.kind == "completion":
        messages.append({"role": "user", "content": request.prompt or ""})
    else:
        messages.extend({"role": m.role, "content": m.text} for m in request.messages)
    return {"model": model, "messages": messages, **_sampling(request)}


def completion_payload(model: str, request: InferenceRequest) -> dict[str, Any]:
    return {"model": model, "prompt": request.prompt or "", **_sampling(request)}


def embeddings_payload(model: str, batch: Sequence[InferenceRequest]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "input": [request.input_text or "" for request in batch],
    }
    dimensions = batch[0].dimensions
    if dimensions is not None:
        payload["dimensions"] = dimensions
    return payload


def _sampling(request: InferenceRequest) -> dict[str, Any]:
    params = {name: getattr(request, name) for name in _SAMPLING}
    params = {name: value for name, value in params.items() if value is not None}
    if request.stop_sequences:
        params["stop"] = list(request.stop_sequences)
    return params


def text_response(request: InferenceRequest, chat: bool, body: Any) -> InferenceResponse:
    # Missing keys and wrong types raise here and are reported as a malformed answer.
    choice = body["choices"][0]
    text = (choice["message"]["content"] or "") if chat else choice["text"]  # null: tool calls
    if not isinstance(text, str):
        raise Malformed("the generated text is not a string")
    stop_reason: StopReason = "end_turn"
    stop_sequence = None
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason")  # vLLM: the stop string that ended generation, or null
    if finish == "length":
        stop_reason = "max_tokens"
    elif finish == "stop" and request.stop_sequences and isinstance(matched, str) and matched:
        stop_reason, stop_sequence = "stop_sequence", matched
    prompt_words = words(request.system) + words(request.prompt)
    prompt_words += sum(words(m.text) for m in request.messages)
    usage = body.get("usage")
    return InferenceResponse(
        text=text,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=_usage(usage, "prompt_tokens", prompt_words),
        output_tokens=_usage(usage, "completion_tokens", words(text)),
    )


def parse_embeddings(count: int, body: Any) -> tuple[list[tuple[float, ...]], int | None]:
    data = sorted(body["data"], key=lambda item: int(item["index"]))
    if [item["index"] for item in data] != list(range(count)):
        raise Malformed(f"expected embeddings with indices 0..{count - 1}")
    vectors = [tuple(float(x) for x in item["embedding"]) for item in data]
    return vectors, _usage(body.get("usage"), "prompt_tokens", None)


def split_tokens(total: int | None, counts: list[int]) -> list[int]:
    """Share a batch's token count among its inputs by word count (exact sum); words if unknown."""
    if total is None:
        return counts
    weight = sum(counts)
    if weight == 0:
        return [total if i == 0 else 0 for i in range(len(counts))]
    shares, previous, running = [], 0, 0
    for w in counts:
        running += w
        cumulative = round(total * running / weight)
        shares.append(cumulative - previous)
        previous = cumulative
    return shares


def unit(vector: tuple[float, ...]) -> tuple[float, ...]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0 or abs(norm - 1.0) <= 1e-6:
        return vector
    return tuple(x / norm for x in vector)


def _usage(usage: Any, key: str, fallback: T) -> int | T:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def words(text: str | None) -> int:
    return len(text.split()) if text else 0


def upstream_detail(response: httpx.Response) -> str:
    """The server's own error message: OpenAI's error.message, or detail/message, or the raw text."""
    try:
        body = orjson.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:_DETAIL_CHARS]
        for candidate in (error, body.get("detail"), body.get("message")):
            if isinstance(candidate, str):
                return candidate[:_DETAIL_CHARS]
    return response.text[:_DETAIL_CHARS] or response.reason_phrase
