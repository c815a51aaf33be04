"""A process-wide, thread-safe cache of loaded local models, so each model is loaded once."""

from __future__ import annotations

import asyncio
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


class ModelThread:
    """The one thread that runs every call on a loaded model, in the order they come.

    Two calls on one CPU model only compete for the same cores, HF fast tokenizers must not be
    used from two threads at once, and OpenMP keeps a team of threads per calling thread. Callers
    await a future here instead of each holding a thread of the event loop's shared pool while
    they wait their turn: the engine needs those threads for storage and the database, and with
    all of them parked behind the model, shard reads and part writes queued up and the model
    sat idle between shards.
    """

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
