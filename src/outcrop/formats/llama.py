"""llama: Meta Llama's InvokeModel body, a raw prompt with generation limits.

Ignored fields: any unknown key. `images` (Llama 3.2 vision) is rejected when non-empty, since
backends here take text only. max_gen_len defaults to 512 as on Bedrock; temperature and top_p
range over 0..1. Llama has no stop sequences; stopping early renders as "stop".
"""

from __future__ import annotations

from typing import Any

from outcrop.formats import _fields as f
from outcrop.formats.base import InferenceRequest, InferenceResponse

DEFAULT_MAX_GEN_LEN = 512


class Llama:
    name = "llama"

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        body = f.body_object(body)
        prompt = f.req_str(body, "prompt")
        if body.get("images"):
            f.fail("images", "only text prompts are supported")
        max_gen_len = f.opt_int(body, "max_gen_len", minimum=1)
        return InferenceRequest(
            kind="completion",
            prompt=prompt,
            max_tokens=DEFAULT_MAX_GEN_LEN if max_gen_len is None else max_gen_len,
            temperature=f.opt_float(body, "temperature", low=0.0, high=1.0),
            top_p=f.opt_float(body, "top_p", low=0.0, high=1.0),
        )

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        return {
            "generation": response.text,
            "prompt_token_count": response.input_tokens,
            "generation_token_count": response.output_tokens,
            "stop_reason": "length" if response.stop_reason == "max_tokens" else "stop",
        }
