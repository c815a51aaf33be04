"""The `bedrock` backend against a local HTTP server that speaks Bedrock runtime's API."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.fake_bedrock_runtime import FakeBedrockRuntime, embedding_for

from outcrop.backends.base import BackendUnavailable, CatalogError
from outcrop.backends.bedrock_runtime import BedrockRuntimeBackend
from outcrop.backends.registry import create_backend
from outcrop.formats.base import ChatMessage, InferenceRequest, InferenceResponse, RecordError

ACCESS_KEY_ID = "AKIDOUTCROPTEST0001"
SECRET_ACCESS_KEY = "outcrop-test-secret"
KEY_ENV = {
    "access_key_id_env": "OUTCROP_TEST_BR_KEY",
    "secret_access_key_env": "OUTCROP_TEST_BR_SECRET",
}
CHAT_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
LLAMA_MODEL = "meta.llama3-1-8b-instruct-v1:0"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keys only in the variables the options name; nothing from the host's AWS setup."""
    for name in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe the metadata service
    monkeypatch.setenv("OUTCROP_TEST_BR_KEY", ACCESS_KEY_ID)
    monkeypatch.setenv("OUTCROP_TEST_BR_SECRET", SECRET_ACCESS_KEY)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrockRuntime]:
    with FakeBedrockRuntime({ACCESS_KEY_ID: SECRET_ACCESS_KEY}, slow_s=1.0) as server:
        yield server


def make(fake: FakeBedrockRuntime, **options: Any) -> BedrockRuntimeBackend:
    options.setdefault("model_id", CHAT_MODEL)
    options.setdefault("endpoint_url", fake.endpoint_url)
    return BedrockRuntimeBackend.from_options({**KEY_ENV, **options})


def call(
    backend: BedrockRuntimeBackend, *requests: InferenceRequest
) -> list[InferenceResponse | RecordError]:
    async def main() -> list[InferenceResponse | RecordError]:
        try:
            return await backend.invoke(requests)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def one(backend: BedrockRuntimeBackend, request: InferenceRequest) -> InferenceResponse:
    [result] = call(backend, request)
    assert isinstance(result, InferenceResponse), result
    return result


def failure(backend: BedrockRuntimeBackend, request: InferenceRequest) -> RecordError:
    [result] = call(backend, request)
    assert isinstance(result, RecordError), result
    return result


def chat(text: str, **fields: Any) -> InferenceRequest:
    return InferenceRequest(kind="chat", messages=(ChatMessage("user", text),), **fields)


def completion(prompt: str, **fields: Any) -> InferenceRequest:
    return InferenceRequest(kind="completion", prompt=prompt, **fields)


def test_chat_goes_to_converse_with_every_setting(fake: FakeBedrockRuntime) -> None:
    request = InferenceRequest(
        kind="chat",
        system="Be terse.",
        messages=(
            ChatMessage("user", "hello there"),
            ChatMessage("assistant", "hi"),
            ChatMessage("user", "tell me three things"),
        ),
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop_sequences=("XYZ",),
        extra={"additionalModelRequestFields": {"reasoning": {"effort": "low"}}},
    )
    result = one(make(fake), request)
    assert result.text == "echo: tell me three things"
    assert result.stop_reason == "end_turn"
    assert (result.input_tokens, result.output_tokens) == (2 + 1 + 4 + 2, 5)
    assert result.latency_ms >= 0
    sent = fake.calls_to("converse")[-1]
    assert sent.model_id == CHAT_MODEL
    assert sent.access_key_id == ACCESS_KEY_ID
    assert sent.body == {
        "messages": [
            {"role": "user", "content": [{"text": "hello there"}]},
            {"role": "assistant", "content": [{"text": "hi"}]},
            {"role": "user", "content": [{"text": "tell me three things"}]},
        ],
        "system": [{"text": "Be terse."}],
        "inferenceConfig": {
            "maxTokens": 50,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["XYZ"],
        },
        "additionalModelRequestFields": {"reasoning": {"effort": "low"}, "top_k": 40},
    }


def test_converse_stop_reasons(fake: FakeBedrockRuntime) -> None:
    limited, stopped = call(
        make(fake),
        chat("one two three four five", max_tokens=3),
        chat("alpha beta STOP gamma", stop_sequences=("STOP",)),
    )
    assert isinstance(limited, InferenceResponse) and isinstance(stopped, InferenceResponse)
    assert (limited.text, limited.stop_reason, limited.stop_sequence) == (
        "echo: one two",
        "max_tokens",
        None,
    )
    assert (limited.input_tokens, limited.output_tokens) == (5, 3)
    assert (stopped.text, stopped.stop_reason) == ("echo: alpha beta ", "stop_sequence")
    assert stopped.stop_sequence == "STOP"


def test_completion_without_invoke_format_is_a_converse_user_turn(fake: FakeBedrockRuntime) -> None:
    result = one(make(fake), completion("complete this please", max_tokens=10))
    assert result.text == "echo: complete this please"
    assert fake.calls_to("converse")[-1].body["messages"] == [
        {"role": "user", "content": [{"text": "complete this please"}]}
    ]


def test_llama_invoke_body_and_answer(fake: FakeBedrockRuntime) -> None:
    backend = make(fake, model_id=LLAMA_MODEL, invoke_format="llama")
    result = one(
        backend,
        completion("llama prompt with five words", max_tokens=3, temperature=0.5, top_p=0.8),
    )
    assert (result.text, result.stop_reason) == ("echo: llama prompt", "max_tokens")
    assert (result.input_tokens, result.output_tokens) == (5, 3)
    sent = fake.calls_to("invoke")[-1]
    assert sent.model_id == LLAMA_MODEL
    assert sent.body == {
        "prompt": "llama prompt with five words",
        "max_gen_len": 3,
        "temperature": 0.5,
        "top_p": 0.8,
    }


def test_titan_embed_invoke_body_and_answer(fake: FakeBedrockRuntime) -> None:
    backend = make(fake, model_id="amazon.titan-embed-text-v2:0", invoke_format="titan-embed")
    request = InferenceRequest(kind="embedding", input_text="embed these words", dimensions=8)
    result = one(backend, request)
    raw = embedding_for("embed these words", 8)
    norm = math.sqrt(sum(x * x for x in raw))
    assert result.embedding == pytest.approx([x / norm for x in raw])
    assert result.input_tokens == 3
    assert fake.calls_to("invoke")[-1].body == {
        "inputText": "embed these words",
        "dimensions": 8,
        "normalize": True,
    }
    raw_request = InferenceRequest(kind="embedding", input_text="raw vector", normalize=False)
    assert one(backend, raw_request).embedding == tuple(embedding_for("raw vector", 4))


def test_mistral_token_counts_come_from_the_headers(fake: FakeBedrockRuntime) -> None:
    backend = make(fake, model_id="mistral.mistral-7b-instruct-v0:2", invoke_format="mistral")
    request = completion(
        "[INST] count my words [/INST]", max_tokens=20, top_k=5, stop_sequences=("words",)
    )
    result = one(backend, request)
    assert result.text == "echo: [INST] count my "
    assert (result.input_tokens, result.output_tokens) == (5, 4)
    assert fake.calls_to("invoke")[-1].body == {
        "prompt": "[INST] count my words [/INST]",
        "max_tokens": 20,
        "stop": ["words"],
        "top_k": 5,
    }


def test_titan_text_stop_criteria_names_the_stop_sequence(fake: FakeBedrockRuntime) -> None:
    backend = make(fake, model_id="amazon.titan-text-express-v1", invoke_format="titan-text")
    result = one(backend, completion("first END second", max_tokens=30, stop_sequences=("END",)))
    assert (result.text, result.stop_reason, result.stop_sequence) == (
        "echo: first ",
        "stop_sequence",
        "END",
    )
    assert (result.input_tokens, result.output_tokens) == (3, 2)
    assert fake.calls_to("invoke")[-1].body == {
        "inputText": "first END second",
        "textGenerationConfig": {"maxTokenCount": 30, "stopSequences": ["END"]},
    }


def test_an_arn_model_id_travels_percent_encoded(fake: FakeBedrockRuntime) -> None:
    arn = (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-1-8b-instruct-v1:0"
    )
    one(make(fake, model_id=arn, invoke_format="llama"), completion("arn prompt"))
    assert fake.calls_to("invoke")[-1].model_id == arn


@pytest.mark.parametrize(
    ("text", "model_id", "code", "upstream"),
    [
        ("FAULT:INVALID bad body", CHAT_MODEL, 400, "ValidationException"),
        ("FAULT:DENIED no access", CHAT_MODEL, 403, "AccessDeniedException"),
        ("not there", "anthropic.missing-model-v1:0", 404, "ResourceNotFoundException"),
        ("FAULT:MODELTIMEOUT too long", CHAT_MODEL, 408, "ModelTimeoutException"),
        ("FAULT:THROTTLE busy", CHAT_MODEL, 429, "ThrottlingException"),
        ("FAULT:INTERNAL broken", CHAT_MODEL, 500, "InternalServerException"),
        ("FAULT:MODELERROR model broke", CHAT_MODEL, 502, "ModelErrorException"),
        ("FAULT:UNAVAILABLE down", CHAT_MODEL, 503, "ServiceUnavailableException"),
    ],
)
def test_upstream_errors_become_record_errors(
    fake: FakeBedrockRuntime, text: str, model_id: str, code: int, upstream: str
) -> None:
    error = failure(make(fake, model_id=model_id, max_retries=0), chat(text))
    assert error.error_code == code
    assert error.message.startswith(f"{upstream}: ")
    assert fake.attempts[text] == 1


def test_throttling_is_retried_until_it_passes(fake: FakeBedrockRuntime) -> None:
    result = one(make(fake, max_retries=2), chat("FAULT:THROTTLEx1 retry me"))
    assert result.text == "echo: FAULT:THROTTLEx1 retry me"
    assert fake.attempts["FAULT:THROTTLEx1 retry me"] == 2


def test_unavailable_is_retried_until_it_passes(fake: FakeBedrockRuntime) -> None:
    one(make(fake, max_retries=2), chat("FAULT:UNAVAILABLEx2 come back"))
    assert fake.attempts["FAULT:UNAVAILABLEx2 come back"] == 3


def test_throttling_that_outlasts_the_retries_is_a_429(fake: FakeBedrockRuntime) -> None:
    error = failure(make(fake, max_retries=1), chat("FAULT:THROTTLE always busy"))
    assert error.error_code == 429
    assert "injected ThrottlingException (attempt 2)" in error.message
    assert fake.attempts["FAULT:THROTTLE always busy"] == 2


def test_validation_errors_are_not_retried(fake: FakeBedrockRuntime) -> None:
    assert failure(make(fake, max_retries=3), chat("FAULT:INVALID once")).error_code == 400
    assert fake.attempts["FAULT:INVALID once"] == 1


def test_a_slow_answer_times_out(fake: FakeBedrockRuntime) -> None:
    error = failure(make(fake, timeout_s=0.2, max_retries=0), chat("FAULT:SLOW wait"))
    assert error.error_code == 504


def test_an_unreachable_endpoint_is_a_502(fake: FakeBedrockRuntime) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        error = failure(make(fake, endpoint_url=url, max_retries=0), chat("anyone?"))
    assert error.error_code == 502


def test_a_wrong_secret_is_refused_by_the_signature_check(
    fake: FakeBedrockRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTCROP_TEST_BR_SECRET", "not-the-secret")
    error = failure(make(fake, max_retries=0), chat("signed badly"))
    assert error.error_code == 403
    assert error.message.startswith("InvalidSignatureException: ")
    assert fake.attempts["signed badly"] == 0


def test_a_profile_supplies_the_keys(
    fake: FakeBedrockRuntime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[batch]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    backend = BedrockRuntimeBackend.from_options(
        {"model_id": CHAT_MODEL, "endpoint_url": fake.endpoint_url, "profile": "batch"}
    )
    assert one(backend, chat("via profile")).text == "echo: via profile"


@pytest.mark.parametrize("extra", [{}, {"profile": "nobody"}])
def test_no_credentials_fails_the_whole_backend(
    fake: FakeBedrockRuntime, extra: dict[str, str]
) -> None:
    backend = BedrockRuntimeBackend.from_options(
        {"model_id": CHAT_MODEL, "endpoint_url": fake.endpoint_url, **extra}
    )
    with pytest.raises(BackendUnavailable, match="no usable credentials"):
        call(backend, chat("who am I"))
    assert fake.attempts["who am I"] == 0


def test_a_call_botocore_refuses_to_send_is_a_400(fake: FakeBedrockRuntime) -> None:
    error = failure(make(fake), chat("empty stop", stop_sequences=("",)))
    assert error.error_code == 400
    assert "stopSequences" in error.message
    assert fake.attempts["empty stop"] == 0


def test_requests_the_model_cannot_take_are_400s_without_a_call(fake: FakeBedrockRuntime) -> None:
    embed = InferenceRequest(kind="embedding", input_text="never sent")
    llama = make(fake, model_id=LLAMA_MODEL, invoke_format="llama")
    assert failure(llama, embed).error_code == 400
    assert "needs option 'invoke_format'" in failure(make(fake), embed).message
    titan = make(fake, model_id="amazon.titan-embed-text-v2:0", invoke_format="titan-embed")
    assert failure(titan, completion("never sent")).error_code == 400
    assert fake.attempts["never sent"] == 0


def test_the_registry_builds_it() -> None:
    backend = create_backend("bedrock", {"model_id": CHAT_MODEL, **KEY_ENV})
    assert isinstance(backend, BedrockRuntimeBackend)
    assert (backend.max_batch_size, backend.region, backend.max_concurrency) == (1, "us-east-1", 8)
    assert (backend.max_retries, backend.timeout_s, backend.invoke_format) == (4, 60.0, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs option 'model_id'"),
        ({"model_id": CHAT_MODEL, "model": "x"}, "unknown option"),
        ({"model_id": ""}, "'model_id' must not be empty"),
        ({"model_id": CHAT_MODEL, "invoke_format": "anthropic"}, "'invoke_format' must be one of"),
        ({"model_id": CHAT_MODEL, "max_concurrency": 0}, "'max_concurrency' must be an int >= 1"),
        ({"model_id": CHAT_MODEL, "max_retries": True}, "'max_retries' must be an int >= 0"),
        ({"model_id": CHAT_MODEL, "timeout_s": "60"}, "'timeout_s' must be a number > 0"),
        ({"model_id": CHAT_MODEL, "region": 1}, "'region' must be str"),
        ({"model_id": CHAT_MODEL, "endpoint_url": "localhost:1"}, "must be an http(s) URL"),
        ({"model_id": CHAT_MODEL, "access_key_id_env": "OUTCROP_TEST_BR_KEY"}, "go together"),
        ({"model_id": CHAT_MODEL, **KEY_ENV, "profile": "batch"}, "either 'profile' or key"),
        ({"model_id": CHAT_MODEL, "session_token_env": "T"}, "needs the key options"),
        (
            {"model_id": CHAT_MODEL, **KEY_ENV, "secret_access_key_env": "OUTCROP_TEST_BR_UNSET"},
            "OUTCROP_TEST_BR_UNSET is not set",
        ),
    ],
)
def test_bad_options_are_catalog_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BedrockRuntimeBackend.from_options(options)
