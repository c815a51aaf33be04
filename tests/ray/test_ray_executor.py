"""The Ray executor on a real two-node Ray cluster on this machine (see conftest.py).

Each test starts `outcrop serve` with OUTCROP_EXECUTOR=ray pointed at the session cluster; its
two shard actors (half a CPU each, SPREAD) land one on each node. A small job completes with
exact output; a larger job survives SIGKILL of the worker node while shards run there: Ray
restarts the lost actor on the head and the lost shards run again, and the job still ends
Completed with every record exactly once, in input order, and exact counts and manifest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.acceptance.buckets import LocalBuckets
from tests.acceptance.conftest import (
    anthropic_body,
    assert_anthropic_output,
    expected_anthropic,
    job_id_of,
)
from tests.jobs import create_job, read_jsonl, wait_for, wait_for_terminal, write_jsonl
from tests.server import OutcropServer

if TYPE_CHECKING:
    from tests.ray.conftest import RayCluster

pytestmark = pytest.mark.ray

MODEL = "acme.ray-echo-v1"
BUCKET = "ray-bucket"
# Micro-batches of 4 records, 40 ms each, 2 at a time per shard: a 200-record shard takes ~1 s,
# so a 4,000-record job runs for seconds and a node can die in the middle of it.
CATALOG = f"""
[[models]]
model_id = "{MODEL}"
backend = "echo"
format = "anthropic-messages"
options = {{ latency_ms = 40, batch_size = 4 }}
"""
BAD_EVERY = 97  # every 97th body lacks max_tokens: a per-record 400, counted as an error


@dataclass
class RayServer:
    server: OutcropServer
    bedrock: Any
    cluster: RayCluster

    @property
    def buckets(self) -> Path:
        return self.server.data_dir / "buckets"

    def actors_by_node(self) -> tuple[list[int], list[int]]:
        """Pids of our shard actors on the head and on the live worker node."""
        assert self.cluster.head is not None
        workers = self.cluster.live_workers()
        on_workers = [pid for node in workers for pid in node.actor_pids()]
        return self.cluster.head.actor_pids(), on_workers


def no_actors_left(cluster: RayCluster) -> bool:
    nodes = [*([cluster.head] if cluster.head else []), *cluster.live_workers()]
    return not any(node.actor_pids() for node in nodes)


@pytest.fixture
def ray_server(two_nodes: RayCluster, tmp_path: Path) -> Iterator[RayServer]:
    """`outcrop serve` on the Ray executor, its actors placed one per node before the test."""
    # A previous test's server kills its actors on exit; wait for them to go so that the
    # placement check below sees this server's actors only.
    wait_for(lambda: no_actors_left(two_nodes), timeout=60)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    server = OutcropServer(
        data_dir=tmp_path / "data",
        env={
            "OUTCROP_STORAGE": "local",
            "OUTCROP_CATALOG": str(catalog),
            "OUTCROP_EXECUTOR": "ray",
            "OUTCROP_RAY_ADDRESS": two_nodes.address,
            "OUTCROP_RAY_ACTORS": "2",
            "OUTCROP_RAY_ACTOR_CPUS": "0.5",
            "OUTCROP_SHARD_RECORDS": "200",
            "OUTCROP_MAX_SHARD_RECORDS": "200",
            "OUTCROP_SHARD_CONCURRENCY": "4",
            "OUTCROP_RECORD_CONCURRENCY": "2",
            "RAY_USAGE_STATS_ENABLED": "0",
        },
    )
    try:
        server.start(timeout=120)
        deployment = RayServer(server, server.client(), two_nodes)
        # SPREAD over two nodes with room for both actors on either: one lands on each.
        wait_for(lambda: all(map(len, deployment.actors_by_node())), timeout=90)
        yield deployment
    finally:
        server.stop()


def make_records(count: int, tag: str) -> list[dict[str, Any]]:
    records = []
    for i in range(count):
        body = anthropic_body(f"{tag} record {i} " + "word " * (i % 5), 6)
        if i % BAD_EVERY == BAD_EVERY - 1:
            del body["max_tokens"]
        records.append({"recordId": f"{tag}-{i:06d}", "modelInput": body})
    return records


def run_job(deployment: RayServer, records: list[dict[str, Any]], name: str) -> str:
    write_jsonl(deployment.buckets / BUCKET / name / "records.jsonl", records)
    return create_job(
        deployment.bedrock, name, MODEL, f"s3://{BUCKET}/{name}/", f"s3://{BUCKET}/{name}-out/"
    )


def assert_exactly_once(
    deployment: RayServer, job: dict[str, Any], records: list[dict[str, Any]], name: str
) -> None:
    """Completed; one .out with every record once, in input order, each the echo answer or a
    400; the manifest and the job's counts exact; the temporary parts gone."""
    assert job["status"] == "Completed", job
    job_id = job_id_of(job["jobArn"])
    root = f"{name}-out/{job_id}/"
    buckets = LocalBuckets(deployment.server.data_dir)

    def objects_without_parts() -> list[str] | None:
        keys = [key[len(root) :] for key in buckets.keys(BUCKET, root)]
        return None if any(key.startswith("_outcrop_parts/") for key in keys) else keys

    # The parts are deleted just after the job turns terminal: allow them a moment to go.
    keys = wait_for(objects_without_parts, timeout=10)
    assert keys == ["manifest.json.out", "records.jsonl.out"]
    output = read_jsonl(deployment.buckets / BUCKET / root / "records.jsonl.out")
    ids = [line["recordId"] for line in output]
    repeated = {rid: n for rid, n in Counter(ids).items() if n > 1}
    assert not repeated, f"records written more than once: {list(repeated.items())[:5]}"
    assert ids == [r["recordId"] for r in records], "records missing or out of order"
    success = errors = input_tokens = output_tokens = 0
    for line, record in zip(output, records, strict=True):
        assert line["modelInput"] == record["modelInput"]
        if "max_tokens" in record["modelInput"]:
            assert_anthropic_output(line, MODEL)
            usage = expected_anthropic(record["modelInput"], MODEL)["usage"]
            success += 1
            input_tokens += usage["input_tokens"]
            output_tokens += usage["output_tokens"]
        else:
            assert line["error"]["errorCode"] == 400, line
            errors += 1
    expected = {
        "totalRecordCount": len(records),
        "processedRecordCount": len(records),
        "successRecordCount": success,
        "errorRecordCount": errors,
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
    }
    assert json.loads(buckets.get(BUCKET, f"{root}manifest.json.out")) == expected
    counts = {k: v for k, v in expected.items() if "Token" not in k}
    assert {k: job.get(k) for k in counts} == counts


def test_small_job_completes_on_ray(ray_server: RayServer) -> None:
    records = make_records(600, "small")
    arn = run_job(ray_server, records, "small")
    job = wait_for_terminal(ray_server.bedrock, arn, timeout=120)
    assert_exactly_once(ray_server, job, records, "small")


def test_job_survives_a_node_dying(ray_server: RayServer) -> None:
    cluster = ray_server.cluster
    head = cluster.head
    assert head is not None
    (worker,) = cluster.live_workers()
    records = make_records(4000, "node")
    arn = run_job(ray_server, records, "node")

    def progressed() -> dict[str, Any] | None:
        job: dict[str, Any] = ray_server.bedrock.get_model_invocation_job(jobIdentifier=arn)
        return job if job.get("processedRecordCount", 0) > 0 else None

    before = wait_for(progressed, timeout=120)
    # Kill while the worker node's actor runs a shard, so that a shard is lost with it.
    wait_for(worker.busy_actor_pids, timeout=30, interval=0.01)
    worker.kill()
    # A kill that came after the last shard would test nothing: the job must still have work.
    assert before["status"] == "InProgress", before
    assert before["processedRecordCount"] < len(records), before

    job = wait_for_terminal(ray_server.bedrock, arn, timeout=180)
    assert_exactly_once(ray_server, job, records, "node")

    # Ray saw the node die and restarted its actor on the head (max_restarts=-1).
    nodes = cluster.nodes()
    assert [n["head"] for n in nodes if n["alive"]] == [True], nodes
    assert any(not n["alive"] for n in nodes), nodes
    wait_for(lambda: len(head.actor_pids()) == 2, timeout=60)
