"""Record counters: a micro-batch's, a shard's written so far, and the live progress of a shard
in flight that the engine's monitor publishes to the store."""

from __future__ import annotations

from dataclasses import dataclass

from outcrop.store.shard_work import Partial


@dataclass
class Tally:
    success: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Tally) -> None:
        self.success += other.success
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens

    def partial(self) -> Partial:
        return Partial(self.success, self.errors, self.input_tokens, self.output_tokens)
