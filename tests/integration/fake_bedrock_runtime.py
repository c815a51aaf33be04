"""A real HTTP server that speaks Bedrock runtime's Converse and InvokeModel (restJson1) for tests.

It checks every request's SigV4 signature with Outcrop's own verifier, answers deterministic echo
answers ("echo: " + the last user turn or the prompt, cut at the first stop sequence, then to the
token limit in words) in the Converse shape or the model family's InvokeModel shape, and adds
the token-count headers to every InvokeModel answer. The family comes from the model id
("llama", "mistral", "titan-text", "titan-embed" in it); a model id containing "missing" is
unknown (404).

Faults are driven by the request's text: `FAULT:<NAME>[x<n>]` makes the first n attempts with
that text (every one without xN) fail:

    THROTTLE 429 ThrottlingException      INVALID     400 ValidationException
    DENIED   403 AccessDeniedException    MODELTIMEOUT 408 ModelTimeoutException
    UNAVAILABLE 503 ServiceUnavailableException       MODELERROR 424 ModelErrorException
    INTERNAL 500 InternalServerException  SLOW        answer after `slow_s` seconds
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outcrop.api.auth import SigV4Verifier
from outcrop.errors import OutcropError

_PATH = re.compile(r"/model/([^/]+)/(converse|invoke)")
_FAULT = re.compile(r"FAULT:([A-Z]+)(?:x(\d+))?")
FAULTS = {
    "THROTTLE": (429, "ThrottlingException"),
    "INVALID": (400, "ValidationException"),
    "DENIED": (403, "AccessDeniedException"),
    "MODELTIMEOUT": (408, "ModelTimeoutException"),
    "UNAVAILABLE": (503, "ServiceUnavailableException"),
    "MODELERROR": (424, "ModelErrorException"),
    "INTERNAL": (500, "InternalServerException"),
}
FAMILIES = ("llama", "mistral", "titan-text", "titan-embed")
DEFAULT_DIMENSIONS = 4
ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class Call:
    """One request that passed the signature check."""

    operation: str  # "converse" or "invoke"
    model_id: str  # percent-decoded from the raw path
    body: dict[str, Any]
    access_key_id: str


def embedding_for(text: str, dims: int) -> list[float]:
    """The fake's raw vector for `text` (a function of its length), so tests can recompute it."""
    return [float((len(text) + i) % 5 + 1) for i in range(dims)]


def _words(text: str) -> int:
    return len(text.split())


def _echo(text: str, stops: list[str], limit: int | None) -> tuple[str, str]:
    """The echo answer and why it ended: "end", "stop" (a stop sequence) or "length"."""
    answer, reason = "echo: " + text, "end"
    hits = [answer.find(stop) for stop in stops if stop and stop in answer]
    if hits:
        answer, reason = answer[: min(hits)], "stop"
    if limit is not None and _words(answer) > limit:
        answer, reason = " ".join(answer.split()[:limit]), "length"
    return answer, reason


def _error(status: int, code: str, message: str) -> Response:
    # The error type travels in x-amzn-ErrorType, with the suffix the real service appends.
    headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return Response(orjson.dumps({"message": message}), status, headers, "application/json")


class FakeBedrockRuntime:
    """`with FakeBedrockRuntime({"AKID": "secret"}) as fake: ... fake.endpoint_url ...`."""

    def __init__(self, keys: dict[str, str], *, slow_s: float = 1.5) -> None:
        self.keys = dict(keys)
        self.slow_s = slow_s
        self.attempts: Counter[str] = Counter()  # request text -> attempts, faults included
        self.calls: list[Call] = []
        self.rejected: list[str] = []  # why unsigned or badly signed requests were refused
        self._lock = threading.Lock()
        self._verifier = SigV4Verifier(self._lookup)
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", ws="none"
        )
        config.timeout_graceful_shutdown = 1
        self._server = uvicorn.Server(config)
        self._socket = socket.socket()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> FakeBedrockRuntime:
        # Listening before the server thread starts: early clients wait in the backlog.
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(128)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def calls_to(self, operation: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.operation == operation]

    def _lookup(self, access_key_id: str) -> tuple[str, str] | None:
        secret = self.keys.get(access_key_id)
        return None if secret is None else (secret, ACCOUNT_ID)

    async def _handle(self, request: Request) -> Response:
        raw_path = request.scope["raw_path"].decode("latin-1")
        body_bytes = await request.body()
        try:
            caller = self._verifier.verify(
                request.method,
                raw_path,
                request.scope["query_string"].decode("latin-1"),
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
                body_bytes,
            )
        except OutcropError as exc:
            with self._lock:
                self.rejected.append(exc.message)
            return _error(exc.status, exc.code, exc.message)
        # The model id is one path segment, percent-encoded (an ARN's "/" arrives as %2F).
        match = _PATH.fullmatch(raw_path)
        if match is None:
            return _error(404, "UnknownOperationException", f"no operation at {raw_path}")
        model_id, operation = unquote(match[1]), match[2]
        try:
            body = orjson.loads(body_bytes)
        except orjson.JSONDecodeError:
            return _error(400, "ValidationException", "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "ValidationException", "the request body is not a JSON object")
        key = _text_of(operation, body)
        with self._lock:
            self.calls.append(Call(operation, model_id, body, caller.access_key_id))
            self.attempts[key] += 1
            attempt = self.attempts[key]
        fault = _FAULT.search(key)
        if fault is not None and (fault[2] is None or attempt <= int(fault[2])):
            if fault[1] == "SLOW":
                await asyncio.sleep(self.slow_s)
            elif fault[1] in FAULTS:
                status, code = FAULTS[fault[1]]
                return _error(status, code, f"injected {code} (attempt {attempt})")
        if "missing" in model_id:
            return _error(404, "ResourceNotFoundException", f"model {model_id} not found")
        if operation == "converse":
            return Response(orjson.dumps(_converse(body)), 200, media_type="application/json")
        family = next((name for name in FAMILIES if name in model_id), None)
        if family is None:
            return _error(400, "ValidationException", f"{model_id} takes no InvokeModel body")
        answer, input_tokens, output_tokens = _invoke(family, body)
        headers = {
            "x-amzn-bedrock-input-token-count": str(input_tokens),
            "x-amzn-bedrock-output-token-count": str(output_tokens),
            "x-amzn-bedrock-invocation-latency": "1",
        }
        return Response(orjson.dumps(answer), 200, headers, "application/json")


def _text_of(operation: str, body: dict[str, Any]) -> str:
    """The request's text, which keys attempt counting and fault injection."""
    if operation == "converse":
        return "\n".join(
            str(block.get("text", ""))
            for message in body.get("messages", [])
            for block in message.get("content", [])
        )
    return str(body.get("prompt", body.get("inputText", "")))


def _converse(body: dict[str, Any]) -> dict[str, Any]:
    turns = [
        (m["role"], "\n".join(block["text"] for block in m["content"])) for m in body["messages"]
    ]
    user = [text for role, text in turns if role == "user"]
    config = body.get("inferenceConfig", {})
    text, reason = _echo(
        user[-1] if user else "", config.get("stopSequences", []), config.get("maxTokens")
    )
    system = " ".join(block["text"] for block in body.get("system", []))
    input_tokens = sum(_words(text) for _, text in turns) + _words(system)
    stop = {"end": "end_turn", "stop": "stop_sequence", "length": "max_tokens"}[reason]
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop,
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": _words(text),
            "totalTokens": input_tokens + _words(text),
        },
        "metrics": {"latencyMs": 1},
    }


def _invoke(family: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """The family's InvokeModel answer, with the input and output token counts for the headers."""
    if family == "titan-embed":
        text = body["inputText"]
        vector = embedding_for(text, int(body.get("dimensions", DEFAULT_DIMENSIONS)))
        if body.get("normalize", True):
            norm = math.sqrt(sum(x * x for x in vector))
            vector = [x / norm for x in vector]
        return {"embedding": vector, "inputTextTokenCount": _words(text)}, _words(text), 0
    if family == "titan-text":
        prompt = body["inputText"]
        config = body.get("textGenerationConfig", {})
        text, reason = _echo(prompt, config.get("stopSequences", []), config.get("maxTokenCount"))
        completion = {"end": "FINISH", "stop": "STOP_CRITERIA_MET", "length": "LENGTH"}[reason]
        result = {"tokenCount": _words(text), "outputText": text, "completionReason": completion}
        answer = {"inputTextTokenCount": _words(prompt), "results": [result]}
        return answer, _words(prompt), _words(text)
    prompt = body["prompt"]
    if family == "llama":
        text, reason = _echo(prompt, [], body.get("max_gen_len"))
        answer = {
            "generation": text,
            "prompt_token_count": _words(prompt),
            "generation_token_count": _words(text),
            "stop_reason": "length" if reason == "length" else "stop",
        }
        return answer, _words(prompt), _words(text)
    text, reason = _echo(prompt, body.get("stop", []), body.get("max_tokens"))
    output = {"text": text, "stop_reason": "length" if reason == "length" else "stop"}
    return {"outputs": [output]}, _words(prompt), _words(text)
