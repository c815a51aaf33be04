"""Storage faults: S3 unreachable mid-job (a TCP proxy cut between Outcrop and moto), and an
output location that becomes unwritable (chattr +i on a local bucket)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from outcrop.engine.retry import StorageRetry
from tests.acceptance.buckets import (
    MOTO_ACCESS_KEY_ID,
    MOTO_REGION,
    MOTO_SECRET_ACCESS_KEY,
    Buckets,
    LocalBuckets,
    S3Buckets,
)
from tests.chaos.conftest import (
    CI,
    ECHO_SLOW,
    PARTS_DIR,
    ChaosJob,
    Model,
    MotoProcess,
    plain_job,
    server_env,
    start_server,
    status_of,
    submit,
    transition_times,
    verify_exactly_once,
    wait_all_terminal,
    write_catalog,
)
from tests.chaos.proxy import TcpProxy
from tests.jobs import TERMINAL, wait_for
from tests.server import OutcropServer

SLOW = Model(ECHO_SLOW)


def started_with_progress(bedrock: Any, job: ChaosJob) -> dict[str, Any] | None:
    got = status_of(bedrock, job)
    assert got["status"] not in TERMINAL, got
    return got if got["status"] == "InProgress" and got.get("processedRecordCount") else None


def visible_objects_are_whole(buckets: Buckets, job: ChaosJob) -> dict[str, int]:
    """Every object under the job's output folder is complete: a `.out` holds all its file's
    records exactly once, a part holds whole JSON lines of consecutive records, the manifest is
    JSON. Returns how many objects of each kind were seen."""
    root = f"out/{job.job_id}/"
    ids = {rel: [r.record_id for r in records] for rel, records in job.files.items()}
    seen = {"out": 0, "part": 0, "manifest": 0}
    for key in buckets.keys(job.out_bucket, root):
        relative = key[len(root) :]
        try:
            data = buckets.get(job.out_bucket, key)
        except (ClientError, FileNotFoundError):
            assert relative.startswith(PARTS_DIR), f"{key} was listed but cannot be read"
            continue  # finalisation deletes parts
        if relative == "manifest.json.out":
            manifest = json.loads(data)
            assert manifest["processedRecordCount"] <= manifest["totalRecordCount"], manifest
            seen["manifest"] += 1
        elif relative.startswith(PARTS_DIR):
            assert data.endswith(b"\n"), f"part {key} is cut short"
            got = [json.loads(line)["recordId"] for line in data[:-1].split(b"\n")]
            assert any(
                got == expected[i : i + len(got)]
                for expected in ids.values()
                for i in range(0, len(expected), 50)
            ), f"part {key} is not one whole shard"
            seen["part"] += 1
        else:
            assert relative.endswith(".out"), key
            assert data.endswith(b"\n"), f"{key} is cut short"
            got = [json.loads(line)["recordId"] for line in data[:-1].split(b"\n")]
            assert got == ids[relative[: -len(".out")]], f"{key} is visible but not whole"
            seen["out"] += 1
    return seen


# -- S3 unreachable -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outage_s", "records"),
    [
        pytest.param(5.0, 800, id="5s"),
        pytest.param(30.0, 1000, id="30s", marks=[pytest.mark.chaos_full]),
    ],
)
def test_s3_unreachable_mid_job_then_back(
    outage_s: float,
    records: int,
    tmp_path: Path,
    servers: list[OutcropServer],
    moto: MotoProcess,
) -> None:
    direct = S3Buckets(moto.endpoint)  # the test's own view, never through the proxy
    with TcpProxy(moto.port) as proxy:
        env = server_env(
            write_catalog(tmp_path / "catalog.toml"),
            OUTCROP_STORAGE="s3",
            OUTCROP_S3_ENDPOINT_URL=proxy.endpoint,
            OUTCROP_S3_ACCESS_KEY_ID=MOTO_ACCESS_KEY_ID,
            OUTCROP_S3_SECRET_ACCESS_KEY=MOTO_SECRET_ACCESS_KEY,
            OUTCROP_S3_REGION=MOTO_REGION,
            OUTCROP_STORAGE_RETRY_S="120",
        )
        server = start_server(servers, tmp_path / "data", env)
        bedrock = server.client()
        job = plain_job(
            "s3out", SLOW, [records // 2, records - records // 2],
            direct.create("in"), direct.create("out"),
        )  # fmt: skip
        submit(bedrock, direct, job)
        wait_for(lambda: started_with_progress(bedrock, job), 60)

        proxy.pause()
        cut = time.monotonic()
        polls = 0
        while time.monotonic() - cut < outage_s:
            got = status_of(bedrock, job)  # the API needs no storage: it keeps answering
            assert got["status"] == "InProgress", got
            seen = visible_objects_are_whole(direct, job)
            assert seen["out"] == 0, f"a .out appeared while S3 was unreachable: {seen}"
            polls += 1
            time.sleep(0.25)  # polling interval while the outage lasts
        during = status_of(bedrock, job)
        proxy.resume()

        def finished() -> dict[str, Any] | None:
            got = status_of(bedrock, job)
            seen = visible_objects_are_whole(direct, job)
            if got["status"] not in TERMINAL:
                assert seen["out"] == 0 or got["status"] == "InProgress", (got, seen)
            return got if got["status"] in TERMINAL else None

        final = wait_for(finished, 180, interval=0.2)
        print(
            f"outage {outage_s:g} s: {polls} polls, at its end {during['processedRecordCount']}"
            f"/{records} processed; job ended {final['status']}"
        )
        verify_exactly_once(direct, job, final)
        assert "retrying in" in server.log(), "the outage never reached the engine"


# -- unwritable output --------------------------------------------------------------------


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """chattr +i on a folder tree: unwritable even for root. Skips where chattr cannot run."""
    result = subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True, check=False)
        reason = f"chattr +i does not work here: {result.stderr.decode().strip()}"
        if CI:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True)


def test_unwritable_output_fails_that_job_only(
    tmp_path: Path, servers: list[OutcropServer]
) -> None:
    data_dir = tmp_path / "data"
    budget_s = 3.0
    env = server_env(
        write_catalog(tmp_path / "catalog.toml"), OUTCROP_STORAGE_RETRY_S=str(budget_s)
    )
    server = start_server(servers, data_dir, env)
    bedrock, buckets = server.client(), LocalBuckets(data_dir)
    bucket_in = buckets.create("in")
    doomed = plain_job("doomed", SLOW, [700], bucket_in, buckets.create("outa"))
    healthy = plain_job("healthy", SLOW, [400], bucket_in, buckets.create("outb"))
    submit(bedrock, buckets, doomed)
    submit(bedrock, buckets, healthy)
    wait_for(lambda: started_with_progress(bedrock, doomed), 60)

    with immutable(buckets.root / doomed.out_bucket):
        locked_at = time.time()
        final = wait_all_terminal(bedrock, [doomed, healthy], 120)
        assert final["doomed"]["status"] == "Failed", final["doomed"]
        message = final["doomed"]["message"]
        assert f"s3://{doomed.out_bucket}/out/{doomed.job_id}/" in message, message
        assert "Operation not permitted" in message, message
        assert f"kept failing for {budget_s:g} s" in message, message
        failed_after = transition_times(data_dir, doomed.job_id)["Failed"] - locked_at
        assert budget_s <= failed_after < budget_s + 20, failed_after
        keys = buckets.keys(doomed.out_bucket, f"out/{doomed.job_id}/")
        assert not [k for k in keys if k.endswith(".jsonl.out")], keys  # no .out at all
    verify_exactly_once(buckets, healthy, final["healthy"])
    print(f"doomed job failed {failed_after:.1f} s after its output became unwritable: {message}")


def test_output_unwritable_briefly_within_budget(
    tmp_path: Path, servers: list[OutcropServer]
) -> None:
    data_dir = tmp_path / "data"
    env = server_env(write_catalog(tmp_path / "catalog.toml"), OUTCROP_STORAGE_RETRY_S="60")
    server = start_server(servers, data_dir, env)
    bedrock, buckets = server.client(), LocalBuckets(data_dir)
    job = plain_job("brief", SLOW, [300, 200], buckets.create("in"), buckets.create("out"))
    submit(bedrock, buckets, job)
    wait_for(lambda: started_with_progress(bedrock, job), 60)
    with immutable(buckets.root / job.out_bucket):
        wait_for(lambda: "retrying in" in server.log(), 30)  # a part write was refused
        assert status_of(bedrock, job)["status"] == "InProgress"
    final = wait_all_terminal(bedrock, [job], 120)
    verify_exactly_once(buckets, job, final[job.name])


# -- the retry budget itself ----------------------------------------------------------------


def test_storage_retry_budget_backs_off_then_gives_up() -> None:
    now = [100.0]
    retry = StorageRetry(budget_s=10.0, base_s=0.5, cap_s=4.0, clock=lambda: now[0])
    delays = []
    while (delay := retry.failed("job")) is not None:
        assert not retry.ready("job")
        delays.append(delay)
        now[0] += delay
        assert retry.ready("job")
    assert delays[0] <= 0.5 and max(delays) <= 4.0
    assert sum(delays) == pytest.approx(10.0)  # the last try lands on the budget's end
    assert retry.failed("job") is not None  # a new streak starts after giving up
    retry.succeeded("job")
    assert retry.ready("job")
    assert "kept failing for 10 s" in retry.message(OSError("disk"))
    assert StorageRetry(budget_s=0).failed("job") is None  # budget 0: fail at once
