"""A real OpenAI-compatible HTTP server for tests: deterministic echo answers and scripted faults.

Faults are driven by the request's text so tests stay deterministic. `FAULT:<kind>[x<n>][:ra=<s>]`
anywhere in a prompt (or embedding input) makes the first n requests with that text (every one
without xN) misbehave:

    429, 500, 502, 503, 504, 400   answer that status (429/503 with Retry-After: <s>, default 0)
    slow                           sleep `slow_s` before answering (longer than the client timeout)
    drop                           close the connection without answering
    badjson                        answer 200 with a body that is not JSON
    shape                          answer 200 with JSON of the wrong shape
    dims                           (embeddings) one more dimension than requested, for that input

Setting `throttling = True` answers every request with 429 (Retry-After: 0) until reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson

_FAULT = re.compile(r"FAULT:(\d{3}|slow|drop|badjson|shape|dims)(?:x(\d+))?(?::ra=(\d+))?")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
_REASONS |= {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_REASONS |= {504: "Gateway Timeout"}
DEFAULT_DIMENSIONS = 8


@dataclass(frozen=True)
class _Fault:
    kind: str
    times: int | None
    retry_after: int


def _fault_in(text: str) -> _Fault | None:
    match = _FAULT.search(text)
    if match is None:
        return None
    kind, times, retry_after = match.groups()
    return _Fault(kind, int(times) if times else None, int(retry_after or 0))


def _http(status: int, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in {**headers, **(extra or {})}.items())
    return head.encode("latin-1") + b"\r\n" + body


def _json(status: int, body: Any, extra: dict[str, str] | None = None) -> bytes:
    return _http(status, orjson.dumps(body), extra)


def _error(status: int, message: str, extra: dict[str, str] | None = None) -> bytes:
    return _json(status, {"error": {"message": message, "type": "fake", "code": status}}, extra)


def _words(text: str) -> int:
    return len(text.split())


class FakeOpenAI:
    """`with FakeOpenAI(latency_s=0.02) as fake: ... fake.base_url ...` (a server on 127.0.0.1)."""

    def __init__(self, *, latency_s: float = 0.0, slow_s: float = 2.0) -> None:
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.throttling = False
        self.port = 0
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self.total_requests = 0
        self.requests_per_prompt: Counter[str] = Counter()
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)  # time.monotonic()
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []  # path, body, headers
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body, _ in self.calls if p == path]

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                with self._lock:
                    self._in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self._in_flight)
                    self.total_requests += 1
                try:
                    reply = await self._answer(path, headers, body)
                    if reply is not None:
                        writer.write(reply)
                        await writer.drain()
                finally:
                    with self._lock:
                        self._in_flight -= 1
                if reply is None:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> bytes | None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "request body is not JSON")
        if path == "/v1/chat/completions":
            key = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        elif path == "/v1/completions":
            key = str(body.get("prompt", ""))
        elif path == "/v1/embeddings":
            key = "\n".join(body.get("input", []))
        else:
            return _error(404, f"no route {path}")
        with self._lock:
            self.requests_per_prompt[key] += 1
            count = self.requests_per_prompt[key]
            self.arrivals[key].append(time.monotonic())
            self.calls.append((path, body, headers))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.throttling:
            return _error(429, "throttled: slow down", {"retry-after": "0"})
        fault = _fault_in(key)
        if fault is not None and (fault.times is None or count <= fault.times):
            if fault.kind.isdigit():
                status = int(fault.kind)
                extra = {"retry-after": str(fault.retry_after)} if status in (429, 503) else {}
                return _error(status, f"injected {status} for this prompt", extra)
            if fault.kind == "slow":
                await asyncio.sleep(self.slow_s)
            elif fault.kind == "drop":
                return None
            elif fault.kind == "badjson":
                return _http(200, b'{"choices": [ not json')
            elif fault.kind == "shape":
                return _json(200, {"choices": [], "data": [], "object": "surprise"})
        if path == "/v1/embeddings":
            return _json(200, self._embeddings(body))
        return _json(200, self._generation(body, chat=path == "/v1/chat/completions"))

    def _generation(self, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        """Echo the last user turn (or the prompt), honouring max_tokens and stop like vLLM."""
        if chat:
            messages = body["messages"]
            user = [m["content"] for m in messages if m["role"] == "user"]
            text = "echo: " + (user[-1] if user else "")
            prompt_tokens = sum(_words(m["content"]) for m in messages)
        else:
            text = "echo: " + body["prompt"]
            prompt_tokens = _words(body["prompt"])
        finish, matched = "stop", None
        for stop in body.get("stop") or []:
            at = text.find(stop)
            if at >= 0 and (matched is None or at < text.find(matched)):
                matched = stop
        if matched is not None:
            text = text[: text.find(matched)]
        words = text.split(" ")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and _words(text) > max_tokens:
            text, finish, matched = " ".join(words[:max_tokens]), "length", None
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "stop_reason": matched}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": _words(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": "fake-1",
            "object": "chat.completion" if chat else "text_completion",
            "model": body.get("model"),
            "choices": [choice],
            "usage": usage,
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        """Deterministic, deliberately not unit-length vectors, listed in reverse index order."""
        dims = int(body.get("dimensions") or DEFAULT_DIMENSIONS)
        inputs: list[str] = body["input"]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": embedding_for(text, dims + ("FAULT:dims" in text)),
            }
            for i, text in enumerate(inputs)
        ]
        tokens = sum(_words(text) for text in inputs)
        return {
            "object": "list",
            "data": data[::-1],
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def embedding_for(text: str, dims: int) -> list[float]:
    """The fake's raw vector for `text`: a function of its length, so tests can recompute it."""
    return [float((len(text) + i) % 5 + 1) for i in range(dims)]
