"""The SQLite job store locked (BEGIN EXCLUSIVE from another connection) while API clients and a
job run: requests wait (busy_timeout) or fail with a typed 5xx, nothing is half-written, and
every job completes exactly once afterwards."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.acceptance.buckets import LocalBuckets
from tests.chaos.conftest import (
    ECHO,
    ECHO_SLOW,
    ChaosJob,
    Model,
    api_client,
    jsonl,
    plain_job,
    server_env,
    start_server,
    status_of,
    submit,
    verify_exactly_once,
    wait_all_terminal,
    write_catalog,
)
from tests.jobs import ROLE, wait_for
from tests.server import OutcropServer

BUSY_TIMEOUT_S = 30  # outcrop.store.database: PRAGMA busy_timeout=30000


@dataclass
class Outcome:
    op: str
    started: float
    seconds: float
    error: tuple[int, str | None] | None = None  # HTTP status, x-amzn-ErrorType


class Clients:
    """Threads calling the API in a loop until stopped; every call's outcome is kept."""

    def __init__(self, server: OutcropServer, job: ChaosJob, small: ChaosJob) -> None:
        self.server, self.job, self.small = server, job, small
        self.outcomes: list[Outcome] = []
        self.created: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(op,), daemon=True)
            for op in ("get", "list", "create", "tag")
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=BUSY_TIMEOUT_S + 30)

    def _loop(self, op: str) -> None:
        bedrock = api_client(self.server)
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            outcome = Outcome(op, started, 0.0)
            try:
                self._call(bedrock, op, n)
            except ClientError as exc:
                meta = exc.response["ResponseMetadata"]
                error_type = meta.get("HTTPHeaders", {}).get("x-amzn-errortype")
                outcome.error = (meta["HTTPStatusCode"], error_type)
            except BotoCoreError as exc:  # no HTTP answer at all
                outcome.error = (0, type(exc).__name__)
            outcome.seconds = time.monotonic() - started
            with self._lock:
                self.outcomes.append(outcome)
            if op == "create":
                self.stop.wait(0.3)  # a new job every ~0.3 s is plenty

    def _call(self, bedrock: Any, op: str, n: int) -> None:
        if op == "get":
            bedrock.get_model_invocation_job(jobIdentifier=self.job.arn)
        elif op == "list":
            bedrock.list_model_invocation_jobs(maxResults=50)
        elif op == "tag":
            bedrock.tag_resource(resourceARN=self.job.arn, tags=[{"key": "n", "value": str(n)}])
        else:
            arn = bedrock.create_model_invocation_job(
                jobName=f"during-lock-{n}",
                roleArn=ROLE,
                modelId=ECHO,
                inputDataConfig={
                    "s3InputDataConfig": {"s3Uri": f"s3://{self.small.in_bucket}/small/"}
                },
                outputDataConfig={
                    "s3OutputDataConfig": {"s3Uri": f"s3://{self.small.out_bucket}/out/"}
                },
            )["jobArn"]
            with self._lock:
                self.created.append(arn)


def hold_exclusive_lock(db: Path, seconds: float) -> float:
    """BEGIN EXCLUSIVE on the server's database for `seconds`; returns when it was taken."""
    conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        taken = time.monotonic()
        time.sleep(seconds)  # the fault itself: how long the database stays locked
        conn.execute("ROLLBACK")
        return taken
    finally:
        conn.close()


@pytest.mark.parametrize(
    "hold_s",
    [
        pytest.param(4.0, id="4s-within-busy-timeout"),
        pytest.param(
            BUSY_TIMEOUT_S + 8.0, id="38s-past-busy-timeout", marks=pytest.mark.chaos_full
        ),
    ],
)
def test_sqlite_locked_while_api_and_job_run(
    hold_s: float, tmp_path: Path, servers: list[OutcropServer]
) -> None:
    data_dir = tmp_path / "data"
    server = start_server(servers, data_dir, server_env(write_catalog(tmp_path / "catalog.toml")))
    bedrock, buckets = server.client(), LocalBuckets(data_dir)
    bucket_in, bucket_out = buckets.create("in"), buckets.create("out")
    job = submit(
        bedrock, buckets, plain_job("main", Model(ECHO_SLOW), [500], bucket_in, bucket_out)
    )
    small = plain_job("small", Model(ECHO), [20], bucket_in, bucket_out)
    buckets.put(bucket_in, "small/s.jsonl", jsonl(small.records))
    wait_for(lambda: status_of(bedrock, job)["status"] == "InProgress", 60)

    with Clients(server, job, small) as clients:
        wait_for(lambda: len(clients.outcomes) >= 8, 30)  # the clients are under way
        taken = hold_exclusive_lock(data_dir / "outcrop.db", hold_s)
        released = time.monotonic()
        wait_for(lambda: any(o.started > released + 1 for o in clients.outcomes), 60)

    during = [
        o for o in clients.outcomes if taken <= o.started + o.seconds and o.started <= released
    ]
    failed = [o for o in clients.outcomes if o.error is not None]
    for outcome in clients.outcomes:
        if outcome.error is not None:
            status, error_type = outcome.error
            # failures are typed server errors on a connection that stays usable (status 0
            # would be a reset connection)
            assert status >= 500 and error_type, outcome
    writes = [o for o in during if o.op in ("create", "tag")]
    assert writes, "no write request overlapped the lock"
    waited = max(o.seconds for o in writes)
    reads = [o for o in during if o.op in ("get", "list")]
    summary = (
        f"lock {hold_s:g} s: {len(clients.outcomes)} requests, {len(during)} during the lock, "
        f"{len(failed)} failed {sorted({o.error for o in failed if o.error})}, longest write "
        f"{waited:.1f} s, longest read {max((o.seconds for o in reads), default=0):.2f} s"
    )
    longest = sorted(writes, key=lambda o: -o.seconds)[:3]
    summary += ", slowest writes " + ", ".join(
        f"{o.op} from {o.started - taken:+.1f} s took {o.seconds:.1f} s" for o in longest
    )
    print(summary)
    if hold_s < BUSY_TIMEOUT_S:
        assert failed == [], summary  # every request waited out the lock and succeeded
        assert waited >= hold_s / 2, summary  # and writes really were held up by it
    else:
        assert failed, summary  # past busy_timeout, writes fail (typed 500) instead of hanging
        assert {o.op for o in failed} <= {"create", "tag"}, summary  # reads never fail (WAL)

    # Nothing half-written: exactly the creates that succeeded exist, and every job completes.
    listed = {
        j["jobArn"]
        for j in bedrock.list_model_invocation_jobs(maxResults=1000)["invocationJobSummaries"]
    }
    assert listed == {job.arn, *clients.created}, summary
    smalls = []
    for arn in clients.created:
        copy = ChaosJob(
            small.name, small.model, {"s.jsonl": small.records}, bucket_in, bucket_out, arn
        )
        smalls.append(copy)
    final = wait_all_terminal(bedrock, [job], 120)
    verify_exactly_once(buckets, job, final[job.name])
    for copy in smalls:
        got = wait_for(
            lambda c=copy: (s := status_of(bedrock, c))["status"] == "Completed" and s, 120
        )
        verify_exactly_once(buckets, copy, got)
    tags = bedrock.list_tags_for_resource(resourceARN=job.arn)["tags"]
    assert [t["key"] for t in tags] == ["n"], tags
