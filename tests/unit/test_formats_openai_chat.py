"""The openai-chat body family."""

from __future__ import annotations

import time
from typing import Any

import pytest

from outcrop.formats.base import ChatMessage, FormatError, InferenceRequest, InferenceResponse
from outcrop.formats.openai_chat import OpenAIChat

OPENAI_EXAMPLE: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use English."},
        {"role": "user", "content": "Hello"},
    ],
    "max_completion_tokens": 512,
    "temperature": 0.7,
    "top_p": 1,
    "stop": [],
}


RESPONSE = InferenceResponse(text="Hi there", input_tokens=5, output_tokens=2)
STOPPED = InferenceResponse(
    text="Hi", stop_reason="stop_sequence", stop_sequence="END", input_tokens=5, output_tokens=1
)
CUT = InferenceResponse(text="Hi", stop_reason="max_tokens", input_tokens=5, output_tokens=1)


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def test_openai_parses_example_with_system_messages_joined() -> None:
    request = OpenAIChat().parse(OPENAI_EXAMPLE)
    assert request == InferenceRequest(
        kind="chat",
        messages=(ChatMessage("user", "Hello"),),
        system="Be brief.\nUse English.",
        max_tokens=512,
        temperature=0.7,
        top_p=1.0,
    )


def test_openai_max_tokens_alias_stop_string_and_parts() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "user", "content": "again"},
        ],
        "max_tokens": 7,
        "stop": "END",
        "temperature": 2,
        "n": 1,
        "stream": False,
    }
    request = OpenAIChat().parse(body)
    assert request.system == "dev"
    assert request.messages == (ChatMessage("user", "a\nb"), ChatMessage("user", "again"))
    assert request.max_tokens == 7
    assert request.stop_sequences == ("END",)
    assert request.temperature == 2.0
    both = OpenAIChat().parse(dict(body, max_completion_tokens=3))
    assert both.max_tokens == 3
    assert OpenAIChat().parse({"messages": [{"role": "user", "content": "x"}]}).max_tokens is None


def test_openai_render_shape() -> None:
    request = OpenAIChat().parse(OPENAI_EXAMPLE)
    before = int(time.time())
    out = OpenAIChat().render(request, RESPONSE, "openai.gpt-oss-20b-1:0")
    assert out.pop("id").startswith("chatcmpl-")
    created = out.pop("created")
    assert isinstance(created, int)
    assert before <= created <= int(time.time())
    assert out == {
        "object": "chat.completion",
        "model": "openai.gpt-oss-20b-1:0",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    assert OpenAIChat().render(request, CUT, "m")["choices"][0]["finish_reason"] == "length"
    assert OpenAIChat().render(request, STOPPED, "m")["choices"][0]["finish_reason"] == "stop"


OPENAI_INVALID: list[tuple[dict[str, Any], str]] = [
    ({}, "messages: field required"),
    (
        with_(OPENAI_EXAMPLE, messages=[{"role": "tool", "content": None}]),
        "messages.0.role: must be one of",
    ),
    (with_(OPENAI_EXAMPLE, messages=[{"content": "x"}]), "messages.0.role: field required"),
    (
        with_(OPENAI_EXAMPLE, messages=[{"role": "assistant", "content": None}]),
        "messages.0.content: field required",
    ),
    (
        with_(
            OPENAI_EXAMPLE,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
        ),
        "messages.0.content.0.type: only text parts are supported, not 'image_url'",
    ),
    (with_(OPENAI_EXAMPLE, max_completion_tokens=0), "max_completion_tokens: must be an integer"),
    (with_(OPENAI_EXAMPLE, max_tokens=-3), "max_tokens: must be an integer >= 1"),
    (with_(OPENAI_EXAMPLE, temperature=2.5), "temperature: must be a number between 0 and 2"),
    (with_(OPENAI_EXAMPLE, top_p=2), "top_p: must be a number between 0 and 1"),
    (with_(OPENAI_EXAMPLE, stop=5), "stop: must be a list of strings"),
    (with_(OPENAI_EXAMPLE, n=2), "n: only 1 is supported"),
    (with_(OPENAI_EXAMPLE, n=True), "n: only 1 is supported"),
]


@pytest.mark.parametrize(("body", "message"), OPENAI_INVALID)
def test_openai_rejects(body: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError) as caught:
        OpenAIChat().parse(body)
    assert str(caught.value).startswith(message)


def test_openai_rejects_non_object_body() -> None:
    with pytest.raises(FormatError, match=r"^modelInput: must be a JSON object"):
        body: Any = [{"role": "user", "content": "x"}]
        OpenAIChat().parse(body)
