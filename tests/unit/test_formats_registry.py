"""The format registry, and fuzzing every family's parser with arbitrary JSON bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outcrop.backends.echo import answer
from outcrop.formats.base import FormatError, InferenceRequest, RecordError
from outcrop.formats.registry import FORMAT_NAMES, FORMATS, UnknownFormat, get_format

# One valid body per family (the spec's examples, shortened).
EXAMPLES: dict[str, dict[str, Any]] = {
    "anthropic-messages": {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 512,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "user", "content": [{"type": "text", "text": "Summarize: ..."}]},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 50,
        "stop_sequences": ["\n\nHuman:"],
    },
    "converse": {
        "system": [{"text": "You are terse."}],
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.2, "stopSequences": ["END"]},
        "additionalModelRequestFields": {},
    },
    "nova": {
        "schemaVersion": "messages-v1",
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
        "inferenceConfig": {"max_new_tokens": 512, "top_k": 20, "stopSequences": []},
    },
    "llama": {"prompt": "Tell me a joke", "max_gen_len": 128, "temperature": 0.5},
    "mistral": {"prompt": "<s>[INST] Hi [/INST]", "max_tokens": 256, "stop": ["</s>"]},
    "openai-chat": {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_completion_tokens": 512,
        "stop": [],
    },
    "titan-text": {
        "inputText": "Tell me a joke",
        "textGenerationConfig": {"maxTokenCount": 300, "stopSequences": ["User:"]},
    },
    "titan-embed": {"inputText": "hello", "dimensions": 512, "embeddingTypes": ["float"]},
}


def test_registry_names_every_family() -> None:
    assert set(FORMAT_NAMES) == set(EXAMPLES)
    for name in FORMAT_NAMES:
        assert get_format(name) is FORMATS[name]
        assert get_format(name).name == name


def test_unknown_format_is_a_value_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownFormat, match=r"unknown body format 'cohere'.*anthropic-messages"):
        get_format("cohere")
    assert issubclass(UnknownFormat, ValueError)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_round_trip_through_echo(name: str) -> None:
    fmt = get_format(name)
    request = fmt.parse(EXAMPLES[name])
    response = answer(request)
    assert not isinstance(response, RecordError)
    orjson.dumps(fmt.render(request, response, "some.model"))


# Keys the families look at, so that random bodies often reach the deeper checks.
FIELD_NAMES = sorted(
    {
        *(key for body in EXAMPLES.values() for key in body),
        *("maxTokens", "topP", "stopSequences", "max_new_tokens", "maxTokenCount", "max_tokens"),
        *("role", "content", "text", "type", "image", "cachePoint", "n", "images", "stop"),
    }
)
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=4)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.sampled_from(["user", "assistant", "system", "text", "bedrock-2023-05-31", "float"])
    | st.text(max_size=8)
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=16,
)


@st.composite
def mutated_example(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A spec example with one top-level field replaced, removed or added."""
    body = dict(EXAMPLES[name])
    key = draw(st.sampled_from(sorted(body)) | KEYS)
    if draw(st.booleans()):
        body.pop(key, None)
    else:
        body[key] = draw(VALUES)
    return body


def check_parse(name: str, body: Any) -> None:
    fmt = get_format(name)
    try:
        request = fmt.parse(body)
    except FormatError as error:
        path = str(error).split(":", 1)[0]
        assert path and " " not in path, f"message does not start with a field path: {error}"
        return
    assert isinstance(request, InferenceRequest)
    response = answer(request)
    if not isinstance(response, RecordError):
        orjson.dumps(fmt.render(request, response, "m"))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@settings(max_examples=150, deadline=None)
@given(body=VALUES)
def test_random_bodies_only_raise_format_error(name: str, body: Any) -> None:
    check_parse(name, body)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_examples_only_raise_format_error(name: str, data: st.DataObject) -> None:
    check_parse(name, data.draw(mutated_example(name)))
