"""Run every benchmark in bench/ as a subprocess, collect their JSON results, print a summary.

Known benchmarks run first, in a fixed order, with modest sizes (minutes in all, not hours);
`--full` runs them with their own defaults instead. Any other bench/*.py script not starting
with "_" runs afterwards with its defaults. A known benchmark whose script does not exist yet
is skipped with a note. Each result is the last JSON object a script prints on stdout (one line,
or indented); the raw results are also written as JSON lines with `--output`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

# name -> arguments for a modest run; the order is the running order.
KNOWN: dict[str, list[str]] = {
    "pipeline": [],  # the 200,000 records: shard sizing depends on the job's size
    "memory": ["--records", "200000"],
    "first_record": [],
    "api": ["--jobs", "200", "--duration", "3", "--deep-jobs", "20000", "--deep-pages", "15"],
    "openai_backend": [],
    "embeddings": [],
    "events": [],
    "scale": [],
    "idle": [],
}

# The figure a reader wants first from each benchmark, as (label, key path).
HEADLINES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "pipeline": [("ratio", ("ratio",)), ("records/s", ("outcrop_records_per_s",))],
    "memory": [("peak MB", ("peak_rss_mb",)), ("scaling", ("scaling",))],
    "first_record": [("median s", ("median_s",)), ("tiny s", ("tiny", "median_s"))],
    "openai_backend": [("ratio", ("ratio",))],
    "embeddings": [("ratio", ("ratio",))],
    "events": [("ratio", ("ratio",))],
    "scale": [("two/one", ("ratio",)), ("ray/one", ("ratio_ray_to_one",))],
    "idle": [("cpu %", ("cpu_percent",)), ("before %", ("cpu_percent_constant_polling",))],
}
GENERIC_KEYS = ("ratio", "best_ratio", "median_s", "peak_rss_mb", "records_per_s")


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last JSON object in `text` that starts at the beginning of a line."""
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    position = 0
    while (start := text.find("{", position)) != -1:
        if start == 0 or text[start - 1] == "\n":
            try:
                value, end = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                position = start + 1
                continue
            if isinstance(value, dict):
                found = value
            position = end
        else:
            position = start + 1
    return found


def run(name: str, args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run one script; returns a row for the summary with its parsed result."""
    cmd = [sys.executable, str(BENCH / f"{name}.py"), *args]
    print(f"== {name} {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=BENCH)
    except subprocess.TimeoutExpired:
        return {"name": name, "state": f"timeout after {timeout_s:.0f} s", "result": None}
    seconds = time.perf_counter() - started
    result = last_json_object(done.stdout)
    if done.returncode != 0 and result is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        print(f"   {name} failed (exit {done.returncode}):\n{tail}", file=sys.stderr, flush=True)
    ok = None if result is None else result.get("ok", result.get("meets_goal"))
    if result is None:
        state = f"error (exit {done.returncode})"
    elif ok is None:
        state = "done" if done.returncode == 0 else f"exit {done.returncode}"
    else:
        state = "ok" if ok else "below goal"
    return {"name": name, "state": state, "seconds": round(seconds, 1), "result": result}


def dig(result: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def headline(name: str, result: dict[str, Any] | None) -> str:
    if result is None:
        return ""
    pairs = [(label, dig(result, path)) for label, path in HEADLINES.get(name, [])]
    if not any(value is not None for _, value in pairs):
        pairs = [(key, result[key]) for key in GENERIC_KEYS if key in result]
    return ", ".join(f"{label} {value}" for label, value in pairs if value is not None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="each benchmark's own default sizes")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run just these benchmarks")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    parser.add_argument("--output", type=Path, help="also write the results as JSON lines")
    args = parser.parse_args()

    present = {p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_")} - {"run_all"}
    plan = [(name, [] if args.full else extra) for name, extra in KNOWN.items()]
    plan += [(name, []) for name in sorted(present - set(KNOWN))]
    if args.only:
        for name in sorted(set(args.only) - {name for name, _ in plan}):
            print(f"== {name}: no such benchmark", file=sys.stderr)
        plan = [(name, extra) for name, extra in plan if name in args.only]

    rows: list[dict[str, Any]] = []
    for name, extra in plan:
        if name not in present:
            print(f"== {name}: bench/{name}.py does not exist yet, skipped", file=sys.stderr)
            rows.append({"name": name, "state": "skipped (no script)", "result": None})
            continue
        rows.append(run(name, extra, args.timeout))

    if args.output:
        with open(args.output, "w") as out:
            for row in rows:
                out.write(json.dumps({"name": row["name"], "state": row["state"], **(row["result"] or {})}) + "\n")  # fmt: skip

    width = max(len(row["name"]) for row in rows) if rows else 10
    print(f"\n{'benchmark':<{width}}  {'state':<20} {'time':>7}  headline")
    for row in rows:
        seconds = f"{row['seconds']:.1f}s" if "seconds" in row else ""
        line = f"{row['name']:<{width}}  {row['state']:<20} {seconds:>7}  "
        print(line + headline(row["name"], row["result"]))
    failed = [row for row in rows if row["state"] not in ("ok", "done", "skipped (no script)")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
