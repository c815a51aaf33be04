"""Prompt and embedding body families: llama, mistral, titan-text and titan-embed."""

from __future__ import annotations

from typing import Any

import pytest

from outcrop.formats.base import FormatError, InferenceRequest, InferenceResponse
from outcrop.formats.llama import Llama
from outcrop.formats.mistral import Mistral
from outcrop.formats.titan_embed import TitanEmbed
from outcrop.formats.titan_text import TitanText

LLAMA_EXAMPLE = {"prompt": "Tell me a joke", "max_gen_len": 128, "temperature": 0.5, "top_p": 0.9}
MISTRAL_EXAMPLE = {
    "prompt": "<s>[INST] Tell me a joke [/INST]",
    "max_tokens": 256,
    "stop": ["</s>"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 50,
}
TITAN_TEXT_EXAMPLE = {
    "inputText": "Tell me a joke",
    "textGenerationConfig": {
        "maxTokenCount": 300,
        "temperature": 0.7,
        "topP": 0.9,
        "stopSequences": ["User:"],
    },
}
TITAN_EMBED_EXAMPLE = {
    "inputText": "hello world",
    "dimensions": 512,
    "normalize": False,
    "embeddingTypes": ["float"],
}

DONE = InferenceResponse(text="Why not", input_tokens=4, output_tokens=2)
CUT = InferenceResponse(text="Why", stop_reason="max_tokens", input_tokens=4, output_tokens=1)
STOPPED = InferenceResponse(
    text="Why", stop_reason="stop_sequence", stop_sequence="User:", input_tokens=4, output_tokens=1
)


def test_llama_parse_and_default() -> None:
    assert Llama().parse(LLAMA_EXAMPLE) == InferenceRequest(
        kind="completion", prompt="Tell me a joke", max_tokens=128, temperature=0.5, top_p=0.9
    )
    assert Llama().parse({"prompt": "x", "extra": 1}).max_tokens == 512


def test_llama_render() -> None:
    request = Llama().parse(LLAMA_EXAMPLE)
    assert Llama().render(request, DONE, "meta.llama3-8b-instruct-v1:0") == {
        "generation": "Why not",
        "prompt_token_count": 4,
        "generation_token_count": 2,
        "stop_reason": "stop",
    }
    assert Llama().render(request, CUT, "m")["stop_reason"] == "length"
    assert Llama().render(request, STOPPED, "m")["stop_reason"] == "stop"


def test_mistral_parse_and_default() -> None:
    assert Mistral().parse(MISTRAL_EXAMPLE) == InferenceRequest(
        kind="completion",
        prompt="<s>[INST] Tell me a joke [/INST]",
        max_tokens=256,
        temperature=0.5,
        top_p=0.9,
        top_k=50,
        stop_sequences=("</s>",),
    )
    assert Mistral().parse({"prompt": "x"}).max_tokens == 512


def test_mistral_render() -> None:
    request = Mistral().parse(MISTRAL_EXAMPLE)
    assert Mistral().render(request, DONE, "m") == {
        "outputs": [{"text": "Why not", "stop_reason": "stop"}]
    }
    assert Mistral().render(request, CUT, "m")["outputs"][0]["stop_reason"] == "length"


def test_titan_text_parse_and_default() -> None:
    assert TitanText().parse(TITAN_TEXT_EXAMPLE) == InferenceRequest(
        kind="completion",
        prompt="Tell me a joke",
        max_tokens=300,
        temperature=0.7,
        top_p=0.9,
        stop_sequences=("User:",),
    )
    assert TitanText().parse({"inputText": "x"}).max_tokens == 512


def test_titan_text_render() -> None:
    request = TitanText().parse(TITAN_TEXT_EXAMPLE)
    assert TitanText().render(request, DONE, "m") == {
        "inputTextTokenCount": 4,
        "results": [{"tokenCount": 2, "outputText": "Why not", "completionReason": "FINISH"}],
    }
    reasons = [
        TitanText().render(request, r, "m")["results"][0]["completionReason"]
        for r in (CUT, STOPPED)
    ]
    assert reasons == ["LENGTH", "STOP_CRITERIA_MET"]


def test_titan_embed_parse_and_defaults() -> None:
    assert TitanEmbed().parse(TITAN_EMBED_EXAMPLE) == InferenceRequest(
        kind="embedding", input_text="hello world", dimensions=512, normalize=False
    )
    request = TitanEmbed().parse({"inputText": "x"})
    assert (request.dimensions, request.normalize) == (None, True)


def test_titan_embed_render() -> None:
    request = TitanEmbed().parse(TITAN_EMBED_EXAMPLE)
    response = InferenceResponse(embedding=(0.6, 0.8), input_tokens=2)
    assert TitanEmbed().render(request, response, "amazon.titan-embed-text-v2:0") == {
        "embedding": [0.6, 0.8],
        "inputTextTokenCount": 2,
        "embeddingsByType": {"float": [0.6, 0.8]},
    }


INVALID: list[tuple[Any, dict[str, Any], str]] = [
    (Llama(), {}, "prompt: field required"),
    (Llama(), {"prompt": 1}, "prompt: must be a string"),
    (Llama(), {"prompt": "x", "max_gen_len": 0}, "max_gen_len: must be an integer >= 1"),
    (Llama(), {"prompt": "x", "max_gen_len": 1.5}, "max_gen_len: must be an integer >= 1"),
    (Llama(), {"prompt": "x", "temperature": 1.2}, "temperature: must be a number between 0 and 1"),
    (Llama(), {"prompt": "x", "top_p": "high"}, "top_p: must be a number between 0 and 1"),
    (Llama(), {"prompt": "x", "images": ["aGk="]}, "images: only text prompts are supported"),
    (Mistral(), {"max_tokens": 5}, "prompt: field required"),
    (Mistral(), {"prompt": "x", "max_tokens": False}, "max_tokens: must be an integer >= 1"),
    (Mistral(), {"prompt": "x", "top_k": 0}, "top_k: must be an integer >= 1"),
    (Mistral(), {"prompt": "x", "stop": "END"}, "stop: must be a list of strings"),
    (Mistral(), {"prompt": "x", "stop": [""]}, "stop.0: must not be empty"),
    (TitanText(), {"textGenerationConfig": {}}, "inputText: field required"),
    (
        TitanText(),
        {"inputText": "x", "textGenerationConfig": 3},
        "textGenerationConfig: must be an object",
    ),
    (
        TitanText(),
        {"inputText": "x", "textGenerationConfig": {"maxTokenCount": -1}},
        "textGenerationConfig.maxTokenCount: must be an integer >= 1",
    ),
    (
        TitanText(),
        {"inputText": "x", "textGenerationConfig": {"topP": 7}},
        "textGenerationConfig.topP: must be a number between 0 and 1",
    ),
    (
        TitanText(),
        {"inputText": "x", "textGenerationConfig": {"stopSequences": [3]}},
        "textGenerationConfig.stopSequences.0: must be a string",
    ),
    (TitanEmbed(), {}, "inputText: field required"),
    (TitanEmbed(), {"inputText": ""}, "inputText: must not be empty"),
    (TitanEmbed(), {"inputText": "x", "dimensions": 0}, "dimensions: must be an integer >= 1"),
    (TitanEmbed(), {"inputText": "x", "dimensions": "256"}, "dimensions: must be an integer"),
    (TitanEmbed(), {"inputText": "x", "normalize": "yes"}, "normalize: must be a boolean"),
    (TitanEmbed(), {"inputText": "x", "embeddingTypes": "float"}, "embeddingTypes: must be a list"),
    (
        TitanEmbed(),
        {"inputText": "x", "embeddingTypes": ["float", "binary"]},
        "embeddingTypes.1: 'binary' embeddings are not supported",
    ),
    (
        TitanEmbed(),
        {"inputText": "x", "embeddingTypes": ["int8"]},
        "embeddingTypes.0: must be 'float'",
    ),
]


@pytest.mark.parametrize(("fmt", "body", "message"), INVALID)
def test_rejects(fmt: Any, body: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError) as caught:
        fmt.parse(body)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("fmt", [Llama(), Mistral(), TitanText(), TitanEmbed()])
def test_rejects_non_object_body(fmt: Any) -> None:
    with pytest.raises(FormatError, match=r"^modelInput: must be a JSON object"):
        fmt.parse(["prompt"])
