"""The internal request/response that every body family is parsed into and rendered from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

RequestKind = Literal["chat", "completion", "embedding"]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]


class FormatError(Exception):
    """A record's body does not fit its family: becomes a per-record error with errorCode 400.

    The message names the offending field (for example "messages.0.role: must be 'user'").
    """


# slots, not frozen: these are built for every record, and a frozen dataclass's __init__
# costs two to three times as much (object.__setattr__ per field).
@dataclass(slots=True)
class ChatMessage:
    role: Literal["user", "assistant"]
    text: str


@dataclass(slots=True)
class InferenceRequest:
    """One model call, independent of the body family it came from."""

    kind: RequestKind
    messages: tuple[ChatMessage, ...] = ()  # chat
    system: str | None = None  # chat
    prompt: str | None = None  # completion
    input_text: str | None = None  # embedding
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] = ()
    dimensions: int | None = None  # embedding
    normalize: bool = True  # embedding
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific fields a backend may use


@dataclass(slots=True)
class InferenceResponse:
    """One model answer; token counts are the backend's own."""

    text: str = ""
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    embedding: tuple[float, ...] | None = None
    latency_ms: int = 0


@dataclass(frozen=True)
class RecordError:
    """A per-record failure, written as {"error": {"errorCode": ..., "errorMessage": ...}}."""

    error_code: int
    message: str


class BodyFormat(Protocol):
    """One model family's InvokeModel (or Converse) body, both directions."""

    name: str

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        """Turn a record's modelInput into an InferenceRequest; raise FormatError if it does not fit."""
        ...

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        """Turn the backend's answer into the family's response body (the record's modelOutput)."""
        ...
