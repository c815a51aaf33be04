"""titan-text: Amazon Titan Text's (legacy) InvokeModel body.

Ignored fields: any unknown key, in the body or in textGenerationConfig. maxTokenCount defaults
to 512 as on Bedrock; temperature and topP range over 0..1.
"""

from __future__ import annotations

from typing import Any

from outcrop.formats import _fields as f
from outcrop.formats.base import InferenceRequest, InferenceResponse

DEFAULT_MAX_TOKEN_COUNT = 512

_COMPLETION_REASONS = {
    "end_turn": "FINISH",
    "max_tokens": "LENGTH",
    "stop_sequence": "STOP_CRITERIA_MET",
}


class TitanText:
    name = "titan-text"

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        body = f.body_object(body)
        prompt = f.req_str(body, "inputText")
        config = f.opt_object(body, "textGenerationConfig")
        prefix = "textGenerationConfig"
        max_tokens = f.opt_int(config, "maxTokenCount", prefix, minimum=1)
        return InferenceRequest(
            kind="completion",
            prompt=prompt,
            max_tokens=DEFAULT_MAX_TOKEN_COUNT if max_tokens is None else max_tokens,
            temperature=f.opt_float(config, "temperature", prefix, low=0.0, high=1.0),
            top_p=f.opt_float(config, "topP", prefix, low=0.0, high=1.0),
            stop_sequences=f.stop_list(config, "stopSequences", prefix),
        )

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        return {
            "inputTextTokenCount": response.input_tokens,
            "results": [
                {
                    "tokenCount": response.output_tokens,
                    "outputText": response.text,
                    "completionReason": _COMPLETION_REASONS[response.stop_reason],
                }
            ],
        }
