"""mistral: Mistral's text-completion InvokeModel body (prompt with [INST] markers).

Ignored fields: any unknown key. max_tokens defaults to 512 (Bedrock's default for Mistral 7B and
Mixtral); temperature and top_p range over 0..1; top_k >= 1 (Mistral's minimum).
"""

from __future__ import annotations

from typing import Any

from outcrop.formats import _fields as f
from outcrop.formats.base import InferenceRequest, InferenceResponse

DEFAULT_MAX_TOKENS = 512


class Mistral:
    name = "mistral"

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        body = f.body_object(body)
        prompt = f.req_str(body, "prompt")
        max_tokens = f.opt_int(body, "max_tokens", minimum=1)
        return InferenceRequest(
            kind="completion",
            prompt=prompt,
            max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            temperature=f.opt_float(body, "temperature", low=0.0, high=1.0),
            top_p=f.opt_float(body, "top_p", low=0.0, high=1.0),
            top_k=f.opt_int(body, "top_k", minimum=1),
            stop_sequences=f.stop_list(body, "stop"),
        )

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        reason = "length" if response.stop_reason == "max_tokens" else "stop"
        return {"outputs": [{"text": response.text, "stop_reason": reason}]}
