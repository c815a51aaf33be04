"""openai-chat: OpenAI-style chat completions (gpt-oss on Bedrock and any compatible model).

"system" and "developer" messages become the request's system text, joined with "\n"; user and
assistant turns may repeat (OpenAI does not require alternation). `content` is a string or a list
of {"type": "text"} parts. max_completion_tokens wins over its alias max_tokens; without either
the backend's limit applies. `n` other than 1 is rejected. Ignored fields: stream, tools,
tool_choice, reasoning_effort, response_format, seed, user and any other unknown key.
Ranges follow OpenAI: temperature 0..2, top_p 0..1; `stop` is a string or a list of strings.
"""

from __future__ import annotations

import time
from typing import Any

from outcrop.formats import _fields as f
from outcrop.formats.base import ChatMessage, InferenceRequest, InferenceResponse

_SYSTEM_ROLES = frozenset({"system", "developer"})


class OpenAIChat:
    name = "openai-chat"

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        body = f.body_object(body)
        raw_messages = f.req_list(body, "messages")
        system: list[str] = []
        messages: list[ChatMessage] = []
        for i, raw in enumerate(raw_messages):
            path = f"messages.{i}"
            message = f.message_object(raw, path)
            role = message.get("role")
            if role is None:
                f.fail(f"{path}.role", "field required")
            if role not in _SYSTEM_ROLES and role != "user" and role != "assistant":
                f.fail(f"{path}.role", "must be one of 'system', 'developer', 'user', 'assistant'")
            if message.get("content") is None:
                f.fail(f"{path}.content", "field required")
            if role in _SYSTEM_ROLES:
                system.append(f.typed_text(message["content"], f"{path}.content", what="parts"))
            else:
                text = f.typed_text(message["content"], f"{path}.content", what="parts")
                messages.append(ChatMessage(role=role, text=text))
        n = body.get("n")
        if n is not None and (n != 1 or isinstance(n, bool)):
            f.fail("n", "only 1 is supported")
        max_tokens = f.opt_int(body, "max_completion_tokens", minimum=1)
        alias = f.opt_int(body, "max_tokens", minimum=1)
        return InferenceRequest(
            kind="chat",
            messages=tuple(messages),
            system="\n".join(system) if system else None,
            max_tokens=alias if max_tokens is None else max_tokens,
            temperature=f.opt_float(body, "temperature", low=0.0, high=2.0),
            top_p=f.opt_float(body, "top_p", low=0.0, high=1.0),
            stop_sequences=f.stop_list(body, "stop", allow_str=True),
        )

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        return {
            "id": "chatcmpl-" + f.response_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": response.text},
                    "finish_reason": "length" if response.stop_reason == "max_tokens" else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": response.input_tokens,
                "completion_tokens": response.output_tokens,
                "total_tokens": response.input_tokens + response.output_tokens,
            },
        }
