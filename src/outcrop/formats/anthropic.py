"""anthropic-messages: Claude's InvokeModel body (Messages API, bedrock-2023-05-31).

Ignored fields: anthropic_beta, tools, tool_choice, metadata, thinking, and any other unknown key
(tools and thinking change nothing for a text-only backend; blocks in content are checked).
Ranges follow Bedrock's Claude parameters: temperature and top_p 0..1, top_k >= 0.
"""

from __future__ import annotations

from typing import Any

from outcrop.formats import _fields as f
from outcrop.formats.base import ChatMessage, InferenceRequest, InferenceResponse

ANTHROPIC_VERSION = "bedrock-2023-05-31"


class AnthropicMessages:
    name = "anthropic-messages"

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        body = f.body_object(body)
        if body.get("anthropic_version") != ANTHROPIC_VERSION:
            f.req_str(body, "anthropic_version")  # names a missing or non-string field first
            f.fail("anthropic_version", f"must be '{ANTHROPIC_VERSION}'")
        max_tokens = f.req_int(body, "max_tokens", minimum=1)
        raw_messages = f.req_list(body, "messages")
        messages: list[ChatMessage] = []
        expected: f.Role = "user"
        for i, raw in enumerate(raw_messages):
            # Fast path for the common shape (string content, roles in order); anything else
            # takes the full checks below, which name the offending field.
            if (
                type(raw) is dict
                and raw.get("role") == expected
                and type(raw.get("content")) is str
            ):
                messages.append(ChatMessage(expected, raw["content"]))
                expected = "assistant" if expected == "user" else "user"
                continue
            path = f"messages.{i}"
            message = f.message_object(raw, path)
            role = f.role_of(message, path)
            if message.get("content") is None:
                f.fail(f"{path}.content", "field required")
            text = f.typed_text(message["content"], f"{path}.content")
            if role != expected:
                f.fail(
                    f"{path}.role", f"must be '{expected}' (turns start with 'user' and alternate)"
                )
            messages.append(ChatMessage(role=role, text=text))
            expected = "assistant" if role == "user" else "user"
        system = body.get("system")
        return InferenceRequest(
            kind="chat",
            messages=tuple(messages),
            system=None if system is None else f.typed_text(system, "system"),
            max_tokens=max_tokens,
            temperature=f.opt_float(body, "temperature", low=0.0, high=1.0)
            if "temperature" in body
            else None,
            top_p=f.opt_float(body, "top_p", low=0.0, high=1.0) if "top_p" in body else None,
            top_k=f.opt_int(body, "top_k", minimum=0) if "top_k" in body else None,
            stop_sequences=f.stop_list(body, "stop_sequences") if "stop_sequences" in body else (),
        )

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        return {
            "id": "msg_" + f.response_id(),
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [{"type": "text", "text": response.text}],
            "stop_reason": response.stop_reason,
            "stop_sequence": (
                response.stop_sequence if response.stop_reason == "stop_sequence" else None
            ),
            "usage": {
                "input_tokens": response.input_tokens,
                "output_tokens": response.output_tokens,
            },
        }
