"""How long a polling loop waits between passes: short while it finds work, longer while idle."""

from __future__ import annotations


class PollInterval:
    """`base` seconds after a pass that found work; after each pass that found none, twice the
    last wait, up to `idle_max`.

    The engine and the event dispatcher poll the database for work that other processes made
    (jobs created through another API process, shards given back by another engine, retries
    coming due). Work made in this process wakes them at once, so polling fast only matters
    right after work was found. An idle server polling every 0.2 s used 5-6 % of a core
    (bench/idle.py).
    """

    def __init__(self, base: float, idle_max: float) -> None:
        self.base = base
        self.idle_max = max(base, idle_max)
        self._current = base

    def after(self, found_work: bool) -> float:
        """The wait before the next pass, given what the pass just done found."""
        self._current = self.base if found_work else min(self._current * 2, self.idle_max)
        return self._current
