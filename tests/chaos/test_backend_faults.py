"""A model server that errors, hangs and drops connections (FakeOpenAI's scripted faults): each
record either succeeds after retries or ends as an error record with the right code; the job
Completes with exact counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.buckets import LocalBuckets
from tests.chaos.conftest import (
    OPENAI,
    ChaosJob,
    Expected,
    Model,
    server_env,
    start_server,
    submit,
    verify_exactly_once,
    wait_all_terminal,
    write_catalog,
)
from tests.integration.fake_openai import FakeOpenAI
from tests.server import OutcropServer

MAX_RETRIES = 2  # three attempts per record
# fault marker -> (error code of the record, or None: it succeeds; attempts the fake must see)
FAULTS: dict[str, tuple[int | None, int]] = {
    "": (None, 1),
    "FAULT:500x2": (None, 3),  # fails twice, the third attempt succeeds
    "FAULT:429x1:ra=0": (None, 2),
    "FAULT:503x1": (None, 2),
    "FAULT:dropx1": (None, 2),  # connection closed without an answer, once
    "FAULT:slowx1": (None, 2),  # hangs past the client timeout, once
    "FAULT:badjsonx2": (None, 3),
    "FAULT:500": (500, 3),  # every attempt fails: the last status is the record's code
    "FAULT:503": (503, 3),
    "FAULT:502": (502, 3),
    "FAULT:drop": (502, 3),
    "FAULT:slow": (504, 3),
    "FAULT:badjson": (502, 3),
    "FAULT:400": (400, 1),  # a client error is final at once
}


@pytest.mark.parametrize(
    "copies",
    [pytest.param(3, id="fast"), pytest.param(25, id="full", marks=pytest.mark.chaos_full)],
)
def test_model_server_faults_end_as_record_errors_or_retried_successes(
    copies: int, tmp_path: Path, servers: list[OutcropServer], fake_openai: FakeOpenAI
) -> None:
    data_dir = tmp_path / "data"
    catalog = write_catalog(
        tmp_path / "catalog.toml", fake_openai.base_url, timeout_s=0.5, max_retries=MAX_RETRIES
    )
    server = start_server(servers, data_dir, server_env(catalog))
    bedrock, buckets = server.client(), LocalBuckets(data_dir)
    model = Model(OPENAI)
    records, attempts = [], {}
    for n in range(copies):
        for i, (marker, (code, tries)) in enumerate(sorted(FAULTS.items())):
            text = f"backend-faults {copies}x copy {n} case {i} {marker}".strip()
            records.append(Expected(f"b{n:03d}-{i:02d}", model.body(text), code))
            attempts[text] = tries
    job = ChaosJob(
        "backend", model, {"all.jsonl": records}, buckets.create("in"), buckets.create("out")
    )
    submit(bedrock, buckets, job)
    final = wait_all_terminal(bedrock, [job], 180)[job.name]

    verify_exactly_once(buckets, job, final)  # checks every record's code and the exact counts
    seen = {text: fake_openai.requests_per_prompt[text] for text in attempts}
    assert seen == attempts, "attempts per record differ from the retry policy"
    # Error lines name the upstream status and how many attempts were made.
    out = buckets.get(job.out_bucket, f"out/{job.job_id}/all.jsonl.out").decode()
    assert f"(after {MAX_RETRIES + 1} attempts)" in out
