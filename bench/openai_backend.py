"""OpenAI backend throughput: OpenAIBackend.invoke next to a bare httpx client, printed as JSON.

Both sides send the same chat requests, 64 at a time, to a local OpenAI-compatible server that
answers every request after a fixed 100 ms (so the ideal is 640 records/s). The server runs in a
separate process so it does not share the clients' event loop or interpreter lock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson

from outcrop.backends.openai_compat import OpenAIBackend
from outcrop.formats.base import ChatMessage, InferenceRequest, RecordError

GOAL_RATIO = 0.9
LATENCY_S = 0.1
CONCURRENCY = 64
WARMUP = CONCURRENCY  # enough to open every connection before timing


def serve() -> None:
    """The server process: uvicorn + starlette, prints its port on stdout, runs until killed."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        await asyncio.sleep(LATENCY_S)
        text = "echo: " + body["messages"][-1]["content"]
        answer = {
            "id": "bench",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=4096)
    uvicorn.Server(config).run(sockets=[sock])


def _requests(count: int, tag: str) -> list[InferenceRequest]:
    return [
        InferenceRequest(
            kind="chat", messages=(ChatMessage("user", f"{tag} record {i}"),), max_tokens=16
        )
        for i in range(count)
    ]


async def backend_side(base_url: str, count: int) -> tuple[float, int]:
    """Seconds for `count` records through OpenAIBackend.invoke (one request per call), errors."""
    backend = OpenAIBackend(
        base_url=base_url, model="bench", max_concurrency=CONCURRENCY, timeout_s=30
    )
    try:
        await asyncio.gather(*(backend.invoke([r]) for r in _requests(WARMUP, "warm")))
        requests = _requests(count, "timed")
        started = time.perf_counter()
        answers = await asyncio.gather(*(backend.invoke([r]) for r in requests))
        elapsed = time.perf_counter() - started
    finally:
        await backend.aclose()
    return elapsed, sum(isinstance(a, RecordError) for [a] in answers)


async def raw_side(base_url: str, count: int) -> tuple[float, int]:
    """Seconds for the same POSTs from a minimal httpx client behind a semaphore, errors."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=f"{base_url}/v1", limits=limits, timeout=30) as client:

        async def one(i: int, tag: str) -> bool:
            payload: dict[str, Any] = {
                "model": "bench",
                "messages": [{"role": "user", "content": f"{tag} record {i}"}],
                "max_tokens": 16,
            }
            async with gate:
                response = await client.post("chat/completions", json=payload)
            return response.status_code == 200 and bool(
                response.json()["choices"][0]["message"]["content"]
            )

        await asyncio.gather(*(one(i, "warm") for i in range(WARMUP)))
        started = time.perf_counter()
        ok = await asyncio.gather(*(one(i, "timed") for i in range(count)))
        elapsed = time.perf_counter() - started
    return elapsed, ok.count(False)


def _split(items: range, parts: int) -> list[range]:
    step = -(-len(items) // parts)
    return [items[i : i + step] for i in range(0, len(items), step)]


def _wait_for_port(port: int, deadline_s: float = 20.0) -> None:
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the two sides")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        _wait_for_port(port)
        base_url = f"http://127.0.0.1:{port}"
        # Alternate the sides in rounds so a change in machine load hits both alike.
        raw_s = backend_s = 0.0
        raw_errors = backend_errors = 0
        per_round = [len(r) for r in _split(range(args.records), args.rounds)]
        for count in per_round:
            seconds, errors = asyncio.run(raw_side(base_url, count))
            raw_s, raw_errors = raw_s + seconds, raw_errors + errors
            seconds, errors = asyncio.run(backend_side(base_url, count))
            backend_s, backend_errors = backend_s + seconds, backend_errors + errors
    finally:
        server.terminate()
        server.wait(timeout=10)
    raw_rate = args.records / raw_s
    backend_rate = args.records / backend_s
    ratio = backend_rate / raw_rate
    report = {
        "benchmark": "openai_backend",
        "records": args.records,
        "rounds": args.rounds,
        "concurrency": CONCURRENCY,
        "server_latency_ms": round(LATENCY_S * 1000),
        "ideal_records_per_s": round(CONCURRENCY / LATENCY_S, 1),
        "raw_httpx_records_per_s": round(raw_rate, 1),
        "outcrop_records_per_s": round(backend_rate, 1),
        "ratio": round(ratio, 3),
        "goal_ratio": GOAL_RATIO,
        "errors": {"raw": raw_errors, "outcrop": backend_errors},
        "ok": ratio >= GOAL_RATIO and raw_errors == backend_errors == 0,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
