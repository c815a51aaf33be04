"""Scale-out: the same echo job run by one `outcrop worker` and by two, on PostgreSQL, as JSON.

Each configuration gets a fresh PostgreSQL database and data dir, one API process
(`outcrop serve --no-engine`) and N worker processes sharing both; the job goes in through the
API and is timed from CreateModelInvocationJob to Completed. The model is the echo backend with
a fixed latency per call, and the engine's concurrency is kept low, so one worker is bound by
latency, not by CPU: the workers' ceiling is `calls in flight x records per call / latency`.

The echo backend answers up to 64 records per call (one micro-batch) at `latency_ms` per call.
With the defaults (shard_records=64, shard_concurrency=2, record_concurrency=4) a worker has 2
calls of 64 records in flight, 128 records per 320 ms: at most 400 records/s, as 8 one-record
calls of 20 ms would give. Two workers should then come close to twice that; the goal is a
ratio of at least 1.8 (end to end, validation and finalisation included).

A "ray" column is reserved for the Ray executor (see the TODO below).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from _common import (
    INPUT_BUCKET,
    OUTPUT_BUCKET,
    ROLE_ARN,
    Server,
    count_lines,
    emit,
    job_id_of,
    load_average,
    note,
    parse_env,
    proc_cpu_s,
    start_server,
    stop_server,
    wait_for_terminal,
    write_input,
)

GOAL_RATIO = 1.8
MODEL_ID = "bench.scale-echo-v1"
ECHO_MAX_BATCH = 64  # outcrop.backends.echo.EchoBackend.max_batch_size
READY_LINE = b"Outcrop worker running"


# -- PostgreSQL ------------------------------------------------------------------------------


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database on the server at `server_url` (SQLAlchemy form, no database name);
    yields its URL and drops it afterwards."""
    import psycopg

    name = f"outcrop_bench_{uuid.uuid4().hex[:12]}"
    admin = server_url.replace("postgresql+psycopg://", "postgresql://", 1).rstrip("/")
    with psycopg.connect(f"{admin}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url.rstrip('/')}/{name}"
    finally:
        with psycopg.connect(f"{admin}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- processes -------------------------------------------------------------------------------


def child_env(env: dict[str, str]) -> dict[str, str]:
    """Our environment without OUTCROP_* (a developer's shell must not tune the run), plus env."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OUTCROP_")}, **env}


def migrate(data_dir: Path, env: dict[str, str]) -> None:
    """Migrate once before the processes start together on the fresh database."""
    cmd = [sys.executable, "-m", "outcrop", "migrate", "--data-dir", str(data_dir)]
    subprocess.run(cmd, env=child_env(env), check=True, capture_output=True, timeout=120)


def start_workers(data_dir: Path, env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    workers = []
    logs = [data_dir.parent / f"worker-{i + 1}.log" for i in range(count)]
    for log_path in logs:
        cmd = [sys.executable, "-m", "outcrop", "worker", "--data-dir", str(data_dir)]
        with open(log_path, "ab") as log:
            workers.append(
                subprocess.Popen(cmd, env=child_env(env), stdout=log, stderr=subprocess.STDOUT)
            )
    deadline = time.monotonic() + 90
    for process, log_path in zip(workers, logs, strict=True):
        while READY_LINE not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                stop_workers(workers)
                raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)  # polling a separate process's log for its ready line
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in workers:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- one configuration -----------------------------------------------------------------------


def settings_env(args: argparse.Namespace, catalog: Path, database_url: str) -> dict[str, str]:
    return {
        "OUTCROP_DATABASE_URL": database_url,
        "OUTCROP_STORAGE": "local",
        "OUTCROP_CATALOG": str(catalog),
        "OUTCROP_SHARD_RECORDS": str(args.shard_records),
        "OUTCROP_MAX_SHARD_RECORDS": str(args.shard_records),
        "OUTCROP_SHARD_CONCURRENCY": str(args.shard_concurrency),
        "OUTCROP_RECORD_CONCURRENCY": str(args.record_concurrency),
        **parse_env(args.env),
    }


def ceiling_per_worker(args: argparse.Namespace) -> float:
    """Records/s one worker can reach at most with one job: calls in flight x records per call
    / latency (the engine's limits; CPU and the database come on top)."""
    per_call = min(ECHO_MAX_BATCH, args.shard_records)
    calls_per_shard = math.ceil(args.shard_records / ECHO_MAX_BATCH)
    in_flight = min(args.record_concurrency, args.shard_concurrency * calls_per_shard)
    return float(in_flight * per_call / (args.latency_ms / 1000))


def run_job(server: Server, records: int) -> dict[str, Any]:
    input_file = server.bucket(INPUT_BUCKET) / "scale" / "in.jsonl"
    write_input(input_file, records)
    server.bucket(OUTPUT_BUCKET)
    client = server.client()
    started = time.perf_counter()
    arn = client.create_model_invocation_job(
        jobName="scale",
        roleArn=ROLE_ARN,
        modelId=MODEL_ID,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{INPUT_BUCKET}/scale/"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{OUTPUT_BUCKET}/out/"}},
    )["jobArn"]
    job, seen = wait_for_terminal(client, arn, started)
    elapsed = time.perf_counter() - started
    if job["status"] != "Completed" or job.get("successRecordCount") != records:
        raise RuntimeError(f"job ended {job['status']}: {job.get('message')}, {job}")
    output = server.bucket(OUTPUT_BUCKET) / "out" / job_id_of(arn) / "in.jsonl.out"
    if count_lines(output) != records:
        raise RuntimeError(f"{output} does not hold {records} records")
    run_s = elapsed - seen.get("InProgress", 0.0)
    return {
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed, 1),
        "in_progress_seconds": round(run_s, 3),
        "in_progress_records_per_s": round(records / run_s, 1) if run_s > 0 else None,
        "statuses_seen_at_s": seen,
    }


def run_workers(args: argparse.Namespace, workers: int, root: Path) -> dict[str, Any]:
    """One API process and `workers` worker processes on a fresh database and data dir."""
    root.mkdir(parents=True)
    catalog = root / "catalog.toml"
    catalog.write_text(
        f'[[models]]\nmodel_id = "{MODEL_ID}"\nbackend = "echo"\nformat = "anthropic-messages"\n'
        f"options = {{ latency_ms = {args.latency_ms} }}\n"
    )
    data_dir = root / "data"
    with fresh_database(args.pg) as database_url:
        env = settings_env(args, catalog, database_url)
        migrate(data_dir, env)
        server = start_server(data_dir, {**env, "OUTCROP_ENGINE": "false"})
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes = start_workers(data_dir, env, workers)
            cpu_before = [proc_cpu_s(p.pid) for p in processes]
            note(f"{workers} worker(s): running {args.records} records")
            result = run_job(server, args.records)
            cpu = [proc_cpu_s(p.pid) - b for p, b in zip(processes, cpu_before, strict=True)]
            result["worker_cpu_s"] = [round(c, 2) for c in cpu]
            note(f"{workers} worker(s): {result['records_per_s']} records/s")
            return result
        finally:
            stop_workers(processes)
            stop_server(server)


# -- the Ray executor's column ---------------------------------------------------------------

RAY_NODES = 2  # head + one worker node, one CPU each, all on this machine
RAY_OBJECT_STORE_BYTES = 100_000_000  # Ray's minimum is 75 MiB; shards return only counts


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc): Ray's worker processes call setsid, so killing
    a node's process group alone would leave its actors running."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], list(children.get(pid, []))
    while stack:
        found.append(stack.pop())
        stack.extend(children.get(found[-1], []))
    return found


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    below = _descendants(process.pid)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in below:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def ray_cluster(root: Path, nodes: int) -> Iterator[str]:
    """`nodes` local Ray nodes as `ray start --block` children in their own sessions; yields the
    head's address and kills exactly these processes afterwards (`ray stop` would kill every
    Ray process on the machine)."""
    ray = str(Path(sys.executable).with_name("ray"))
    temp_dir = Path(tempfile.mkdtemp(prefix="obray-", dir="/tmp"))  # socket paths: keep it short
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(nodes):
            role = (
                ["--head", "--port", str(port), "--temp-dir", str(temp_dir / "ray"),
                 "--include-dashboard", "false", "--ray-client-server-port", str(_free_port())]
                if index == 0 else ["--address", f"127.0.0.1:{port}"]
            )  # fmt: skip
            cmd = [
                ray, "start", "--block", "--num-cpus", "1", "--disable-usage-stats",
                "--object-store-memory", str(RAY_OBJECT_STORE_BYTES),
                "--include-log-monitor", "false",
                # Ports of our own: the defaults clash between nodes on one machine.
                "--dashboard-agent-listen-port", str(_free_port()),
                "--dashboard-agent-grpc-port", str(_free_port()),
                "--metrics-export-port", str(_free_port()),
                "--runtime-env-agent-port", str(_free_port()),
                *role,
            ]  # fmt: skip
            log_path = root / f"ray-node-{index}.log"
            with open(log_path, "ab") as log:
                started.append(subprocess.Popen(
                    cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                ))  # fmt: skip
            deadline = time.monotonic() + 120
            while b"Ray runtime started" not in log_path.read_bytes():
                if started[-1].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray node {index} did not start:\n{log_path.read_text()}")
                time.sleep(0.1)  # polling a separate process's log for its ready line
        yield f"127.0.0.1:{port}"
    finally:
        for process in reversed(started):
            _kill_tree(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def run_ray(args: argparse.Namespace, root: Path) -> dict[str, Any] | None:
    """One API process and one `outcrop worker` whose shards run on a local Ray cluster of
    RAY_NODES nodes, one actor per node (SPREAD). The engine gets RAY_NODES x shard_concurrency
    shard slots, as many as that many workers would have together, so the latency-bound
    ceiling matches the two-worker column; what differs is where the shards run."""
    root.mkdir(parents=True)
    catalog = root / "catalog.toml"
    catalog.write_text(
        f'[[models]]\nmodel_id = "{MODEL_ID}"\nbackend = "echo"\nformat = "anthropic-messages"\n'
        f"options = {{ latency_ms = {args.latency_ms} }}\n"
    )
    data_dir = root / "data"
    with fresh_database(args.pg) as database_url, ray_cluster(root, RAY_NODES) as address:
        env = {
            **settings_env(args, catalog, database_url),
            "OUTCROP_SHARD_CONCURRENCY": str(args.shard_concurrency * RAY_NODES),
            "OUTCROP_EXECUTOR": "ray",
            "OUTCROP_RAY_ADDRESS": address,
            "OUTCROP_RAY_ACTORS": str(RAY_NODES),
            "OUTCROP_RAY_ACTOR_CPUS": "0.5",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        migrate(data_dir, env)
        server = start_server(data_dir, {**env, "OUTCROP_ENGINE": "false"})
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes = start_workers(data_dir, env, 1)
            cpu_before = [proc_cpu_s(p.pid) for p in processes]
            note(f"ray ({RAY_NODES} nodes): running {args.records} records")
            result = run_job(server, args.records)
            cpu = [proc_cpu_s(p.pid) - b for p, b in zip(processes, cpu_before, strict=True)]
            result["worker_cpu_s"] = [round(c, 2) for c in cpu]
            result["ray_nodes"] = RAY_NODES
            result["shard_concurrency"] = args.shard_concurrency * RAY_NODES
            note(f"ray ({RAY_NODES} nodes): {result['records_per_s']} records/s")
            return result
        finally:
            stop_workers(processes)
            stop_server(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=12_000)
    parser.add_argument("--latency-ms", type=int, default=320, help="echo latency per call")
    parser.add_argument("--shard-records", type=int, default=64)
    parser.add_argument("--shard-concurrency", type=int, default=2)
    parser.add_argument("--record-concurrency", type=int, default=4)
    parser.add_argument(
        "--pg",
        default=os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (SQLAlchemy URL without a database); a database is created per run",
    )
    parser.add_argument("--env", action="append", default=[], help="OUTCROP_NAME=VALUE")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="outcrop-bench-scale-"))
    load_before = load_average()
    try:
        one = run_workers(args, 1, tmp / "one")
        two = run_workers(args, 2, tmp / "two")
        ray = run_ray(args, tmp / "ray")
    finally:
        if args.keep:
            note(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ratio = two["records_per_s"] / one["records_per_s"]
    report: dict[str, Any] = {
        "benchmark": "scale",
        "records": args.records,
        "latency_ms_per_call": args.latency_ms,
        "shard_records": args.shard_records,
        "shard_concurrency": args.shard_concurrency,
        "record_concurrency": args.record_concurrency,
        "ceiling_per_worker_records_per_s": round(ceiling_per_worker(args), 1),
        "one_worker": one,
        "two_workers": two,
        "ray": ray,
        "ratio": round(ratio, 3),
        "ratio_in_progress": (
            round(two["in_progress_records_per_s"] / one["in_progress_records_per_s"], 3)
            if one["in_progress_records_per_s"] and two["in_progress_records_per_s"]
            else None
        ),
        "ratio_ray_to_one": (
            round(ray["records_per_s"] / one["records_per_s"], 3) if ray is not None else None
        ),
        "goal_ratio": GOAL_RATIO,
        "meets_goal": ratio >= GOAL_RATIO,
        "load_average": [load_before, load_average()],
        "cpus": os.cpu_count(),
    }
    emit(report)
    return 0 if report["meets_goal"] else 1


if __name__ == "__main__":
    sys.exit(main())
