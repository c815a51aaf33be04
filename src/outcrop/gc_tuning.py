"""Garbage-collector settings for Outcrop's long-running processes.

Running records allocates millions of short-lived containers (parsed lines, requests,
responses), and a shard keeps a thousand records' worth alive until its part is written. With
CPython's defaults a young collection runs every 700 allocations, so each of those objects is
traversed and promoted several times before its shard ends, and the full collections that follow
walk every module, class and botocore model loaded at start-up as well. In a profiling run
of the shard path (not a benchmark) that was ~3 of ~14 µs per record.
"""

from __future__ import annotations

import gc

# Above the containers one shard holds alive, so most records die before a young collection
# ever sees them; the older generations keep CPython's ratios.
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Call once a process has finished starting: what is alive now lives as long as it does,
    so it is moved out of the collector's sight (gc.freeze) and never traversed again."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
