"""A process-wide, thread-safe cache of loaded local models, so each model is loaded once."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ModelCache:
    """Loads each key at most once; concurrent callers of the same key wait for the first load.

    Loading happens outside the cache-wide lock (under a per-key lock) so that a slow load of one
    model never blocks callers of another. A failed load is not cached: the next caller retries.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._models: dict[Hashable, Any] = {}
        self._load_counts: dict[Hashable, int] = {}

    def get(self, key: Hashable, loader: Callable[[], T]) -> T:
        """The model cached under `key`, calling `loader` (once per process) to create it."""
        with self._lock:
            if key in self._models:
                model: T = self._models[key]
                return model
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    cached: T = self._models[key]
                    return cached
            loaded = loader()
            with self._lock:
                self._models[key] = loaded
                self._load_counts[key] = self._load_counts.get(key, 0) + 1
            return loaded

    def peek(self, key: Hashable) -> Any | None:
        """The model under `key` if it is already loaded, else None (never loads)."""
        with self._lock:
            return self._models.get(key)

    def load_count(self, key: Hashable) -> int:
        """How many times `key` was loaded in this process (1 once loaded, if all is well)."""
        with self._lock:
            return self._load_counts.get(key, 0)


MODEL_CACHE = ModelCache()


def cpu_threads() -> int:
    """The intra-op threads a model may use in all: OMP_NUM_THREADS if set, else this process's
    CPUs. Read from the environment, not from torch: torch.set_num_threads() in any thread
    changes what torch reports everywhere after it."""
    try:
        configured = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        configured = 0
    if configured > 0:
        return configured
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ModelThreads:
    """The threads that run every call on a loaded model, `count` calls at a time, in the order
    they come.

    Callers await a future here instead of each holding a thread of the event loop's shared pool
    while they wait their turn: the engine needs those threads for storage and the database, and
    with all of them parked behind the model, shard reads and part writes queued up and the model
    sat idle between shards. HF fast tokenizers must not be used from two threads at once, so a
    backend with `count` > 1 gives each thread its own copy (see `slot`).

    Each thread runs `setup` once when it starts (backends set its intra-op thread count there:
    torch keeps one per calling thread). With a small model on CPU, two calls at once with one
    intra-op thread each beat one call with two: while one call runs Python between operators,
    holding the GIL, the other computes (measured in BENCHMARKS.md, embeddings).
    """

    def __init__(self, name: str, count: int = 1, setup: Callable[[], None] | None = None) -> None:
        self.count = count
        self._slots = itertools.count()
        self._local = threading.local()
        self._setup = setup
        self._pool = ThreadPoolExecutor(count, thread_name_prefix=name, initializer=self._start)

    def _start(self) -> None:
        self._local.slot = next(self._slots)
        if self._setup is not None:
            self._setup()

    def slot(self) -> int:
        """Which of the `count` threads is running the current call (0 to count - 1)."""
        slot: int = self._local.slot
        return slot

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
