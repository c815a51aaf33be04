"""Control-plane API throughput and latency next to floors on the same stack, printed as JSON.

Part 1 seeds `--jobs` jobs through CreateModelInvocationJob on a server without the engine, then
drives it for `--duration` seconds per route with `--clients` concurrent clients (asyncio tasks
sharing one httpx connection pool; each request is freshly SigV4-signed with botocore's signer,
and the server verifies every signature):

- GetModelInvocationJob of a random seeded job,
- ListModelInvocationJobs with maxResults=100 (the first page),
- floor 1: GET /healthz, unsigned (same uvicorn + Starlette stack, no SigV4, no database),
- floor 2: a signed GET of a job id that does not exist (SigV4 + one primary-key lookup + a
  typed 404), the cheapest signed route.

Part 2 checks that "a List page taken deep inside a store of 100,000 jobs costs at most 1.5x the
first page": `--deep-jobs` rows are inserted straight into the SQLite database (SQLAlchemy Core,
in bulk) before the server starts; a deep nextToken is reached by paging with maxResults=1000
`--deep-pages` times; then the first page and the deep page (maxResults=100 each) are requested
alternately `--samples` times and the medians compared.

The load generator runs in this process and shares the machine's CPUs with the server, so the
absolute numbers are a lower bound; the ratios to the floors are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from _common import REGION, ROLE_ARN, emit, note, running_server

DEEP_GOAL_RATIO = 1.5
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


class Signer:
    def __init__(self, endpoint: str, data_dir: Path) -> None:
        creds = json.loads((data_dir / "credentials.json").read_text())
        self.endpoint = endpoint
        self.account_id = str(creds["account_id"])
        self._auth = SigV4Auth(
            Credentials(creds["access_key_id"], creds["secret_access_key"]), "bedrock", REGION
        )

    def headers(self, method: str, target: str, body: bytes = b"") -> dict[str, str]:
        request = AWSRequest(method=method, url=self.endpoint + target, data=body)
        if body:
            request.headers["Content-Type"] = "application/json"
        self._auth.add_auth(request)
        return dict(request.headers.items())


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    index = min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))
    return round(sorted_ms[index], 3)


async def _drive(
    endpoint: str,
    targets: list[str],
    signer: Signer | None,
    expect: int,
    clients: int,
    duration: float,
) -> dict[str, Any]:
    """`clients` tasks request random `targets` back to back for `duration` seconds."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=endpoint, limits=limits, timeout=30) as http:
        deadline = time.perf_counter() + duration

        async def worker(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                target = rng.choice(targets)
                headers = signer.headers("GET", target) if signer else {}
                started = time.perf_counter()
                response = await http.get(target, headers=headers)
                elapsed = time.perf_counter() - started
                if response.status_code != expect:
                    errors += 1
                latencies.append(elapsed * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "unexpected_status": errors,
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
    }


def _seed_by_api(client: Any, jobs: int) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    def create(i: int) -> str:
        return str(
            client.create_model_invocation_job(
                jobName=f"bench-{i}",
                roleArn=ROLE_ARN,
                modelId=MODEL_ID,
                inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://bench-input/in/"}},
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bench-output/out/"}},
            )["jobArn"]
        )

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(create, range(jobs)))


def part_routes(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    env = {
        "OUTCROP_ENGINE": "false",
        # Seeded jobs never finish without the engine; the active-job quota must hold them all.
        "OUTCROP_MAX_ACTIVE_JOBS_PER_ACCOUNT": str(args.jobs + 1000),
        # 32 clients of one account measure throughput, not the per-account rate limit.
        "OUTCROP_RATE_LIMIT_RPS": "0",
    }
    with running_server(tmp / "routes" / "data", env) as server:
        started = time.perf_counter()
        arns = _seed_by_api(server.client(), args.jobs)
        seeded_s = time.perf_counter() - started
        note(f"seeded {len(arns)} jobs through the API in {seeded_s:.1f} s")
        signer = Signer(server.endpoint, server.data_dir)
        ids = [arn.rsplit("/", 1)[1] for arn in arns]
        cases: dict[str, tuple[list[str], Signer | None, int]] = {
            "get": ([f"/model-invocation-job/{i}" for i in ids], signer, 200),
            "list_100": (["/model-invocation-jobs?maxResults=100"], signer, 200),
            "floor_healthz_unsigned": (["/healthz"], None, 200),
            "floor_signed_not_found": (["/model-invocation-job/zzzzzzzzzzzz"], signer, 404),
        }
        results: dict[str, Any] = {}
        for name, (targets, sign, expect) in cases.items():
            note(f"driving {name} for {args.duration} s with {args.clients} clients")
            results[name] = asyncio.run(
                _drive(server.endpoint, targets, sign, expect, args.clients, args.duration)
            )
    ratios: dict[str, float] = {}
    for route in ("get", "list_100"):
        for floor in ("floor_healthz_unsigned", "floor_signed_not_found"):
            ratios[f"{route}_rps_vs_{floor}"] = round(
                results[route]["rps"] / results[floor]["rps"], 3
            )
            ratios[f"{route}_p50_vs_{floor}"] = round(
                results[route]["p50_ms"] / results[floor]["p50_ms"], 3
            )
    return {"seed_create_rps": round(len(arns) / seeded_s, 1), "routes": results, "ratios": ratios}


def _bulk_insert(data_dir: Path, account_id: str, count: int) -> float:
    """Insert `count` Submitted jobs straight into the job store (1 ms apart, in the past)."""
    from sqlalchemy import insert

    from outcrop.config import Settings
    from outcrop.domain.clock import to_us, utcnow
    from outcrop.domain.jobs import new_job_id
    from outcrop.store.database import create_db_engine
    from outcrop.store.tables import jobs

    engine = create_db_engine(Settings(data_dir=data_dir).effective_database_url)
    start_us = to_us(utcnow()) - count * 1000
    started = time.perf_counter()
    chunk = 10_000
    try:
        with engine.begin() as conn:
            for first in range(0, count, chunk):
                rows = []
                for i in range(first, min(count, first + chunk)):
                    submit_us = start_us + i * 1000
                    rows.append(
                        {
                            "job_id": new_job_id(),
                            "account_id": account_id,
                            "region": REGION,
                            "job_name": f"deep-{i}",
                            "model_id": MODEL_ID,
                            "role_arn": ROLE_ARN,
                            "client_request_token": None,
                            "request_hash": "bench",
                            "status": "Submitted",
                            "submit_us": submit_us,
                            "last_modified_us": submit_us,
                            "expiration_us": submit_us + 24 * 3600 * 1_000_000,
                            "timeout_hours": 24,
                            "invocation_type": "InvokeModel",
                            "input_s3_uri": "s3://bench-input/in/",
                            "output_s3_uri": "s3://bench-output/out/",
                        }
                    )
                conn.execute(insert(jobs), rows)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def part_deep(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    data_dir = tmp / "deep" / "data"
    # A first start creates the schema and the root account; the rows go in while it is down.
    with running_server(data_dir, {"OUTCROP_ENGINE": "false"}):
        pass
    account_id = json.loads((data_dir / "credentials.json").read_text())["account_id"]
    insert_s = _bulk_insert(data_dir, account_id, args.deep_jobs)
    note(f"inserted {args.deep_jobs} jobs into SQLite in {insert_s:.1f} s")
    with running_server(data_dir, {"OUTCROP_ENGINE": "false"}) as server:
        signer = Signer(server.endpoint, server.data_dir)
        with httpx.Client(base_url=server.endpoint, timeout=60) as http:

            def get(target: str) -> tuple[float, dict[str, Any]]:
                headers = signer.headers("GET", target)
                started = time.perf_counter()
                response = http.get(target, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                return elapsed, response.json()

            token = ""
            walk_started = time.perf_counter()
            for _ in range(args.deep_pages):
                suffix = f"&nextToken={quote(token, safe='')}" if token else ""
                _, body = get(f"/model-invocation-jobs?maxResults=1000{suffix}")
                token = body["nextToken"]
            walk_s = time.perf_counter() - walk_started
            depth = args.deep_pages * 1000
            note(f"walked {args.deep_pages} pages of 1000 to depth {depth} in {walk_s:.1f} s")
            first_target = "/model-invocation-jobs?maxResults=100"
            deep_target = f"{first_target}&nextToken={quote(token, safe='')}"
            _, deep_body = get(deep_target)
            assert deep_body["invocationJobSummaries"][0]["jobName"] == (
                f"deep-{args.deep_jobs - depth - 1}"
            ), "the deep token does not point where expected"
            first_ms: list[float] = []
            deep_ms: list[float] = []
            for _ in range(3):  # warm both paths (page cache, statement cache)
                get(first_target)
                get(deep_target)
            for _ in range(args.samples):
                first_ms.append(get(first_target)[0])
                deep_ms.append(get(deep_target)[0])
    first_median = statistics.median(first_ms)
    deep_median = statistics.median(deep_ms)
    ratio = deep_median / first_median
    return {
        "store_jobs": args.deep_jobs,
        "depth": depth,
        "bulk_insert_s": round(insert_s, 2),
        "walk_pages_of_1000_s": round(walk_s, 2),
        "first_page_median_ms": round(first_median, 3),
        "deep_page_median_ms": round(deep_median, 3),
        "deep_vs_first_ratio": round(ratio, 3),
        "goal_ratio_at_most": DEEP_GOAL_RATIO,
        "meets_goal": ratio <= DEEP_GOAL_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs seeded through the API")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per route")
    parser.add_argument("--deep-jobs", type=int, default=100_000, help="jobs inserted in bulk")
    parser.add_argument("--deep-pages", type=int, default=90, help="pages of 1000 to walk")
    parser.add_argument("--samples", type=int, default=50, help="timed requests per page kind")
    parser.add_argument("--skip-routes", action="store_true", help="only run the deep-page part")
    parser.add_argument("--skip-deep", action="store_true", help="only run the routes part")
    args = parser.parse_args()
    if args.deep_pages * 1000 >= args.deep_jobs:
        parser.error("--deep-pages * 1000 must be below --deep-jobs")
    report: dict[str, Any] = {"benchmark": "api", "clients": args.clients}
    with tempfile.TemporaryDirectory(prefix="outcrop-bench-api-") as tmp:
        if not args.skip_routes:
            report["part_routes"] = part_routes(args, Path(tmp))
        if not args.skip_deep:
            report["part_deep_page"] = part_deep(args, Path(tmp))
    emit(report)


if __name__ == "__main__":
    main()
