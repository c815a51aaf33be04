"""Shared benchmark helpers: a real `outcrop serve` subprocess, echo input files, job polling."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import orjson
from botocore.config import Config

REGION = "us-east-1"
ECHO_MODEL = "outcrop.echo-v1"
ROLE_ARN = "arn:aws:iam::123456789012:role/BenchRole"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
MAX_TOKENS = 64
INPUT_BUCKET = "bench-input"
OUTPUT_BUCKET = "bench-output"
TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})

# About 16 words per record: short chat turns, as in a typical classification or extraction job.
_TEXT = "Classify the sentiment of this customer review of a blue kettle that boils water fast."


@dataclass
class Server:
    """A running `outcrop serve` with its own data dir. Unlike tests/server.py this passes no
    OUTCROP_* tuning at all unless asked: benchmarks measure the embedded defaults."""

    data_dir: Path
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def bucket(self, name: str) -> Path:
        path = self.data_dir / "buckets" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def client(self) -> Any:
        creds = json.loads((self.data_dir / "credentials.json").read_text())
        return boto3.client(
            "bedrock",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=creds["access_key_id"],
            aws_secret_access_key=creds["secret_access_key"],
            config=Config(retries={"max_attempts": 1}),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    data_dir: Path, env: dict[str, str] | None = None, profile_to: Path | None = None
) -> Server:
    """Start `python -m outcrop serve` and wait for /healthz. Inherited OUTCROP_* variables are
    dropped so a developer's shell cannot tune the measurement by accident. With `profile_to`,
    every thread of the server runs under cProfile and the merged stats are written there when
    the server stops (see profile_serve)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OUTCROP_")}
    child_env.update(env or {})
    if profile_to is None:
        cmd = [sys.executable, "-m", "outcrop", "serve"]
    else:
        cmd = [sys.executable, __file__, "profile-serve", str(profile_to.resolve()), "serve"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, env=child_env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(data_dir, process, port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"outcrop serve exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.endpoint}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # readiness of a separate process
    stop_server(server)
    raise RuntimeError(f"outcrop serve did not become ready:\n{server.log()}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextmanager
def running_server(
    data_dir: Path, env: dict[str, str] | None = None, profile_to: Path | None = None
) -> Iterator[Server]:
    server = start_server(data_dir, env, profile_to)
    try:
        yield server
    finally:
        stop_server(server)


def echo_record(i: int) -> dict[str, Any]:
    return {
        "recordId": f"R{i:011d}",
        "modelInput": {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": f"Record {i}. {_TEXT}"}],
        },
    }


def write_input(path: Path, records: int) -> int:
    """Write `records` anthropic-messages records as JSONL; returns the file's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 10_000
    with open(path, "wb") as out:
        for start in range(0, records, chunk):
            stop = min(records, start + chunk)
            out.write(b"".join(orjson.dumps(echo_record(i)) + b"\n" for i in range(start, stop)))
    return path.stat().st_size


def create_job(client: Any, name: str, input_uri: str, output_uri: str) -> str:
    """CreateModelInvocationJob for the echo model; returns the jobArn."""
    response = client.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE_ARN,
        modelId=ECHO_MODEL,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}},
    )
    return str(response["jobArn"])


def job_id_of(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def wait_for_terminal(
    client: Any, arn: str, started: float, timeout_s: float = 1800, interval_s: float = 0.05
) -> tuple[dict[str, Any], dict[str, float]]:
    """Poll GetModelInvocationJob until the job ends; returns the last response and when each
    status was first seen (seconds after `started`, a time.perf_counter() value).

    The interval bounds how late a status is seen; 50 ms is small next to the jobs measured."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = client.get_model_invocation_job(jobIdentifier=arn)
        seen.setdefault(job["status"], round(time.perf_counter() - started, 3))
        if job["status"] in TERMINAL:
            return job, seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {arn} still {job['status']} after {timeout_s} s")
        time.sleep(interval_s)  # polling a separate process's job status


def count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
    return count


def proc_status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...); 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (a process executor's pool workers)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(child) for child in f.read().split()]
    total = proc_cpu_s(pid)
    for child in children:
        with contextlib.suppress(FileNotFoundError):  # exited meanwhile
            total += tree_cpu_s(child)
    return total


def load_average() -> float:
    """The 1-minute load average: benchmarks on a shared machine read it to judge their noise."""
    return round(os.getloadavg()[0], 2)


def parse_env(pairs: list[str]) -> dict[str, str]:
    """`--env KEY=VALUE` options into a dict (for experiments; the default is no tuning)."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("OUTCROP_"):
            raise SystemExit(f"--env takes OUTCROP_NAME=VALUE, not {pair!r}")
        env[key] = value
    return env


def emit(report: dict[str, Any]) -> None:
    """The benchmark's result: one JSON line on stdout (bench/run_all.py collects it)."""
    print(json.dumps(report), flush=True)


def note(message: str) -> None:
    """Progress for a human, on stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


def profile_serve(out: Path, argv: list[str]) -> None:
    """Run the Outcrop CLI with every thread under cProfile; merged stats go to `out` at exit.

    `python -m cProfile` sees only the main thread, but the engine runs on its own thread and
    its blocking steps on asyncio.to_thread workers, so each thread gets its own profiler."""
    import atexit
    import cProfile
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.runcall(original_run, self)

    def dump() -> None:
        main_profile.disable()
        stats = pstats.Stats(main_profile)
        for profile in profiles:
            stats.add(profile)
        stats.dump_stats(str(out))

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    atexit.register(dump)
    # uvicorn re-raises SIGTERM after its graceful shutdown; the default action would kill the
    # process before atexit runs, so turn it into a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from outcrop.cli import main

    sys.argv = ["outcrop", *argv]
    main_profile = cProfile.Profile()
    main_profile.enable()
    main()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "profile-serve":
        profile_serve(Path(sys.argv[2]), sys.argv[3:])
    else:
        raise SystemExit("usage: _common.py profile-serve OUT.prof serve [OPTIONS]")
