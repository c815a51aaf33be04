"""kill -9 of the server at seeded random moments while jobs of every kind of model run: after the
restarts every job is Completed with each record exactly once and exact counts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.buckets import LocalBuckets
from tests.chaos.conftest import (
    MODELS,
    ChaosJob,
    plain_job,
    rng_for,
    server_env,
    start_server,
    status_of,
    submit,
    verify_exactly_once,
    wait_all_terminal,
    write_catalog,
)
from tests.integration.fake_openai import FakeOpenAI
from tests.jobs import TERMINAL
from tests.server import OutcropServer


def run_crash_trial(
    tmp_path: Path,
    servers: list[OutcropServer],
    fake: FakeOpenAI,
    jobs_count: int,
    kills_count: int,
    name: str,
) -> list[str]:
    rng = rng_for(name)
    data_dir = tmp_path / "data"
    catalog = write_catalog(tmp_path / "catalog.toml", fake.base_url)
    server = start_server(servers, data_dir, server_env(catalog))
    buckets = LocalBuckets(data_dir)
    bedrock = server.client()
    bucket_in, bucket_out = buckets.create("in"), buckets.create("out")
    jobs: list[ChaosJob] = []
    for n in range(jobs_count):
        model = MODELS[n % len(MODELS)]
        sizes = [rng.randint(200, 600) for _ in range(rng.choice([1, 2]))]
        jobs.append(plain_job(f"j{n:02d}", model, sizes, bucket_in, bucket_out))
    for job in jobs:
        submit(bedrock, buckets, job)

    kills: list[str] = []
    while len(kills) < kills_count:
        delay = rng.uniform(0.2, 1.5)
        # The random moment is the point of the test: a seeded wait, then kill -9.
        statuses = _statuses_after(bedrock, jobs, delay)
        if all(s in TERMINAL for s in statuses.values()):
            break
        server.kill()
        running = sum(1 for s in statuses.values() if s == "InProgress")
        kills.append(f"+{delay:.2f}s ({running} InProgress)")
        server.start()
        bedrock = server.client()

    final = wait_all_terminal(bedrock, jobs, timeout=240)
    context = f"seed name {name}, kills {kills}"
    for job in jobs:
        try:
            verify_exactly_once(buckets, job, final[job.name])
        except AssertionError as exc:
            raise AssertionError(f"{context}: {exc}\n{server.log()[-3000:]}") from None
    return kills


def _statuses_after(bedrock: Any, jobs: list[ChaosJob], delay: float) -> dict[str, str]:
    time.sleep(delay)
    return {job.name: status_of(bedrock, job)["status"] for job in jobs}


def test_kill_9_during_mixed_jobs_fast(
    tmp_path: Path, servers: list[OutcropServer], fake_openai: FakeOpenAI
) -> None:
    kills = run_crash_trial(tmp_path, servers, fake_openai, 5, 2, "crash-fast")
    print(f"kills: {kills}")
    assert len(kills) == 2, f"the jobs ended before both kills: {kills}"


@pytest.mark.chaos_full
@pytest.mark.timeout(900)
def test_kill_9_during_twenty_mixed_jobs(
    tmp_path: Path, servers: list[OutcropServer], fake_openai: FakeOpenAI
) -> None:
    kills = run_crash_trial(tmp_path, servers, fake_openai, 20, 8, "crash-full")
    print(f"kills: {kills}")
    assert len(kills) >= 4, f"the jobs ended before enough kills: {kills}"
