"""A real HTTP webhook receiver for event tests: verifies Standard Webhooks signatures and records
every delivery it accepted, in arrival order.

It is `http.server` in a thread, on a port chosen up front, so a test can point a server at it
before it listens ("down": connections refused), switch it to answering an error status, and
bring it up later on the same port.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.server import free_port


@dataclass(frozen=True)
class Received:
    webhook_id: str
    timestamp: int
    event: dict[str, Any]
    received_at: float  # time.time() when the request arrived


@dataclass
class WebhookReceiver:
    """POST / accepts one event. `answer` is the status returned for a verified delivery
    (204 by default; set 503 to make the sender retry). Unverifiable requests get 401 and are
    counted in `rejected`; they never appear in `received`."""

    secret: str | None
    port: int = field(default_factory=free_port)
    answer: int = 204
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = receiver._accept(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _accept(self, body: bytes, headers: dict[str, str]) -> int:
        received_at = time.time()
        with self._lock:
            self.attempts += 1
            answer = self.answer
        if self.secret is not None:
            try:
                event = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError as exc:
                with self._lock:
                    self.rejected.append(str(exc))
                return 401
        else:
            event = orjson.loads(body)
        if not 200 <= answer < 300:
            return answer
        record = Received(
            headers["webhook-id"], int(headers["webhook-timestamp"]), event, received_at
        )
        with self._lock:
            self.received.append(record)
        return answer

    # -- what arrived ---------------------------------------------------------------------

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def for_job(self, job_arn: str) -> list[Received]:
        return [r for r in self.snapshot() if r.event["detail"]["batchJobArn"] == job_arn]

    def statuses(self, job_arn: str) -> list[str]:
        return [r.event["detail"]["status"] for r in self.for_job(job_arn)]
