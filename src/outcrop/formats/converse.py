"""converse: the Converse request/response, used for any model when modelInvocationType is Converse.

Ignored fields: toolConfig, guardrailConfig, promptVariables, requestMetadata, performanceConfig,
additionalModelResponseFieldPaths and any other unknown key. `cachePoint` blocks are skipped (a
caching hint, no content). additionalModelRequestFields must be an object; it is passed to the
backend as `extra["additionalModelRequestFields"]`. Ranges follow Bedrock's InferenceConfiguration:
temperature and topP 0..1, maxTokens >= 1.
"""

from __future__ import annotations

from typing import Any

from outcrop.formats import _fields as f
from outcrop.formats.base import ChatMessage, InferenceRequest, InferenceResponse


def block_text(blocks: object, path: str) -> str:
    """Converse/Nova content: a list of {"text": ...} blocks, joined with "\n"."""
    if not isinstance(blocks, list):
        f.fail(path, "must be a list of content blocks")
    texts: list[str] = []
    for i, block in enumerate(blocks):
        block_path = f"{path}.{i}"
        if not isinstance(block, dict):
            f.fail(block_path, "must be an object")
        if "text" in block:
            texts.append(f.req_str(block, "text", block_path))
        elif "cachePoint" in block and len(block) == 1:
            continue
        elif not block:
            f.fail(block_path, "must not be empty")
        else:
            f.fail(block_path, f"only text blocks are supported, not '{next(iter(block))}'")
    return "\n".join(texts)


def parse_turns(body: dict[str, Any]) -> tuple[tuple[ChatMessage, ...], str | None]:
    """The `messages` and `system` of a Converse-shaped body (Converse and Nova share them)."""
    raw_messages = f.req_list(body, "messages")
    messages: list[ChatMessage] = []
    roles: list[tuple[str, f.Role]] = []
    for i, raw in enumerate(raw_messages):
        path = f"messages.{i}"
        message = f.message_object(raw, path)
        role = f.role_of(message, path)
        if message.get("content") is None:
            f.fail(f"{path}.content", "field required")
        roles.append((f"{path}.role", role))
        messages.append(
            ChatMessage(role=role, text=block_text(message["content"], f"{path}.content"))
        )
    f.alternating(roles)
    system = body.get("system")
    return tuple(messages), None if system is None else block_text(system, "system")


def render_turn(response: InferenceResponse, stop_reason: str) -> dict[str, Any]:
    """The output/stopReason/usage part that Converse and Nova responses share."""
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": response.text}]}},
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": response.input_tokens,
            "outputTokens": response.output_tokens,
            "totalTokens": response.input_tokens + response.output_tokens,
        },
    }


class Converse:
    name = "converse"

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        body = f.body_object(body)
        messages, system = parse_turns(body)
        config = f.opt_object(body, "inferenceConfig")
        prefix = "inferenceConfig"
        additional = f.opt_object(body, "additionalModelRequestFields")
        return InferenceRequest(
            kind="chat",
            messages=messages,
            system=system,
            max_tokens=f.opt_int(config, "maxTokens", prefix, minimum=1),
            temperature=f.opt_float(config, "temperature", prefix, low=0.0, high=1.0),
            top_p=f.opt_float(config, "topP", prefix, low=0.0, high=1.0),
            stop_sequences=f.stop_list(config, "stopSequences", prefix),
            extra={"additionalModelRequestFields": additional} if additional else {},
        )

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        rendered = render_turn(response, response.stop_reason)
        rendered["metrics"] = {"latencyMs": response.latency_ms}
        return rendered
