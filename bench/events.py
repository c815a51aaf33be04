"""Event delivery: status-change-to-webhook latency, and sustained delivery next to a bare httpx loop.

Both parts run a default `outcrop serve` (no OUTCROP_* tuning but the signed webhook shortcut,
OUTCROP_EVENT_WEBHOOK_URL + OUTCROP_EVENT_WEBHOOK_SECRET) against a receiver in its own process
(uvicorn + starlette) that notes, per `webhook-id`, the wall-clock time the POST arrived.

Latency: `--jobs` one-record echo jobs (5 events each). The start of each event is the moment
of its status change: the events table's `time_us`, written in the same transaction as the
transition (the envelope's `time` has only 1 s resolution, so it is not used). The end is the
receiver's arrival time for the same event id. Both clocks are this machine's `time.time()`.
This covers the commit, the dispatcher noticing the event (it polls every poll_interval_s,
0.2 s by default, when idle), routing, claiming, signing and the POST.

Sustained delivery: `--events` events from `--events // 5` synthetic jobs (the five statuses
of a completed job each) are inserted straight into the events table with SQLAlchemy, in one
transaction, each row shaped exactly as the store writes it (envelope from
`outcrop.events.envelope.state_change_event`). The clock starts after the commit and stops when
the receiver has seen every event id. The floor POSTs the same bodies with the same Standard
Webhooks headers from one httpx.AsyncClient, `event_concurrency` (16) at a time, ignoring the
per-job order Outcrop must keep. The two sides alternate over `--rounds` slices of the events
(floor, Outcrop, floor, Outcrop, ...) and each side's total time counts.
Goal: Outcrop's events/s at least 0.8 of the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from _common import (
    ECHO_MODEL,
    INPUT_BUCKET,
    OUTPUT_BUCKET,
    create_job,
    emit,
    job_id_of,
    load_average,
    note,
    running_server,
    wait_for_terminal,
    write_input,
)

GOAL_RATIO = 0.8
CONCURRENCY = 16  # the dispatcher's default event_concurrency
HAPPY_PATH = ("Submitted", "Validating", "Scheduled", "InProgress", "Completed")


# -- the receiver process -----------------------------------------------------------------------


def serve_receiver() -> None:
    """POST /hook notes the first arrival time per webhook-id; GET /stats and /times report."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    arrived: dict[str, float] = {}
    posts = [0]

    async def hook(request: Request) -> Response:
        now = time.time()
        await request.body()
        posts[0] += 1
        arrived.setdefault(request.headers["webhook-id"], now)
        return Response(status_code=204)

    async def stats(request: Request) -> Response:
        return Response(orjson.dumps({"posts": posts[0], "unique": len(arrived)}))

    async def times(request: Request) -> Response:
        return Response(orjson.dumps(arrived))

    async def reset(request: Request) -> Response:
        arrived.clear()
        posts[0] = 0
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/hook", hook, methods=["POST"]),
            Route("/stats", stats),
            Route("/times", times),
            Route("/reset", reset, methods=["POST"]),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=4096)
    uvicorn.Server(config).run(sockets=[sock])


class Receiver:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--receive"], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.base = f"http://127.0.0.1:{int(self.process.stdout.readline())}"
        self.http = httpx.Client(base_url=self.base, timeout=30)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.http.get("/stats")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # readiness of a separate process

    @property
    def url(self) -> str:
        return f"{self.base}/hook"

    def stats(self) -> dict[str, int]:
        found: dict[str, int] = self.http.get("/stats").json()
        return found

    def times(self) -> dict[str, float]:
        found: dict[str, float] = self.http.get("/times").json()
        return found

    def reset(self) -> None:
        self.http.post("/reset")

    def wait_unique(self, count: int, timeout_s: float) -> float:
        """Poll until `count` distinct ids arrived; returns time.perf_counter() when seen."""
        deadline = time.monotonic() + timeout_s
        while self.stats()["unique"] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.stats()} of {count} events arrived")
            time.sleep(0.01)  # polling the receiver process
        return time.perf_counter()

    def close(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(timeout=10)


# -- latency ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_latency(server: Any, receiver: Receiver, jobs: int) -> dict[str, Any]:
    from sqlalchemy import select

    from outcrop.store.database import create_db_engine
    from outcrop.store.tables import events

    client = server.client()
    write_input(server.bucket(INPUT_BUCKET) / "one.jsonl", 1)
    server.bucket(OUTPUT_BUCKET)
    arns = []
    for i in range(jobs):
        arns.append(
            create_job(
                client, f"latency-{i}", f"s3://{INPUT_BUCKET}/one.jsonl", f"s3://{OUTPUT_BUCKET}/"
            )
        )
        time.sleep(0.05)  # spread the jobs out a little, as independent submissions would be
    for arn in arns:
        job, _ = wait_for_terminal(client, arn, time.perf_counter(), timeout_s=300)
        assert job["status"] == "Completed", job
    receiver.wait_unique(len(HAPPY_PATH) * jobs, 60)
    arrived = receiver.times()
    db = create_db_engine(f"sqlite:///{(server.data_dir / 'outcrop.db').resolve()}")
    try:
        with db.connect() as conn:
            rows = conn.execute(
                select(events.c.event_id, events.c.status, events.c.time_us).where(
                    events.c.job_id.in_([job_id_of(a) for a in arns])
                )
            ).all()
    finally:
        db.dispose()
    latencies_ms = [(arrived[r.event_id] - r.time_us / 1e6) * 1000 for r in rows]
    by_status = {
        status: round(statistics.median(
            (arrived[r.event_id] - r.time_us / 1e6) * 1000 for r in rows if r.status == status
        ), 1)
        for status in HAPPY_PATH
    }  # fmt: skip
    return {
        "events": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 0.5), 1),
        "p99_ms": round(percentile(latencies_ms, 0.99), 1),
        "max_ms": round(max(latencies_ms), 1),
        "median_ms_by_status": by_status,
        "method": "receiver arrival time.time() minus events.time_us of the status change",
    }


# -- sustained delivery ---------------------------------------------------------------------------


def synthetic_events(account_id: str, count: int) -> list[dict[str, Any]]:
    """`count` events of `count // 5` completed jobs, rows exactly as the store writes them."""
    from outcrop.domain.jobs import Job, JobSpec, JobStatus, new_job_id
    from outcrop.events.envelope import state_change_event

    now = datetime.now(UTC)
    rows = []
    for _ in range(count // len(HAPPY_PATH)):
        job_id = new_job_id()
        spec = JobSpec(
            job_name=f"bench-{job_id}",
            model_id=ECHO_MODEL,
            role_arn=f"arn:aws:iam::{account_id}:role/BenchRole",
            input_s3_uri=f"s3://{INPUT_BUCKET}/in.jsonl",
            output_s3_uri=f"s3://{OUTPUT_BUCKET}/",
            timeout_hours=24,
            invocation_type="InvokeModel",
        )
        for status in HAPPY_PATH:
            job = Job(
                job_id=job_id,
                account_id=account_id,
                region="us-east-1",
                spec=spec,
                status=JobStatus(status),
                submit_time=now,
                last_modified_time=now,
                job_expiration_time=now + timedelta(days=7),
            )
            event = state_change_event(job, now)
            rows.append(
                {
                    "event_id": event["id"],
                    "account_id": account_id,
                    "job_id": job_id,
                    "status": status,
                    "time_us": int(now.timestamp() * 1_000_000),
                    "payload": json.dumps(event),
                }
            )
    return rows


def outcrop_side(server: Any, receiver: Receiver, rows: list[dict[str, Any]]) -> float:
    from sqlalchemy import insert

    from outcrop.store.database import create_db_engine
    from outcrop.store.tables import events

    receiver.reset()
    db = create_db_engine(f"sqlite:///{(server.data_dir / 'outcrop.db').resolve()}")
    try:
        with db.begin() as conn:
            conn.execute(insert(events), rows)
        started = time.perf_counter()
    finally:
        db.dispose()
    return receiver.wait_unique(len(rows), 600) - started


async def floor_side(receiver: Receiver, secret: str, rows: list[dict[str, Any]]) -> float:
    from outcrop.events.signing import webhook_headers

    receiver.reset()
    bodies = [(r["event_id"], orjson.dumps(json.loads(r["payload"]))) for r in rows]
    pending = iter(bodies)
    async with httpx.AsyncClient(timeout=30) as client:

        async def worker() -> None:
            for event_id, body in pending:
                headers = {"content-type": "application/json", "user-agent": "outcrop-events/1"}
                headers |= webhook_headers(secret, event_id, int(time.time()), body)
                response = await client.post(receiver.url, content=body, headers=headers)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    assert receiver.stats()["unique"] == len(rows)
    return elapsed


# -- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs for the latency part")
    parser.add_argument("--events", type=int, default=10_000, help="events for throughput")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two sides")
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        serve_receiver()
        return 0

    from outcrop.events.signing import new_secret

    secret = new_secret()
    receiver = Receiver()
    try:
        with tempfile.TemporaryDirectory(prefix="outcrop-bench-events-") as tmp:
            env = {
                "OUTCROP_EVENT_WEBHOOK_URL": receiver.url,
                "OUTCROP_EVENT_WEBHOOK_SECRET": secret,
            }
            with running_server(Path(tmp) / "data", env) as server:
                note(f"latency: {args.jobs} one-record jobs")
                latency = measure_latency(server, receiver, args.jobs)
                note(f"latency: {latency}")
                account_id = json.loads((server.data_dir / "credentials.json").read_text())[
                    "account_id"
                ]
                rows = synthetic_events(account_id, args.events)
                # Alternate the sides in rounds so a change in machine load hits both alike.
                step = -(-len(rows) // (args.rounds * len(HAPPY_PATH))) * len(HAPPY_PATH)
                floor_s = outcrop_s = 0.0
                duplicates = 0
                for start in range(0, len(rows), step):
                    chunk = rows[start : start + step]
                    seconds = asyncio.run(floor_side(receiver, secret, chunk))
                    note(f"floor: {len(chunk) / seconds:.0f} events/s")
                    floor_s += seconds
                    seconds = outcrop_side(server, receiver, chunk)
                    note(f"outcrop: {len(chunk) / seconds:.0f} events/s")
                    outcrop_s += seconds
                    duplicates += receiver.stats()["posts"] - len(chunk)
    finally:
        receiver.close()

    floor_rate = len(rows) / floor_s
    outcrop_rate = len(rows) / outcrop_s
    ratio = outcrop_rate / floor_rate
    report = {
        "benchmark": "events",
        "latency": latency,
        "events": len(rows),
        "jobs": len(rows) // len(HAPPY_PATH),
        "rounds": args.rounds,
        "concurrency": CONCURRENCY,
        "outcrop_events_per_s": round(outcrop_rate, 1),
        "floor_events_per_s": round(floor_rate, 1),
        "ratio": round(ratio, 3),
        "goal_ratio": GOAL_RATIO,
        "duplicate_posts": duplicates,
        "load_average": load_average(),
        "ok": ratio >= GOAL_RATIO and duplicates == 0,
    }
    emit(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
