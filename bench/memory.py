"""Memory and scaling: the server's peak RSS over a large echo job, and how its time scales.

Two jobs, each on a fresh `outcrop serve` with default settings: a large one (1,000,000 records
by default) and one a tenth of its size. Peak RSS is the server's VmHWM at the end of the large
job (VmRSS is also sampled every 50 ms, for the shape). Streaming means a bounded working set:
memory must not grow with the job, and the large job should take about ten times the small one.
Writing the inputs is setup and is not timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    INPUT_BUCKET,
    OUTPUT_BUCKET,
    count_lines,
    create_job,
    emit,
    job_id_of,
    load_average,
    note,
    parse_env,
    proc_cpu_s,
    proc_status_kb,
    running_server,
    wait_for_terminal,
    write_input,
)

GOAL_PEAK_MB = 300
GOAL_SCALING = 1.2
SAMPLE_INTERVAL_S = 0.05


class RssSampler(threading.Thread):
    """Polls a process's VmRSS until stopped; keeps the largest value seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.max_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_INTERVAL_S):
            self.max_kb = max(self.max_kb, proc_status_kb(self.pid, "VmRSS"))


def run_job(work: Path, name: str, input_file: Path, env: dict[str, str]) -> dict[str, Any]:
    """One job on a fresh server; returns its time, CPU, memory and output check."""
    data = work / name
    target = data / "buckets" / INPUT_BUCKET / name / "input.jsonl"
    target.parent.mkdir(parents=True)
    (data / "buckets" / OUTPUT_BUCKET).mkdir(parents=True)
    try:
        os.link(input_file, target)  # the same bytes without a second copy on disk
    except OSError:
        shutil.copyfile(input_file, target)
    records = count_lines(target)
    note(f"memory: {name}: {records} records")
    with running_server(data, env) as server:
        client = server.client()
        idle_kb = proc_status_kb(server.pid, "VmRSS")
        sampler = RssSampler(server.pid)
        sampler.start()
        cpu_before = proc_cpu_s(server.pid)
        started = time.perf_counter()
        arn = create_job(
            client, f"bench-{name}", f"s3://{INPUT_BUCKET}/{name}/", f"s3://{OUTPUT_BUCKET}/{name}/"
        )
        job, seen = wait_for_terminal(client, arn, started, timeout_s=3600)
        elapsed = time.perf_counter() - started
        cpu = proc_cpu_s(server.pid) - cpu_before
        hwm_kb = proc_status_kb(server.pid, "VmHWM")
        sampler.done.set()
        sampler.join()
    out = data / "buckets" / OUTPUT_BUCKET / name / job_id_of(arn) / "input.jsonl.out"
    written = count_lines(out) if out.exists() else 0
    shutil.rmtree(data, ignore_errors=True)
    return {
        "records": records,
        "s": round(elapsed, 3),
        "records_per_s": round(records / elapsed),
        "server_cpu_s": round(cpu, 3),
        "status": job["status"],
        "status_seen_at_s": seen,
        "output_records": written,
        "idle_rss_mb": round(idle_kb / 1024, 1),
        "peak_rss_mb": round(hwm_kb / 1024, 1),
        "sampled_max_rss_mb": round(sampler.max_kb / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--small-records", type=int, help="default: a tenth of --records")
    parser.add_argument("--env", action="append", default=[], help="OUTCROP_NAME=VALUE")
    args = parser.parse_args()
    env = parse_env(args.env)
    small = args.small_records or max(1, args.records // 10)

    work = Path(tempfile.mkdtemp(prefix="outcrop-bench-memory-"))
    try:
        note(f"memory: writing inputs ({args.records} and {small} records)")
        big_input, small_input = work / "big.jsonl", work / "small.jsonl"
        input_bytes = write_input(big_input, args.records)
        write_input(small_input, small)
        load_before = load_average()
        small_run = run_job(work, "small", small_input, env)
        big_run = run_job(work, "big", big_input, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    scaling = big_run["s"] / (args.records / small * small_run["s"])
    peak_mb = big_run["peak_rss_mb"]
    completed = all(
        run["status"] == "Completed" and run["output_records"] == run["records"]
        for run in (big_run, small_run)
    )
    report = {
        "benchmark": "memory",
        "records": args.records,
        "small_records": small,
        "input_mb": round(input_bytes / 1e6, 1),
        "env": env,
        "load_average": [load_before, load_average()],
        "peak_rss_mb": peak_mb,
        "goal_peak_rss_mb": GOAL_PEAK_MB,
        "scaling": round(scaling, 3),
        "goal_scaling": GOAL_SCALING,
        "big": big_run,
        "small": small_run,
        "ok": completed and peak_mb < GOAL_PEAK_MB and scaling <= GOAL_SCALING,
    }
    emit(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
