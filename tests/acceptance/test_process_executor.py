"""The process executor: shards run in a pool of local processes, with the same exact output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jobs import create_job, read_jsonl, wait_for, wait_for_terminal, write_jsonl
from tests.server import OutcropServer, running_server


def test_a_job_on_the_process_executor_matches_the_in_process_one(tmp_path: Path) -> None:
    records = [
        {
            "recordId": f"r{i}",
            "modelInput": {
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": f"record {i} says " + "word " * (i % 9)}],
            },
        }
        for i in range(700)
    ]
    records[5]["modelInput"] = {"anthropic_version": "bedrock-2023-05-31", "messages": []}
    outputs = {}
    for executor in ("local", "process"):
        data = tmp_path / executor
        write_jsonl(data / "buckets" / "exec-in" / "in.jsonl", records)
        (data / "buckets" / "exec-out").mkdir(parents=True)
        env = {
            "OUTCROP_EXECUTOR": executor,
            "OUTCROP_SHARD_RECORDS": "100",
            "OUTCROP_MAX_SHARD_RECORDS": "100",
            "OUTCROP_PROCESS_WORKERS": "2",
        }
        with running_server(data, **env) as server:
            bedrock = server.client()
            arn = create_job(
                bedrock, f"on-{executor}", "outcrop.echo-v1", "s3://exec-in/", "s3://exec-out/"
            )
            job = wait_for_terminal(bedrock, arn)
        assert (job["status"], job["successRecordCount"], job["errorRecordCount"]) == (
            "Completed",
            699,
            1,
        )
        lines = read_jsonl(data / "buckets" / "exec-out" / arn.rsplit("/", 1)[-1] / "in.jsonl.out")
        for line in lines:
            line.get("modelOutput", {}).pop("id", None)  # a random message id
        outputs[executor] = lines
    assert [r["recordId"] for r in outputs["process"]] == [f"r{i}" for i in range(700)]
    assert outputs["process"] == outputs["local"]


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_pool_workers_end_with_the_server(tmp_path: Path, how: str) -> None:
    """SIGTERM stops the pool cleanly; after kill -9 the workers notice and exit by themselves."""
    env = {"OUTCROP_EXECUTOR": "process", "OUTCROP_PROCESS_WORKERS": "2"}
    server = OutcropServer(tmp_path / "data", env).start()
    try:
        assert server.process is not None
        pid = server.process.pid
        # The pool starts its workers with the engine; the resource tracker is a child too.
        workers = wait_for(lambda: len(_children(pid)) >= 3 and _children(pid), what="workers")
        assert all(_alive(child) for child in workers)
    finally:
        server.stop() if how == "stop" else server.kill()
    wait_for(lambda: not any(_alive(child) for child in workers), timeout=30, what="no workers")
