"""Pipeline throughput: an echo job end to end next to a one-loop orjson floor, printed as JSON.

Outcrop's side is CreateModelInvocationJob to Completed on a fresh `outcrop serve` with default
settings: validation, scheduling, shards, part objects, the final `.out` file and the manifest.
The floor reads the same input file line by line, parses it with orjson, builds the same echo
answer and anthropic response, serialises the output record and writes it, in one tight loop.

Each executor is measured against its own floor runs: `local` (the default: shards on the
engine's event loop, one core) and `process` (OUTCROP_EXECUTOR=process: a pool of one worker per
core); the headline is the better one, and both are reported. CPU seconds include pool workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from _common import (
    ECHO_MODEL,
    INPUT_BUCKET,
    OUTPUT_BUCKET,
    count_lines,
    create_job,
    emit,
    job_id_of,
    load_average,
    note,
    parse_env,
    running_server,
    tree_cpu_s,
    wait_for_terminal,
    write_input,
)

GOAL_RATIO = 0.5


def echo_output(body: dict[str, Any], model_id: str) -> dict[str, Any]:
    """The echo model's answer in the anthropic-messages response shape."""
    messages = body["messages"]
    text = ""
    for message in reversed(messages):
        if message["role"] == "user":
            text = message["content"]
            break
    input_tokens = sum(len(m["content"].split()) for m in messages)
    words = text.split()
    stop_reason = "end_turn"
    if len(words) > body["max_tokens"]:
        words = words[: body["max_tokens"]]
        text, stop_reason = " ".join(words), "max_tokens"
    return {
        "id": "msg_" + os.urandom(12).hex(),
        "type": "message",
        "role": "assistant",
        "model": model_id,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": len(words)},
    }


def floor(input_path: Path, output_path: Path) -> tuple[float, float]:
    """Wall and CPU seconds for parse / echo / serialise / write of every record in one loop."""
    loads, dumps = orjson.loads, orjson.dumps
    started, cpu_started = time.perf_counter(), time.process_time()
    with open(input_path, "rb") as src, open(output_path, "wb") as dst:
        for line in src:
            if not line.strip():
                continue
            data = loads(line)
            body = data["modelInput"]
            record = {
                "recordId": data["recordId"],
                "modelInput": body,
                "modelOutput": echo_output(body, ECHO_MODEL),
            }
            dst.write(dumps(record) + b"\n")
    return time.perf_counter() - started, time.process_time() - cpu_started


def same_shape(outcrop_line: bytes, floor_line: bytes) -> bool:
    """Both sides wrote the same record, apart from the random message id."""
    a, b = orjson.loads(outcrop_line), orjson.loads(floor_line)
    a["modelOutput"].pop("id", None)
    b["modelOutput"].pop("id", None)
    return bool(a == b)


def measure(records: int, env: dict[str, str], work: Path, profile: Path | None) -> dict[str, Any]:
    data = work / "data"
    input_path = data / "buckets" / INPUT_BUCKET / "pipeline" / "input.jsonl"
    note(f"pipeline: writing {records} records to {input_path}")
    input_bytes = write_input(input_path, records)
    (data / "buckets" / OUTPUT_BUCKET).mkdir(parents=True)

    # The floor runs before and after Outcrop and the mean is used, so that a change in the
    # machine's load during the run hurts both sides alike.
    note("pipeline: floor")
    floor_out = work / "floor.jsonl"
    load_before = load_average()
    floor_before, floor_cpu_before = floor(input_path, floor_out)

    note("pipeline: outcrop")
    with running_server(data, env, profile) as server:
        client = server.client()
        # One call before the clock starts: boto3 loads its service model on the first call,
        # a cost of the client's process start, not of the job (the floor's imports are not
        # timed either).
        client.list_model_invocation_jobs(maxResults=1)
        cpu_before = tree_cpu_s(server.pid)
        started = time.perf_counter()
        arn = create_job(
            client,
            "bench-pipeline",
            f"s3://{INPUT_BUCKET}/pipeline/",
            f"s3://{OUTPUT_BUCKET}/pipeline/",
        )
        job, seen = wait_for_terminal(client, arn, started)
        outcrop_s = time.perf_counter() - started
        outcrop_cpu_s = tree_cpu_s(server.pid) - cpu_before
    floor_after, floor_cpu_after = floor(input_path, floor_out)
    floor_s = (floor_before + floor_after) / 2
    floor_cpu_s = (floor_cpu_before + floor_cpu_after) / 2
    out_path = data / "buckets" / OUTPUT_BUCKET / "pipeline" / job_id_of(arn) / "input.jsonl.out"
    written = count_lines(out_path) if out_path.exists() else 0
    shape_ok = False
    if written:
        with open(out_path, "rb") as a, open(floor_out, "rb") as b:
            shape_ok = same_shape(a.readline(), b.readline())

    floor_rate = records / floor_s
    outcrop_rate = records / outcrop_s
    ratio = outcrop_rate / floor_rate
    return {
        "benchmark": "pipeline",
        "records": records,
        "input_mb": round(input_bytes / 1e6, 1),
        "env": env,
        "load_average": [load_before, load_average()],
        "floor_s": [round(floor_before, 3), round(floor_after, 3)],
        "floor_records_per_s": round(floor_rate),
        "outcrop_s": round(outcrop_s, 3),
        "outcrop_records_per_s": round(outcrop_rate),
        "status_seen_at_s": seen,
        "ratio": round(ratio, 3),
        "cpu_s": {"floor": round(floor_cpu_s, 3), "outcrop_with_workers": round(outcrop_cpu_s, 3)},
        "cpu_ratio": round(floor_cpu_s / outcrop_cpu_s, 3) if outcrop_cpu_s else None,
        "goal_ratio": GOAL_RATIO,
        "status": job["status"],
        "output_records": written,
        "same_shape": shape_ok,
        "ok": ratio >= GOAL_RATIO
        and job["status"] == "Completed"
        and written == records
        and shape_ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--env", action="append", default=[], help="OUTCROP_NAME=VALUE")
    parser.add_argument(
        "--executors",
        default="local,process",
        help="comma-separated OUTCROP_EXECUTOR values to measure, each against its own floor runs",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument(
        "--profile", type=Path, help="run the server under cProfile, writing this file"
    )
    args = parser.parse_args()
    env = parse_env(args.env)

    runs: dict[str, dict[str, Any]] = {}
    for executor in [e.strip() for e in args.executors.split(",") if e.strip()]:
        work = Path(tempfile.mkdtemp(prefix="outcrop-bench-pipeline-"))
        try:
            runs[executor] = measure(
                args.records, {**env, "OUTCROP_EXECUTOR": executor}, work, args.profile
            )
        finally:
            if args.keep:
                note(f"pipeline: kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    # The headline is the best executor; each run's own ratio (and its floor) is reported too.
    best = max(runs, key=lambda name: runs[name]["ratio"])
    report = {
        **runs[best],
        "best_executor": best,
        "by_executor": {
            name: {
                "ratio": r["ratio"],
                "outcrop_records_per_s": r["outcrop_records_per_s"],
                "floor_records_per_s": r["floor_records_per_s"],
                "ok": r["ok"],
            }
            for name, r in runs.items()
        },
    }
    emit(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
