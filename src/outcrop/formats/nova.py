"""nova: Amazon Nova's InvokeModel body (messages-v1), Converse-shaped with snake_case limits.

Ignored fields: toolConfig and any other unknown key. `schemaVersion` may be omitted; when given
it must be "messages-v1". Without max_new_tokens the backend's own limit applies (Nova's default is
the model's maximum). Ranges follow Nova's docs: temperature and top_p 0..1, top_k >= 0.
Stopping on a stop sequence renders as "end_turn", Nova's only other stop reason.
"""

from __future__ import annotations

from typing import Any

from outcrop.formats import _fields as f
from outcrop.formats.base import InferenceRequest, InferenceResponse
from outcrop.formats.converse import parse_turns, render_turn

SCHEMA_VERSION = "messages-v1"


class Nova:
    name = "nova"

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        body = f.body_object(body)
        version = body.get("schemaVersion")
        if version is not None and version != SCHEMA_VERSION:
            f.fail("schemaVersion", f"must be '{SCHEMA_VERSION}'")
        messages, system = parse_turns(body)
        config = f.opt_object(body, "inferenceConfig")
        prefix = "inferenceConfig"
        return InferenceRequest(
            kind="chat",
            messages=messages,
            system=system,
            max_tokens=f.opt_int(config, "max_new_tokens", prefix, minimum=1),
            temperature=f.opt_float(config, "temperature", prefix, low=0.0, high=1.0),
            top_p=f.opt_float(config, "top_p", prefix, low=0.0, high=1.0),
            top_k=f.opt_int(config, "top_k", prefix, minimum=0),
            stop_sequences=f.stop_list(config, "stopSequences", prefix),
        )

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        return render_turn(
            response, "max_tokens" if response.stop_reason == "max_tokens" else "end_turn"
        )
