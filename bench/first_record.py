"""Time to first record: from CreateModelInvocationJob returning to a readable output record.

One `outcrop serve` in the embedded default (no OUTCROP_* settings but the data dir) runs
several jobs one after another, each to its end; for each, the output folder `<out>/<jobId>/`
is polled for an output object (a part under `_outcrop_parts/` while the job runs, or the
final `.out`) that holds at least one complete record line. Median over the jobs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from _common import (
    INPUT_BUCKET,
    OUTPUT_BUCKET,
    create_job,
    emit,
    job_id_of,
    load_average,
    note,
    running_server,
    wait_for_terminal,
    write_input,
)

GOAL_S = 1.0
POLL_S = 0.005
TMP_PREFIX = ".outcrop-tmp-"  # in-flight writes of the local store; not yet objects
NOT_RECORDS = {"manifest.json.out"}


def first_record(folder: Path) -> bytes | None:
    """The first complete record line of any output object under `folder`, if there is one."""
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir():
                pending.append(Path(entry.path))
            elif not entry.name.startswith(TMP_PREFIX) and entry.name not in NOT_RECORDS:
                try:
                    with open(entry.path, "rb") as f:
                        head = f.read(1 << 16)
                except FileNotFoundError:  # a part removed as the job finished
                    continue
                line, newline, _ = head.partition(b"\n")
                if newline:
                    return line
    return None


def time_to_first_record(server: Any, client: Any, name: str, prefix: str) -> dict[str, Any]:
    created = time.perf_counter()
    arn = create_job(
        client, name, f"s3://{INPUT_BUCKET}/{prefix}/", f"s3://{OUTPUT_BUCKET}/{prefix}/"
    )
    started = time.perf_counter()
    folder = server.data_dir / "buckets" / OUTPUT_BUCKET / prefix / job_id_of(arn)
    deadline = started + 120
    line = None
    while line is None:
        line = first_record(folder)
        if line is None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no output record for {arn} after 120 s")
            time.sleep(POLL_S)  # watching another process's output folder
    first_s = time.perf_counter() - started
    record = orjson.loads(line)
    job, _ = wait_for_terminal(client, arn, started)
    return {
        "create_s": round(started - created, 4),
        "first_record_s": round(first_s, 4),
        "valid": "recordId" in record and "modelOutput" in record,
        "status": job["status"],
    }


def series(server: Any, client: Any, records: int, jobs: int) -> dict[str, Any]:
    prefix = f"first-{records}"
    write_input(server.bucket(INPUT_BUCKET) / prefix / "input.jsonl", records)
    runs = [
        time_to_first_record(server, client, f"bench-{prefix}-{i}", prefix) for i in range(jobs)
    ]
    samples = [run["first_record_s"] for run in runs]
    return {
        "records": records,
        "median_s": round(statistics.median(samples), 4),
        "samples_s": samples,
        "create_median_s": round(statistics.median(run["create_s"] for run in runs), 4),
        "all_valid": all(run["valid"] and run["status"] == "Completed" for run in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--tiny-records", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="outcrop-bench-first-"))
    try:
        with running_server(work / "data") as server:
            server.bucket(OUTPUT_BUCKET)
            client = server.client()
            load_before = load_average()
            note(f"first_record: {args.jobs} jobs of {args.records} records")
            main_series = series(server, client, args.records, args.jobs)
            note(f"first_record: {args.jobs} jobs of {args.tiny_records} records")
            tiny_series = series(server, client, args.tiny_records, args.jobs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "first_record",
        "records": args.records,
        "jobs": args.jobs,
        "load_average": [load_before, load_average()],
        "median_s": main_series["median_s"],
        "goal_s": GOAL_S,
        "main": main_series,
        "tiny": tiny_series,
        "ok": main_series["median_s"] < GOAL_S
        and main_series["all_valid"]
        and tiny_series["all_valid"],
    }
    emit(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
