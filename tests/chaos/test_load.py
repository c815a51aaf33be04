"""Load: many concurrent API clients (threads, each with its own boto3 client) doing Get and List
while four jobs run. Zero errors; p50/p99 latency printed and written to `load.json` in the
test's tmp dir; each job's InProgress->Completed time compared with the same job run alone."""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.buckets import LocalBuckets
from tests.chaos.conftest import (
    ChaosJob,
    Model,
    api_client,
    plain_job,
    rng_for,
    start_server,
    submit,
    transition_times,
    verify_exactly_once,
    wait_all_terminal,
)
from tests.jobs import wait_for
from tests.server import OutcropServer

pytestmark = pytest.mark.load

LOAD_MODEL = "chaos.load-echo"
LATENCY_MS = 100  # latency-bound, not CPU-bound: 4 calls in flight -> ~40 records/s per job


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client_loop(
    server: OutcropServer, arns: list[str], stop: threading.Event, load: Load, seed: int
) -> None:
    rng = rng_for(f"client-{seed}")
    bedrock = api_client(server)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            if rng.random() < 0.5:
                bedrock.get_model_invocation_job(jobIdentifier=rng.choice(arns))
            else:
                bedrock.list_model_invocation_jobs(maxResults=20, sortOrder="Descending")
        except Exception as exc:  # any failure at all counts against the run
            with load.lock:
                load.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        with load.lock:
            load.latencies.append(elapsed)


def in_progress_seconds(data_dir: Path, job: ChaosJob) -> float:
    times = transition_times(data_dir, job.job_id)
    return times["Completed"] - times["InProgress"]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0


@pytest.mark.parametrize(
    ("clients", "seconds", "records", "bound"),
    [
        # 2 shared cores: the fast run asserts a generous bound (see RELIABILITY.md)
        pytest.param(20, 10.0, 200, 1.5, id="fast-20-clients-10s"),
        pytest.param(100, 60.0, 1600, 1.2, id="full-100-clients-60s", marks=pytest.mark.chaos_full),
    ],
)
@pytest.mark.timeout(900)
def test_concurrent_clients_while_four_jobs_run(
    clients: int,
    seconds: float,
    records: int,
    bound: float,
    tmp_path: Path,
    servers: list[OutcropServer],
) -> None:
    data_dir = tmp_path / "data"
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[[models]]\nmodel_id = "{LOAD_MODEL}"\nbackend = "echo"\nformat = "anthropic-messages"\n'
        f"options = {{ latency_ms = {LATENCY_MS}, batch_size = 1 }}\n"
    )
    env = {
        "OUTCROP_CATALOG": str(catalog),
        "OUTCROP_RATE_LIMIT_RPS": "0",
        "OUTCROP_SHARD_RECORDS": "50",
        "OUTCROP_MAX_SHARD_RECORDS": "50",
        "OUTCROP_SHARD_CONCURRENCY": "2",
        "OUTCROP_RECORD_CONCURRENCY": "4",
        "OUTCROP_MAX_JOBS_IN_PROGRESS": "8",
        "OUTCROP_MAX_JOBS_PER_MODEL": "8",
    }
    server = start_server(servers, data_dir, env)
    bedrock, buckets = server.client(), LocalBuckets(data_dir)
    bucket_in, bucket_out = buckets.create("in"), buckets.create("out")
    model = Model(LOAD_MODEL)

    def make(name: str) -> ChaosJob:
        return plain_job(name, model, [records], bucket_in, bucket_out, bad_every=0)

    alone = submit(bedrock, buckets, make("alone"))
    final = wait_all_terminal(bedrock, [alone], 300)
    verify_exactly_once(buckets, alone, final[alone.name])
    baseline = in_progress_seconds(data_dir, alone)

    load, stop = Load(), threading.Event()
    jobs = [make(f"loaded{n}") for n in range(4)]
    threads = [
        threading.Thread(target=client_loop, args=(server, [alone.arn], stop, load, n), daemon=True)
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(load.latencies) >= clients, 60)  # every client is under way
    window = time.monotonic()
    for job in jobs:
        submit(bedrock, buckets, job)
    final = wait_all_terminal(bedrock, jobs, 300)
    jobs_done = time.monotonic() - window
    wait_for(lambda: time.monotonic() - window >= seconds, seconds + 30, interval=0.2)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    for job in jobs:
        verify_exactly_once(buckets, job, final[job.name])
    loaded = {job.name: in_progress_seconds(data_dir, job) for job in jobs}
    ratios = {name: value / baseline for name, value in loaded.items()}
    report: dict[str, Any] = {
        "clients": clients,
        "window_s": seconds,
        "requests": len(load.latencies),
        "errors": len(load.errors),
        "requests_per_s": len(load.latencies) / (time.monotonic() - window),
        "p50_ms": percentile(load.latencies, 50) * 1000,
        "p99_ms": percentile(load.latencies, 99) * 1000,
        "max_ms": max(load.latencies) * 1000,
        "job_alone_s": baseline,
        "jobs_under_load_s": loaded,
        "slowdown_ratios": ratios,
        "jobs_finished_after_s": jobs_done,
    }
    out = tmp_path / "load.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nload report ({out}):\n{json.dumps(report, indent=2)}")
    assert load.errors == [], load.errors[:5]
    assert jobs_done < seconds, f"the jobs outlasted the load window: {jobs_done:.1f} s"
    assert max(ratios.values()) <= bound, report
