"""Idle cost: the CPU an `outcrop serve` with nothing to do uses (% of one core), as JSON.

A fresh server with default settings is left alone for `--seconds` after start-up (its first
seconds of imports and migrations are not counted) and its CPU time is read from /proc. The
same is done with `OUTCROP_IDLE_POLL_INTERVAL_S` equal to `poll_interval_s`, which is how the
engine and the event dispatcher polled before they backed off while idle (every 0.2 s, always):
that run is the peer, and the ratio is its CPU over the default's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, load_average, note, proc_cpu_s, running_server

SETTLE_S = 3.0  # start-up work still finishing after /healthz answers


def idle_cpu_percent(work: Path, env: dict[str, str], seconds: float) -> float:
    with running_server(work / "data", env) as server:
        time.sleep(SETTLE_S)  # the server's own start-up, not synchronisation
        before = proc_cpu_s(server.pid)
        time.sleep(seconds)  # the measurement: what the server does while left alone
        return 100.0 * (proc_cpu_s(server.pid) - before) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="outcrop-bench-idle-"))
    try:
        load_before = load_average()
        note(f"idle: default settings, {args.seconds} s")
        default = idle_cpu_percent(work / "default", {}, args.seconds)
        note(f"idle: polling every 0.2 s throughout, {args.seconds} s")
        constant = idle_cpu_percent(
            work / "constant", {"OUTCROP_IDLE_POLL_INTERVAL_S": "0.2"}, args.seconds
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report: dict[str, Any] = {
        "benchmark": "idle",
        "seconds": args.seconds,
        "load_average": [load_before, load_average()],
        "cpu_percent": round(default, 2),
        "cpu_percent_constant_polling": round(constant, 2),
        "ratio": round(constant / default, 2) if default else None,
    }
    emit(report)  # no goal in any issue: reported, not judged
    return 0


if __name__ == "__main__":
    sys.exit(main())
