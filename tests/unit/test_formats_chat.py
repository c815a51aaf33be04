"""Chat body families: anthropic-messages, converse and nova (openai-chat has its own file)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from outcrop.formats.anthropic import AnthropicMessages
from outcrop.formats.base import ChatMessage, FormatError, InferenceRequest, InferenceResponse
from outcrop.formats.converse import Converse
from outcrop.formats.nova import Nova

ANTHROPIC_EXAMPLE: dict[str, Any] = {
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
}

CONVERSE_EXAMPLE: dict[str, Any] = {
    "system": [{"text": "You are terse."}],
    "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
    "inferenceConfig": {
        "maxTokens": 512,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    },
    "additionalModelRequestFields": {},
}

NOVA_EXAMPLE: dict[str, Any] = {
    "schemaVersion": "messages-v1",
    "system": [{"text": "Be brief."}],
    "messages": [{"role": "user", "content": [{"text": "Hello"}, {"text": "there"}]}],
    "inferenceConfig": {
        "max_new_tokens": 512,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "stopSequences": [],
    },
}

RESPONSE = InferenceResponse(
    text="Hi there", input_tokens=5, output_tokens=2, latency_ms=120, stop_reason="end_turn"
)
STOPPED = InferenceResponse(
    text="Hi", stop_reason="stop_sequence", stop_sequence="END", input_tokens=5, output_tokens=1
)
CUT = InferenceResponse(text="Hi", stop_reason="max_tokens", input_tokens=5, output_tokens=1)


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = dict(base)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


# anthropic-messages


def test_anthropic_parses_spec_example() -> None:
    request = AnthropicMessages().parse(ANTHROPIC_EXAMPLE)
    assert request == InferenceRequest(
        kind="chat",
        messages=(
            ChatMessage("user", "Hello"),
            ChatMessage("assistant", "Hi"),
            ChatMessage("user", "Summarize: ..."),
        ),
        system="You are terse.",
        max_tokens=512,
        temperature=0.2,
        top_p=0.9,
        top_k=50,
        stop_sequences=("\n\nHuman:",),
    )


def test_anthropic_joins_text_blocks_and_system_blocks() -> None:
    body = with_(
        ANTHROPIC_EXAMPLE,
        system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}],
            }
        ],
        tools=[{"name": "ignored"}],
    )
    request = AnthropicMessages().parse(body)
    assert request.system == "a\nb"
    assert request.messages == (ChatMessage("user", "x\ny"),)


def test_anthropic_optional_fields_absent_or_null() -> None:
    body = with_(
        ANTHROPIC_EXAMPLE, system=..., temperature=None, top_p=..., top_k=..., stop_sequences=...
    )
    request = AnthropicMessages().parse(body)
    assert request.system is None
    assert (request.temperature, request.top_p, request.top_k) == (None, None, None)
    assert request.stop_sequences == ()


def test_anthropic_accepts_integer_temperature() -> None:
    request = AnthropicMessages().parse(with_(ANTHROPIC_EXAMPLE, temperature=1))
    assert request.temperature == 1.0
    assert isinstance(request.temperature, float)


def test_anthropic_render_shape() -> None:
    request = AnthropicMessages().parse(ANTHROPIC_EXAMPLE)
    out = AnthropicMessages().render(request, RESPONSE, "anthropic.claude-3-haiku")
    assert re.fullmatch(r"msg_[0-9a-f]{24}", out.pop("id"))
    assert out == {
        "type": "message",
        "role": "assistant",
        "model": "anthropic.claude-3-haiku",
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }
    stopped = AnthropicMessages().render(request, STOPPED, "m")
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", "END")
    assert AnthropicMessages().render(request, CUT, "m")["stop_reason"] == "max_tokens"


ANTHROPIC_INVALID: list[tuple[dict[str, Any], str]] = [
    (with_(ANTHROPIC_EXAMPLE, anthropic_version=...), "anthropic_version: field required"),
    (with_(ANTHROPIC_EXAMPLE, anthropic_version="2023-01-01"), "anthropic_version: must be"),
    (with_(ANTHROPIC_EXAMPLE, max_tokens=...), "max_tokens: field required"),
    (with_(ANTHROPIC_EXAMPLE, max_tokens=0), "max_tokens: must be an integer >= 1"),
    (with_(ANTHROPIC_EXAMPLE, max_tokens=True), "max_tokens: must be an integer"),
    (with_(ANTHROPIC_EXAMPLE, max_tokens=5.0), "max_tokens: must be an integer"),
    (with_(ANTHROPIC_EXAMPLE, messages=...), "messages: field required"),
    (with_(ANTHROPIC_EXAMPLE, messages=[]), "messages: must not be empty"),
    (with_(ANTHROPIC_EXAMPLE, messages="hi"), "messages: must be a list"),
    (with_(ANTHROPIC_EXAMPLE, messages=["hi"]), "messages.0: must be an object"),
    (
        with_(ANTHROPIC_EXAMPLE, messages=[{"role": "assistant", "content": "x"}]),
        "messages.0.role: must be 'user'",
    ),
    (
        with_(
            ANTHROPIC_EXAMPLE,
            messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        ),
        "messages.1.role: must be 'assistant'",
    ),
    (
        with_(ANTHROPIC_EXAMPLE, messages=[{"role": "system", "content": "x"}]),
        "messages.0.role: must be 'user' or 'assistant'",
    ),
    (with_(ANTHROPIC_EXAMPLE, messages=[{"content": "x"}]), "messages.0.role: field required"),
    (with_(ANTHROPIC_EXAMPLE, messages=[{"role": "user"}]), "messages.0.content: field required"),
    (
        with_(ANTHROPIC_EXAMPLE, messages=[{"role": "user", "content": 3}]),
        "messages.0.content: must be a string or a list of text blocks",
    ),
    (
        with_(
            ANTHROPIC_EXAMPLE,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "image", "source": {}}],
                }
            ],
        ),
        "messages.0.content.1.type: only text blocks are supported",
    ),
    (
        with_(ANTHROPIC_EXAMPLE, messages=[{"role": "user", "content": [{"type": "tool_use"}]}]),
        "messages.0.content.0.type: only text blocks are supported",
    ),
    (
        with_(ANTHROPIC_EXAMPLE, messages=[{"role": "user", "content": [{"type": "text"}]}]),
        "messages.0.content.0.text: field required",
    ),
    (
        with_(ANTHROPIC_EXAMPLE, messages=[{"role": "user", "content": [{"text": "x"}]}]),
        "messages.0.content.0.type: field required",
    ),
    (with_(ANTHROPIC_EXAMPLE, system=5), "system: must be a string or a list of text blocks"),
    (
        with_(ANTHROPIC_EXAMPLE, system=[{"type": "document"}]),
        "system.0.type: only text blocks are supported",
    ),
    (with_(ANTHROPIC_EXAMPLE, temperature=1.5), "temperature: must be a number between 0 and 1"),
    (with_(ANTHROPIC_EXAMPLE, temperature="0.5"), "temperature: must be a number"),
    (with_(ANTHROPIC_EXAMPLE, temperature=False), "temperature: must be a number"),
    (with_(ANTHROPIC_EXAMPLE, top_p=-0.1), "top_p: must be a number between 0 and 1"),
    (with_(ANTHROPIC_EXAMPLE, top_k=-1), "top_k: must be an integer >= 0"),
    (with_(ANTHROPIC_EXAMPLE, stop_sequences="END"), "stop_sequences: must be a list of strings"),
    (with_(ANTHROPIC_EXAMPLE, stop_sequences=["a", 1]), "stop_sequences.1: must be a string"),
    (with_(ANTHROPIC_EXAMPLE, stop_sequences=[""]), "stop_sequences.0: must not be empty"),
]


@pytest.mark.parametrize(("body", "message"), ANTHROPIC_INVALID)
def test_anthropic_rejects(body: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError) as caught:
        AnthropicMessages().parse(body)
    assert str(caught.value).startswith(message)


# converse


def test_converse_parses_spec_example() -> None:
    request = Converse().parse(CONVERSE_EXAMPLE)
    assert request == InferenceRequest(
        kind="chat",
        messages=(ChatMessage("user", "Hello"),),
        system="You are terse.",
        max_tokens=512,
        temperature=0.2,
        top_p=0.9,
        stop_sequences=("END",),
    )


def test_converse_optional_config_and_extras() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"text": "a"}, {"cachePoint": {"type": "default"}}]},
            {"role": "assistant", "content": [{"text": "b"}]},
        ],
        "additionalModelRequestFields": {"top_k": 5},
        "toolConfig": {"tools": []},
    }
    request = Converse().parse(body)
    assert request.messages == (ChatMessage("user", "a"), ChatMessage("assistant", "b"))
    assert request.system is None
    assert request.max_tokens is None
    assert request.extra == {"additionalModelRequestFields": {"top_k": 5}}


def test_converse_render_shape() -> None:
    request = Converse().parse(CONVERSE_EXAMPLE)
    assert Converse().render(request, RESPONSE, "m") == {
        "output": {"message": {"role": "assistant", "content": [{"text": "Hi there"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
        "metrics": {"latencyMs": 120},
    }
    assert Converse().render(request, STOPPED, "m")["stopReason"] == "stop_sequence"
    assert Converse().render(request, CUT, "m")["stopReason"] == "max_tokens"


CONVERSE_INVALID: list[tuple[dict[str, Any], str]] = [
    ({}, "messages: field required"),
    (with_(CONVERSE_EXAMPLE, messages=[]), "messages: must not be empty"),
    (
        with_(CONVERSE_EXAMPLE, messages=[{"role": "user", "content": "Hello"}]),
        "messages.0.content: must be a list of content blocks",
    ),
    (
        with_(
            CONVERSE_EXAMPLE,
            messages=[{"role": "user", "content": [{"text": "a"}, {"image": {"format": "png"}}]}],
        ),
        "messages.0.content.1: only text blocks are supported, not 'image'",
    ),
    (
        with_(CONVERSE_EXAMPLE, messages=[{"role": "user", "content": [{"text": 1}]}]),
        "messages.0.content.0.text: must be a string",
    ),
    (
        with_(
            CONVERSE_EXAMPLE,
            messages=[
                {"role": "user", "content": [{"text": "a"}]},
                {"role": "user", "content": [{"text": "b"}]},
            ],
        ),
        "messages.1.role: must be 'assistant'",
    ),
    (with_(CONVERSE_EXAMPLE, system="x"), "system: must be a list of content blocks"),
    (
        with_(CONVERSE_EXAMPLE, system=[{"guardContent": {}}]),
        "system.0: only text blocks are supported",
    ),
    (with_(CONVERSE_EXAMPLE, inferenceConfig=[]), "inferenceConfig: must be an object"),
    (
        with_(CONVERSE_EXAMPLE, inferenceConfig={"maxTokens": 0}),
        "inferenceConfig.maxTokens: must be an integer >= 1",
    ),
    (
        with_(CONVERSE_EXAMPLE, inferenceConfig={"temperature": 2}),
        "inferenceConfig.temperature: must be a number between 0 and 1",
    ),
    (
        with_(CONVERSE_EXAMPLE, inferenceConfig={"topP": 1.01}),
        "inferenceConfig.topP: must be a number between 0 and 1",
    ),
    (
        with_(CONVERSE_EXAMPLE, inferenceConfig={"stopSequences": [None]}),
        "inferenceConfig.stopSequences.0: must be a string",
    ),
    (
        with_(CONVERSE_EXAMPLE, additionalModelRequestFields="x"),
        "additionalModelRequestFields: must be an object",
    ),
]


@pytest.mark.parametrize(("body", "message"), CONVERSE_INVALID)
def test_converse_rejects(body: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError) as caught:
        Converse().parse(body)
    assert str(caught.value).startswith(message)


# nova


def test_nova_parses_example() -> None:
    request = Nova().parse(NOVA_EXAMPLE)
    assert request == InferenceRequest(
        kind="chat",
        messages=(ChatMessage("user", "Hello\nthere"),),
        system="Be brief.",
        max_tokens=512,
        temperature=0.7,
        top_p=0.9,
        top_k=20,
    )


def test_nova_schema_version_and_config_are_optional() -> None:
    request = Nova().parse({"messages": [{"role": "user", "content": [{"text": "x"}]}]})
    assert request.max_tokens is None
    assert request.messages == (ChatMessage("user", "x"),)


def test_nova_render_shape() -> None:
    request = Nova().parse(NOVA_EXAMPLE)
    assert Nova().render(request, RESPONSE, "amazon.nova-lite-v1:0") == {
        "output": {"message": {"role": "assistant", "content": [{"text": "Hi there"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
    }
    assert Nova().render(request, CUT, "m")["stopReason"] == "max_tokens"
    assert Nova().render(request, STOPPED, "m")["stopReason"] == "end_turn"


NOVA_INVALID: list[tuple[dict[str, Any], str]] = [
    (with_(NOVA_EXAMPLE, schemaVersion="messages-v2"), "schemaVersion: must be 'messages-v1'"),
    (with_(NOVA_EXAMPLE, messages=...), "messages: field required"),
    (
        with_(NOVA_EXAMPLE, messages=[{"role": "user", "content": [{"video": {}}]}]),
        "messages.0.content.0: only text blocks are supported, not 'video'",
    ),
    (
        with_(NOVA_EXAMPLE, inferenceConfig={"max_new_tokens": "5"}),
        "inferenceConfig.max_new_tokens: must be an integer >= 1",
    ),
    (
        with_(NOVA_EXAMPLE, inferenceConfig={"top_k": -2}),
        "inferenceConfig.top_k: must be an integer >= 0",
    ),
    (
        with_(NOVA_EXAMPLE, inferenceConfig={"top_p": 3}),
        "inferenceConfig.top_p: must be a number between 0 and 1",
    ),
]


@pytest.mark.parametrize(("body", "message"), NOVA_INVALID)
def test_nova_rejects(body: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError) as caught:
        Nova().parse(body)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("fmt", [AnthropicMessages(), Converse(), Nova()])
@pytest.mark.parametrize("body", [[], "text", None, 3])
def test_chat_formats_reject_non_object_bodies(fmt: Any, body: Any) -> None:
    with pytest.raises(FormatError, match=r"^modelInput: must be a JSON object"):
        fmt.parse(body)
