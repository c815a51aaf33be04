"""Bedrock runtime bodies: Converse parameters and InvokeModel bodies per model family, both ways."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outcrop.formats.base import InferenceRequest, InferenceResponse, StopReason

_CONVERSE_STOP: dict[str, StopReason] = {
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
}
# Llama and Mistral say "length", Titan "LENGTH" or "STOP_CRITERIA_MET"; anything else ended freely.
_FAMILY_STOP: dict[str, StopReason] = {
    "length": "max_tokens",
    "LENGTH": "max_tokens",
    "STOP_CRITERIA_MET": "stop_sequence",
}
_INPUT_TOKENS_HEADER = "x-amzn-bedrock-input-token-count"
_OUTPUT_TOKENS_HEADER = "x-amzn-bedrock-output-token-count"


class Malformed(Exception):
    """A successful answer that is not the shape we expect: reported as 502."""


def converse_params(model_id: str, request: InferenceRequest) -> dict[str, Any]:
    """The Converse call for a chat (or completion) request."""
    if request.kind == "chat":
        turns = [(m.role, m.text) for m in request.messages]
    else:
        turns = [("user", request.prompt or "")]
    params: dict[str, Any] = {
        "modelId": model_id,
        "messages": [{"role": role, "content": [{"text": text}]} for role, text in turns],
    }
    if request.system:
        params["system"] = [{"text": request.system}]
    config = _present(
        maxTokens=request.max_tokens,
        temperature=request.temperature,
        topP=request.top_p,
        stopSequences=list(request.stop_sequences) or None,
    )
    if config:
        params["inferenceConfig"] = config
    additional = dict(request.extra.get("additionalModelRequestFields") or {})
    if request.top_k is not None:
        additional.setdefault("top_k", request.top_k)
    if additional:
        params["additionalModelRequestFields"] = additional
    return params


def parse_converse_answer(
    request: InferenceRequest, answer: Mapping[str, Any]
) -> InferenceResponse:
    """A Converse response as an InferenceResponse (text blocks only)."""
    blocks = answer["output"]["message"]["content"]
    # Only text blocks carry the answer; reasoning or tool-use blocks are left out.
    text = "\n".join(block["text"] for block in blocks if "text" in block)
    stop_reason = _CONVERSE_STOP.get(answer["stopReason"], "end_turn")
    stop_sequence = None
    if stop_reason == "stop_sequence":
        extra = answer.get("additionalModelResponseFields") or {}
        matched = extra.get("stop_sequence") if isinstance(extra, dict) else None
        if isinstance(matched, str):
            stop_sequence = matched
        elif len(request.stop_sequences) == 1:
            stop_sequence = request.stop_sequences[0]
    usage = answer["usage"]
    return InferenceResponse(
        text=text,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=int(usage["inputTokens"]),
        output_tokens=int(usage["outputTokens"]),
    )


def invoke_body(family: str, request: InferenceRequest) -> dict[str, Any]:
    """The InvokeModel request body of `family` for a completion or embedding request."""
    if family == "titan-embed":
        return _present(
            inputText=request.input_text or "",
            dimensions=request.dimensions,
            normalize=request.normalize,
        )
    prompt = request.prompt or ""
    stops = list(request.stop_sequences) or None
    if family == "llama":  # Llama takes no stop sequences
        return _present(
            prompt=prompt,
            max_gen_len=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
        )
    if family == "mistral":
        return _present(
            prompt=prompt,
            max_tokens=request.max_tokens,
            stop=stops,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
        )
    config = _present(
        maxTokenCount=request.max_tokens,
        temperature=request.temperature,
        topP=request.top_p,
        stopSequences=stops,
    )
    return (
        {"inputText": prompt, "textGenerationConfig": config} if config else {"inputText": prompt}
    )


def parse_invoke_answer(
    family: str, request: InferenceRequest, body: dict[str, Any], headers: Mapping[str, str]
) -> InferenceResponse:
    """The family's InvokeModel response body as an InferenceResponse.

    Token counts come from the body where the family reports them, else from the headers that
    InvokeModel adds for every model (Mistral's body has none).
    """
    if family == "titan-embed":
        vector = tuple(float(x) for x in body["embedding"])
        return InferenceResponse(
            embedding=vector,
            input_tokens=_count(body.get("inputTextTokenCount"), headers, _INPUT_TOKENS_HEADER),
        )
    if family == "llama":
        text, reason = body["generation"], body.get("stop_reason")
        input_count, output_count = (
            body.get("prompt_token_count"),
            body.get("generation_token_count"),
        )
    elif family == "mistral":
        output = body["outputs"][0]
        text, reason = output["text"], output.get("stop_reason")
        input_count = output_count = None
    else:
        result = body["results"][0]
        text, reason = result["outputText"], result.get("completionReason")
        input_count, output_count = body.get("inputTextTokenCount"), result.get("tokenCount")
    if not isinstance(text, str):
        raise Malformed("the generated text is not a string")
    stop_reason = _FAMILY_STOP.get(str(reason), "end_turn")
    stop_sequence = None
    if stop_reason == "stop_sequence" and len(request.stop_sequences) == 1:
        stop_sequence = request.stop_sequences[0]  # the body does not say which one matched
    return InferenceResponse(
        text=text,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=_count(input_count, headers, _INPUT_TOKENS_HEADER),
        output_tokens=_count(output_count, headers, _OUTPUT_TOKENS_HEADER),
    )


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _count(value: Any, headers: Mapping[str, str], header: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(headers.get(header, ""))
    except ValueError:
        return 0
